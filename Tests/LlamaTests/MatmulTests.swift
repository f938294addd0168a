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
        var state: UInt64 = 42
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
        let wf = (0..<rows * cols).map { _ in next() }
        let x = (0..<batch * cols).map { _ in next() }
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
        let cols = 544
        let shapes = [(GGMLType.q4_0, 300), (.q8_0, 48), (.f16, 100)]
        var state: UInt64 = 7
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
        let x = (0..<batch * cols).map { _ in next() }
        let stored = try shapes.map { type, rows in try #require(type.quantize((0..<rows * cols).map { _ in next() })) }
        let pool = ThreadPool(threads: 2)
        let perThread = 64 * (256 + batch)   // a 64-row panel's chunk and transposed result
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: perThread * pool.count)
        defer { scratch.deallocate() }
        let bases = stored.map { d in
            let p = UnsafeMutableRawPointer.allocate(byteCount: d.count, alignment: 64)
            d.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: d.count) }
            return p
        }
        defer { bases.forEach { $0.deallocate() } }
        let ms = zip(shapes, zip(stored, bases)).map { s, sb in
            WeightMatrix(name: "w", type: s.0, rows: s.1, cols: cols, base: UnsafeRawPointer(sb.1), rowBytes: sb.0.count / s.1)
        }
        var alone = ms.map { [Float](repeating: .nan, count: batch * $0.rows) }
        for i in 0..<3 {
            matmul(ms[i], x, &alone[i], batch: batch, scratch: scratch, scratchPerThread: perThread,
                   panelRows: 64, kChunk: 256, pool: pool)
        }
        let together = ms.map { UnsafeMutablePointer<Float>.allocate(capacity: batch * $0.rows) }
        defer { together.forEach { $0.deallocate() } }
        x.withUnsafeBufferPointer { xp in
            var a = (0..<3).map { i in
                matmulArgs(ms[i], xp.baseAddress!, together[i], batch: batch, scratch: scratch,
                           scratchPerThread: perThread, panelRows: 64, kChunk: 256, threads: pool.count)
            }
            palr_matmul_multi(pool.raw, &a[0], &a[1], &a[2])
        }
        for i in 0..<3 {
            let got = Array(UnsafeBufferPointer(start: together[i], count: batch * ms[i].rows))
            #expect(got == alone[i], "product \(i) (\(ms[i].type)) differs when run with the others")
        }
    }

    /// SwiGLU fused into the gate/up pool run (`palr_matmul_swiglu`: each panel pair is
    /// combined by the thread that finishes its second half) equals the two products
    /// followed by the separate `swiglu` pass, bit for bit.
    @Test(arguments: [9, 200])
    func fusedSwiGLUEqualsProductsThenSwiGLU(batch: Int) throws {
        let cols = 288, rows = 400
        var state: UInt64 = 11
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) * 4 - 2
        }
        let x = (0..<batch * cols).map { _ in next() }
        let stored = try (0..<2).map { _ in try #require(GGMLType.q4_0.quantize((0..<rows * cols).map { _ in next() })) }
        let pool = ThreadPool(threads: 2)
        let perThread = 64 * (cols + batch)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: perThread * pool.count)
        defer { scratch.deallocate() }
        let bases = stored.map { d in
            let p = UnsafeMutableRawPointer.allocate(byteCount: d.count, alignment: 64)
            d.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: d.count) }
            return p
        }
        defer { bases.forEach { $0.deallocate() } }
        let ms = bases.map { WeightMatrix(name: "w", type: .q4_0, rows: rows, cols: cols, base: UnsafeRawPointer($0),
                                          rowBytes: stored[0].count / rows) }
        var gate = [Float](repeating: .nan, count: batch * rows), up = gate
        matmul(ms[0], x, &gate, batch: batch, scratch: scratch, scratchPerThread: perThread, panelRows: 64, kChunk: 256, pool: pool)
        matmul(ms[1], x, &up, batch: batch, scratch: scratch, scratchPerThread: perThread, panelRows: 64, kChunk: 256, pool: pool)
        swiglu(&gate, up, batch * rows)
        var fused = [Float](repeating: .nan, count: batch * rows), fusedUp = fused
        x.withUnsafeBufferPointer { xp in
            fused.withUnsafeMutableBufferPointer { g in
                fusedUp.withUnsafeMutableBufferPointer { u in
                    var ga = matmulArgs(ms[0], xp.baseAddress!, g.baseAddress!, batch: batch, scratch: scratch,
                                        scratchPerThread: perThread, panelRows: 64, kChunk: 256, threads: pool.count)
                    var ua = matmulArgs(ms[1], xp.baseAddress!, u.baseAddress!, batch: batch, scratch: scratch,
                                        scratchPerThread: perThread, panelRows: 64, kChunk: 256, threads: pool.count)
                    palr_matmul_swiglu(pool.raw, &ga, &ua)
                }
            }
        }
        let differing = zip(fused, gate).filter { $0 != $1 }.count
        #expect(differing == 0, "\(differing) of \(gate.count) SwiGLU outputs differ")
        #expect(fusedUp == up, "the up product itself is unchanged")
    }
}
