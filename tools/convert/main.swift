// palr-convert: offline model preparation. The logic lives in the Convert library.
import ArgumentParser
import FileSafety
#if canImport(Glibc)
import Glibc
#endif

// No file may be opened as a closed standard descriptor (it would receive `print`s);
// output stdio could not write is an error at exit, not lost with status 0.
StandardStreams.guardDescriptors()
StandardStreams.failOnLostOutputAtExit()
// With almost no descriptors left libdispatch traps without a word: raise a low soft limit,
// or stop with one line.
Descriptors.ensureEnough(program: "palr-convert")
// Swift would turn invalid UTF-8 into U+FFFD: `$'\xff.gguf'` would write another file.
Arguments.refuseInvalidUTF8(program: "palr-convert", takes: "paths and names")
Arguments.refuseEmptyInlineValues()
// The GGUF writer registers its temporary once it is locked; these handlers remove it
// on SIGINT, SIGTERM and SIGHUP (SIGKILL cannot be caught: the next writer of OUT
// removes what is left).
SignalCleanup.installHandlers()
// A model, catalog or checkpoint truncated while mapped: one line naming it and exit 1
// (SIGBUS), not a crash report.
MappedFiles.installBusHandler()
// Over a file-size limit (`ulimit -f`) a write fails with EFBIG, reported with the path,
// instead of SIGXFSZ killing the process without a word.
signal(SIGXFSZ, SIG_IGN)
// Progress goes to stderr and --dry-run's plan to stdout; when the reader of either pipe
// goes away (`2>&1 | head -1`), SIGPIPE would kill the conversion mid-write and leave its
// temporary. Ignored, the write fails with EPIPE instead, and messages are dropped
// (writeErr ignores failed writes) while the conversion runs to its end.
signal(SIGPIPE, SIG_IGN)
// PalrConvert.main(), with every error's text made safe for the terminal: a path or id given
// with an escape in it, or quoted from a file, is shown escaped (`\u{1B}`), not acted on.
// A usage error keeps its lines (the usage); any other error is one line, whatever the
// paths and values it names hold.
var command: ParsableCommand
do { command = try PalrConvert.parseAsRoot() } catch { exitReporting(error, oneLine: false) }
do { try command.run() } catch { exitReporting(error, oneLine: !(error is ValidationError)) }

func exitReporting(_ error: Error, oneLine single: Bool) -> Never {
    let code = PalrConvert.exitCode(for: error)
    // --help and the like: printed to standard output as the parser prints them.
    if code == .success { PalrConvert.exit(withError: error) }
    let message = PalrConvert.fullMessage(for: error)
    StandardStreams.exit(reporting: single ? oneLine(message) : message, code: code.rawValue)
}
