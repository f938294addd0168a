import CKernels
import COpenBLAS

#if canImport(Glibc)
import Glibc
#endif

/// What OpenBLAS loaded, and whether it chose well for this CPU.
///
/// OpenBLAS picks its kernels when the library loads, from its own CPU table.
/// Debian 12's 0.3.21 does not know some newer x86 CPUs and falls back to a
/// generic core ("Prescott"), about 5× slower at sgemm. `OPENBLAS_CORETYPE` set
/// before the library loads overrides the choice; `recommendedCoreType` says
/// which value to set, and the `palr` executable re-executes itself with it.
public enum BLAS {
    /// The kernel family OpenBLAS is using, e.g. "SkylakeX", "Haswell", "Prescott".
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    public static var configuration: String {
        guard let p = openblas_get_config() else { return "unknown" }
        return String(cString: p)
    }

    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    public static func setThreadCount(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }

    /// Generic x86 cores OpenBLAS falls back to when it does not recognise a CPU.
    static let genericCores: Set<String> = ["prescott", "core2", "nehalem", "katmai", "coppermine",
                                            "northwood", "banias", "atom", "penryn", "dunnington", "unknown"]

    /// The `OPENBLAS_CORETYPE` value to use, or nil when the loaded core is already
    /// a good one (or this is not x86, or no better core exists).
    public static func recommendedCoreType(features: UInt32 = palr_cpu_features(), loaded: String = coreName) -> String? {
        #if arch(x86_64)
        guard genericCores.contains(loaded.lowercased()) else { return nil }
        let avx512 = PALR_CPU_AVX512F | PALR_CPU_AVX512BW | PALR_CPU_AVX512VL
        if features & avx512 == avx512 { return "SkylakeX" }
        if features & (PALR_CPU_AVX2 | PALR_CPU_FMA) == (PALR_CPU_AVX2 | PALR_CPU_FMA) { return "Haswell" }
        return nil
        #else
        return nil
        #endif
    }

    /// Human-readable names of the CPU features that matter for the kernels.
    public static func featureNames(_ f: UInt32 = palr_cpu_features()) -> [String] {
        let table: [(UInt32, String)] = [
            (PALR_CPU_AVX2, "avx2"), (PALR_CPU_FMA, "fma"), (PALR_CPU_F16C, "f16c"),
            (PALR_CPU_AVX512F, "avx512f"), (PALR_CPU_AVX512BW, "avx512bw"), (PALR_CPU_AVX512VL, "avx512vl"),
            (PALR_CPU_AVX512VNNI, "avx512vnni"), (PALR_CPU_NEON, "neon"), (PALR_CPU_DOTPROD, "dotprod"),
        ]
        return table.filter { f & $0.0 != 0 }.map(\.1)
    }
}
