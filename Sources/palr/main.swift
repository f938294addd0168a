// Entry point. Before anything else, make sure OpenBLAS runs the right kernels
// for this CPU: it chooses them when the library loads, so fixing a bad choice
// means setting OPENBLAS_CORETYPE and re-executing this process once.
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

ensureGoodBLASCore()
Palr.main()
