// Entry point. Before anything else, make sure OpenBLAS runs the right kernels
// for this CPU: it chooses them when the library loads, so fixing a bad choice
// means setting OPENBLAS_CORETYPE and re-executing this process once.
import FileSafety
import Llama

#if canImport(Glibc)
import Glibc
#endif

func ensureGoodBLASCore() {
    // An explicit user setting always wins; PALR_BLAS_REEXEC stops any loop.
    guard getenv("OPENBLAS_CORETYPE") == nil, getenv("PALR_BLAS_REEXEC") == nil else { return }
    guard let core = BLAS.recommendedCoreType() else { return }
    setenv("OPENBLAS_CORETYPE", core, 1)
    setenv("PALR_BLAS_REEXEC", BLAS.coreName, 1)   // remembers what was detected first
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    // exec failed (no /proc?): carry on with the slow kernels; `palr info` reports them.
    unsetenv("OPENBLAS_CORETYPE")
}

// No file may be opened as a closed standard descriptor (it would receive `print`s);
// output stdio could not write is an error at exit, not lost with status 0.
StandardStreams.guardDescriptors()
StandardStreams.failOnLostOutputAtExit()
// Swift would turn invalid UTF-8 into U+FFFD: different byte strings, one id or path.
Arguments.refuseInvalidUTF8(program: "palr", takes: "ids, titles and paths")
Arguments.refuseEmptyInlineValues()
ensureGoodBLASCore()
// Output temporaries (history export, eval reports) are removed on SIGINT/SIGTERM/SIGHUP.
SignalCleanup.installHandlers()
// Over a file-size limit (`ulimit -f`) a write fails with EFBIG, reported with the path,
// instead of SIGXFSZ killing the process without a word.
signal(SIGXFSZ, SIG_IGN)
Palr.main()
