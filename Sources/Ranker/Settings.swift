import GGUF

/// How the model scores candidates (the model's `palr.scoring_mode` names its default).
public enum ScoringMode: String, Sendable, CaseIterable, Codable {
    /// LlamaRec's verbalizer: candidates labelled (A)…(T); one prefill; the label
    /// tokens' logits at the last position rank them.
    case letters
    /// Every candidate title is a continuation of the prompt; all go through the
    /// model as one batch sharing the prompt's KV cache; score = log-probability.
    case likelihood
    /// PALR's own: the model writes the list, constrained by a trie of the remaining
    /// candidate titles so that it can only name real candidates.
    case generate
}

/// PALR settings from the model's `palr.*` metadata, with documented defaults.
///
/// Templates use `{history}`, `{candidates}` and `{profile}`; items use `{title}`
/// and `{label}`; the profile line uses `{summary}`. README.md ("Ranking") lists them.
public struct PALRSettings: Sendable, Equatable {
    public var mode: ScoringMode = .letters                 // palr.scoring_mode
    public var maxHistory = 20                              // palr.max_history
    /// How the shown history's window moves: its first item advances in steps of this many
    /// items, so it shows between `maxHistory − historyStep + 1` and `maxHistory` of the
    /// latest items (`shownHistory`). 1: always exactly the latest `maxHistory`. A larger
    /// step keeps a grown history's prompt starting with the same lines, so the next prompt
    /// after an interaction reuses the history's keys and values (prefix reuse), for a model
    /// trained on such windows.
    public var historyStep = 1                              // palr.history_step
    public var maxCandidates = 20                           // palr.max_candidates
    public var titleTokenLimit = 32                         // palr.title_token_limit
    /// Weight w of the retrieval order in letters and likelihood modes: the candidate at
    /// retrieval position i (from 0) is ranked by `score − w·ln(1 + i)`. 0 = the model alone.
    public var retrievalPrior = 0.0                         // palr.retrieval_prior
    public var lettersTemplate = PALRSettings.defaultLettersTemplate        // palr.prompt_template (mode letters)
    public var likelihoodTemplate = PALRSettings.defaultLikelihoodTemplate  // palr.prompt_template (mode likelihood)
    public var generateTemplate = PALRSettings.defaultGenerateTemplate      // palr.prompt_template (mode generate)
    public var historyItem = "- {title}\n"                  // palr.history_item
    public var candidateItem = "({label}) {title}\n"        // palr.candidate_item (letters)
    public var generateCandidateItem = "- {title}\n"        // palr.generate_candidate_item
    public var profileLine = "Profile: {summary}\n"         // palr.profile_line
    // PALR stage 1 (profile keywords).
    public var profileTemplate = PALRSettings.defaultProfileTemplate        // palr.profile_template
    public var profileHistory = 50                          // palr.profile_history
    public var profileTokenBudget = 48                      // palr.profile_token_budget
    public var profileRefreshAfter = 10                     // palr.profile_refresh_after
    /// Whether the model writes profile summaries: only a model whose GGUF sets
    /// palr.profile_template was trained for it (the bundled letters model was not, and
    /// writes nonsense that would then sit in every ranking prompt).
    public var writesProfiles = false

    public static let defaultLettersTemplate =
        "Watched, most recent last:\n{history}{profile}Candidates:\n{candidates}Next: ("
    public static let defaultLikelihoodTemplate =
        "Watched, most recent last:\n{history}{profile}Next:"
    public static let defaultGenerateTemplate =
        "Watched, most recent last:\n{history}{profile}Candidates:\n{candidates}Recommend from the candidate list:\n"
    public static let defaultProfileTemplate =
        "Watched:\n{history}Describe this viewer's tastes in a few keywords:\n"

    /// The labels of letters mode, in order: (A)…(T).
    public static let letters: [String] = (0..<20).map { String(UnicodeScalar(UInt8(65 + $0))) }

    public init() {}

    /// Reads `palr.*` keys; `defaulted` lists the absent keys that `palr-convert` always
    /// writes (scoring mode, max history, max candidates, title token limit, retrieval
    /// prior): their absence means a file from elsewhere or an older converter, worth a
    /// note. The templates and profile settings are written only when they differ from
    /// the built-in ones, so their absence is the normal case and is not listed.
    public init(gguf: GGUFFile, defaulted: inout [String]) throws(GGUFError) {
        self.init()
        func int(_ key: String, _ value: inout Int, min: Int = 1, noted: Bool = false) throws(GGUFError) {
            if let v = try gguf.optionalInt(key) {
                guard v >= min else { throw .wrongValueType(key: key, expected: "integer ≥ \(min)", found: String(v)) }
                value = v
            } else if noted { defaulted.append(key) }
        }
        func string(_ key: String, _ value: inout String) throws(GGUFError) {
            if let v = try gguf.optionalString(key) { value = v }
        }
        if let m = try gguf.optionalString("palr.scoring_mode") {
            guard let mode = ScoringMode(rawValue: m) else {
                throw .wrongValueType(key: "palr.scoring_mode", expected: "letters, likelihood or generate", found: m)
            }
            self.mode = mode
        } else { defaulted.append("palr.scoring_mode") }
        try int("palr.max_history", &maxHistory, noted: true)
        try int("palr.history_step", &historyStep)
        guard historyStep <= maxHistory else {
            throw .wrongValueType(key: "palr.history_step", expected: "an integer in 1…\(maxHistory) (palr.max_history)",
                                  found: String(historyStep))
        }
        try int("palr.max_candidates", &maxCandidates, noted: true)
        try int("palr.title_token_limit", &titleTokenLimit, noted: true)
        if let w = try gguf.optionalDouble("palr.retrieval_prior") {
            guard w.isFinite, w >= 0 else { throw .wrongValueType(key: "palr.retrieval_prior", expected: "a number ≥ 0", found: String(w)) }
            retrievalPrior = w
        } else { defaulted.append("palr.retrieval_prior") }
        if let t = try gguf.optionalString("palr.prompt_template") {
            switch mode {
            case .letters: lettersTemplate = t
            case .likelihood: likelihoodTemplate = t
            case .generate: generateTemplate = t
            }
        }
        try string("palr.history_item", &historyItem)
        try string("palr.candidate_item", &candidateItem)
        try string("palr.generate_candidate_item", &generateCandidateItem)
        try string("palr.profile_line", &profileLine)
        try string("palr.profile_template", &profileTemplate)
        writesProfiles = try gguf.optionalString("palr.profile_template") != nil
        try int("palr.profile_history", &profileHistory)
        try int("palr.profile_token_budget", &profileTokenBudget)
        try int("palr.profile_refresh_after", &profileRefreshAfter, min: 0)
        try checkTemplates()
        guard retrievalPrior <= Self.maxRetrievalPrior else {
            throw .wrongValueType(key: "palr.retrieval_prior", expected: "a number in 0…\(Int(Self.maxRetrievalPrior))",
                                  found: String(retrievalPrior))
        }
    }

    /// The converter's bound too: beyond it the prior alone decides every ranking.
    public static let maxRetrievalPrior = 1000.0

    /// Every template must hold the placeholders its mode fills: a letters prompt without
    /// `{candidates}`, or a candidate line without `{label}`, would "rank" candidates the
    /// model never saw. (Templates of the other modes are checked too: `--mode` picks any.)
    func checkTemplates() throws(GGUFError) {
        let rules: [(key: String, text: String, needs: [String])] = [
            ("palr.prompt_template (letters)", lettersTemplate, ["history", "candidates"]),
            ("palr.prompt_template (likelihood)", likelihoodTemplate, ["history"]),
            ("palr.prompt_template (generate)", generateTemplate, ["history", "candidates"]),
            ("palr.history_item", historyItem, ["title"]),
            ("palr.candidate_item", candidateItem, ["label", "title"]),
            ("palr.generate_candidate_item", generateCandidateItem, ["title"]),
            ("palr.profile_line", profileLine, ["summary"]),
            ("palr.profile_template", profileTemplate, ["history"]),
        ]
        for rule in rules {
            for name in rule.needs where !rule.text.contains("{\(name)}") {
                let shown = rule.text.count <= 80 ? rule.text : String(rule.text.prefix(80)) + "…"
                throw .wrongValueType(key: rule.key, expected: "a template with the placeholder {\(name)}",
                                      found: "\"\(shown.debugDescription.dropFirst().dropLast())\"")
            }
        }
    }

    /// The positions, in a history of `count` items (oldest first), of the items a prompt
    /// shows: all when there are at most `maxHistory`; otherwise the latest, from the first
    /// multiple of `historyStep` that leaves at most `maxHistory` (with step 1, exactly the
    /// latest `maxHistory`).
    public func shownHistory(count: Int) -> Range<Int> {
        guard count > maxHistory else { return 0..<count }
        let over = count - maxHistory
        let step = min(max(1, historyStep), max(1, maxHistory))   // never past `count` (a step over maxHistory was a trap)
        return (over + step - 1) / step * step ..< count
    }

    public func template(for mode: ScoringMode) -> String {
        switch mode {
        case .letters: return lettersTemplate
        case .likelihood: return likelihoodTemplate
        case .generate: return generateTemplate
        }
    }
}

/// Fills `{name}` placeholders; unknown placeholders are left as they are.
func fill(_ template: String, _ values: [String: String]) -> String {
    var out = ""
    var rest = Substring(template)
    while let open = rest.firstIndex(of: "{") {
        out += rest[..<open]
        let after = rest[rest.index(after: open)...]
        if let close = after.firstIndex(of: "}"), let v = values[String(after[..<close])] {
            out += v
            rest = after[after.index(after: close)...]
        } else {
            out += "{"
            rest = after
        }
    }
    return out + rest
}
