import CKernels
import Foundation

/// What the prompt path's GEMM alone can do at one batch size: `palr bench` compares the
/// measured prefill speed with it.
public struct GEMMBound: Sendable {
    /// fp32 GEMM rate over one layer's matrix shapes, in GFLOP/s.
    public let gflops: Double
    /// Prompt tokens per second if a prefill were nothing but these GEMMs at this rate
    /// (every layer's q, k, v, o, gate, up and down products; attention, norms and the
    /// final logits row left out).
    public let tokensPerSecond: Double
}

extension LlamaSession {
    /// The bytes `promptGEMMBound(batch:)` allocates at its peak (its largest matrix and
    /// the row buffers), so a caller under an address-space limit can check for room.
    public func promptGEMMBoundBytes(batch: Int) -> Int {
        let c = config
        let n = max(1, min(batch, maxBatch))
        let largest = max(c.qDim * c.dim, c.kvDim * c.dim, c.ffnDim * c.dim)
        return 4 * (largest + 2 * n * max(c.dim, c.qDim, c.ffnDim) + Self.panelRows * n * pool.count)
    }

    /// Runs this model's layer shapes through the prompt path (same panels, pool threads
    /// and OpenBLAS calls as `prefill`) with fp32 weights already converted and warm in
    /// cache, i.e. with no dequantization and no weight streaming: the ceiling of any
    /// fp32-GEMM prefill at this batch on this machine. Allocates one fp32 matrix at a
    /// time (the largest is ffn × dim floats); for benchmarks, not for serving.
    public func promptGEMMBound(batch: Int, minSeconds: Double = 1.0) -> GEMMBound {
        let c = config
        let n = max(1, min(batch, maxBatch))
        let shapes = [(c.qDim, c.dim), (c.kvDim, c.dim), (c.kvDim, c.dim), (c.dim, c.qDim),
                      (c.ffnDim, c.dim), (c.ffnDim, c.dim), (c.dim, c.ffnDim)]
        let widest = max(c.dim, c.qDim, c.ffnDim)
        // Owned here for the measurement only: input rows, output rows, and per thread a
        // slice for a small batch's transposed result (F32 weights need no conversion chunk).
        let x = FloatBuffer(n * widest), y = FloatBuffer(n * widest)
        let perThread = Self.panelRows * n
        let slices = FloatBuffer(perThread * pool.count)
        for i in 0..<x.count { x.pointer[i] = Float(i % 7) * 0.125 - 0.375 }
        var layerSeconds = 0.0
        for (rows, cols) in shapes {
            let w = FloatBuffer(rows * cols)
            for i in stride(from: 0, to: w.count, by: 97) { w.pointer[i] = 0.01 }
            let m = WeightMatrix(name: "gemm-bound", type: .f32, rows: rows, cols: cols,
                                 base: UnsafeRawPointer(w.pointer), rowBytes: cols * 4)
            let run = {
                matmul(m, x.pointer, y.pointer, batch: n, scratch: slices.pointer, scratchPerThread: perThread,
                       panelRows: Self.panelRows, kChunk: Self.kChunk, pool: self.pool)
            }
            run()   // warm: the matrix into cache, OpenBLAS's buffers allocated
            // The fastest call counts (a bound; the host's noise only ever slows a call).
            var best = Double.infinity, reps = 0
            let s = Date()
            repeat {
                let c0 = Date()
                run()
                best = min(best, Date().timeIntervalSince(c0))
                reps += 1
            } while reps < 3 || Date().timeIntervalSince(s) < minSeconds / Double(shapes.count)
            layerSeconds += best
        }
        let flops = 2.0 * Double(n) * Double(shapes.reduce(0) { $0 + $1.0 * $1.1 })
        return GEMMBound(gflops: flops / layerSeconds / 1e9,
                         tokensPerSecond: Double(n) / (layerSeconds * Double(c.layerCount)))
    }
}
