import CKernels
import Foundation
import Testing

/// Values at the edges of float range, found by a sanitizer pass: each used to reach
/// undefined behaviour (an infinite inverse scale, a float-to-int conversion out of range).
@Suite struct EdgeValueTests {
    /// Blocks whose largest magnitude is tiny (but not zero): the inverse scale would be
    /// infinite. Every path quantizes them to zeros, and the SIMD paths agree with the
    /// scalar reference byte for byte.
    @Test(arguments: [Float(1e-38), 1e-40, 3e-37, -2e-39])
    func tinyBlocksQuantizeToZeros(value: Float) throws {
        var x = [Float](repeating: 0, count: 64)
        x[3] = value
        x[40] = -value / 2
        let ref = try #require(palr_kernels_named("scalar")).pointee
        var want = [palr_q8_block](repeating: palr_q8_block(), count: 2)
        ref.quantize_act(x, &want, 64)
        for b in want { #expect(withUnsafeBytes(of: b.qs) { $0.allSatisfy { $0 == 0 } }, "activation block \(b.d)") }
        for table in fastTables {
            let t = try #require(palr_kernels_named(table)).pointee
            var got = [palr_q8_block](repeating: palr_q8_block(), count: 2)
            t.quantize_act(x, &got, 64)
            for (g, w) in zip(got, want) {
                #expect(g.d == w.d, "\(table)")
                #expect(withUnsafeBytes(of: g.qs) { gb in withUnsafeBytes(of: w.qs) { Array(gb) == Array($0) } }, "\(table) at \(value)")
            }
        }
        // Weights: Q8_0 (34-byte blocks) and Q4_0 (18-byte blocks) of the same values.
        var q8 = [UInt8](repeating: 0xAA, count: 68)
        palr_quantize_row_q8_0(x, &q8, 64)
        #expect(q8[2..<34].allSatisfy { $0 == 0 } && q8[36..<68].allSatisfy { $0 == 0 }, "Q8_0 \(q8)")
        var q4 = [UInt8](repeating: 0xAA, count: 36)
        palr_quantize_row_q4_0(x, &q4, 64)
        // Q4_0's scale is max/−8: its inverse overflows only below 8/FLT_MAX; such a block
        // is zeros (the nibble 8). Above, it quantizes as usual.
        if abs(value) / 8 < 1 / Float.greatestFiniteMagnitude {
            #expect(q4[2..<18].allSatisfy { $0 == 0x88 } && q4[20..<36].allSatisfy { $0 == 0x88 }, "Q4_0 \(q4)")
        }
    }

    /// NaN and infinities never reach a float-to-int conversion: the stored values stay
    /// in range (an infinity saturates, a NaN becomes 0).
    @Test func nonFiniteWeightsQuantizeToDefinedValues() {
        var x = [Float](repeating: 0.25, count: 32)
        x[1] = .nan
        x[2] = .infinity
        var q8 = [UInt8](repeating: 0, count: 34)
        palr_quantize_row_q8_0(x, &q8, 32)
        #expect(q8[2..<34].allSatisfy { Int8(bitPattern: $0) >= -127 }, "\(q8)")
        // Q4_0: the block's max is +inf, its scale −inf/8 and the inverse scale −0, so the
        // finite values quantize to the nibble 8 (zero); the NaN and the +inf (+inf·−0 is
        // NaN) reach the float clamp as NaN, which takes them to 0 before any conversion.
        // Element j < 16 is byte j's low nibble, element j + 16 its high nibble.
        var q4 = [UInt8](repeating: 0, count: 18)
        palr_quantize_row_q4_0(x, &q4, 32)
        var nibbles: [UInt8] = []
        for j in 0..<32 {
            let byte: UInt8 = q4[2 + j % 16]
            nibbles.append(j < 16 ? byte & 15 : byte >> 4)
        }
        var expected = [UInt8](repeating: 8, count: 32)
        expected[1] = 0
        expected[2] = 0
        #expect(nibbles == expected)
    }

    /// NaN and infinite activations: every SIMD path gives the reference's bytes and scale
    /// (NaN lanes are skipped in the block maximum and quantize to 0, as fmaxf and
    /// palr_round_q8 do).
    @Test(arguments: [Float.nan, .infinity, -.infinity])
    func nonFiniteActivationsMatchTheReference(bad: Float) throws {
        var x = (0..<64).map { Float($0 % 7) - 3 }
        x[5] = bad
        x[40] = bad
        let ref = try #require(palr_kernels_named("scalar")).pointee
        var want = [palr_q8_block](repeating: palr_q8_block(), count: 2)
        ref.quantize_act(x, &want, 64)
        for table in fastTables {
            let t = try #require(palr_kernels_named(table)).pointee
            var got = [palr_q8_block](repeating: palr_q8_block(), count: 2)
            t.quantize_act(x, &got, 64)
            for (i, (g, w)) in zip(got, want).enumerated() {
                #expect(g.d == w.d || (g.d.isNaN && w.d.isNaN), "\(table) block \(i) scale \(g.d) vs \(w.d)")
                let gb = withUnsafeBytes(of: g.qs) { Array($0) }, wb = withUnsafeBytes(of: w.qs) { Array($0) }
                #expect(gb == wb, "\(table) block \(i) with \(bad): \(gb) vs \(wb)")
            }
        }
    }

    /// The read-bandwidth probe adds every thread's sum, however many threads there are.
    @Test(arguments: [1, 2, 65, 100])
    func readSumCountsEveryThread(threads: Int32) throws {
        let words = 4096
        let buf = [UInt64](repeating: 1, count: words)
        let pool = try #require(palr_pool_create(threads))
        defer { palr_pool_destroy(pool) }
        let sum = buf.withUnsafeBytes { palr_read_sum(pool, $0.baseAddress, $0.count) }
        #expect(sum == UInt64(words), "\(threads) threads")
    }
}
