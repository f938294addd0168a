// PALR ranking settings stored in the model file under `palr.*`.

import GGUF

/// How the ranker scores candidates (ARCHITECTURE.md, "Three ranking modes").
public enum ScoringMode: String, Sendable, CaseIterable {
    /// Candidates labelled (A)…(T) in the prompt; one forward pass reads the label logits.
    case letters
    /// Every candidate title is a continuation scored by its log-probability.
    case likelihood
    /// The model writes the list, constrained to real candidate titles.
    case generate
}

/// The `palr.*` keys. Defaults are written explicitly, so a file says what it was tuned for.
public struct PalrSettings: Sendable, Equatable {
    /// `palr.prompt_template`; nil: not written, the ranker uses its built-in template.
    public var promptTemplate: String?
    public var scoringMode: ScoringMode = .letters      // palr.scoring_mode
    public var maxHistory = 20                         // palr.max_history: history items in the prompt
    /// palr.history_step: the shown history's window starts at multiples of this (written
    /// only when it is not 1; the runtime's `PALRSettings.shownHistory`).
    public var historyStep = 1
    public var maxCandidates = 20                      // palr.max_candidates: candidates ranked at once
    public var titleTokenLimit = 32                    // palr.title_token_limit: tokens per title
    /// palr.retrieval_prior: weight w of the retrieval order in the final score (the
    /// candidate at retrieval position i, from 0, gets `score − w·ln(1 + i)`); 0 = off.
    public var retrievalPrior = 0.0
    /// `palr.profile_template`: the prompt the model was trained to answer with a profile
    /// summary (PALR stage 1). nil: not written, and the ranker never asks this model for
    /// summaries nor shows it one.
    public var profileTemplate: String?

    public init() {}

    /// The allowed range of max_history, max_candidates and title_token_limit.
    public static let countRange = 1...(1 << 16)
    /// The allowed range of retrieval_prior.
    public static let retrievalPriorRange = 0.0...1000.0

    /// The keys a `--palr-config` JSON file may hold.
    public static let jsonKeys = ["prompt_template", "scoring_mode", "max_history", "history_step", "max_candidates",
                                  "title_token_limit", "retrieval_prior", "profile_template"]

    /// Reads a `--palr-config` file over the defaults. Unknown keys are errors (a typo
    /// would otherwise silently keep a default).
    public init(jsonFile path: String) throws(ConvertError) {
        let j = try Files.readJSON(path, what: "the PALR settings given by --palr-config")
        guard let members = j.object else { throw .badConfig(path: path, key: "(top level)", reason: "is not a JSON object") }
        for (k, v) in members {
            func int() throws(ConvertError) -> Int {
                guard let i = v.int else { throw .badConfig(path: path, key: k, reason: "is \(v.brief), not an integer") }
                return i
            }
            switch k {
            case "prompt_template":
                guard let s = v.string else { throw .badConfig(path: path, key: k, reason: "is \(v.brief), not a string") }
                promptTemplate = s
            case "scoring_mode":
                guard let s = v.string else { throw .badConfig(path: path, key: k, reason: "is \(v.brief), not a string") }
                scoringMode = try Self.mode(s)
            case "max_history": maxHistory = try int()
            case "history_step": historyStep = try int()
            case "max_candidates": maxCandidates = try int()
            case "title_token_limit": titleTokenLimit = try int()
            case "retrieval_prior":
                guard let d = v.double else { throw .badConfig(path: path, key: k, reason: "is \(v.brief), not a number") }
                retrievalPrior = d
            case "profile_template":
                guard let s = v.string else { throw .badConfig(path: path, key: k, reason: "is \(v.brief), not a string") }
                profileTemplate = s
            default:
                throw .badConfig(path: path, key: k, reason: "is not a PALR setting (known: \(Self.jsonKeys.joined(separator: ", ")))")
            }
        }
    }

    public static func mode(_ s: String) throws(ConvertError) -> ScoringMode {
        guard let m = ScoringMode(rawValue: s) else {
            throw .badSettings(key: "palr.scoring_mode", reason: "'\(s)' is not one of \(ScoringMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return m
    }

    /// Letters mode labels candidates (A)…(T), as the runtime's `PALRSettings.letters` does.
    public static let letterLabels = 20

    /// Checks every setting a model file would carry. Letters mode ranks at most
    /// `letterLabels` candidates in one prompt.
    public func validate() throws(ConvertError) {
        for (k, v) in [("palr.max_history", maxHistory), ("palr.max_candidates", maxCandidates), ("palr.title_token_limit", titleTokenLimit)] {
            guard Self.countRange.contains(v) else {
                throw .badSettings(key: k, reason: "\(v) is outside \(Self.countRange.lowerBound)…\(Self.countRange.upperBound)")
            }
        }
        guard (1...maxHistory).contains(historyStep) else {
            throw .badSettings(key: "palr.history_step", reason: "\(historyStep) is outside 1…\(maxHistory) (palr.max_history)")
        }
        if scoringMode == .letters, maxCandidates > Self.letterLabels {
            throw .badSettings(key: "palr.max_candidates",
                               reason: "\(maxCandidates) candidates cannot be labelled with letters mode's \(Self.letterLabels) labels (A…T)")
        }
        if let t = promptTemplate {
            if t.isEmpty { throw .badSettings(key: "palr.prompt_template", reason: "is empty") }
            // The placeholders the runtime fills for this mode; it refuses to load a model
            // whose template lacks one (Ranker's PALRSettings.checkTemplates: the same rules).
            let needs = scoringMode == .likelihood ? ["history"] : ["history", "candidates"]
            for name in needs where !t.contains("{\(name)}") {
                throw .badSettings(key: "palr.prompt_template",
                                   reason: "has no {\(name)} placeholder, which \(scoringMode.rawValue) mode fills")
            }
        }
        if let t = profileTemplate, !t.contains("{history}") {
            throw .badSettings(key: "palr.profile_template", reason: "has no {history} placeholder")
        }
        guard retrievalPrior.isFinite, Self.retrievalPriorRange.contains(retrievalPrior) else {
            throw .badSettings(key: "palr.retrieval_prior", reason: "\(retrievalPrior) is outside 0…1000")
        }
    }

    public var ggufMetadata: [(String, GGUFValue)] {
        var m: [(String, GGUFValue)] = []
        if let t = promptTemplate { m.append(("palr.prompt_template", .string(t))) }
        m += [
            ("palr.scoring_mode", .string(scoringMode.rawValue)),
            ("palr.max_history", .uint32(UInt32(maxHistory))),
        ]
        if historyStep != 1 { m.append(("palr.history_step", .uint32(UInt32(historyStep)))) }
        m += [
            ("palr.max_candidates", .uint32(UInt32(maxCandidates))),
            ("palr.title_token_limit", .uint32(UInt32(titleTokenLimit))),
            ("palr.retrieval_prior", .float32(Float(retrievalPrior))),
        ]
        if let t = profileTemplate { m.append(("palr.profile_template", .string(t))) }
        return m
    }
}
