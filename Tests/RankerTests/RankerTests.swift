import Catalog
import Foundation
import GGUF
import History
import Llama
import Testing
import Tokenizer
@testable import Ranker

func makeRanker(prefixCacheBytes: Int = 256 << 20, _ edit: (inout PALRSettings) -> Void = { _ in }) throws -> Ranker {
    let model = try LlamaModel(path: tinyRankerModelPath)
    let tok = try SentencePieceTokenizer(gguf: model.gguf)
    var defaulted: [String] = []
    var settings = try PALRSettings(gguf: model.gguf, defaulted: &defaulted)
    edit(&settings)
    return try Ranker(model: model, tokenizer: tok, settings: settings, contextLength: 1024, threads: 1,
                      prefixCacheBytes: prefixCacheBytes)
}

let someTitles = ["Toy Story (1995)", "GoldenEye (1995)", "Four Rooms (1995)", "Get Shorty (1995)", "Copycat (1995)"]
let someCandidates = ["Twelve Monkeys (1995)", "Babe (1995)", "Dead Man Walking (1995)", "Richard III (1995)",
                      "Seven (Se7en) (1995)", "Usual Suspects, The (1995)"].enumerated().map { Candidate(id: "c\($0)", title: $1) }

@Suite struct RankerExactnessTests {
    @Test func lettersScoresAreTheLabelLogitsAtTheLastPosition() throws {
        let r = try makeRanker()
        let res = try r.rank(history: someTitles, candidates: someCandidates, k: someCandidates.count, mode: .letters)
        // Independent path: a fresh session, one plain prefill of the same prompt.
        let s = try LlamaSession(model: r.model, contextLength: 1024, kvCache: r.session.kvType)
        var last: [Float] = []
        try s.prefill(r.tokenizer.encode(res.prompt, addBOS: true), logits: .last) { _, l in last = Array(l) }
        let labels = PALRSettings.letters.prefix(someCandidates.count).map { Int(r.tokenizer.id(ofPiece: $0)!) }
        let raw = labels.map { last[$0] }
        var worst = 0.0
        for item in res.items {
            let i = someCandidates.firstIndex { $0.id == item.id }!
            worst = max(worst, abs(item.score - Double(logSoftmax(raw, at: i))))
        }
        print("letters: ranker scores vs label log-softmax of a plain prefill: max |Δ| = \(worst)")
        #expect(worst <= 1e-4)
        #expect(res.prompt.hasSuffix("Next: ("))
        #expect(res.prompt.contains("(A) Twelve Monkeys (1995)\n(B) Babe (1995)\n"))
    }

    @Test(arguments: [false, true])
    func likelihoodScoresEqualSeparateFullPasses(normalized: Bool) throws {
        let r = try makeRanker()
        let res = try r.rank(history: someTitles, candidates: someCandidates, k: someCandidates.count,
                             mode: .likelihood, lengthNormalized: normalized)
        let prompt = r.tokenizer.encode(res.prompt, addBOS: true)
        var worst = 0.0
        for item in res.items {
            let cand = someCandidates.first { $0.id == item.id }!
            let cont = r.continuation(cand.title)
            let s = try LlamaSession(model: r.model, contextLength: 1024, kvCache: r.session.kvType)
            var rows: [[Float]] = []
            try s.prefill(prompt + cont, logits: .all) { _, l in rows.append(Array(l)) }
            var sum = 0.0
            for (j, t) in cont.enumerated() { sum += Double(logSoftmax(rows[prompt.count - 1 + j], at: Int(t))) }
            let expected = normalized ? sum / Double(cont.count) : sum
            worst = max(worst, abs(item.score - expected))
        }
        print("likelihood (normalized: \(normalized)): batched shared-prefix scores vs separate passes: max |Δ| = \(worst)")
        // With an f16 cache a key or value the two paths compute a hair apart can round to
        // neighbouring halves (5e-4 apart, relatively): summed over a title's tokens, ~1e-4.
        #expect(worst <= (r.session.kvType == .f16 ? 5e-4 : 1e-4))
        #expect(res.timings.scoringTokens == someCandidates.reduce(0) { $0 + r.continuation($1.title).count })
    }

    @Test func generateNamesOnlyCandidatesInTrieOrder() throws {
        let r = try makeRanker()
        let res = try r.rank(history: someTitles, candidates: someCandidates, k: 4, mode: .generate)
        #expect(res.items.count == 4)
        #expect(Set(res.items.map(\.id)).count == 4)
        #expect(res.items.allSatisfy { i in someCandidates.contains { $0.id == i.id } })
        #expect(res.items.map(\.rank) == [1, 2, 3, 4])
    }
}

@Suite struct PrefixReuseTests {
    @Test func repeatedAndAppendedHistoriesRecomputeOnlyWhatChanged() throws {
        let r = try makeRanker()
        let history = Array(someTitles.prefix(4))
        let cold = try r.rank(history: history, candidates: someCandidates, k: 3, mode: .likelihood, cacheKey: "p1")
        #expect(cold.timings.computedPromptTokens == cold.timings.promptTokens)

        // Same history again: only the last token is recomputed (its logits are needed).
        let warm = try r.rank(history: history, candidates: someCandidates, k: 3, mode: .likelihood, cacheKey: "p1")
        #expect(warm.timings.computedPromptTokens == 1)
        #expect(zip(warm.items, cold.items).allSatisfy { $0.id == $1.id && abs($0.score - $1.score) < 1e-4 })

        // One appended interaction: exactly the tokens after the common prefix.
        let appended = try r.rank(history: history + [someTitles[4]], candidates: someCandidates, k: 3, mode: .likelihood, cacheKey: "p1")
        let old = r.tokenizer.encode(cold.prompt, addBOS: true), new = r.tokenizer.encode(appended.prompt, addBOS: true)
        let expected = new.count - commonPrefixLength(old, new)
        print("appended interaction: \(appended.timings.computedPromptTokens) of \(new.count) prompt tokens recomputed (common prefix \(commonPrefixLength(old, new)))")
        #expect(appended.timings.computedPromptTokens == expected)
        let line = r.tokenizer.encode("- \(someTitles[4])\nNext:", addBOS: false).count
        #expect(expected <= line + 2)

        // And the reused state gives the same scores as a cold ranker.
        let fresh = try makeRanker().rank(history: history + [someTitles[4]], candidates: someCandidates, k: 3, mode: .likelihood)
        #expect(zip(fresh.items, appended.items).allSatisfy { $0.id == $1.id && abs($0.score - $1.score) < 1e-4 })
    }

    /// With no room for snapshots (a 7B's 600-token prompt is 600 MiB, over the default
    /// budget), the session's own cache still serves the next prompt: the last prompt's
    /// keys and values are reused in place, in every mode, and give a cold ranker's
    /// scores. A profile summary takes the cache over, and the next prompt starts afresh.
    @Test(arguments: [ScoringMode.letters, .likelihood, .generate])
    func theSessionsOwnCacheServesTheNextPromptWithoutSnapshots(mode: ScoringMode) throws {
        let model = try LlamaModel(path: tinyRankerModelPath)
        let tok = try SentencePieceTokenizer(gguf: model.gguf)
        var defaulted: [String] = []
        let settings = try PALRSettings(gguf: model.gguf, defaulted: &defaulted)
        let r = try Ranker(model: model, tokenizer: tok, settings: settings, contextLength: 1024, threads: 1,
                           prefixCacheBytes: 0)
        let history = Array(someTitles.prefix(4))
        let cold = try r.rank(history: history, candidates: someCandidates, k: 3, mode: mode, cacheKey: "p1")
        #expect(cold.timings.computedPromptTokens == cold.timings.promptTokens && r.prefixCache.count == 0)

        let warm = try r.rank(history: history, candidates: someCandidates, k: 3, mode: mode, cacheKey: "p1")
        #expect(warm.timings.computedPromptTokens == 1 && r.prefixCache.count == 0)
        #expect(zip(warm.items, cold.items).allSatisfy { $0.id == $1.id && abs($0.score - $1.score) < 1e-4 })

        // Generate mode's scores sum log-probabilities of int8-activation decode steps, where
        // a rounding difference in the prompt's last logits can move an activation across a
        // quantization step: a few thousandths over a title (ids must still agree).
        let tolerance = mode == .generate ? 0.05 : 1e-4
        let longer = history + [someTitles[4]]
        let appended = try r.rank(history: longer, candidates: someCandidates, k: 3, mode: mode, cacheKey: "p2")
        let old = r.tokenizer.encode(cold.prompt, addBOS: true), new = r.tokenizer.encode(appended.prompt, addBOS: true)
        #expect(appended.timings.computedPromptTokens == new.count - min(commonPrefixLength(old, new), new.count - 1))
        let fresh = try makeRanker().rank(history: longer, candidates: someCandidates, k: 3, mode: mode)
        #expect(zip(fresh.items, appended.items).allSatisfy { $0.id == $1.id && abs($0.score - $1.score) < tolerance },
                "\(fresh.items.map { "\($0.id) \($0.score)" }) vs \(appended.items.map { "\($0.id) \($0.score)" }), computed \(appended.timings.computedPromptTokens) of \(appended.timings.promptTokens)")

        // A summary's prompt overwrites the cache: nothing of it is reused afterwards.
        _ = try r.generateProfile(history: longer)
        let after = try r.rank(history: longer, candidates: someCandidates, k: 3, mode: mode, cacheKey: "p2")
        #expect(after.timings.computedPromptTokens == after.timings.promptTokens)
        #expect(zip(fresh.items, after.items).allSatisfy { $0.id == $1.id && abs($0.score - $1.score) < tolerance })
    }

    @Test func cacheStaysWithinItsBudget() throws {
        let r = try makeRanker()
        let c = PrefixCache(byteBudget: 60_000)
        for i in 0..<6 {
            let s = r.session
            try s.rewind(to: 0)
            try s.prefill(r.tokenizer.encode("profile \(i) " + String(repeating: "x", count: 40), addBOS: true), logits: .none)
            let snap = s.snapshot()
            c.put("p\(i)", tokens: [], bytes: snap.byteCount) { snap }
            #expect(c.byteCount <= 60_000)
        }
        #expect(c.count >= 1 && c.count < 6)
    }
}

@Suite struct RetrievalPriorTests {
    /// The fused score is the model's score minus w·ln(1 + retrieval position): checked
    /// against the unfused ranking of the same candidates, for both modes it applies to.
    @Test(arguments: [ScoringMode.letters, .likelihood])
    func priorShiftsEachScoreByItsRetrievalPosition(mode: ScoringMode) throws {
        let plain = try makeRanker().rank(history: someTitles, candidates: someCandidates, k: someCandidates.count, mode: mode)
        let w = 0.75
        let fused = try makeRanker { $0.retrievalPrior = w }
            .rank(history: someTitles, candidates: someCandidates, k: someCandidates.count, mode: mode)
        var worst = 0.0
        for item in fused.items {
            let i = someCandidates.firstIndex { $0.id == item.id }!
            let base = plain.items.first { $0.id == item.id }!.score
            worst = max(worst, abs(item.score - (base - w * log1p(Double(i)))))
        }
        print("\(mode) with retrieval prior \(w): fused score vs model score − w·ln(1+i): max |Δ| = \(worst)")
        #expect(worst <= 1e-9)
        #expect(fused.items.map(\.score) == fused.items.map(\.score).sorted(by: >))
        // A prior that dwarfs the model's scores gives back the retrieval order.
        let strong = try makeRanker { $0.retrievalPrior = 1e6 }
            .rank(history: someTitles, candidates: someCandidates, k: someCandidates.count, mode: mode)
        #expect(strong.items.map(\.id) == someCandidates.map(\.id))
    }
}

@Suite struct RankerEdgeCaseTests {
    @Test func modelWithoutPalrKeysUsesDefaults() throws {
        let model = try LlamaModel(path: tinyRankerModelPath)
        var defaulted: [String] = []
        let s = try PALRSettings(gguf: model.gguf, defaulted: &defaulted)
        #expect(s == PALRSettings())
        // Only the keys the converter always writes are noted as missing; absent templates
        // are the normal case (the built-in ones), not worth a note.
        #expect(defaulted == ["palr.scoring_mode", "palr.max_history", "palr.max_candidates", "palr.title_token_limit",
                              "palr.retrieval_prior"], "\(defaulted)")
    }

    @Test func longTitlesAreCutAtTheTokenLimit() throws {
        let r = try makeRanker { $0.titleTokenLimit = 6 }
        let long = String(repeating: "Extraordinarily Long Title ", count: 10)
        let cut = r.cutTitle(long)
        #expect(r.tokenizer.encode(cut, addBOS: false).count <= 6)
        let res = try r.rank(history: [long], candidates: [Candidate(id: "x", title: long), someCandidates[0]], k: 2, mode: .letters)
        #expect(res.items.count == 2)
        #expect(!res.prompt.contains(long))
    }

    @Test func emptyHistoryAndNoCandidates() throws {
        let r = try makeRanker()
        for mode in ScoringMode.allCases {
            let res = try r.rank(history: [], candidates: someCandidates, k: 3, mode: mode)
            #expect(res.items.count == 3)
        }
        #expect(throws: RankerError.noCandidates) { try r.rank(history: someTitles, candidates: [], k: 3) }
    }

    @Test func moreCandidatesThanLettersAreRankedInWindows() throws {
        let r = try makeRanker()
        let many = (0..<45).map { Candidate(id: "m\($0)", title: "Movie number \($0) (19\(50 + $0 % 50))") }
        let res = try r.rank(history: someTitles, candidates: many, k: 45, mode: .letters)
        #expect(res.items.count == 45)
        #expect(Set(res.items.map(\.id)).count == 45)
        // Windows keep retrieval order: ranks 1–20 are the first window's candidates,
        // 21–40 the second's, 41–45 the last's, each window in the model's order.
        for (r, item) in res.items.enumerated() {
            let position = many.firstIndex { $0.id == item.id } ?? -1
            #expect(position / 20 == r / 20, "rank \(r + 1) holds retrieval position \(position)")
        }
    }

    /// 21 candidates: the one in the second window (alone, its log-softmax is 0, above
    /// any score of a full window) must not jump to the top; it ranks last.
    @Test func aWindowOfOneDoesNotOutrankAFullWindow() throws {
        let r = try makeRanker()
        let many = (0..<21).map { Candidate(id: "m\($0)", title: "Movie number \($0) (19\(50 + $0))") }
        let res = try r.rank(history: someTitles, candidates: many, k: 21, mode: .letters)
        #expect(res.items.count == 21)
        #expect(res.items.last?.id == "m20")
        #expect(res.items.first?.id != "m20")
        #expect(res.items.last?.score == 0)   // log 1: the lone candidate of its window
    }
}

/// `Ranker.interruption` (`palr serve` preparing a profile while idle): a ranking stopped
/// between pieces of prompt work keeps what it computed, and the next ranking of the same
/// prompt continues from there to a cold ranker's scores.
@Suite struct InterruptionTests {
    /// Stops a ranking of `r` after exactly `interruptibleChunk` prompt tokens: a first
    /// attempt stopped at its first question keeps nothing, so the next computes that piece
    /// without asking, and is stopped at the next question. Returns the tokens kept and the
    /// prompt's length.
    func stopAfterOnePiece(_ r: Ranker, mode: ScoringMode, cacheKey: String?) throws -> (done: Int, total: Int) {
        r.interruption = { true }
        do {
            _ = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode, cacheKey: cacheKey)
            Issue.record("the ranking was not stopped at its first question")
        } catch RankerError.interrupted(let done, _) { #expect(done == 0) }
        defer { r.interruption = nil }
        do {
            _ = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode, cacheKey: cacheKey)
            Issue.record("the ranking was not interrupted after its piece")
            return (-1, -1)
        } catch RankerError.interrupted(let done, let total) { return (done, total) }
    }

    @Test(arguments: [ScoringMode.letters, .likelihood, .generate])
    func anInterruptedRankingKeepsItsWorkForTheNext(mode: ScoringMode) throws {
        let tolerance = mode == .generate ? 0.05 : 1e-4   // as in the prefix-reuse tests
        let cold = try makeRanker().rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode)
        let total = cold.timings.promptTokens
        let chunk = Ranker.interruptibleChunk
        #expect(total > chunk, "the prompt must span several pieces: \(total) tokens")

        // Stopped after one piece: that piece is kept.
        let r = try makeRanker()
        let (done, promptTokens) = try stopAfterOnePiece(r, mode: mode, cacheKey: "p")
        #expect(done == chunk && promptTokens == total)
        #expect(r.residentPrompt.count == chunk)

        // Resumed (still interruptible, never stopping): only the rest is computed.
        r.interruption = { false }
        let resumed = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode, cacheKey: "p")
        #expect(resumed.timings.computedPromptTokens == total - chunk)
        var worst = 0.0
        for (a, b) in zip(cold.items, resumed.items) {
            #expect(a.id == b.id)
            worst = max(worst, abs(a.score - b.score))
        }
        print("\(mode): interrupted after \(chunk) of \(total) prompt tokens, resumed: max |Δ score| vs cold = \(worst)")
        #expect(worst <= tolerance && resumed.items.count == cold.items.count)

        // Stopped inside the first piece, after some of its layers: nothing is kept (the
        // position stays at the start of the piece), and the next ranking computes it all.
        let m = try makeRanker()
        var asked = 0
        m.interruption = { asked += 1; return asked == 2 }
        do {
            _ = try m.rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode)
            Issue.record("the ranking was not stopped inside its first piece")
        } catch RankerError.interrupted(let done, _) { #expect(done == 0) }
        m.interruption = nil
        let redone = try m.rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode)
        #expect(redone.timings.computedPromptTokens == total)
        #expect(zip(cold.items, redone.items).allSatisfy { $0.id == $1.id && abs($0.score - $1.score) <= tolerance })

        // Asked after the prompt too: likelihood before scoring, generate before each token.
        if mode != .letters {
            let s = try makeRanker()
            var promptDone = false
            s.interruption = { [unowned s] in if s.session.position >= total { promptDone = true }; return promptDone }
            do {
                _ = try s.rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode)
                Issue.record("the scoring stage was not interrupted")
            } catch RankerError.interrupted(let done, let promptTokens) {
                #expect(done == total && promptTokens == total)
            }
            s.interruption = nil
            let again = try s.rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode)
            #expect(again.timings.computedPromptTokens == 1)
            #expect(zip(cold.items, again.items).allSatisfy { $0.id == $1.id && abs($0.score - $1.score) <= tolerance })
        }
    }

    /// A ranking asked to stop at every chance still finishes: a stop that kept nothing
    /// makes the next attempt finish one piece (or its scoring stage) before it asks again.
    @Test(arguments: [ScoringMode.letters, .likelihood, .generate])
    func aStreamOfStopsCannotStarveARanking(mode: ScoringMode) throws {
        let cold = try makeRanker().rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode)
        let total = cold.timings.promptTokens, chunk = Ranker.interruptibleChunk
        let r = try makeRanker()
        r.interruption = { true }
        var attempts = 0, kept: [Int] = []
        var result: RankResult?
        while result == nil, attempts < 100 {
            attempts += 1
            do { result = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode, cacheKey: "p") }
            catch RankerError.interrupted(let done, _) { kept.append(done) }
        }
        let pieces = (total + chunk - 1) / chunk
        print("\(mode): always asked to stop, finished after \(attempts) attempts (\(pieces) pieces); kept \(kept)")
        let finished = try #require(result)
        // Two attempts per piece at most (one that keeps nothing, one that must keep a piece),
        // and, for a scoring stage, one stopped in it, one stopped in the last token's
        // recomputation, and the one that finishes.
        #expect(attempts <= 2 * pieces + (mode == .letters ? 0 : 2))
        #expect(zip(cold.items, finished.items).allSatisfy {
            $0.id == $1.id && abs($0.score - $1.score) <= (mode == .generate ? 0.05 : 1e-4)
        })
    }

    /// An interruptible ranking that is never stopped runs the prompt in the session's
    /// batches (asked once per layer of each), not in `interruptibleChunk` pieces, which
    /// cost 10–16% of prompt speed on the 1B.
    @Test func anInterruptibleRankingRunsTheSessionsBatches() throws {
        let r = try makeRanker()
        var asked = 0
        r.interruption = { asked += 1; return false }
        let ranked = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: .letters)
        let batches = (ranked.timings.promptTokens + r.session.maxBatch - 1) / r.session.maxBatch
        #expect(ranked.timings.promptTokens > Ranker.interruptibleChunk)
        #expect(asked == r.model.config.layerCount * batches, "asked \(asked) times")
    }

    /// Two letters windows (k = 40 of 40 candidates): a stop in the second window keeps its
    /// pieces, and the next attempt takes the first window's scores from memory instead of
    /// overwriting them; and a request's ranking of another profile between the attempts
    /// neither loses the kept pieces nor lifts the progress guarantee.
    @Test(arguments: [ScoringMode.letters, .likelihood])
    func stopsWithRequestsInBetweenStillFinish(mode: ScoringMode) throws {
        let many = (0..<40).map { Candidate(id: "m\($0)", title: "Film number \($0) (19\(60 + $0))") }
        let cold = try makeRanker().rank(history: someTitles, candidates: many, k: 40, mode: mode)
        let r = try makeRanker()
        var attempts = 0
        var result: RankResult?
        while result == nil, attempts < 200 {
            attempts += 1
            r.interruption = { true }
            do { result = try r.rank(history: someTitles, candidates: many, k: 40, mode: mode, cacheKey: "p") }
            catch RankerError.interrupted {}
            // A request in between: another profile's prompt, no interruption.
            r.interruption = nil
            _ = try r.rank(history: ["Heat (1995)"], candidates: Array(someCandidates.prefix(3)), k: 3, mode: mode, cacheKey: "q")
        }
        let pieces = (cold.timings.promptTokens + Ranker.interruptibleChunk - 1) / Ranker.interruptibleChunk
        print("\(mode), 40 candidates: always asked to stop, another ranking between attempts: finished after \(attempts) attempts (\(pieces) prompt pieces)")
        let finished = try #require(result)
        #expect(attempts <= 2 * pieces + 2)
        var worst = 0.0
        for (a, b) in zip(cold.items, finished.items) {
            #expect(a.id == b.id)
            worst = max(worst, abs(a.score - b.score))
        }
        #expect(worst <= 1e-4 && finished.items.count == 40, "max |Δ| \(worst)")
    }

    /// A prompt over the prefix cache's budget keeps its longest prefix that fits (it kept
    /// nothing: a 7B's whole 640-token prompt never fits the default 256 MiB), and a later
    /// snapshot over the budget leaves that entry as it was.
    @Test func aPromptOverTheBudgetKeepsItsLongestPrefixThatFits() throws {
        let perToken = try makeRanker().session.snapshotByteCount(positions: 1)
        let r = try makeRanker(prefixCacheBytes: 100 * perToken)
        let first = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: .letters, cacheKey: "p")
        #expect(first.timings.promptTokens > 100)
        #expect(r.prefixCache.entry("p")?.tokens.count == 100)
        // Another prompt (kept nowhere) overwrites the session; the first 100 tokens come from the cache.
        _ = try r.rank(history: ["Heat (1995)"], candidates: Array(someCandidates.suffix(2)), k: 2, mode: .letters)
        let again = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: .letters, cacheKey: "p")
        #expect(again.timings.computedPromptTokens == first.timings.promptTokens - 100)
        #expect(zip(first.items, again.items).allSatisfy { $0.id == $1.id && abs($0.score - $1.score) <= 1e-4 })
        // A snapshot too big to take leaves the entry.
        let before = r.prefixCache.entry("p")?.tokens
        r.prefixCache.put("p", tokens: [1, 2, 3], bytes: 101 * perToken) { Issue.record("taken over the budget"); return r.session.snapshot() }
        #expect(r.prefixCache.entry("p")?.tokens == before)
    }

    /// A stopped ranking's kept state is not evicted by the ranking that stopped it (a
    /// request for another profile, whose own state then is not kept when only the stopped
    /// one fits): the stopped ranking resumes from it.
    @Test func aStoppedRankingsStateSurvivesTheRankingThatStoppedIt() throws {
        let perToken = try makeRanker().session.snapshotByteCount(positions: 1)
        let r = try makeRanker(prefixCacheBytes: 100 * perToken)
        #expect(try stopAfterOnePiece(r, mode: .letters, cacheKey: "p").done == Ranker.interruptibleChunk)
        _ = try r.rank(history: ["Heat (1995)", "Casino (1995)"], candidates: Array(someCandidates.suffix(3)), k: 3,
                       mode: .letters, cacheKey: "q")
        #expect(r.prefixCache.entry("p")?.tokens.count == Ranker.interruptibleChunk && r.prefixCache.entry("p")?.resumable == true)
        #expect(r.prefixCache.entry("q") == nil)
        let resumed = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: .letters, cacheKey: "p")
        #expect(resumed.timings.computedPromptTokens == resumed.timings.promptTokens - Ranker.interruptibleChunk)
        #expect(r.prefixCache.entry("p")?.resumable == false, "the finished ranking's state is an ordinary entry")
    }

    /// With no prefix cache (or one too small to keep the work), another profile's ranking
    /// between the stops throws the kept work away each time; the forced piece then
    /// doubles, so the ranking still finishes (it looped forever with a fixed 64 tokens).
    @Test(arguments: [0, 8 << 10])
    func stopsWithRequestsBetweenAndNoRoomToKeepStillFinish(budget: Int) throws {
        let cold = try makeRanker().rank(history: someTitles, candidates: someCandidates, k: 3, mode: .letters)
        let r = try makeRanker(prefixCacheBytes: budget)
        var attempts = 0, kept: [Int] = []
        var result: RankResult?
        while result == nil, attempts < 100 {
            attempts += 1
            r.interruption = { true }
            do { result = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: .letters, cacheKey: "p") }
            catch RankerError.interrupted(let done, _) { kept.append(done) }
            r.interruption = nil
            _ = try r.rank(history: ["Heat (1995)"], candidates: Array(someCandidates.prefix(3)), k: 3, mode: .letters, cacheKey: "q")
        }
        print("budget \(budget) B: finished after \(attempts) attempts (\(cold.timings.promptTokens) prompt tokens); kept \(kept)")
        let finished = try #require(result)
        #expect(attempts <= 12)
        #expect(zip(cold.items, finished.items).allSatisfy { $0.id == $1.id && abs($0.score - $1.score) <= 1e-4 })
    }

    /// The pieces a stop kept survive another prompt in between (a request for another
    /// profile overwrites the session's cache): they are in the prefix cache too.
    @Test func keptPiecesSurviveAnotherPrompt() throws {
        let r = try makeRanker()
        #expect(try stopAfterOnePiece(r, mode: .letters, cacheKey: "p").done == Ranker.interruptibleChunk)
        #expect(r.prefixCache.entry("p") == nil)   // copied only when another prompt comes
        r.interruption = nil
        _ = try r.rank(history: ["Heat (1995)"], candidates: Array(someCandidates.suffix(2)), k: 2, mode: .letters, cacheKey: "q")
        #expect(r.prefixCache.entry("p")?.tokens.count == Ranker.interruptibleChunk)
        let resumed = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: .letters, cacheKey: "p")
        #expect(resumed.timings.computedPromptTokens == resumed.timings.promptTokens - Ranker.interruptibleChunk)
    }
}

/// `Ranker.pausePoint` (`palr serve` answering requests that need no model while a ranking
/// runs): called before each layer and each generated token, in every mode, and the
/// ranking goes on untouched: the same scores, bit for bit, the whole prompt computed once.
@Suite struct PausePointTests {
    @Test(arguments: [ScoringMode.letters, .likelihood, .generate])
    func aPausedRankingIsTheSameRanking(mode: ScoringMode) throws {
        let plain = try makeRanker().rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode)
        let r = try makeRanker()
        var pauses = 0, positions: Set<Int> = []
        r.pausePoint = { [unowned r] in pauses += 1; positions.insert(r.session.position) }
        let paused = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode)
        let layers = r.model.config.layerCount
        print("\(mode): \(pauses) pauses over \(positions.count) positions; \(layers) layers, \(paused.timings.promptTokens) prompt tokens")
        // At least every layer of the prompt's one batch (a 256-token batch per call, not
        // 64-token pieces: the pause point does not cut the prompt), and in likelihood mode
        // every layer of the continuations' scoring too.
        #expect(pauses >= (mode == .likelihood ? 2 * layers : layers))
        #expect(paused.timings.computedPromptTokens == plain.timings.promptTokens)
        #expect(paused.items.map(\.id) == plain.items.map(\.id) && paused.items.map(\.score) == plain.items.map(\.score),
                "\(paused.items) vs \(plain.items)")
        if mode == .generate {
            // Asked before each generated token too: more pauses than the prompt's layers.
            #expect(pauses > layers * ((plain.timings.promptTokens + 255) / 256))
        }

        // With an interruption that never stops, the pause point is still asked first.
        let s = try makeRanker()
        var order: [String] = []
        s.pausePoint = { order.append("pause") }
        s.interruption = { order.append("stop?"); return false }
        _ = try s.rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode)
        #expect(!order.isEmpty && order.count % 2 == 0)
        #expect(stride(from: 0, to: order.count, by: 2).allSatisfy { order[$0] == "pause" && order[$0 + 1] == "stop?" })
    }
}

/// `palr.history_step`: the shown history's window starts at multiples of the step, so a
/// history that grows by one item keeps its prompt's history lines, and prefix reuse
/// covers them.
@Suite struct HistoryStepTests {
    @Test func theWindowStartsAtMultiplesOfTheStep() {
        var s = PALRSettings()
        s.maxHistory = 20
        for n in 0...60 {
            // Step 1: exactly the latest 20 (the old `suffix`).
            #expect(s.shownHistory(count: n) == max(0, n - 20)..<n)
        }
        s.historyStep = 5
        var starts: [Int] = []
        for n in 0...60 {
            let r = s.shownHistory(count: n)
            #expect(r.upperBound == n && r.lowerBound % 5 == 0)
            #expect(r.count == n || (16...20).contains(r.count), "\(n): \(r)")
            starts.append(r.lowerBound)
        }
        #expect(Array(starts[19...27]) == [0, 0, 5, 5, 5, 5, 5, 10, 10])
        s.historyStep = 20
        #expect(s.shownHistory(count: 21) == 20..<21 && s.shownHistory(count: 40) == 20..<40)
    }

    @Test func anAppendedItemReusesTheHistoryLines() throws {
        let titles = someTitles + someCandidates.map(\.title).suffix(3)   // 8 titles
        let candidates = Array(someCandidates.prefix(3))
        func computed(step: Int) throws -> (shown: [Int], computed: [Int], lines: [Int]) {
            let r = try makeRanker { $0.maxHistory = 4; $0.historyStep = step }
            var shown: [Int] = [], computedTokens: [Int] = [], lines: [Int] = []
            for n in 5...8 {
                let res = try r.rank(history: Array(titles.prefix(n)), candidates: candidates, k: 3, mode: .letters, cacheKey: "p")
                shown.append(titles.prefix(n).filter { res.prompt.contains("- \($0)\n") }.count)
                computedTokens.append(res.timings.computedPromptTokens)
                // The tokens after the last history line: what must be computed at least.
                let tail = res.prompt[res.prompt.range(of: "- \(titles[n - 1])\n")!.lowerBound...]
                lines.append(r.tokenizer.encode(String(tail), addBOS: false).count)
            }
            return (shown, computedTokens, lines)
        }
        let one = try computed(step: 1), three = try computed(step: 3)
        print("history step 1: shown \(one.shown), computed \(one.computed); step 3: shown \(three.shown), computed \(three.computed) (new line and after: \(three.lines))")
        #expect(one.shown == [4, 4, 4, 4] && three.shown == [2, 3, 4, 2])
        // Step 1: every appended item shifts the window, the history is computed anew.
        #expect(zip(one.computed.dropFirst(), one.lines.dropFirst()).allSatisfy { $0 > $1 + 10 })
        // Step 3: within a window (n = 6, 7) only the new line and what follows it (+1 for a
        // token the line's start may merge with); n = 8 starts a new window.
        #expect(three.computed[1] <= three.lines[1] + 1 && three.computed[2] <= three.lines[2] + 1, "\(three)")
        #expect(three.computed[3] > three.lines[3] + 10)
    }

    @Test func aStepBeyondTheHistoryIsRefused() throws {
        var m = try HostileModel()
        m.extraMetadata = [("palr.max_history", .uint32(4)), ("palr.history_step", .uint32(5))]
        #expect { _ = try m.ranker() } throws: { "\($0)".contains("palr.history_step") && "\($0)".contains("1…4") }
        m.extraMetadata = [("palr.max_history", .uint32(4)), ("palr.history_step", .uint32(4))]
        #expect(try m.ranker().settings.historyStep == 4)
    }
}
