import Testing
@testable import Llama

/// Batched shared-prefix scoring equals scoring each continuation with its own full forward pass.
@Suite struct ContinuationTests {
    /// Per-token log-probabilities of `cont` after `prefix`, from one plain prefill.
    func reference(_ model: LlamaModel, prefix: [Int32], cont: [Int32]) throws -> [Float] {
        let s = try LlamaSession(model: model, contextLength: prefix.count + cont.count)
        var rows: [[Float]] = []
        try s.prefill(prefix + cont, logits: .all) { _, l in rows.append(Array(l)) }
        return cont.indices.map { j in logSoftmax(rows[prefix.count - 1 + j], at: Int(cont[j])) }
    }

    @Test(arguments: ["f32", "q4_0"], [64, 3])
    func batchedEqualsSeparate(type: String, maxBatch: Int) throws {
        let model = try LlamaModel(path: modelPath("gqa_tied", type))
        let prefix: [Int32] = [1, 97, 62, 124, 58, 143, 120]
        let conts: [[Int32]] = [[5], [98, 63, 122], [55, 11, 7, 7, 9], [143, 120], [2, 3, 4, 5, 6, 7, 8, 9, 10]]
        let s = try LlamaSession(model: model, contextLength: 40, maxBatch: maxBatch)
        var last: [Float] = []
        try s.prefill(prefix, logits: .last) { _, l in last = Array(l) }
        let got = try s.scoreContinuations(conts, prefixLogits: last)
        #expect(s.position == prefix.count)
        var worst: Float = 0
        for (i, cont) in conts.enumerated() {
            let ref = try reference(model, prefix: prefix, cont: cont)
            for (a, b) in zip(got[i], ref) { worst = max(worst, abs(a - b)) }
        }
        print("gqa_tied \(type) batch \(maxBatch): batched vs separate continuation log-probs: max |Δ| = \(worst)")
        #expect(worst <= 1e-4)

        // The session still works as a plain session afterwards.
        let again = try s.scoreContinuations([conts[2]], prefixLogits: last)
        #expect(zip(again[0], got[2]).allSatisfy { abs($0 - $1) <= 1e-5 })
    }

    @Test func badContinuationsAreErrors() throws {
        let model = try LlamaModel(path: modelPath("gqa_tied", "f32"))
        let s = try LlamaSession(model: model, contextLength: 8)
        var last: [Float] = []
        try s.prefill([1, 2, 3], logits: .last) { _, l in last = Array(l) }
        #expect(throws: LlamaError.self) { try s.scoreContinuations([[]], prefixLogits: last) }
        #expect(throws: LlamaError.self) { try s.scoreContinuations([[1, 2, 3], [4, 5, 6]], prefixLogits: last) }
        #expect(throws: LlamaError.self) { try s.scoreContinuations([[9999]], prefixLogits: last) }
        #expect(s.position == 3)
    }
}

@Suite struct SnapshotTests {
    @Test func restoredPrefixGivesTheSameLogits() throws {
        let ref = try Reference.load("mha_untied")
        let model = try LlamaModel(path: modelPath("mha_untied", "q4_0"))
        let whole = try prefillLogits(model, ref.tokens)
        let a = try LlamaSession(model: model, contextLength: 16)
        try a.prefill(Array(ref.tokens[0..<8]), logits: .none)
        let snap = a.snapshot()
        #expect(snap.byteCount == 2 * 2 * 8 * 64 * 4)
        let b = try LlamaSession(model: model, contextLength: 16)
        try b.restore(snap, tokens: 6)    // a shorter common prefix is enough
        var tail: [[Float]] = []
        try b.prefill(Array(ref.tokens[6...]), logits: .all) { _, l in tail.append(Array(l)) }
        #expect(maxAbsDiff(tail, Array(whole[6...])) <= 1e-5)
    }
}
