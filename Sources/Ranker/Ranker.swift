import Foundation
import Llama
import Tokenizer

/// One item offered to the ranker.
public struct Candidate: Sendable, Equatable {
    public let id: String
    public let title: String
    public init(id: String, title: String) {
        self.id = id
        self.title = title
    }
}

public struct RankedItem: Sendable, Equatable, Codable {
    public let id: String
    public let title: String
    public let score: Double
    public let rank: Int
}

/// Where the time of one ranking went, and how much model work it took.
public struct RankTimings: Sendable, Equatable, Codable {
    public var prefillSeconds = 0.0
    public var scoringSeconds = 0.0
    /// Prompt tokens in total, and those actually run (the rest came from the prefix cache).
    public var promptTokens = 0
    public var computedPromptTokens = 0
    /// Tokens run in the scoring stage (continuations, or generated tokens).
    public var scoringTokens = 0
}

public struct RankResult: Sendable {
    public let items: [RankedItem]
    public let mode: ScoringMode
    public let timings: RankTimings
    /// The exact prompt text (for debugging and tests).
    public let prompt: String
}

public enum RankerError: Error, Equatable, CustomStringConvertible {
    case noCandidates
    case promptTooLong(tokens: Int, context: Int)
    case labelNotInVocabulary(String)
    /// The tokenizer's piece count differs from the model's vocabulary (token rows).
    case vocabularyMismatch(tokenizerPieces: Int, modelVocabulary: Int)
    /// Generate mode: the context filled before the model had named any candidate.
    case contextFilledBeforeAnyTitle(context: Int)
    /// `Ranker.interruption` asked to stop; the prompt tokens computed so far are kept for
    /// the next prompt that starts the same way.
    case interrupted(computedPromptTokens: Int, promptTokens: Int)
    case model(String)

    public var description: String {
        switch self {
        case .noCandidates: return "there are no candidates to rank"
        case .promptTooLong(let t, let c):
            return "the prompt needs \(t) tokens but the context holds \(c); rank fewer candidates, "
                + "or lower palr.max_history or palr.title_token_limit"
        case .labelNotInVocabulary(let l): return "letters mode needs the label '\(l)' as one token, and the model's vocabulary has none"
        case .vocabularyMismatch(let t, let m):
            return "the model's tokenizer has \(t) pieces (tokenizer.ggml.tokens) but its weights have \(m) token rows "
                + "(token_embd.weight, llama.vocab_size): the tokenizer belongs to another model"
        case .contextFilledBeforeAnyTitle(let c):
            return "generate mode: the \(c)-token context filled before the model had written one title; rank fewer "
                + "candidates, or lower palr.max_history or palr.title_token_limit"
        case .interrupted(let done, let total):
            return "the ranking was interrupted after \(done) of \(total) prompt tokens (they are kept for the next prompt)"
        case .model(let m): return m
        }
    }
}

/// Ranks candidates for one history with a PALR-tuned model. Owns one inference
/// session (KV cache and buffers allocated once) and a prefix cache of KV snapshots.
public final class Ranker {
    public let model: LlamaModel
    public let tokenizer: SentencePieceTokenizer
    public let settings: PALRSettings
    /// The ranker's own session: not public, because `residentPrompt` trusts that only
    /// the ranker writes its cache (a prefill from outside would make the ranker reuse
    /// keys and values of another text).
    let session: LlamaSession
    /// Drops the prompt states kept for reuse: the prefix cache's snapshots are freed and the
    /// session's cached prompt is no longer reused (its memory is overwritten by the next
    /// prompt). After a forget, nothing of the forgotten history is kept for later prompts.
    public func forgetCachedPrompts() {
        prefixCache.removeAll()
        windowMemo.removeAll()
        partialKey = nil
        residentPrompt = []
        resetProgressGuarantee()
        try? session.rewind(to: 0)
    }

    private func resetProgressGuarantee() {
        (mustFinishPiece, mustFinishScoring) = (false, false)
        (mustFinishSize, forcedEnd, forcedPrompt) = (Self.interruptibleChunk, 0, [])
    }

    public let prefixCache: PrefixCache
    /// Label token ids for letters mode, (A)…(T); nil when the vocabulary lacks one of them.
    private let labelTokens: [Int32]?
    /// The first label the vocabulary has no single piece for.
    private let missingLabel: String?
    /// The prompt whose keys and values fill the session's cache at positions
    /// 0..<count (a later prompt that starts the same way reuses them in place), or
    /// empty when they are not a prompt's (`generateProfile`, a prefill that failed).
    var residentPrompt: [Int32] = []
    private let newline: [Int32]

    /// When set, asked before each layer of model work (prompt, continuations) and before
    /// each generated token: `true` stops the ranking with `RankerError.interrupted`. The
    /// prompt runs in the session's batches as always (a stop drops the batch in progress,
    /// its layers done so far); the batches completed
    /// stay in the session's cache (copied to the prefix cache under the ranking's cache
    /// key, as much of them as fits its budget, before another prompt overwrites them), and a later
    /// prompt that starts the same way continues from them. Letters windows already scored
    /// are remembered (`windowMemo`), so a stop in a later window does not redo the earlier
    /// ones. A stop that kept nothing makes the next interruptible ranking get past the same
    /// point before it asks again (`mustFinishSize` prompt tokens, from `interruptibleChunk`
    /// up, or the whole scoring stage), so a stream of stops cannot starve it. Rankings without an interruption
    /// (requests) run as always and leave that guarantee alone.
    public var interruption: (() -> Bool)?
    /// Prompt tokens an interruptible ranking first computes without asking after a stop
    /// that kept nothing (doubled while such work is lost: `mustFinishSize`): what a request
    /// arriving then may wait for (a 7B runs 64 in about 6 s here).
    /// (Until session 15 every interruptible prompt ran in pieces of this size: 10–16% slower
    /// than the session's 256-token batches on the 1B.)
    public static let interruptibleChunk = 64

    /// Set by a stop that kept nothing: the next interruptible prompt piece, or scoring
    /// stage, runs without asking (cleared when such a piece completes, or such a ranking).
    private var mustFinishPiece = false, mustFinishScoring = false
    /// The prompt tokens a must-finish piece computes: `interruptibleChunk`, doubled each
    /// time the previous forced piece's work was lost by the next attempt (another prompt
    /// overwrote it and the prefix cache could not keep it: a 0 or small budget), so stops
    /// with other rankings between them cannot starve a prompt either. Reset, with
    /// `forcedEnd` (where the last forced piece ended), when an interruptible ranking completes.
    private var mustFinishSize = interruptibleChunk, forcedEnd = 0
    /// The prompt whose forced piece ended at `forcedEnd` (doubling applies to it only).
    private var forcedPrompt: [Int32] = []
    /// The cache key of a stopped prompt whose first `residentPrompt.count` tokens fill the
    /// session's cache: snapshotted when the next prompt would overwrite them (not at the
    /// stop: a request that does no model work, `recent` or `record`, waits for no copy).
    private var partialKey: String?
    /// The label logits of letters windows scored by interruptible rankings, by prompt
    /// tokens (at most `windowMemoLimit`, oldest out): a resumed multi-window ranking skips
    /// the windows it already has, whose prompts would otherwise overwrite a later window's
    /// kept pieces.
    private var windowMemo: [(tokens: [Int32], raw: [Float])] = []
    private static let windowMemoLimit = 8

    /// When set, called at the same points as `interruption` (before each layer of model
    /// work and each generated token), in every ranking and whatever the progress guarantee:
    /// work that needs no model runs there (`palr serve` answers requests that only read or
    /// write the store while a ranking runs), and the ranking goes on where it was: nothing
    /// is stopped, kept or recomputed, and the prompt is not cut into pieces for it. It must
    /// not use this ranker (a ranking started from it traps).
    public var pausePoint: (() -> Void)?
    /// Set while `rank` runs: a ranking started from `pausePoint` would overwrite the
    /// session's cache under the one in progress.
    private var ranking = false

    /// What the prompt stage and the scoring stage ask: the pause point, then the
    /// interruption unless the stage must finish.
    private var promptStop: (() -> Bool)? { pausing(mustFinishPiece ? nil : interruption) }
    private var scoringStop: (() -> Bool)? { pausing(mustFinishScoring ? nil : interruption) }
    private func pausing(_ stop: (() -> Bool)?) -> (() -> Bool)? {
        guard let pause = pausePoint else { return stop }
        return { pause(); return stop?() ?? false }
    }

    /// The scoring stage's stop (its work is lost; the prompt stays resident).
    private func stoppedScoring() -> RankerError {
        mustFinishScoring = true
        return .interrupted(computedPromptTokens: residentPrompt.count, promptTokens: residentPrompt.count)
    }

    /// `kvCache`: how the session's KV cache stores keys and values (default fp16, as
    /// llama.cpp: half the memory; `.f32` for bit-faithful scores).
    public init(model: LlamaModel, tokenizer: SentencePieceTokenizer, settings: PALRSettings,
                contextLength: Int? = nil, threads: Int? = nil, prefixCacheBytes: Int = 256 << 20,
                kvCache: KVCacheType = .f16) throws {
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        // Every id the tokenizer gives must index the model's logits (a tokenizer with more
        // pieces than token rows put label 'A' past the logits: an out-of-range trap).
        guard tokenizer.vocabSize == model.config.vocabSize else {
            throw RankerError.vocabularyMismatch(tokenizerPieces: tokenizer.vocabSize, modelVocabulary: model.config.vocabSize)
        }
        let ctx = min(model.config.contextLength, contextLength ?? 2048)
        // Decode (generate mode, profile keywords) uses int8 activations, and the KV cache
        // holds fp16, as llama.cpp does: half the memory (a 7B's 641-token prompt: 321 MiB
        // instead of 641) and half the attention's reads.
        session = try LlamaSession(model: model, contextLength: ctx, maxBatch: 256, threads: threads, activations: .int8,
                                   kvCache: kvCache)
        prefixCache = PrefixCache(byteBudget: prefixCacheBytes)
        let labels = PALRSettings.letters.map { tokenizer.id(ofPiece: $0) }
        labelTokens = labels.allSatisfy { $0 != nil } ? labels.map { $0! } : nil
        missingLabel = zip(PALRSettings.letters, labels).first { $0.1 == nil }?.0
        newline = Array(tokenizer.encode("\n", addBOS: false).drop { tokenizer.piece($0) == "▁" })
    }

    /// A title cut to `palr.title_token_limit` tokens.
    public func cutTitle(_ title: String) -> String {
        let ids = tokenizer.encode(title, addBOS: false)
        guard ids.count > settings.titleTokenLimit else { return title }
        return tokenizer.decode(Array(ids.prefix(settings.titleTokenLimit))).trimmingCharacters(in: .whitespaces)
    }

    /// The prompt text for a mode. History is oldest first, the whole of it: the prompt
    /// shows the latest items (`PALRSettings.shownHistory`).
    public func prompt(mode: ScoringMode, history: [String], profile: String?, candidates: [Candidate]) -> String {
        let hist = history[settings.shownHistory(count: history.count)].map { fill(settings.historyItem, ["title": cutTitle($0)]) }.joined()
        let prof = profile.map { fill(settings.profileLine, ["summary": $0]) } ?? ""
        var cands = ""
        switch mode {
        case .letters:
            cands = candidates.enumerated().map { i, c in
                fill(settings.candidateItem, ["label": PALRSettings.letters[i], "title": cutTitle(c.title)])
            }.joined()
        case .generate:
            cands = candidates.map { fill(settings.generateCandidateItem, ["title": cutTitle($0.title)]) }.joined()
        case .likelihood:
            break
        }
        return fill(settings.template(for: mode), ["history": hist, "profile": prof, "candidates": cands])
    }

    /// Ranks `candidates` (in retrieval order) and returns the best `k`.
    /// `cacheKey` names whose prompt prefix may be kept for reuse (e.g. the profile).
    public func rank(history: [String], profile: String? = nil, candidates: [Candidate], k: Int,
                     mode: ScoringMode? = nil, lengthNormalized: Bool = false, cacheKey: String? = nil) throws -> RankResult {
        guard !candidates.isEmpty else { throw RankerError.noCandidates }
        precondition(!ranking, "Ranker.rank called while a ranking runs (from its pausePoint or interruption)")
        ranking = true
        defer { ranking = false }
        let mode = mode ?? settings.mode
        let k = max(1, min(k, candidates.count))
        let result: RankResult
        switch mode {
        case .letters: result = try rankLetters(history: history, profile: profile, candidates: candidates, k: k, cacheKey: cacheKey)
        case .likelihood:
            // The candidates' continuations follow the prompt in the context, so a long
            // candidate list can fill it: said in the ranker's terms, not the session's.
            do {
                result = try rankLikelihood(history: history, profile: profile, candidates: candidates, k: k,
                                            normalized: lengthNormalized, cacheKey: cacheKey)
            } catch LlamaError.contextFull(let position, let tokens, _) {
                throw RankerError.promptTooLong(tokens: position + tokens, context: session.contextLength)
            }
        case .generate: result = try rankGenerate(history: history, profile: profile, candidates: candidates, k: k, cacheKey: cacheKey)
        }
        if interruption != nil { resetProgressGuarantee() }
        // Its later letters windows' stopped states serve nothing more.
        if let cacheKey { prefixCache.removeAll { $0.hasPrefix(cacheKey + "#window") } }
        return result
    }

    // MARK: prompt prefill with prefix reuse

    /// Before a new prompt (`tokens`; empty: another use of the cache) overwrites the
    /// session's cache: a stopped prompt's kept pieces are copied to the prefix cache under
    /// its key, unless the new prompt extends them or the cache already holds them.
    func keepPartialPrompt(before tokens: [Int32]) {
        guard let key = partialKey else { return }
        partialKey = nil
        // Already held, under any key (a later window's stop may have kept only the history
        // prefix the first window's entry holds).
        let fit = fittingPrefix(residentPrompt.count)
        let covered = (prefixCache.longestPrefix(of: residentPrompt)?.length ?? 0) >= fit
        if commonPrefixLength(residentPrompt, tokens) < residentPrompt.count, !covered, session.position == residentPrompt.count {
            keep(key, Array(residentPrompt[..<fit]), resumable: true)
        }
    }

    /// How many of the session's first `count` positions a snapshot can hold within the
    /// prefix cache's budget.
    private func fittingPrefix(_ count: Int) -> Int {
        let perToken = session.snapshotByteCount(positions: 1)
        return perToken > 0 ? min(count, prefixCache.byteBudget / perToken) : count
    }

    /// Copies the session's keys and values of `tokens` (its first positions, within the
    /// budget) to the prefix cache under `key`, unless that entry holds them already.
    /// A prompt over the budget keeps its longest prefix that fits (a 7B's 640-token prompt
    /// is 320 MiB in fp16: 512 tokens fit the default 256 MiB), rather than nothing.
    /// `resumable`: a stopped ranking's state (`PrefixCache.put`).
    private func keep(_ key: String, _ tokens: [Int32], resumable: Bool = false) {
        guard !tokens.isEmpty, prefixCache.entry(key)?.tokens != tokens else { return }
        prefixCache.put(key, tokens: tokens, bytes: session.snapshotByteCount(positions: tokens.count), resumable: resumable) {
            session.snapshot(positions: tokens.count)
        }
    }

    /// Brings the session to exactly `tokens`, reusing the longest cached prefix,
    /// and returns the logits of the last prompt position.
    /// `cacheKey`: where the whole prompt is kept; `keepKey`: where a stop's kept pieces go
    /// (a later letters window keeps its pieces apart, but not its whole prompt).
    private func prefillPrompt(_ tokens: [Int32], cacheKey: String?, keepKey: String?,
                               timings: inout RankTimings) throws -> [Float] {
        guard tokens.count < session.contextLength else {
            throw RankerError.promptTooLong(tokens: tokens.count, context: session.contextLength)
        }
        let start = Date()
        keepPartialPrompt(before: tokens)
        // At least the last token is recomputed: its logits are needed. The session's own
        // cache first (the last prompt is still there: nothing to copy, whatever the
        // model's size), then a snapshot that shares more.
        let resident = min(commonPrefixLength(residentPrompt, tokens), tokens.count - 1)
        residentPrompt = []   // positions from `reuse` on are about to change
        var reuse = resident
        if let hit = prefixCache.longestPrefix(of: tokens), min(hit.length, tokens.count - 1) > resident {
            reuse = min(hit.length, tokens.count - 1)
            prefixCache.markUsed(hit.key)
            try session.restore(hit.snapshot, tokens: reuse)
        } else {
            try session.rewind(to: reuse)
        }
        var last: [Float] = []
        // One call (the session splits it into its batches and asks before each layer),
        // but a piece of `mustFinishSize` tokens first, without asking, when the last
        // interruptible attempt stopped keeping nothing.
        var done = reuse
        // The last forced piece's work on this prompt is gone: force more this time.
        if interruption != nil, mustFinishPiece, reuse < forcedEnd, tokens.starts(with: forcedPrompt.prefix(forcedEnd)) {
            mustFinishSize = min(2 * mustFinishSize, tokens.count)
        }
        do {
            while done < tokens.count {
                let forced = interruption != nil && mustFinishPiece
                let end = forced ? min(tokens.count, done + mustFinishSize) : tokens.count
                try session.prefill(Array(tokens[done..<end]), logits: end == tokens.count ? .last : .none,
                                    stopIf: promptStop) { _, l in last = Array(l) }
                done = end
                if forced { (forcedEnd, forcedPrompt) = (end, tokens) }
                if interruption != nil { mustFinishPiece = false }
            }
        } catch LlamaError.stopped(let position) {
            // Positions 0..<position hold these tokens' keys and values: kept for reuse.
            residentPrompt = Array(tokens[..<position])
            if position == reuse { mustFinishPiece = true }
            if position > 0 { partialKey = keepKey }
            throw RankerError.interrupted(computedPromptTokens: position, promptTokens: tokens.count)
        }
        residentPrompt = tokens
        timings.promptTokens = tokens.count
        timings.computedPromptTokens = tokens.count - reuse
        if let cacheKey {
            // Sized before it is taken (a snapshot over the budget was once copied and then
            // dropped, doubling the KV cache's memory): the longest prefix that fits.
            keep(cacheKey, Array(tokens[..<fittingPrefix(tokens.count)]))
        }
        timings.prefillSeconds = Date().timeIntervalSince(start)
        return last
    }

    private func encodePrompt(_ text: String) -> [Int32] { tokenizer.encode(text, addBOS: true) }

    // MARK: letters

    private func rankLetters(history: [String], profile: String?, candidates: [Candidate], k: Int,
                             cacheKey: String?) throws -> RankResult {
        guard let labels = labelTokens else { throw RankerError.labelNotInVocabulary(missingLabel ?? "A") }
        var timings = RankTimings()
        // Windows of up to 20 candidates, in retrieval order, one prefill each. Within a
        // window the score is the label's log-softmax over that window's labels, and the
        // model orders the window; the windows themselves stay in retrieval order. (Scores
        // normalised over different windows are not comparable: merging by score ranked
        // a window of one item, always log 1 = 0, above every item of a full window.)
        var scored: [(index: Int, score: Double)] = []
        var lastPrompt = ""
        var window = 0
        // Only the windows that can reach the top k are run: the first ⌈k/20⌉.
        let reach = min(candidates.count, (k + labels.count - 1) / labels.count * labels.count)
        // Several windows, by a ranking that may stop: each window's scores are remembered.
        let memoize = interruption != nil && reach > labels.count
        while window * labels.count < reach {
            let lo = window * labels.count, hi = min(candidates.count, lo + labels.count)
            let slice = Array(candidates[lo..<hi])
            lastPrompt = prompt(mode: .letters, history: history, profile: profile, candidates: slice)
            let tokens = encodePrompt(lastPrompt)
            let raw: [Float]
            if memoize, let memo = windowMemo.first(where: { $0.tokens == tokens }) {
                raw = memo.raw
                timings.promptTokens += tokens.count
            } else {
                var t = RankTimings()
                // A later window's stopped pieces are kept under their own key; its whole
                // prompt is not (the memo holds its scores).
                let logits = try prefillPrompt(tokens, cacheKey: window == 0 ? cacheKey : nil,
                                               keepKey: window == 0 ? cacheKey : cacheKey.map { "\($0)#window\(window)" },
                                               timings: &t)
                timings.prefillSeconds += t.prefillSeconds
                timings.promptTokens += t.promptTokens
                timings.computedPromptTokens += t.computedPromptTokens
                raw = (0..<slice.count).map { logits[Int(labels[$0])] }
                if memoize {
                    windowMemo.append((tokens, raw))
                    if windowMemo.count > Self.windowMemoLimit { windowMemo.removeFirst() }
                }
            }
            let s0 = Date()
            let m = raw.max() ?? 0
            let lse = Double(m) + log(raw.reduce(0.0) { $0 + exp(Double($1 - m)) })
            for (i, r) in raw.enumerated() { scored.append((lo + i, Double(r) - lse)) }
            timings.scoringSeconds += Date().timeIntervalSince(s0)
            window += 1
        }
        return RankResult(items: try top(scored, candidates, k, window: labels.count), mode: .letters, timings: timings,
                          prompt: lastPrompt)
    }

    // MARK: likelihood

    private func rankLikelihood(history: [String], profile: String?, candidates: [Candidate], k: Int,
                                normalized: Bool, cacheKey: String?) throws -> RankResult {
        var timings = RankTimings()
        let text = prompt(mode: .likelihood, history: history, profile: profile, candidates: [])
        let last = try prefillPrompt(encodePrompt(text), cacheKey: cacheKey, keepKey: cacheKey, timings: &timings)
        let s0 = Date()
        let conts = candidates.map { continuation($0.title) }
        timings.scoringTokens = conts.reduce(0) { $0 + $1.count }
        let logprobs: [[Float]]
        do {
            logprobs = try session.scoreContinuations(conts, prefixLogits: last, stopIf: scoringStop)
        } catch LlamaError.stopped { throw stoppedScoring() }
        let scored = logprobs.enumerated().map { i, lp -> (index: Int, score: Double) in
            let sum = lp.reduce(0.0) { $0 + Double($1) }
            return (i, normalized ? sum / Double(lp.count) : sum)
        }
        timings.scoringSeconds = Date().timeIntervalSince(s0)
        return RankResult(items: try top(scored, candidates, k), mode: .likelihood, timings: timings, prompt: text)
    }

    /// The tokens of a title as the model writes it after the prompt: the cut title
    /// with SentencePiece's leading space, then the newline that ends a list line.
    func continuation(_ title: String) -> [Int32] {
        tokenizer.encode(cutTitle(title), addBOS: false) + newline
    }

    // MARK: generate

    private func rankGenerate(history: [String], profile: String?, candidates: [Candidate], k: Int,
                              cacheKey: String?) throws -> RankResult {
        var timings = RankTimings()
        let text = prompt(mode: .generate, history: history, profile: profile, candidates: candidates)
        var logits = try prefillPrompt(encodePrompt(text), cacheKey: cacheKey, keepKey: cacheKey, timings: &timings)
        let s0 = Date()
        let sequences = candidates.map { continuation($0.title) }
        var trie = TokenTrie(sequences)
        var scored: [(index: Int, score: Double)] = []
        var node = TokenTrie.root
        var path: [Int32] = []
        var pathScore = 0.0
        // Greedy decoding over the trie: at each step only tokens that continue a
        // remaining candidate are allowed; a completed title leaves the trie.
        while scored.count < k, trie.remaining > 0 {
            let allowed = trie.allowed(from: node)
            guard let best = Self.greedyChoice(allowed, logits) else { break }
            pathScore += Double(logSoftmax(logits, at: Int(best.token)))
            path.append(best.token)
            node = best.child
            if let done = trie.completed(at: node) {
                scored.append((done, pathScore))
                trie.remove(candidate: done, path: path)
                node = TokenTrie.root
                path = []
                pathScore = 0
            }
            guard session.position < session.contextLength else { break }
            if scored.count < k, trie.remaining > 0 {
                // The prompt stays resident (positions past it are the generated tokens').
                if let stop = scoringStop, stop() { throw stoppedScoring() }
                logits = try session.decode(best.token) { Array($0) }
                timings.scoringTokens += 1
            }
        }
        timings.scoringSeconds = Date().timeIntervalSince(s0)
        // The context can fill before k titles are written: fewer items are returned (the
        // recommender notes it), none is an error.
        if scored.isEmpty { throw RankerError.contextFilledBeforeAnyTitle(context: session.contextLength) }
        // Generated order is the ranking; the score reported is the title's log-probability.
        try checkFinite(scored)
        let items = scored.prefix(k).enumerated().map { r, s in
            RankedItem(id: candidates[s.index].id, title: candidates[s.index].title, score: s.score, rank: r + 1)
        }
        return RankResult(items: items, mode: .generate, timings: timings, prompt: text)
    }

    /// The allowed token with the highest logit; equal logits go to the lower token id,
    /// so the choice never depends on the trie's (hash) order, which differs from
    /// process to process.
    static func greedyChoice(_ allowed: [(token: Int32, child: Int)], _ logits: [Float]) -> (token: Int32, child: Int)? {
        allowed.max { a, b in
            logits[Int(a.token)] != logits[Int(b.token)] ? logits[Int(a.token)] < logits[Int(b.token)] : a.token > b.token
        }
    }

    /// Scores that are not finite come from NaN or infinite logits: a damaged model, never
    /// a ranking. That includes −∞: a log-probability of finite Float32 logits is finite,
    /// so −∞ means a logit overflowed to −∞ (such a ranking printed no JSON at all, and the
    /// history store refused to cache it, so `refresh` failed on it every run).
    private func checkFinite(_ scored: [(index: Int, score: Double)]) throws(RankerError) {
        if let bad = scored.first(where: { !$0.score.isFinite }) {
            throw .model("the model's score for candidate \(bad.index + 1) is \(bad.score): its logits are not finite "
                         + "(damaged or overflowing weights)")
        }
    }

    /// The best `k` by score, with the retrieval prior (`palr.retrieval_prior`) added:
    /// `index` is the candidate's retrieval position. Letters and likelihood modes.
    /// Candidates are compared by score only within a window of `window` retrieval
    /// positions (letters mode's prefills); earlier windows rank first.
    private func top(_ scored: [(index: Int, score: Double)], _ candidates: [Candidate], _ k: Int,
                     window: Int = .max) throws(RankerError) -> [RankedItem] {
        try checkFinite(scored)
        let w = settings.retrievalPrior
        let scored = w == 0 ? scored : scored.map { ($0.index, $0.score - w * log1p(Double($0.index))) }
        let order = scored.sorted { a, b in
            let wa = a.index / window, wb = b.index / window
            if wa != wb { return wa < wb }
            return a.score != b.score ? a.score > b.score : a.index < b.index
        }
        return order.prefix(k).enumerated().map { r, s in
            RankedItem(id: candidates[s.index].id, title: candidates[s.index].title, score: s.score, rank: r + 1)
        }
    }
}

/// KV snapshots of recent prompt prefixes, least recently used first out, within a byte budget.
public final class PrefixCache {
    public struct Entry {
        public let tokens: [Int32]
        public let snapshot: KVSnapshot
        /// A stopped ranking's state, kept for its resumption (`put`).
        public var resumable = false
    }

    public let byteBudget: Int
    private var entries: [(key: String, entry: Entry)] = []   // most recent last

    public init(byteBudget: Int) { self.byteBudget = byteBudget }

    public var byteCount: Int { entries.reduce(0) { $0 + $1.entry.snapshot.byteCount } }
    public var count: Int { entries.count }

    public func entry(_ key: String) -> Entry? { entries.first { $0.key == key }?.entry }

    /// The entry sharing the longest token prefix with `tokens` (not marked as used: the
    /// session's own cache may serve instead; `markUsed` when it is restored).
    func longestPrefix(of tokens: [Int32]) -> (key: String, length: Int, snapshot: KVSnapshot)? {
        var best: (i: Int, len: Int)?
        for (i, e) in entries.enumerated() {
            let len = min(commonPrefixLength(e.entry.tokens, tokens), e.entry.snapshot.tokenCount)
            if len > 0, len > (best?.len ?? 0) { best = (i, len) }
        }
        guard let best else { return nil }
        let e = entries[best.i]
        return (e.key, best.len, e.entry.snapshot)
    }

    /// Moves `key`'s entry to the most recently used end.
    func markUsed(_ key: String) {
        guard let i = entries.firstIndex(where: { $0.key == key }) else { return }
        entries.append(entries.remove(at: i))
    }

    /// Replaces `key`'s entry with the snapshot `make` takes, when a snapshot of `bytes`
    /// fits the budget; otherwise takes none (a copy over the budget was once made and
    /// then thrown away: a 7B prompt's 641 MiB).
    /// `resumable`: the state of a stopped ranking that will resume (a preparation that
    /// yielded): evicted only for another such state, never for an ordinary entry (the
    /// request that stopped it would otherwise evict it with its own prompt's state, and the
    /// preparation start over).
    func put(_ key: String, tokens: [Int32], bytes: Int, resumable: Bool = false, _ make: () -> KVSnapshot) {
        // A snapshot over the budget leaves the key's entry as it was (it may be a shorter
        // prefix of the same prompt that still serves).
        guard bytes <= byteBudget else { return }
        entries.removeAll { $0.key == key }
        // Room first, so the copy never pushes the cache over its budget: least recently
        // used first, resumable states last.
        while byteCount + bytes > byteBudget {
            if let i = entries.firstIndex(where: { !$0.entry.resumable }) {
                entries.remove(at: i)
            } else if resumable, !entries.isEmpty {
                entries.removeFirst()
            } else {
                return   // only resumable states left: this ordinary one is not kept
            }
        }
        entries.append((key, Entry(tokens: tokens, snapshot: make(), resumable: resumable)))
    }

    public func removeAll() { entries.removeAll() }
    /// Removes the entries whose key `matches`.
    func removeAll(_ matches: (String) -> Bool) { entries.removeAll { matches($0.key) } }
}

/// How many leading tokens `a` and `b` share.
func commonPrefixLength(_ a: [Int32], _ b: [Int32]) -> Int {
    var n = 0
    while n < a.count, n < b.count, a[n] == b[n] { n += 1 }
    return n
}
