import CKernels
import COpenBLAS
import Foundation

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

// MARK: - Address space for OpenBLAS's buffers

extension BLAS {
    /// The work buffer OpenBLAS maps for a level-3 call (its `BUFFER_SIZE`): 128 MiB in
    /// Debian's 0.3.21 on x86_64 (`32 << 22`; measured with strace: one
    /// `mmap(NULL, 134217728, PROT_READ|PROT_WRITE, ...)` per buffer). arm64 builds use
    /// 32 or 128 MiB by target; the larger is assumed.
    public static let bufferBytes = 128 << 20

    /// Room left on top of the buffers for what the process maps between a session's
    /// creation and its threads' first sgemm (prompts, token arrays, the first snapshot).
    public static let bufferMargin = 32 << 20

    /// Concurrent sgemm callers: those of the live sessions, and how many buffers the
    /// address space was found to have room for. OpenBLAS 0.3.21 (built without TLS
    /// buffers) keeps a process-wide table of buffers: a call takes a free one or maps a
    /// new one, and a mapping is kept until the process exits, so the buffers needed are
    /// the most sgemm calls ever in flight at once, not one per thread that ever called.
    private final class Callers: @unchecked Sendable {
        let lock = NSLock()
        var live = 0
        var covered = 0
    }
    private static let callers = Callers()

    /// Admits `threads` more concurrent sgemm callers (a session's pool threads).
    ///
    /// OpenBLAS maps each buffer when a call first needs it and, if the mapping fails
    /// (an address-space limit, `ulimit -v`), retries forever, spinning: the process
    /// hangs inside `cblas_sgemm`. So when RLIMIT_AS is finite, the address space the
    /// new buffers will take (plus `bufferMargin`) is reserved here with a PROT_NONE,
    /// MAP_NORESERVE mapping (nothing is touched or committed) and released at once;
    /// if it cannot be, this throws `LlamaError.addressSpace` and admits nothing.
    /// Without a limit this only counts. Balance with `releaseCallers`.
    static func admitCallers(_ threads: Int) throws(LlamaError) {
        let c = callers
        c.lock.lock()
        defer { c.lock.unlock() }
        let newBuffers = c.live + threads - c.covered
        if newBuffers > 0 {
            let bytes = newBuffers * bufferBytes + bufferMargin
            if let limit = addressSpaceLimit(), !canReserve(bytes) {
                throw .addressSpace(limit: limit, available: max(0, limit - mappedBytes()), needed: bytes,
                                    threads: threads)
            }
            c.covered = c.live + threads
        }
        c.live += threads
    }

    static func releaseCallers(_ threads: Int) {
        callers.lock.lock()
        callers.live -= threads
        callers.lock.unlock()
    }

    /// RLIMIT_AS in bytes, or nil when there is none.
    public static func addressSpaceLimit() -> Int? {
        #if os(Linux)
        var rl = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &rl) == 0, rl.rlim_cur != rlim_t.max else { return nil }   // RLIM_INFINITY
        return rl.rlim_cur > UInt64(Int.max) ? nil : Int(rl.rlim_cur)
        #else
        return nil
        #endif
    }

    /// Whether `bytes` of address space can be mapped now (reserved and released at once).
    /// Under `ulimit -v` a Swift allocation that does not fit aborts the process; callers
    /// with a large optional buffer ask first.
    public static func canReserve(_ bytes: Int) -> Bool {
        guard let p = mmap(nil, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              p != MAP_FAILED else { return false }
        munmap(p, bytes)
        return true
    }

    /// The process's mapped address space (VmSize), for the error message; 0 if unknown.
    static func mappedBytes() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = s.split(separator: " ").first.flatMap({ Int($0) }) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// A session's admission of its pool threads as sgemm callers (`BLAS.admitCallers`),
/// released when the session goes.
final class BLASCallers {
    let threads: Int
    init(threads: Int) throws(LlamaError) {
        try BLAS.admitCallers(threads)
        self.threads = threads
    }
    deinit { BLAS.releaseCallers(threads) }
}
