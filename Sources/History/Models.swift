// The values the store takes and returns. Times are Unix seconds (Int64);
// item ids are the catalog's external ids, kept as text.

/// What a profile did with an item: view, click, purchase, rating, skip, or a
/// kind of the application's own (1–32 characters of `a-z 0-9 _ -`).
public struct InteractionKind: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String

    /// Accepts any string; `validate()` (called by every write) rejects bad names.
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let view = InteractionKind(rawValue: "view")
    public static let click = InteractionKind(rawValue: "click")
    public static let purchase = InteractionKind(rawValue: "purchase")
    public static let rating = InteractionKind(rawValue: "rating")
    public static let skip = InteractionKind(rawValue: "skip")

    /// The kinds every new database knows, with their fixed ids.
    static let builtIn: [InteractionKind] = [.view, .click, .purchase, .rating, .skip]

    public var description: String { rawValue }

    /// Why this name cannot be stored, or nil when it can.
    public var problem: String? {
        let bytes = Array(rawValue.utf8)
        if bytes.isEmpty || bytes.count > 32 { return "kind \(Validation.quoted(rawValue)) must be 1 to 32 characters" }
        let allowed = bytes.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f || $0 == 0x2d }
        return allowed ? nil : "kind \(Validation.quoted(rawValue)) may contain only a-z, 0-9, '_' and '-'"
    }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// An interaction to record.
public struct NewInteraction: Hashable, Sendable {
    public var profile: String
    /// The catalog's external item id.
    public var item: String
    public var kind: InteractionKind
    /// A rating, a watch fraction, …; nil when the kind has none.
    public var value: Double?
    /// Unix seconds.
    public var timestamp: Int64

    public init(profile: String, item: String, kind: InteractionKind = .view, value: Double? = nil, timestamp: Int64) {
        self.profile = profile
        self.item = item
        self.kind = kind
        self.value = value
        self.timestamp = timestamp
    }
}

/// A recorded interaction.
public struct Interaction: Hashable, Sendable, Codable {
    /// Assigned at recording, increasing in insertion order, never reused.
    public var id: Int64
    public var profile: String
    public var item: String
    public var kind: InteractionKind
    public var value: Double?
    /// Unix seconds.
    public var timestamp: Int64

    public init(id: Int64, profile: String, item: String, kind: InteractionKind, value: Double?, timestamp: Int64) {
        self.id = id
        self.profile = profile
        self.item = item
        self.kind = kind
        self.value = value
        self.timestamp = timestamp
    }
}

/// One profile and the extent of its history.
public struct ProfileInfo: Hashable, Sendable, Codable {
    public var name: String
    public var interactions: Int
    /// Unix seconds of the oldest and newest interaction; nil when there are none.
    public var firstTimestamp: Int64?
    public var lastTimestamp: Int64?
    public var createdAt: Int64
}

/// An item with a ranking score, as a cached recommendation holds it.
public struct ScoredItem: Hashable, Sendable, Codable {
    public var item: String
    public var score: Double

    public init(item: String, score: Double) {
        self.item = item
        self.score = score
    }
}

/// A ranked list computed for a profile, valid while the profile's history
/// digest is unchanged.
public struct CachedRecommendations: Hashable, Sendable, Codable {
    public var profile: String
    public var modelID: String
    public var catalogID: String
    /// The digest of the history the ranking used.
    public var historyDigest: HistoryDigest
    /// Unix seconds.
    public var createdAt: Int64
    public var items: [ScoredItem]

    public init(profile: String, modelID: String, catalogID: String, historyDigest: HistoryDigest,
                createdAt: Int64, items: [ScoredItem]) {
        self.profile = profile
        self.modelID = modelID
        self.catalogID = catalogID
        self.historyDigest = historyDigest
        self.createdAt = createdAt
        self.items = items
    }
}

/// PALR's keyword profile of a profile's history.
public struct ProfileSummary: Hashable, Sendable, Codable {
    public var profile: String
    public var text: String
    /// The digest of the history the summary was generated from.
    public var historyDigest: HistoryDigest
    /// How many interactions the profile had when the summary was generated.
    public var interactionCount: Int
    /// Unix seconds.
    public var createdAt: Int64
    /// The largest interaction id in the history the summary was generated from:
    /// it tells which of today's interactions the summary saw. nil when unknown
    /// (a summary stored before schema version 2, or one given without it) or when
    /// that history was empty.
    public var lastInteractionID: Int64?

    public init(profile: String, text: String, historyDigest: HistoryDigest, interactionCount: Int, createdAt: Int64,
                lastInteractionID: Int64? = nil) {
        self.profile = profile
        self.text = text
        self.historyDigest = historyDigest
        self.interactionCount = interactionCount
        self.createdAt = createdAt
        self.lastInteractionID = lastInteractionID
    }

    /// By how many interactions `history` (the same profile's `recent()` with the
    /// same limit, oldest first) differs from the history this summary was made
    /// from: the larger of the rows added since and the rows removed since. The
    /// larger, not the sum: at the retention cap every add also trims one row, and
    /// a sum would count each new interaction twice (regenerating after half of
    /// `palr.profile_refresh_after` new ones); a forget and as many adds counts as
    /// many, not twice as many. Interaction ids only grow and are never reused, so
    /// an id above `lastInteractionID` was added since, and one of the
    /// `interactionCount` rows the summary saw that is no longer there was removed
    /// (forgotten, trimmed by the retention cap, or pushed out of the window).
    /// nil when the summary has no marker and the change cannot be measured. Not
    /// counted: an older row that re-enters a window smaller than the stored history
    /// when a newer one is forgotten (the recommender's window, 100,000 rows, is above
    /// the default retention cap, so there the history and the window are the same).
    public func changedInteractions(in history: [Interaction]) -> Int? {
        if interactionCount == 0 {
            // Nothing was seen, so every row now is new (no marker is needed).
            return history.count
        }
        guard let seen = lastInteractionID else { return nil }
        let added = history.reduce(0) { $0 + ($1.id > seen ? 1 : 0) }
        let kept = history.count - added
        // max(0, …): a summary stored by hand may claim fewer rows than its marker covers.
        let removed = max(0, interactionCount - kept)
        return max(added, removed)
    }
}

/// Counts and sizes of a store.
public struct HistoryStats: Hashable, Sendable, Codable {
    public var path: String
    public var schemaVersion: Int
    public var profiles: Int
    public var interactions: Int
    public var items: Int
    /// Interactions per kind name.
    public var interactionsByKind: [String: Int]
    public var oldestTimestamp: Int64?
    public var newestTimestamp: Int64?
    public var largestProfile: String?
    public var largestProfileInteractions: Int
    /// nil: unlimited.
    public var retentionCap: Int?
    public var profilesOverCap: Int
    public var cachedRecommendations: Int
    public var profileSummaries: Int
    public var pageSize: Int
    public var pageCount: Int
    public var freePages: Int
    /// Sizes of the database file and its write-ahead log on disk.
    public var databaseBytes: Int64
    public var walBytes: Int64
}

/// What a compaction did.
public struct CompactionReport: Hashable, Sendable, Codable {
    /// Interactions deleted because their profile was over the retention cap.
    public var trimmedInteractions: Int
    /// Item ids no interaction referred to any more.
    public var removedItems: Int
    /// Database pages given back to the file system by the incremental vacuum.
    public var freedPages: Int
    public var databaseBytesBefore: Int64
    public var databaseBytesAfter: Int64
}
