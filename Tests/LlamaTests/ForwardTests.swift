import Foundation
import GGUF
import Testing
@testable import Llama

/// The forward pass against transformers (tools/fixtures/make_llama_fixtures.py).
@Suite struct ForwardTests {
    @Test(arguments: fixtureNames)
    func f32MatchesTransformers(name: String) throws {
        let ref = try Reference.load(name)
        let model = try LlamaModel(path: modelPath(name, "f32"))
        let ours = try prefillLogits(model, ref.tokens)
        let expected = try #require(ref.logits["f32"])
        let worst = maxAbsDiff(ours, expected)
        print("\(name) f32 vs transformers: max |Δ| = \(worst)")
        #expect(worst <= 1e-4)
        #expect(ours.map(argmax) == expected.map(argmax))
    }

    @Test(arguments: fixtureNames, ["q4_0", "q8_0"])
    func quantizedMatchesDequantizedReference(name: String, type: String) throws {
        let ref = try Reference.load(name)
        let model = try LlamaModel(path: modelPath(name, type))
        let ours = try prefillLogits(model, ref.tokens)
        let expected = try #require(ref.logits[type])
        let worst = maxAbsDiff(ours, expected)
        print("\(name) \(type) vs dequantized-weights transformers: max |Δ| = \(worst)")
        #expect(worst <= 1e-3)
    }

    @Test(arguments: fixtureNames, ["f32", "q4_0", "q8_0"])
    func prefillEqualsDecode(name: String, type: String) throws {
        let ref = try Reference.load(name)
        let model = try LlamaModel(path: modelPath(name, type))
        let worst = maxAbsDiff(try prefillLogits(model, ref.tokens), try decodeLogits(model, ref.tokens))
        print("\(name) \(type) prefill vs decode: max |Δ| = \(worst)")
        #expect(worst <= 1e-4)
    }

    @Test func chunkedPrefillAndRewindAgree() throws {
        let ref = try Reference.load("gqa_tied")
        let model = try LlamaModel(path: modelPath("gqa_tied", "q4_0"))
        let whole = try prefillLogits(model, ref.tokens)
        let chunked = try prefillLogits(model, ref.tokens, maxBatch: 5)
        #expect(maxAbsDiff(whole, chunked) <= 1e-5)

        // Rewind to a shared prefix and recompute the tail: same logits.
        let s = try LlamaSession(model: model, contextLength: ref.tokens.count)
        try s.prefill(ref.tokens, logits: .none)
        try s.rewind(to: 7)
        var tail: [[Float]] = []
        try s.prefill(Array(ref.tokens[7...]), logits: .all) { _, l in tail.append(Array(l)) }
        #expect(maxAbsDiff(tail, Array(whole[7...])) <= 1e-5)
        #expect(s.position == ref.tokens.count)
    }

    @Test func contextAndTokenLimitsAreErrors() throws {
        let model = try LlamaModel(path: modelPath("mha_untied", "f32"))
        let s = try LlamaSession(model: model, contextLength: 4)
        #expect(throws: LlamaError.contextFull(position: 0, tokens: 5, capacity: 4)) {
            try s.prefill([1, 2, 3, 4, 5])
        }
        #expect(throws: LlamaError.tokenOutOfRange(token: 128, vocab: 128)) {
            try s.decode(128) { _ in () }
        }
        #expect(throws: LlamaError.self) { try s.rewind(to: 1) }
    }
}
