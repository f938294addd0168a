// Temporary files to remove if the process is killed by SIGINT, SIGTERM, SIGHUP or SIGPIPE
// (a signal runs no `deinit`, so a writer's own cleanup never happens then).
//
// Writers register a temporary once it is theirs (created, or locked) and remove it
// from the registry before they rename or delete it. Libraries only register; the
// executables install the handlers (`installHandlers()`), so an application that
// embeds the libraries keeps its own signal handling and can call
// `removeRegisteredFiles()` from the handler of a signal it dies of (after that call
// nothing registers any more). The registry itself is C
// (CFileSafety): fixed slots in static memory, read by the handler through atomics.

import CFileSafety

public enum SignalCleanup {
    /// How many temporaries can be registered at once (one per writer in progress).
    /// When all are taken a writer still works, but a signal leaves its temporary.
    public static let capacity = Int(PALR_CLEANUP_SLOTS)

    /// Registers `path` for removal on a signal: a file, or a folder that is removed if
    /// it is empty once every registered file is gone (register the files that may be in
    /// it too). Returns a token for `unregister`,
    /// or nil when the registry is full, the path is longer than PATH_MAX, or the
    /// process is dying (`removeRegisteredFiles` has run).
    @discardableResult
    public static func register(_ path: String) -> Int? {
        let slot = palr_cleanup_register(path)
        return slot >= 0 ? Int(slot) : nil
    }

    /// Forgets a registration (before the file is renamed into place or removed).
    public static func unregister(_ token: Int?) {
        guard let token, token >= 0, token < capacity else { return }
        palr_cleanup_unregister(Int32(token))
    }

    /// The paths registered now, for tests and diagnostics.
    public static var registered: [String] {
        var buffer = [CChar](repeating: 0, count: 4097)
        return (0..<capacity).compactMap { slot in
            palr_cleanup_registered(Int32(slot), &buffer, UInt(buffer.count)) != 0
                ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
        }
    }

    /// Unlinks every registered file, then removes the registered folders left empty.
    /// Async-signal-safe. For a dying process: from then
    /// on nothing more registers (a path copied into a slot while the handler reads it
    /// could make it unlink a name no writer registered).
    public static func removeRegisteredFiles() { palr_cleanup_remove_all() }

    /// Installs handlers for SIGINT, SIGTERM, SIGHUP and SIGPIPE that remove the registered
    /// files and then die of the signal as before. For executables, first thing in
    /// main. A signal inherited as ignored stays ignored (`nohup`, `cmd &` in a
    /// script). The handled signals are unblocked: a process inherits its parent's
    /// blocked set across exec, and a parent that spawns from a thread which blocks
    /// them (Foundation's `Process` from a Dispatch thread does) would otherwise
    /// start a palr that `kill -TERM` cannot stop. Returns the signals now handled.
    @discardableResult
    public static func installHandlers() -> [Int32] {
        let mask = palr_cleanup_install_handlers()
        return [SIGINT, SIGTERM, SIGHUP, SIGPIPE].filter { mask & (1 << UInt32($0)) != 0 }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
