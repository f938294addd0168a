// Memory-mapped input files (models, catalogs, checkpoint shards), registered so that a
// SIGBUS from one truncated under the mapping is reported with its name. A file that
// shrinks while mapped (rewritten in place by cp or an unfinished copy; a rename over
// it is safe: the mapping keeps the old file) kills the process at the first touch of
// a page past the new end. That cannot be undone from a handler; what it can do is say
// which file and why, remove the registered temporaries, and exit 1, instead of a
// crash report. Libraries register; executables install the handler.

import CFileSafety

public enum MappedFiles {
    /// Registers `size` bytes at `base` as the mapping of `path`; returns a token for
    /// `unregister` (nil when the registry is full: the mapping then works the same, and
    /// a SIGBUS in it is reported as a crash).
    public static func register(base: UnsafeRawPointer, size: Int, path: String) -> Int? {
        let slot = palr_mapped_register(base, UInt(size), path)
        return slot >= 0 ? Int(slot) : nil
    }

    /// Forgets a registration; call it before unmapping.
    public static func unregister(_ token: Int?) {
        guard let token, token >= 0, token < Int(PALR_MAPPED_SLOTS) else { return }
        palr_mapped_unregister(Int32(token))
    }

    /// The registered file mapped at `address`, for tests and diagnostics.
    public static func path(at address: UnsafeRawPointer) -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        guard palr_mapped_lookup(address, &buffer, UInt(buffer.count)) != 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Installs the SIGBUS handler (for executables, at start, after the Swift runtime's
    /// own, to which every other SIGBUS still goes).
    public static func installBusHandler() { _ = palr_mapped_install_bus_handler() }
}
