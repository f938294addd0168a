import Foundation
import Testing
@testable import Llama

@Suite struct SamplerTests {
    func draw(_ logits: [Float], temperature: Float = 1, topP: Float = 1, seed: UInt64 = 7) throws -> Int32 {
        let s = try Sampler(vocabSize: logits.count, temperature: temperature, topP: topP, seed: seed)
        return try logits.withUnsafeBufferPointer { try s.sample($0) }
    }

    @Test func badSettingsAreErrors() {
        for (t, p) in [(Float.nan, Float(0.9)), (-1, 0.9), (.infinity, 0.9), (1, .nan), (1, -0.1), (1, 1.5), (1, .infinity)] {
            #expect(throws: LlamaError.self) { _ = try Sampler(vocabSize: 4, temperature: t, topP: p, seed: 1) }
        }
    }

    @Test func nonFiniteLogitsAreErrorsNotTraps() throws {
        for t: Float in [0, 0.8] {
            for bad in [[1, Float.nan, 0], [1, Float.infinity, 0], [-Float.infinity, -Float.infinity, -Float.infinity]] {
                #expect(throws: LlamaError.self) { _ = try draw(bad, temperature: t, topP: 0.9) }
            }
        }
        // −∞ alone rules a token out.
        for seed in 1...200 as ClosedRange<UInt64> {
            #expect(try draw([-Float.infinity, 0, -Float.infinity], temperature: 1.5, seed: seed) == 1)
        }
    }

    @Test func tinyNucleusOnAFlatDistributionPicksOneToken() throws {
        // The cutoff (1 - p) / (n - 1) exceeds every probability 1/n: before the fix the
        // nucleus was empty and the range 0...-1 trapped.
        let flat = [Float](repeating: 0.5, count: 1000)
        let t = try draw(flat, temperature: 1, topP: 1e-6)
        #expect(t == 0)
    }

    @Test func frequenciesFollowTheSoftmaxAndTheNucleus() throws {
        // p = [0.25, 0.75] at T = 1: 20,000 draws within ±0.02.
        let s = try Sampler(vocabSize: 2, temperature: 1, topP: 1, seed: 42)
        let logits: [Float] = [0, Float(log(3.0))]
        var ones = 0
        for _ in 0..<20_000 { ones += Int(try logits.withUnsafeBufferPointer { try s.sample($0) }) }
        let f = Double(ones) / 20_000
        #expect(abs(f - 0.75) < 0.02, "frequency of token 1: \(f)")
        // p = [0.5, 0.3, 0.15, 0.05], top-p 0.7: the nucleus is {0, 1} (0.5 + 0.3 > 0.7).
        let n = try Sampler(vocabSize: 4, temperature: 1, topP: 0.7, seed: 3)
        let l4 = [0.5, 0.3, 0.15, 0.05].map { Float(log($0)) }
        var seen = Set<Int32>()
        for _ in 0..<5_000 { seen.insert(try l4.withUnsafeBufferPointer { try n.sample($0) }) }
        #expect(seen == [0, 1], "sampled \(seen.sorted())")
    }
}
