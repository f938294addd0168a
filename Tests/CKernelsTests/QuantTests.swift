import CKernels
import Foundation
import GGUF
import Testing

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Our quantizers and converters against gguf-py's (tools/fixtures/make_quant_fixtures.py)
/// and against the Q4_0/Q8_0 llama fixtures: byte for byte.
@Suite struct QuantTests {
    @Test func hostileVectorsAreByteIdentical() throws {
        let f = try GGUFFile(path: repoRoot.appendingPathComponent("Tests/Fixtures/quant/vectors.gguf").path)
        var checked = 0
        for t in f.tensors where t.type == .f32 {
            let src = Array(f.data(of: t).bindMemory(to: Float.self))
            for type in [GGMLType.q4_0, .q8_0, .f16, .bf16] {
                let ref = try #require(f.tensor(named: "\(t.name).\(type.description.lowercased())"))
                let ours = try #require(type.quantize(src))
                let theirs = Array(f.data(of: ref))
                let firstDiff = zip(ours, theirs).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                #expect(firstDiff == nil, "\(t.name) as \(type): first differing byte \(firstDiff ?? -1) of \(ours.count)")
                checked += 1
            }
        }
        print("quantization: \(checked) tensor conversions compared byte for byte with gguf-py")
        #expect(checked == 36)
    }

    @Test(arguments: ["mha_untied", "gqa_tied", "linear_rope"])
    func modelFixturesRequantizeIdentically(name: String) throws {
        let dir = repoRoot.appendingPathComponent("Tests/Fixtures/llama")
        let f32 = try GGUFFile(path: dir.appendingPathComponent("\(name)-f32.gguf").path)
        var compared = 0
        for type in ["q4_0", "q8_0"] {
            let q = try GGUFFile(path: dir.appendingPathComponent("\(name)-\(type).gguf").path)
            for t in q.tensors where t.type != .f32 {
                let src = try #require(f32.tensor(named: t.name))
                let values = Array(f32.data(of: src).bindMemory(to: Float.self))
                let same = t.type!.quantize(values) == Array(q.data(of: t))
                #expect(same, "\(name) \(t.name) \(type) differs")
                compared += 1
            }
        }
        #expect(compared > 0)
    }

    @Test func halfPrecisionRoundTripsEveryValue() {
        // fp16 → fp32 → fp16 is the identity on all 65,536 bit patterns but NaNs,
        // and fp32 → fp16 agrees with Swift's own Float16 conversion.
        var mismatches = 0
        for h in 0...UInt16.max {
            let f = palr_fp16_to_fp32(h)
            if f.isNaN { continue }
            if palr_fp32_to_fp16(f) != h { mismatches += 1 }
            #if arch(x86_64) || arch(arm64)
            if Float(Float16(bitPattern: h)) != f { mismatches += 1 }
            #endif
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200_000 {
            let f = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))
            if f.isNaN { continue }
            #if arch(x86_64) || arch(arm64)
            if palr_fp32_to_fp16(f) != Float16(f).bitPattern { mismatches += 1 }
            #endif
        }
        #expect(mismatches == 0)
    }

    @Test func fusedDotsMatchDequantizedDots() {
        var rng = SystemRandomNumberGenerator()
        let n = 256
        let w = (0..<n).map { _ in Float.random(in: -2...2, using: &rng) }
        let x = (0..<n).map { _ in Float.random(in: -2...2, using: &rng) }
        var worst: Float = 0
        for type in [GGMLType.q4_0, .q8_0, .f16, .bf16] {
            let q = type.quantize(w)!
            let deq = q.withUnsafeBytes { type.dequantize($0, count: n)! }
            let expected = zip(deq, x).reduce(Float(0)) { $0 + $1.0 * $1.1 }
            let got: Float = q.withUnsafeBytes { qb in
                x.withUnsafeBufferPointer { xb in
                    switch type {
                    case .q4_0: return palr_dot_q4_0_f32(qb.baseAddress!, xb.baseAddress!, n)
                    case .q8_0: return palr_dot_q8_0_f32(qb.baseAddress!, xb.baseAddress!, n)
                    case .f16: return palr_dot_f16_f32(qb.baseAddress!.assumingMemoryBound(to: UInt16.self), xb.baseAddress!, n)
                    default: return palr_dot_bf16_f32(qb.baseAddress!.assumingMemoryBound(to: UInt16.self), xb.baseAddress!, n)
                    }
                }
            }
            worst = max(worst, abs(got - expected) / max(1, abs(expected)))
        }
        print("fused dot vs dequantized dot: worst relative error \(worst)")
        #expect(worst < 1e-5)
    }
}
