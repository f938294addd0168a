import CKernels
import Foundation
import GGUF
import Testing

/// Every SIMD table this CPU can run, against the scalar reference.
let fastTables: [String] = ["avx2", "avx512", "neon", "neon_dotprod"].filter { (name: String) in palr_kernels_available(name) != 0 }

func randomFloats(_ n: Int, _ rng: inout SystemRandomNumberGenerator, scale: Float = 1) -> [Float] {
    (0..<n).map { i in
        // Include exact .5 ties after scaling and zero blocks.
        if i % 97 == 0 { return 0 }
        if i % 61 == 0 { return scale * 0.5 }
        return Float.random(in: -scale...scale, using: &rng)
    }
}

@Suite struct FastKernelTests {
    let n = 4096

    @Test func tablesExist() {
        print("fast kernel tables on this CPU: \(fastTables), default: \(String(cString: palr_kernels().pointee.name))")
        #expect(palr_kernels_available("scalar") != 0)
    }

    @Test(arguments: fastTables)
    func activationQuantizationIsExact(table: String) throws {
        let t = try #require(palr_kernels_named(table)).pointee
        let ref = try #require(palr_kernels_named("scalar")).pointee
        var rng = SystemRandomNumberGenerator()
        for scale in [Float(1e-3), 1, 127, 3e4] {
            let x = randomFloats(n, &rng, scale: scale)
            var a = [palr_q8_block](repeating: palr_q8_block(), count: n / 32)
            var b = a
            t.quantize_act(x, &a, n)
            ref.quantize_act(x, &b, n)
            let same = zip(a, b).allSatisfy { l, r in
                l.d == r.d && withUnsafeBytes(of: l.qs) { lb in withUnsafeBytes(of: r.qs) { Array(lb) == Array($0) } }
            }
            #expect(same, "\(table) activation quantization differs at scale \(scale)")
        }
    }

    @Test(arguments: fastTables)
    func dotProductsMatchReference(table: String) throws {
        let t = try #require(palr_kernels_named(table)).pointee
        let ref = try #require(palr_kernels_named("scalar")).pointee
        var rng = SystemRandomNumberGenerator()
        var worst: Float = 0
        for _ in 0..<20 {
            let w = randomFloats(n, &rng, scale: 0.1)
            let x = randomFloats(n, &rng)
            let bound = zip(w, x).reduce(Float(0)) { $0 + abs($1.0 * $1.1) }  // Σ|w·x|: the error scale
            var xq = [palr_q8_block](repeating: palr_q8_block(), count: n / 32)
            ref.quantize_act(x, &xq, n)
            let q4 = GGMLType.q4_0.quantize(w)!, q8 = GGMLType.q8_0.quantize(w)!, f16 = GGMLType.f16.quantize(w)!
            func rel(_ a: Float, _ b: Float) -> Float { abs(a - b) / max(bound, 1e-30) }
            q4.withUnsafeBytes { q in
                worst = max(worst, rel(t.dot_q4_0_q8(q.baseAddress!, xq, n), ref.dot_q4_0_q8(q.baseAddress!, xq, n)))
                worst = max(worst, rel(t.dot_q4_0_f32(q.baseAddress!, x, n), ref.dot_q4_0_f32(q.baseAddress!, x, n)))
            }
            q8.withUnsafeBytes { q in
                worst = max(worst, rel(t.dot_q8_0_q8(q.baseAddress!, xq, n), ref.dot_q8_0_q8(q.baseAddress!, xq, n)))
                worst = max(worst, rel(t.dot_q8_0_f32(q.baseAddress!, x, n), ref.dot_q8_0_f32(q.baseAddress!, x, n)))
            }
            f16.withUnsafeBytes { q in
                let p = q.baseAddress!.assumingMemoryBound(to: UInt16.self)
                worst = max(worst, rel(t.dot_f16_f32(p, x, n), ref.dot_f16_f32(p, x, n)))
            }
            worst = max(worst, rel(t.dot_f32(w, x, n), ref.dot_f32(w, x, n)))
        }
        print("\(table): worst dot-product difference from scalar, relative to Σ|w·x|: \(worst)")
        #expect(worst < 1e-5)
    }

    /// The eight-row kernels, where a table has them, against the one-row reference for
    /// each row, with row strides of real tensors (rows are not 16-byte aligned).
    @Test(arguments: fastTables)
    func eightRowKernelsMatchReference(table: String) throws {
        let t = try #require(palr_kernels_named(table)).pointee
        let ref = try #require(palr_kernels_named("scalar")).pointee
        guard t.dot8_q4_0_q8 != nil || t.dot8_q8_0_q8 != nil else { return }
        var rng = SystemRandomNumberGenerator()
        var worst: Float = 0
        for cols in [32, 96, 2048] {
            let rows = 8
            let w = randomFloats(rows * cols, &rng, scale: 0.1)
            let x = randomFloats(cols, &rng, scale: 3)
            var xq = [palr_q8_block](repeating: palr_q8_block(), count: cols / 32)
            ref.quantize_act(x, &xq, cols)
            for (type, blockBytes, fn, one) in [(GGMLType.q4_0, 18, t.dot8_q4_0_q8, ref.dot_q4_0_q8!),
                                                (.q8_0, 34, t.dot8_q8_0_q8, ref.dot_q8_0_q8!)] {
                guard let fn else { continue }
                let rowBytes = cols / 32 * blockBytes
                let q = type.quantize(w)!
                var out = [Float](repeating: .nan, count: rows)
                q.withUnsafeBytes { qb in fn(qb.baseAddress!, rowBytes, xq, cols, &out) }
                for r in 0..<rows {
                    let expected = q.withUnsafeBytes { one($0.baseAddress! + r * rowBytes, xq, cols) }
                    let bound = (0..<cols).reduce(Float(0)) { $0 + abs(w[r * cols + $1] * x[$1]) }
                    worst = max(worst, abs(out[r] - expected) / max(bound, 1e-30))
                }
            }
        }
        print("\(table): worst eight-row kernel difference from the one-row reference, relative to Σ|w·x|: \(worst)")
        #expect(worst < 1e-5)
    }

    @Test(arguments: fastTables)
    func dequantizationIsExact(table: String) throws {
        let t = try #require(palr_kernels_named(table)).pointee
        var rng = SystemRandomNumberGenerator()
        let w = randomFloats(n, &rng, scale: 3)
        for (type, fn) in [(GGMLType.q4_0, t.dequant_q4_0!), (.q8_0, t.dequant_q8_0!)] {
            let q = type.quantize(w)!
            let expected = q.withUnsafeBytes { type.dequantize($0, count: n)! }
            var got = [Float](repeating: .nan, count: n)
            q.withUnsafeBytes { fn($0.baseAddress!, &got, n) }
            #expect(got == expected, "\(table) \(type) dequantization differs")
        }
        let h = GGMLType.f16.quantize(w)!
        let expected = h.withUnsafeBytes { GGMLType.f16.dequantize($0, count: n)! }
        var got = [Float](repeating: .nan, count: n)
        h.withUnsafeBytes { t.dequant_f16($0.baseAddress!.assumingMemoryBound(to: UInt16.self), &got, n) }
        #expect(got == expected)
    }

    /// The small-batch result transposition, every edge (rows not multiples of its
    /// 16-row blocks, a wider destination stride): each element lands where it belongs,
    /// and nothing outside the destination block is written.
    @Test func transposeMovesEveryElement() {
        for (rows, cols) in [(1, 1), (8, 8), (16, 64), (45, 37), (7, 9), (512, 64), (33, 8)] {
            let ldy = cols == 1 ? rows : rows + 5
            let src = (0..<(rows * cols)).map { Float($0) + 0.25 }
            var got = [Float](repeating: -1, count: cols * ldy)
            palr_transpose(src, Int32(rows), Int32(cols), &got, ldy)
            var wrong = 0
            for i in 0..<cols {
                for j in 0..<ldy {
                    let expected = j < rows ? src[j * cols + i] : -1
                    if got[i * ldy + j] != expected { wrong += 1 }
                }
            }
            #expect(wrong == 0, "transpose \(rows)x\(cols): \(wrong) elements wrong")
        }
    }

    /// Products claimed together in one pool run equal the same products run alone.
    @Test func multiMatvecEqualsSeparateOnes() throws {
        var rng = SystemRandomNumberGenerator()
        let cols = 256, shapes = [1000, 40, 264]
        let ws = shapes.map { GGMLType.q4_0.quantize(randomFloats($0 * cols, &rng))! }
        let x = randomFloats(cols, &rng)
        var xq = [palr_q8_block](repeating: palr_q8_block(), count: cols / 32)
        palr_kernels().pointee.quantize_act(x, &xq, cols)
        let pool = palr_pool_create(2)
        defer { palr_pool_destroy(pool) }
        var alone = shapes.map { [Float](repeating: 0, count: $0) }
        var t0 = alone[0], t1 = alone[1], t2 = alone[2]
        ws[0].withUnsafeBytes { w0 in ws[1].withUnsafeBytes { w1 in ws[2].withUnsafeBytes { w2 in
            let bases = [w0.baseAddress!, w1.baseAddress!, w2.baseAddress!]
            xq.withUnsafeBufferPointer { qb in
                func args(_ i: Int, _ y: UnsafeMutablePointer<Float>) -> palr_matvec_args {
                    palr_matvec_args(m: palr_weights(type: 2, w: bases[i], row_bytes: cols / 32 * 18, rows: Int32(shapes[i]),
                                                     cols: Int32(cols)), x: nil, xq: qb.baseAddress, y: y)
                }
                for i in 0..<3 { alone[i].withUnsafeMutableBufferPointer { var a = args(i, $0.baseAddress!); palr_matvec(pool, &a) } }
                t0.withUnsafeMutableBufferPointer { y0 in t1.withUnsafeMutableBufferPointer { y1 in
                    t2.withUnsafeMutableBufferPointer { y2 in
                        var a0 = args(0, y0.baseAddress!), a1 = args(1, y1.baseAddress!), a2 = args(2, y2.baseAddress!)
                        palr_matvec_multi(pool, &a0, &a1, &a2)
                    }
                } }
            }
        } } }
        #expect(alone == [t0, t1, t2])
        #expect(alone[0].contains { $0 != 0 })
    }

    @Test func threadedMatvecEqualsSingleThreaded() throws {
        var rng = SystemRandomNumberGenerator()
        let rows = 1000, cols = 512
        let w = GGMLType.q4_0.quantize(randomFloats(rows * cols, &rng))!
        let x = randomFloats(cols, &rng)
        var xq = [palr_q8_block](repeating: palr_q8_block(), count: cols / 32)
        palr_kernels().pointee.quantize_act(x, &xq, cols)
        let pool = palr_pool_create(3)
        defer { palr_pool_destroy(pool) }
        for useInt8 in [false, true] {
            var one = [Float](repeating: 0, count: rows), many = one
            w.withUnsafeBytes { wb in
                x.withUnsafeBufferPointer { xb in
                    xq.withUnsafeBufferPointer { qb in
                        var a = palr_matvec_args(m: palr_weights(type: 2, w: wb.baseAddress, row_bytes: cols / 32 * 18,
                                                                 rows: Int32(rows), cols: Int32(cols)),
                                                 x: xb.baseAddress, xq: useInt8 ? qb.baseAddress : nil, y: nil)
                        one.withUnsafeMutableBufferPointer { a.y = $0.baseAddress; palr_matvec(nil, &a) }
                        for _ in 0..<50 { many.withUnsafeMutableBufferPointer { a.y = $0.baseAddress; palr_matvec(pool, &a) } }
                    }
                }
            }
            #expect(one == many)
        }
    }
}

/// The default thread count: physical cores, never more than the CPUs this process may use.
@Suite struct TopologyTests {
    @Test func physicalCoresAreBetweenOneAndTheOnlineCPUs() {
        let cores = Int(palr_physical_cores())
        let online = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        print("physical cores \(cores), online CPUs \(online)")
        #expect(cores >= 1)
        #expect(cores <= online)
    }
}
