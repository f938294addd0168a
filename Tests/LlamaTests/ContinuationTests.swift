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

/// `prefill(stopIf:)` and `scoreContinuations(stopIf:)`: a stop asked for before a layer
/// drops the batch in progress whole (`position` is the end of the last whole batch, or of
/// the last token on the per-token path), and the session goes on from there to the same
/// logits as an uninterrupted run.
@Suite struct StopTests {
    let tokens: [Int32] = [1, 97, 62, 124, 58, 143, 120, 5, 98, 63, 122, 55, 11, 7, 7, 9, 143, 120, 2, 3, 4, 5, 6, 7]

    /// Stops at the `at`-th question (1-based) and returns the position the stop reported.
    func stopped(_ s: LlamaSession, _ run: (@escaping () -> Bool) throws -> Void, at: Int) -> Int? {
        var asked = 0
        do {
            try run { asked += 1; return asked == at }
        } catch LlamaError.stopped(let position) {
            return position
        } catch { Issue.record("\(error)") }
        return nil
    }

    @Test(arguments: ["f32", "q4_0"])
    func aStopInALaterBatchKeepsTheWholeBatchesBefore(type: String) throws {
        let model = try LlamaModel(path: modelPath("gqa_tied", type))
        let layers = model.config.layerCount
        #expect(layers >= 2)
        let reference = try prefillLogits(model, tokens, maxBatch: 64)
        // Batches of 8: the second question of the second batch comes after layer 0 of it.
        let s = try LlamaSession(model: model, contextLength: 32, maxBatch: 8)
        let position = stopped(s, { stop in try s.prefill(tokens, logits: .all, stopIf: stop) { _, _ in } }, at: layers + 2)
        #expect(position == 8 && s.position == 8)
        var rows: [[Float]] = []
        try s.prefill(Array(tokens[8...]), logits: .all) { _, l in rows.append(Array(l)) }
        let worst = maxAbsDiff(rows, Array(reference[8...]))
        print("gqa_tied \(type): prefill stopped inside its second batch, then resumed: max |Δ logits| vs one run = \(worst)")
        // Batches of 8 against one of 24: GEMMs of other shapes sum in another order.
        #expect(worst <= 5e-5)
    }

    @Test func theTokenByTokenPathStopsBetweenTokens() throws {
        let model = try LlamaModel(path: modelPath("gqa_tied", "f32"))
        let s = try LlamaSession(model: model, contextLength: 32)
        try s.prefill(Array(tokens[..<5]))
        // Two tokens go token by token (LlamaSession.smallPrefill): asked before each.
        #expect(LlamaSession.smallPrefill >= 2)
        let position = stopped(s, { stop in try s.prefill(Array(tokens[5..<7]), logits: .last, stopIf: stop) { _, _ in } }, at: 2)
        #expect(position == 6 && s.position == 6)
        var last: [Float] = []
        try s.prefill([tokens[6]], logits: .last) { _, l in last = Array(l) }
        let reference = try prefillLogits(model, Array(tokens[..<7]))
        #expect(maxAbsDiff([last], [reference[6]]) <= 1e-5)
    }

    @Test func aStoppedScoringLeavesThePrefix() throws {
        let model = try LlamaModel(path: modelPath("gqa_tied", "f32"))
        let s = try LlamaSession(model: model, contextLength: 40, maxBatch: 4)
        var last: [Float] = []
        try s.prefill(Array(tokens[..<7]), logits: .last) { _, l in last = Array(l) }
        let conts: [[Int32]] = [[98, 63, 122], [55, 11, 7, 7, 9], [2, 3, 4]]
        let position = stopped(s, { stop in _ = try s.scoreContinuations(conts, prefixLogits: last, stopIf: stop) },
                               at: model.config.layerCount + 1)
        #expect(position == 7 && s.position == 7)
        let again = try s.scoreContinuations(conts, prefixLogits: last)
        let fresh = try LlamaSession(model: model, contextLength: 40, maxBatch: 4)
        try fresh.prefill(Array(tokens[..<7]))
        #expect(maxAbsDiff(again, try fresh.scoreContinuations(conts, prefixLogits: last)) <= 1e-5)
    }
}
