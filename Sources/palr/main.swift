// Entry point. Before anything else, make sure OpenBLAS runs the right kernels
// for this CPU (and, under an address-space limit, starts no threads of its own): it
// reads both when the library loads, so changing them means setting OPENBLAS_CORETYPE
// (or OPENBLAS_NUM_THREADS) and re-executing this process once.
import ArgumentParser
import FileSafety
import Llama

#if canImport(Glibc)
import Glibc
#endif

func ensureGoodBLASCore() {
    // Both settings below are read when OpenBLAS loads: changing either means re-executing.
    var set: [String] = []
    // An explicit user setting always wins; PALR_BLAS_REEXEC stops any loop.
    if getenv("OPENBLAS_CORETYPE") == nil, getenv("PALR_BLAS_REEXEC") == nil, let core = BLAS.recommendedCoreType() {
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv("PALR_BLAS_REEXEC", BLAS.coreName, 1)   // remembers what was detected first
        set += ["OPENBLAS_CORETYPE", "PALR_BLAS_REEXEC"]
    }
    // Under an address-space limit (`ulimit -v`) OpenBLAS's own threads (one per core but
    // one, started as it loads) each map a 128 MiB buffer at once and, when that fails,
    // retry forever; every command, `--help` included, then hangs at exit, where OpenBLAS
    // joins them. palr calls OpenBLAS single-threaded anyway (`BLAS.setThreadCount(1)`),
    // so without those threads only the address space they took changes.
    if getenv("OPENBLAS_NUM_THREADS") == nil, BLAS.addressSpaceLimit() != nil {
        setenv("OPENBLAS_NUM_THREADS", "1", 1)
        set.append("OPENBLAS_NUM_THREADS")
    }
    guard !set.isEmpty else { return }
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    // exec failed (no /proc?): carry on as loaded; `palr info` reports slow kernels.
    for name in set { unsetenv(name) }
}

// No file may be opened as a closed standard descriptor (it would receive `print`s);
// output stdio could not write is an error at exit, not lost with status 0.
StandardStreams.guardDescriptors()
StandardStreams.failOnLostOutputAtExit()
// With almost no descriptors left libdispatch traps without a word: raise a low soft limit,
// or stop with one line.
Descriptors.ensureEnough(program: "palr")
// Swift would turn invalid UTF-8 into U+FFFD: different byte strings, one id or path.
Arguments.refuseInvalidUTF8(program: "palr", takes: "ids, titles and paths")
Arguments.refuseEmptyInlineValues()
ensureGoodBLASCore()
// Output temporaries (history export, eval reports) are removed on SIGINT/SIGTERM/SIGHUP.
SignalCleanup.installHandlers()
// A model, catalog or checkpoint truncated while mapped: one line naming it and exit 1
// (SIGBUS), not a crash report.
MappedFiles.installBusHandler()
// Over a file-size limit (`ulimit -f`) a write fails with EFBIG, reported with the path,
// instead of SIGXFSZ killing the process without a word.
signal(SIGXFSZ, SIG_IGN)
// Palr.main(), with every error's text made safe for the terminal: a path or id given
// with an escape in it, or quoted from a file, is shown escaped (`\u{1B}`), not acted on.
// A usage error keeps its lines (the usage); any other error is one line, whatever the
// paths and values it names hold.
var command: ParsableCommand
do { command = try Palr.parseAsRoot() } catch { exitReporting(error, oneLine: false) }
do { try command.run() } catch { exitReporting(error, oneLine: !(error is ValidationError)) }

func exitReporting(_ error: Error, oneLine single: Bool) -> Never {
    let code = Palr.exitCode(for: error)
    // --help and the like: printed to standard output as the parser prints them.
    if code == .success { Palr.exit(withError: error) }
    let message = Palr.fullMessage(for: error)
    StandardStreams.exit(reporting: single ? oneLine(message) : message, code: code.rawValue)
}
