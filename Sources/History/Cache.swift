// Results derived from a history, kept for the ranker and the UI: cached
// recommendations per (profile, model, catalog) and one keyword summary per
// profile. Each carries the history digest it was computed from; the caller
// compares it with the current digest to know whether it is still valid.
// Forgetting a profile or one of its items deletes both.
import Foundation

extension HistoryStore {
    /// Stores (or replaces) the cached recommendations of a profile for one
    /// model and catalog. With `ifHistory`, only if the profile's last `limit`
    /// interactions still have that digest, checked inside the write transaction:
    /// a ranking computed from a history that changed meanwhile (a `forget` while
    /// the model ran, the profile itself forgotten) is not stored. Returns whether it
    /// was stored.
    @discardableResult
    public func putCachedRecommendations(_ entry: CachedRecommendations, ifHistory expected: HistoryDigest? = nil,
                                         limit: Int = 100_000) throws -> Bool {
        if let problem = Validation.problem(entry.modelID, as: "model id")
            ?? Validation.problem(entry.catalogID, as: "catalog id")
            ?? entry.items.lazy.compactMap({ Validation.problem($0.item, as: "item id")
                ?? ($0.score.isFinite ? nil : "score \($0.score) of item \($0.item) is not a finite number") }).first {
            throw HistoryError.invalidArgument(problem)
        }
        let items = String(decoding: try JSONEncoder().encode(entry.items), as: UTF8.self)
        return try connection.write("cache recommendations") { () -> Bool in
            // A profile forgotten since its history was read (while the model ran) has no
            // history any more: with `ifHistory` that is a changed history, not an error.
            // (Before, `palr refresh --all-stale` counted it as a ranking it failed to
            // cache, exit 1, where a profile forgotten a moment earlier is skipped.)
            guard let profile = try lookupProfile(entry.profile) else {
                if expected != nil { return false }
                throw HistoryError.unknownProfile(entry.profile)
            }
            if let expected, HistoryDigest(of: try fetchRecent(profile: profile, name: entry.profile, limit: limit, kinds: nil)) != expected {
                return false
            }
            let statement = try connection.prepare("""
                INSERT OR REPLACE INTO cached_recommendations
                    (profile, model_id, catalog_id, history_digest, created_at, items)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                """)
            try statement.bind(1, profile)
            try statement.bind(2, entry.modelID)
            try statement.bind(3, entry.catalogID)
            try statement.bind(4, entry.historyDigest.description)
            try statement.bind(5, entry.createdAt)
            try statement.bind(6, items)
            try statement.run()
            return true
        }
    }

    /// The cached recommendations of a profile for one model and catalog, or nil.
    public func cachedRecommendations(profile: String, modelID: String, catalogID: String) throws
        -> CachedRecommendations? {
        let row = try connection.read("read cached recommendations") { () -> (String, Int64, String)? in
            let statement = try connection.prepare("""
                SELECT history_digest, created_at, items FROM cached_recommendations
                WHERE profile = ?1 AND model_id = ?2 AND catalog_id = ?3
                """)
            defer { statement.reset() }
            try statement.bind(1, try requireProfile(profile))
            try statement.bind(2, modelID)
            try statement.bind(3, catalogID)
            return try statement.step() ? (statement.text(0), statement.int64(1), statement.text(2)) : nil
        }
        guard let (digest, createdAt, itemsJSON) = row else { return nil }
        let what = "cached recommendations of profile '\(profile)' (model \(modelID), catalog \(catalogID))"
        guard let historyDigest = HistoryDigest(hex: digest),
              let items = try? JSONDecoder().decode([ScoredItem].self, from: Data(itemsJSON.utf8)) else {
            throw HistoryError.corrupt(path: path, reason: "\(what) cannot be decoded")
        }
        // A ranking names each item once (and JSON has no NaN, so scores are finite): a
        // list naming one twice is another tool's edit, not a ranking to serve (ten copies
        // of one item were shown as the top 10).
        var seen = Set<String>()
        if let twice = items.first(where: { !seen.insert($0.item).inserted }) {
            throw HistoryError.corrupt(path: path, reason: "\(what) lists item \(Validation.quoted(twice.item)) twice")
        }
        return CachedRecommendations(profile: profile, modelID: modelID, catalogID: catalogID,
                                     historyDigest: historyDigest, createdAt: createdAt, items: items)
    }

    /// Stores (or replaces) the keyword summary of a profile. With `ifNoForgetSince`
    /// (a `forgetCount()` read before the history the summary was made from), only if no
    /// forget has run since, checked inside the write transaction: a summary of a history
    /// that may hold forgotten items is not stored, while rows added or trimmed by the
    /// retention cap meanwhile are fine (they count as changes next time). Returns
    /// whether it was stored.
    @discardableResult
    public func putProfileSummary(_ summary: ProfileSummary, ifNoForgetSince forgets: Int64? = nil) throws -> Bool {
        guard summary.interactionCount >= 0 else {
            throw HistoryError.invalidArgument("interaction count must not be negative (got \(summary.interactionCount))")
        }
        if let last = summary.lastInteractionID, last < 1 {
            throw HistoryError.invalidArgument("last interaction id of the summary of profile '\(summary.profile)' must "
                                               + "be at least 1 (got \(last)): interaction ids start at 1")
        }
        return try connection.write("store profile summary") { () -> Bool in
            let profile = try requireProfile(summary.profile)
            if let forgets, (try meta("forget_count") ?? 0) != forgets { return false }
            let statement = try connection.prepare("""
                INSERT OR REPLACE INTO profile_summaries
                    (profile, text, history_digest, interaction_count, created_at, last_interaction_id)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                """)
            try statement.bind(1, profile)
            try statement.bind(2, summary.text)
            try statement.bind(3, summary.historyDigest.description)
            try statement.bind(4, summary.interactionCount)
            try statement.bind(5, summary.createdAt)
            try statement.bind(6, summary.lastInteractionID)
            try statement.run()
            return true
        }
    }

    /// The keyword summary of a profile, or nil.
    public func profileSummary(profile: String) throws -> ProfileSummary? {
        let row = try connection.read("read profile summary") { () -> (String, String, Int, Int64, Int64?)? in
            let statement = try connection.prepare("""
                SELECT text, history_digest, interaction_count, created_at, last_interaction_id
                FROM profile_summaries WHERE profile = ?1
                """)
            defer { statement.reset() }
            try statement.bind(1, try requireProfile(profile))
            guard try statement.step() else { return nil }
            // As putProfileSummary writes them; SQLite would read a text count or marker as 0.
            func damaged(_ what: String) -> HistoryError {
                .corrupt(path: path, reason: "summary of profile \(Validation.quoted(profile, limit: 80)) \(what)")
            }
            guard let text = statement.validText(0) else { throw damaged("has the text \(statement.describe(0))") }
            guard statement.isInteger(2), statement.int(2) >= 0 else {
                throw damaged("has the interaction count \(statement.describe(2))")
            }
            guard statement.isInteger(3) else { throw damaged("has the creation time \(statement.describe(3))") }
            guard statement.isNull(4) || (statement.isInteger(4) && statement.int64(4) >= 1) else {
                throw damaged("has the last interaction id \(statement.describe(4))")
            }
            return (text, statement.text(1), statement.int(2), statement.int64(3), statement.optionalInt64(4))
        }
        guard let (text, digest, count, createdAt, lastID) = row else { return nil }
        guard let historyDigest = HistoryDigest(hex: digest) else {
            throw HistoryError.corrupt(path: path, reason: "summary of profile '\(profile)' has digest '\(digest)'")
        }
        return ProfileSummary(profile: profile, text: text, historyDigest: historyDigest, interactionCount: count,
                              createdAt: createdAt, lastInteractionID: lastID)
    }
}
