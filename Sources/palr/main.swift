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

/// Swift decodes arguments with U+FFFD for invalid UTF-8, which would make different
/// byte strings the same profile or item id: such an argument is refused instead.
func refuseInvalidUTF8Arguments() {
    for i in 1..<Int(CommandLine.argc) {
        guard let raw = CommandLine.unsafeArgv[i], String(validatingCString: raw) == nil else { continue }
        let hex = UnsafeBufferPointer(start: raw, count: strlen(raw)).prefix(24)
            .map { String(UInt8(bitPattern: $0), radix: 16) }.joined(separator: " ")
        printErr("Error: argument \(i) is not valid UTF-8 (bytes \(hex)); palr takes ids, titles and paths as UTF-8")
        exit(64)
    }
}

refuseInvalidUTF8Arguments()
ensureGoodBLASCore()
// Output temporaries (history export, eval reports) are removed on SIGINT/SIGTERM/SIGHUP.
SignalCleanup.installHandlers()
// Over a file-size limit (`ulimit -f`) a write fails with EFBIG, reported with the path,
// instead of SIGXFSZ killing the process without a word.
signal(SIGXFSZ, SIG_IGN)
Palr.main()
