// Standard input and output as a command-line tool must treat them: closed descriptors
// are never reused for files, and output that stdio could not write is an error at exit
// (Swift's `print` goes through stdio, which keeps write errors to itself).
import CFileSafety
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum StandardStreams {
    /// Which of descriptors 0, 1, 2 were closed when `guardDescriptors` ran (bits 0–2).
    nonisolated(unsafe) public private(set) static var closedAtStart: UInt32 = 0

    /// For executables, first thing in main: a closed 0 gets /dev/null, a closed 1 or 2
    /// /dev/full (so writes fail, as they would have), and `closedAtStart` remembers it.
    public static func guardDescriptors() { closedAtStart = palr_guard_standard_descriptors() }

    /// Whether standard input was closed at start (it reads as empty /dev/null now).
    public static var inputWasClosed: Bool { closedAtStart & 1 != 0 }

    /// Registers an exit handler: if standard output lost anything (closed, full, an I/O
    /// error; not a reader that went away), prints `Error: cannot write standard output: REASON` to stderr and ends the
    /// process with status 1 instead of the status it was exiting with.
    public static func failOnLostOutputAtExit() {
        atexit {
            let code = palr_flush_standard_output()
            // EPIPE: the reader stopped reading (`| head`), its choice, as SIGPIPE is for
            // processes that do not ignore it.
            guard code != 0 && code != EPIPE else { return }
            let reason = StandardStreams.closedAtStart & 2 != 0 ? "it is closed" : String(cString: strerror(code))
            let line = "Error: cannot write standard output: \(reason)\n"
            _ = line.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
            _exit(1)
        }
    }

    /// Ends the process with status `code` after printing `message` (an error as the
    /// argument parser words it, usage lines included) to standard error, each line
    /// through `terminalLines`: a path, id or value with a newline or a terminal escape in
    /// it is shown escaped, never acted on. A failed write is ignored (the status still
    /// says it failed). Exit handlers run (`failOnLostOutputAtExit`).
    public static func exit(reporting message: String, code: Int32) -> Never {
        if !message.isEmpty {
            var text = terminalLines(message) + "\n"
            text.withUTF8 { _ = writeFully(STDERR_FILENO, UnsafeRawBufferPointer($0)) }
        }
        #if canImport(Glibc)
        Glibc.exit(code)
        #elseif canImport(Musl)
        Musl.exit(code)
        #endif
    }
}
