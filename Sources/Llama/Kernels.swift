import CKernels
import COpenBLAS
import GGUF

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Small named kernels the forward pass is built from. All take raw pointers the
// caller owns (the session's buffers); none allocates.

/// out = x / rms(x) * weight, over `n` elements. `out` may alias `x`.
@inline(__always)
func rmsnorm(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
             _ n: Int, eps: Float) {
    var ss: Float = 0
    for i in 0..<n { ss += x[i] * x[i] }
    let scale = 1 / (ss / Float(n) + eps).squareRoot()
    for i in 0..<n { out[i] = weight[i] * (x[i] * scale) }
}

/// In-place softmax over `n` elements.
@inline(__always)
func softmax(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
    var maxv = -Float.infinity
    for i in 0..<n where x[i] > maxv { maxv = x[i] }
    var sum: Float = 0
    for i in 0..<n {
        // e^-80 ≈ 1.8e-35 is far below float32's resolution next to the maximum's 1, and
        // smaller arguments give subnormals, which make the GEMM that consumes these
        // probabilities ~100× slower on x86 (microcode assists). Flush them to zero.
        let d = x[i] - maxv
        let e = d < -80 ? 0 : expf(d)
        x[i] = e
        sum += e
    }
    let inv = 1 / sum
    for i in 0..<n { x[i] *= inv }
}

/// gate = silu(gate) * up, elementwise.
@inline(__always)
func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, _ n: Int) {
    for i in 0..<n {
        let g = gate[i]
        gate[i] = g / (1 + expf(-g)) * up[i]
    }
}

/// Rotates adjacent pairs (x[2i], x[2i+1]) of the first `ropeDim` dims of each of
/// `heads` heads by the angles in `table` (cos, sin interleaved, ropeDim/2 pairs).
/// This is llama.cpp's "normal" RoPE; the converter permutes q/k rows to match.
@inline(__always)
func rope(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, ropeDim: Int, table: UnsafePointer<Float>) {
    for h in 0..<heads {
        let v = x + h * headDim
        for i in 0..<(ropeDim / 2) {
            let c = table[2 * i], s = table[2 * i + 1]
            let a = v[2 * i], b = v[2 * i + 1]
            v[2 * i] = a * c - b * s
            v[2 * i + 1] = a * s + b * c
        }
    }
}

/// Row-major C (m × n) = A (m × k) · Bᵀ (B: n × k) with OpenBLAS, for `palr_matmul`.
/// OpenBLAS runs single-threaded inside; the session's pool threads call it in parallel.
let sgemmNT: palr_sgemm_nt_fn = { m, n, k, a, lda, b, ldb, beta, c, ldc in
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
}

/// Column-major C (m × n) = Aᵀ · B: the same product with the panel as OpenBLAS's B
/// operand and the result transposed, for small batches (see `palr_matmul_args`).
let sgemmTN: palr_sgemm_nt_fn = { m, n, k, a, lda, b, ldb, beta, c, ldc in
    cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
}

/// Batches up to this size take the transposed product (`sgemmTN`); `PALR_SMALL_BATCH`
/// overrides it (0: never), for tuning.
let smallBatch: Int = {
    if let v = getenv("PALR_SMALL_BATCH"), let n = Int(String(cString: v)), n >= 0 { return n }
    return 128
}()

/// Y (batch × W.rows) = X (batch × W.cols) · Wᵀ: the prompt path.
/// The rows of W are cut into panels of ≤ `panelRows` rows; each pool thread takes the
/// next panel and, `kChunk` columns at a time (0: whole rows), converts the chunk to
/// float in its own slice of `scratch` (`scratchPerThread` floats per thread, owned by
/// the session) and multiplies it at once with one sgemm, accumulating, while it is still
/// in L2. No whole-matrix copy exists. F32 weights go to sgemm straight from the mapping.
func matmul(_ w: WeightMatrix, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int,
            scratch: UnsafeMutablePointer<Float>, scratchPerThread: Int, panelRows: Int, kChunk: Int,
            pool: ThreadPool) {
    var args = matmulArgs(w, x, y, batch: batch, scratch: scratch, scratchPerThread: scratchPerThread,
                          panelRows: panelRows, kChunk: kChunk, threads: pool.count)
    palr_matmul(pool.raw, &args)
}

/// The arguments of one product for `palr_matmul` / `palr_matmul_multi` (see `matmul`).
func matmulArgs(_ w: WeightMatrix, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int,
                scratch: UnsafeMutablePointer<Float>, scratchPerThread: Int, panelRows: Int, kChunk: Int,
                threads: Int) -> palr_matmul_args {
    // A slice holds the converted chunk (unless F32) and, for small batches, the transposed result.
    let chunk = kChunk > 0 && kChunk < w.cols ? kChunk : w.cols
    let panelFloats = w.type == .f32 ? 0 : chunk
    let transposed = batch <= smallBatch && scratchPerThread >= panelFloats + batch
    let perRow = panelFloats + (transposed ? batch : 0)
    // The panel count is rounded up to a multiple of the thread count and the rows shared
    // evenly (in multiples of 16), so that no thread idles at the end of a matrix: k and
    // v under GQA (256 rows) give each thread a panel, and 5,632 rows are 12 panels of
    // 480 rather than 11 of 512 (measured: the caller waited 4% of a pp64 prefill).
    let largest = max(1, min(panelRows, perRow == 0 ? panelRows : scratchPerThread / perRow))
    let panels = ((w.rows + largest - 1) / largest + threads - 1) / threads * threads
    let even = (w.rows + panels - 1) / panels
    let panel = min(largest, max(1, (even + 15) / 16 * 16))
    return palr_matmul_args(m: w.kernelView, x: x, batch: Int32(batch), y: y, ldy: Int32(w.rows),
                            scratch: scratch, scratch_floats_per_thread: scratchPerThread,
                            panel_rows: Int32(panel), k_chunk: Int32(kChunk),
                            sgemm: sgemmNT, sgemm_tn: transposed ? sgemmTN : nil)
}

/// Persistent worker threads (C, in CKernels), destroyed with this object.
final class ThreadPool {
    let raw: OpaquePointer?
    let count: Int

    /// The physical cores this process may run on (SMT siblings count once: they share a
    /// core's load and FMA units), capped at 8, where memory-bound decode stops gaining.
    static var defaultThreadCount: Int { max(1, min(Int(palr_physical_cores()), 8)) }

    /// OpenBLAS made single-threaded (process-wide), once, before the first pool exists: a
    /// pool's threads call it in parallel (panels, attention heads), and OpenBLAS's own
    /// threads would compete with ours for the cores; and its thread count must not change
    /// while another thread's call is in flight, as it did when each session set it (a
    /// test's pool called sgemm from two threads before any session had set it, and CI once
    /// saw 3,090 of 80,000 products differ). Swift runs a static's initialiser exactly once.
    private static let openBLASSingleThreaded: Void = BLAS.setThreadCount(1)

    init(threads: Int) {
        _ = Self.openBLASSingleThreaded
        raw = threads > 1 ? palr_pool_create(Int32(threads)) : nil
        count = raw.map { Int(palr_pool_size($0)) } ?? 1
    }

    deinit { if let raw { palr_pool_destroy(raw) } }
}
