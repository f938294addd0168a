import CKernels
import Foundation
import GGUF
import Testing
@testable import Llama

/// The prompt path (`matmul`: panels, K-chunks, pool threads, OpenBLAS, the transposed
/// product for small batches) against a plain double-precision product with the
/// dequantized weights. The model fixtures are too narrow (dim ≤ 288) to cross a
/// 256-column chunk, so shapes here are chosen to: 800 columns = chunks 256+256+256+32.
@Suite struct MatmulTests {
    @Test(arguments: [GGMLType.q4_0, .q8_0, .f16, .f32], [(rows: 300, batch: 7), (rows: 70, batch: 200)])
    func promptMatmulMatchesDequantizedProduct(type: GGMLType, shape: (rows: Int, batch: Int)) throws {
        let (rows, cols, batch) = (shape.rows, 800, shape.batch)
        var rng = LCG(seed: 42)
        let wf = rng.floats(rows * cols)
        let x = rng.floats(batch * cols)
        let stored = try #require(type.quantize(wf))
        let w = try #require(stored.withUnsafeBytes { type.dequantize($0, count: rows * cols) })
        var worst = 0.0
        for (threads, panelRows, kChunk) in [(2, 512, 256), (2, 64, 256), (1, 512, 0), (2, 32, 64)] {
            let pool = ThreadPool(threads: threads)
            let perThread = panelRows * (cols + batch)
            var scratch = [Float](repeating: .nan, count: perThread * pool.count)
            var y = [Float](repeating: .nan, count: batch * rows)
            stored.withUnsafeBytes { raw in
                let m = WeightMatrix(name: "w", type: type, rows: rows, cols: cols, base: raw.baseAddress!,
                                     rowBytes: stored.count / rows)
                matmul(m, x, &y, batch: batch, scratch: &scratch, scratchPerThread: perThread,
                       panelRows: panelRows, kChunk: kChunk, pool: pool)
            }
            for i in 0..<batch {
                for r in 0..<rows {
                    var dot = 0.0, mag = 0.0
                    for c in 0..<cols {
                        let p = Double(w[r * cols + c]) * Double(x[i * cols + c])
                        dot += p
                        mag += abs(p)
                    }
                    worst = max(worst, abs(Double(y[i * rows + r]) - dot) / mag)
                }
            }
        }
        print("matmul \(type) \(rows)×\(cols), batch \(batch): worst |Δ| / Σ|w·x| = \(worst)")
        #expect(worst <= 1e-6)
    }

    /// Three products run in one pool run (`palr_matmul_multi`, as q/k/v are) give exactly
    /// what each gives alone: the panels are the same, only the order of claiming differs.
    @Test(arguments: [9, 200])   // the transposed small-batch product and the plain one
    func productsRunTogetherEqualProductsRunAlone(batch: Int) throws {
        let f = try Products(shapes: [(.q4_0, 300), (.q8_0, 48), (.f16, 100)], cols: 544, batch: batch,
                             rng: LCG(seed: 7))
        let alone = (0..<3).map { f.alone($0) }
        let together = f.ms.map { UnsafeMutablePointer<Float>.allocate(capacity: batch * $0.rows) }
        defer { together.forEach { $0.deallocate() } }
        f.x.withUnsafeBufferPointer { xp in
            var a = (0..<3).map { f.args($0, xp.baseAddress!, together[$0]) }
            palr_matmul_multi(f.pool.raw, &a[0], &a[1], &a[2])
        }
        for i in 0..<3 {
            let got = Array(UnsafeBufferPointer(start: together[i], count: batch * f.ms[i].rows))
            #expect(got == alone[i], "product \(i) (\(f.ms[i].type)) differs when run with the others")
        }
    }

    /// SwiGLU fused into the gate/up pool run (`palr_matmul_swiglu`: each panel pair is
    /// combined by the thread that finishes its second half) equals the two products
    /// followed by the separate `swiglu` pass, bit for bit.
    @Test(arguments: [9, 200])
    func fusedSwiGLUEqualsProductsThenSwiGLU(batch: Int) throws {
        let f = try Products(shapes: [(.q4_0, 400), (.q4_0, 400)], cols: 288, batch: batch,
                             rng: LCG(seed: 11, scale: 4))
        var gate = f.alone(0)
        let up = f.alone(1)
        swiglu(&gate, up, gate.count)
        var fused = [Float](repeating: .nan, count: gate.count), fusedUp = fused
        f.x.withUnsafeBufferPointer { xp in
            fused.withUnsafeMutableBufferPointer { g in
                fusedUp.withUnsafeMutableBufferPointer { u in
                    var ga = f.args(0, xp.baseAddress!, g.baseAddress!), ua = f.args(1, xp.baseAddress!, u.baseAddress!)
                    palr_matmul_swiglu(f.pool.raw, &ga, &ua)
                }
            }
        }
        let differing = zip(fused, gate).filter { $0 != $1 }.count
        #expect(differing == 0, "\(differing) of \(gate.count) SwiGLU outputs differ")
        #expect(fusedUp == up, "the up product itself is unchanged")
    }
}

/// A linear congruential generator: uniform floats in [-scale/2, scale/2).
struct LCG {
    var state: UInt64
    let scale: Float
    init(seed: UInt64, scale: Float = 1) { state = seed; self.scale = scale }
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return (Float(state >> 40) / Float(1 << 24) - 0.5) * scale
    }
    mutating func floats(_ n: Int) -> [Float] { (0..<n).map { _ in next() } }
}

/// Quantized random weights copied into aligned memory (as a mapping gives them), an
/// input batch, a two-thread pool and per-thread scratch for 64-row panels converted
/// 256 columns at a time.
final class Products {
    let x: [Float]
    let ms: [WeightMatrix]
    let batch: Int
    let pool = ThreadPool(threads: 2)
    let perThread: Int
    let scratch: UnsafeMutablePointer<Float>
    private let bases: [UnsafeMutableRawPointer]

    init(shapes: [(GGMLType, Int)], cols: Int, batch: Int, rng: LCG) throws {
        var rng = rng
        self.batch = batch
        x = rng.floats(batch * cols)
        let stored = try shapes.map { type, rows in try #require(type.quantize(rng.floats(rows * cols))) }
        let copies = stored.map { d in
            let p = UnsafeMutableRawPointer.allocate(byteCount: d.count, alignment: 64)
            d.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: d.count) }
            return p
        }
        bases = copies
        ms = (0..<shapes.count).map { i in
            WeightMatrix(name: "w\(i)", type: shapes[i].0, rows: shapes[i].1, cols: cols,
                         base: UnsafeRawPointer(copies[i]), rowBytes: stored[i].count / shapes[i].1)
        }
        perThread = 64 * (256 + batch)   // a panel's chunk and its transposed result
        scratch = .allocate(capacity: perThread * pool.count)
    }

    deinit {
        scratch.deallocate()
        bases.forEach { $0.deallocate() }
    }

    /// Product i run alone (`matmul`).
    func alone(_ i: Int) -> [Float] {
        var y = [Float](repeating: .nan, count: batch * ms[i].rows)
        matmul(ms[i], x, &y, batch: batch, scratch: scratch, scratchPerThread: perThread, panelRows: 64,
               kChunk: 256, pool: pool)
        return y
    }

    /// Product i's arguments for the multi-product entry points.
    func args(_ i: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) -> palr_matmul_args {
        matmulArgs(ms[i], x, y, batch: batch, scratch: scratch, scratchPerThread: perThread, panelRows: 64,
                   kChunk: 256, threads: pool.count)
    }
}
