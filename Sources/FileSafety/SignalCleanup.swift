// Temporary files to remove if the process is killed by SIGINT, SIGTERM or SIGHUP
// (a signal runs no `deinit`, so a writer's own cleanup never happens then).
//
// Writers register a temporary once it is theirs (created, or locked) and remove it
// from the registry when they rename or delete it. Libraries only register; the
// executables install the handlers (`installHandlers()`), so an application that
// embeds the libraries keeps its own signal handling and can call
// `removeRegisteredFiles()` from its handler instead.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum SignalCleanup {
    /// How many temporaries can be registered at once (one per writer in progress).
    public static let capacity = 16

    /// The registry: C strings the signal handler can read without allocating.
    /// Owned here. A path is never freed once registered: a handler running on
    /// another thread may be reading it; a process registers a few at most.
    nonisolated(unsafe) private static let slots =
        UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: capacity)
    nonisolated(unsafe) private static var initialized = false
    nonisolated(unsafe) private static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()

    /// Registers `path` for removal on a signal; returns a token for `unregister`,
    /// or nil when the registry is full (the file is then only removed by its writer).
    @discardableResult
    public static func register(_ path: String) -> Int? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        if !initialized {
            slots.initialize(repeating: nil, count: capacity)
            initialized = true
        }
        for i in 0..<capacity where slots[i] == nil {
            slots[i] = strdup(path)
            return i
        }
        return nil
    }

    /// Forgets a registration (the file was renamed into place or removed).
    public static func unregister(_ token: Int?) {
        guard let token, token >= 0, token < capacity else { return }
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        slots[token] = nil   // not freed: see `slots`
    }

    /// The paths registered now, for tests and diagnostics.
    public static var registered: [String] {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        guard initialized else { return [] }
        return (0..<capacity).compactMap { slots[$0].map { String(cString: $0) } }
    }

    /// Unlinks every registered file. Async-signal-safe: no locks, no allocation.
    public static func removeRegisteredFiles() {
        guard initialized else { return }
        for i in 0..<capacity {
            if let p = slots[i] { unlink(p) }
        }
    }

    /// Installs handlers for SIGINT, SIGTERM and SIGHUP that remove the registered
    /// files and then die of the signal as before. For executables, first thing in
    /// main (threads started later inherit the signal mask set here).
    ///
    /// The three signals are also unblocked: a process inherits its parent's blocked
    /// set across exec, and a parent that spawns from a thread which blocks them (a
    /// Swift service using Foundation's `Process` from a Dispatch thread does) would
    /// otherwise start a palr that `kill -TERM` cannot stop until it exits by itself.
    public static func installHandlers() {
        let handler: @convention(c) (Int32) -> Void = { sig in
            SignalCleanup.removeRegisteredFiles()
            signal(sig, SIG_DFL)
            raise(sig)
        }
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP] {
            signal(s, handler)
            sigaddset(&set, s)
        }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}
