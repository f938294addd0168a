import FileSafety
import Foundation
import History
import Llama
import Tokenizer

/// PALR stage 1: the model reads a longer slice of the history and writes a short
/// keyword profile, which later ranking prompts include (template `{profile}`).
public struct GeneratedProfile: Sendable, Codable {
    public var text: String
    /// The history titles the prompt showed, oldest first.
    public var historyUsed: Int
    public var promptTokens: Int
    public var generatedTokens: Int
    public var promptSeconds: Double
    public var decodeSeconds: Double
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(generatedTokens) / decodeSeconds : 0 }
    /// Why generation stopped: "eos", "blank line" or "budget".
    public var stop: String
}

extension Ranker {
    /// The profile prompt for the last `palr.profile_history` titles.
    public func profilePrompt(history: [String]) -> String {
        let lines = history.suffix(settings.profileHistory).map { fill(settings.historyItem, ["title": cutTitle($0)]) }.joined()
        return fill(settings.profileTemplate, ["history": lines])
    }

    /// Greedy decoding under `palr.profile_token_budget` tokens; stops at the end-of-text
    /// token or a blank line. The result is sanitized (see `sanitizeProfile`).
    public func generateProfile(history: [String]) throws -> GeneratedProfile {
        let text = profilePrompt(history: history)
        let tokens = tokenizer.encode(text, addBOS: true)
        // Compared without adding: the budget is any integer ≥ 1 the file holds.
        guard settings.profileTokenBudget < session.contextLength - tokens.count else {
            throw RankerError.model("the profile prompt (\(tokens.count) tokens) and palr.profile_token_budget "
                                    + "(\(settings.profileTokenBudget)) exceed the \(session.contextLength)-token context; "
                                    + "lower palr.profile_history or palr.profile_token_budget")
        }
        let t0 = Date()
        keepPartialPrompt(before: [])
        residentPrompt = []   // the summary's prompt takes the cache's positions
        try session.rewind(to: 0)
        var logits: [Float] = []
        try session.prefill(tokens, logits: .last) { _, l in logits = Array(l) }
        let t1 = Date()
        var out = ""
        var decoder = tokenizer.makeStreamingDecoder()
        var generated = 0
        var stop = "budget"
        while generated < settings.profileTokenBudget {
            // Damaged weights give NaN or infinite logits: an error, never a summary that
            // would then sit in every ranking prompt (as in every ranking mode).
            guard logits.allSatisfy({ $0.isFinite }) else {
                throw RankerError.model("the model's logits are not finite at step \(generated + 1) of the profile "
                                        + "summary (damaged or overflowing weights); nothing was stored")
            }
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            let token = Int32(best)
            if token == tokenizer.eos { stop = "eos"; break }
            generated += 1
            out += decoder.append(token)
            if out.contains("\n\n") { stop = "blank line"; break }
            if generated == settings.profileTokenBudget { break }
            logits = try session.decode(token) { Array($0) }
        }
        out += decoder.finish()
        let t2 = Date()
        // The prompt is not kept for reuse: it is not a ranking prefix.
        try session.rewind(to: 0)
        return GeneratedProfile(text: sanitizeProfile(out, maxCharacters: settings.profileTokenBudget * 8),
                                historyUsed: min(history.count, settings.profileHistory), promptTokens: tokens.count,
                                generatedTokens: generated, promptSeconds: t1.timeIntervalSince(t0),
                                decodeSeconds: t2.timeIntervalSince(t1), stop: stop)
    }
}

/// Plain text only: everything up to the first blank line, control characters
/// (including newlines and tabs) turned into spaces, runs of spaces collapsed, and
/// cut at `maxCharacters` on a word boundary, so a rambling model cannot break the
/// ranking prompt's structure.
public func sanitizeProfile(_ raw: String, maxCharacters: Int) -> String {
    let firstParagraph = raw.components(separatedBy: "\n\n").first ?? raw
    var s = ""
    var lastWasSpace = true
    for u in firstParagraph.unicodeScalars {
        if actsOnTerminal(u) || u.properties.isWhitespace {
            if !lastWasSpace { s.append(" ") }
            lastWasSpace = true
        } else {
            s.unicodeScalars.append(u)
            lastWasSpace = false
        }
    }
    s = s.trimmingCharacters(in: .whitespaces)
    if s.count > maxCharacters {
        let cut = s.prefix(maxCharacters)
        if let space = cut.lastIndex(of: " ") { s = String(cut[..<space]) } else { s = String(cut) }
    }
    return s
}

extension Recommender {
    /// The stored summary, regenerated when missing, when forced, or when at least
    /// `palr.profile_refresh_after` interactions came in or went out since it was made
    /// (whichever is more). Never called by `recommend`: summaries are built in the background
    /// (`palr refresh`).
    public func refreshProfile(_ profile: String, force: Bool = false) throws -> (summary: ProfileSummary, generated: GeneratedProfile?) {
        guard ranker.settings.writesProfiles else { throw RecommenderError.profilesUnsupported(model: modelID) }
        // Read before the history: a forget after this point refuses the store below.
        let forgets = try store.forgetCount()
        let history = try store.recent(profile: profile, limit: historyWindow)
        let digest = HistoryDigest(of: history)
        if !force, let existing = try store.profileSummary(profile: profile), !summaryDue(existing, history: history, digest: digest) {
            return (existing, nil)
        }
        let titles = history.compactMap { catalog.index(of: $0.item).map { catalog.titles[Int($0)] } }
        let gen = try ranker.generateProfile(history: titles)
        // The marker comes from the snapshot the summary was made from: rows recorded while
        // it was being generated have larger ids and count as changes next time.
        let summary = ProfileSummary(profile: profile, text: gen.text, historyDigest: digest,
                                     interactionCount: history.count, createdAt: Int64(Date().timeIntervalSince1970),
                                     lastInteractionID: history.map(\.id).max())
        // Not stored when a forget ran meanwhile (it may have removed what it was made from).
        guard try store.putProfileSummary(summary, ifNoForgetSince: forgets) else {
            throw RecommenderError.historyChangedDuringGeneration(profile: profile)
        }
        return (summary, gen)
    }

    /// Whether `refreshProfile` would write a new summary now (none stored, or stored and due).
    public func isSummaryDue(profile: String) throws -> Bool {
        guard ranker.settings.writesProfiles else { return false }
        guard let existing = try store.profileSummary(profile: profile) else { return true }
        let history = try store.recent(profile: profile, limit: historyWindow)
        return summaryDue(existing, history: history, digest: HistoryDigest(of: history))
    }

    /// Whether `existing` is due for regeneration given the current history: it changed by
    /// ≥ `palr.profile_refresh_after` interactions, counted by interaction id (the larger
    /// of added and removed, not the difference of the counts: at the retention cap, or
    /// after a forget and as many adds, the count stays while the history turns over), or
    /// it was replaced whole (a retention cap below `profile_refresh_after` could never
    /// reach the threshold otherwise). A summary without its marker (stored before schema
    /// version 2) whose history has changed cannot say by how much, so it is regenerated
    /// rather than kept on a guess: at most once per profile, since the new one has a marker.
    func summaryDue(_ existing: ProfileSummary, history: [Interaction], digest: HistoryDigest) -> Bool {
        guard existing.historyDigest != digest else { return false }
        guard let changed = existing.changedInteractions(in: history) else { return true }
        let replacedWhole = !history.isEmpty && changed >= history.count
        return max(1, changed) >= ranker.settings.profileRefreshAfter || replacedWhole
    }
}
