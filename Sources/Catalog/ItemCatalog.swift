// The item catalog every consumer reads: item ids and titles, popularity and the
// top-K neighbour table. It is the same type whether it came from a catalog pack
// (tensors used in place in the file mapping) or was just built in memory
// (`palr eval` builds one from the training part of a dataset).

import GGUF

/// Who a catalog is and how it was made; stored in the pack's `palr.catalog.*` keys.
public struct CatalogInfo: Sendable, Equatable {
    /// Stable identifier (results cached against a catalog name it).
    public var id: String
    public var name: String
    public var version: Int
    /// `cooc`, `seq`, `combined` or `imported`.
    public var method: String
    /// The builder's parameters as JSON, for provenance ("" when imported).
    public var parameters: String
    /// Retrieval settings tuned with this catalog; `Retriever` uses them by default.
    public var retrieval: RetrievalSettings

    public init(id: String, name: String, version: Int = 1, method: String, parameters: String = "",
                retrieval: RetrievalSettings = RetrievalSettings()) {
        self.id = id
        self.name = name
        self.version = version
        self.method = method
        self.parameters = parameters
        self.retrieval = retrieval
    }
}

/// Top-K neighbour lists of every item, in heap memory this object owns.
/// Row `i` holds item i's neighbours, best first; `-1` pads a short row's end.
public final class NeighbourTable: @unchecked Sendable {
    public let itemCount: Int
    public let k: Int
    /// (n_items, K) neighbour item indices; -1 = empty slot. Owned; freed in deinit.
    let ids: UnsafeMutablePointer<Int32>
    /// (n_items, K) neighbour scores, descending within a row; 0 in empty slots. Owned; freed in deinit.
    let scores: UnsafeMutablePointer<Float>

    public init(itemCount: Int, k: Int) {
        precondition(itemCount >= 0 && k >= 1)
        self.itemCount = itemCount
        self.k = k
        ids = .allocate(capacity: max(itemCount * k, 1))
        ids.initialize(repeating: -1, count: max(itemCount * k, 1))
        scores = .allocate(capacity: max(itemCount * k, 1))
        scores.initialize(repeating: 0, count: max(itemCount * k, 1))
    }

    deinit {
        ids.deallocate()
        scores.deallocate()
    }

    /// Item `item`'s neighbours and scores (allocates; for tools and tests).
    public func row(_ item: Int) -> [(item: Int32, score: Float)] {
        var out: [(item: Int32, score: Float)] = []
        for s in 0..<k where ids[item * k + s] >= 0 { out.append((ids[item * k + s], scores[item * k + s])) }
        return out
    }

    /// Sets item `item`'s row (best first, at most K entries; the rest becomes padding).
    public func setRow(_ item: Int, _ entries: [(item: Int32, score: Float)]) {
        precondition(entries.count <= k && item >= 0 && item < itemCount)
        for s in 0..<k {
            ids[item * k + s] = s < entries.count ? entries[s].item : -1
            scores[item * k + s] = s < entries.count ? entries[s].score : 0
        }
    }
}

/// Items, popularity and neighbours. Immutable after init; safe to share across threads.
/// Retrieval on it goes through a `Retriever` (one per thread).
public final class ItemCatalog: @unchecked Sendable {
    public let info: CatalogInfo
    public let ids: [String]                     // (n_items) external ids
    public let titles: [String]                  // (n_items)
    public let count: Int                        // n_items
    public let k: Int                            // neighbour slots per item

    // Read-only views into memory that `owner` keeps alive (the pack's mapping, or
    // a NeighbourTable plus a popularity array). Never written through.
    let popularity: UnsafePointer<Float>         // (n_items) training interactions per item
    let neighbourIds: UnsafePointer<Int32>       // (n_items, K) -1-padded, best first
    let neighbourScores: UnsafePointer<Float>    // (n_items, K) descending within a row
    private let owner: AnyObject

    /// Items by popularity, most popular first; ties by catalog order. (n_items)
    public let popularityOrder: [Int32]
    /// Position of each item in `popularityOrder`. (n_items)
    let popularityRank: [Int32]
    /// Largest popularity (1 when all are 0), so `popularity / maxPopularity` is in [0, 1].
    let maxPopularity: Float
    private let index: [String: Int32]

    /// A catalog over buffers that `owner` keeps alive. The caller has validated
    /// ids/titles (same count, unique ids) and the table (ids in -1..<n_items).
    init(info: CatalogInfo, ids: [String], titles: [String], k: Int, popularity: UnsafePointer<Float>,
         neighbourIds: UnsafePointer<Int32>, neighbourScores: UnsafePointer<Float>, owner: AnyObject,
         index: [String: Int32]) {
        self.info = info
        self.ids = ids
        self.titles = titles
        self.count = ids.count
        self.k = k
        self.popularity = popularity
        self.neighbourIds = neighbourIds
        self.neighbourScores = neighbourScores
        self.owner = owner
        self.index = index
        let n = ids.count
        var order = (0..<Int32(n)).map { $0 }
        order.sort { a, b in
            popularity[Int(a)] != popularity[Int(b)] ? popularity[Int(a)] > popularity[Int(b)] : a < b
        }
        var rank = [Int32](repeating: 0, count: n)
        for (r, i) in order.enumerated() { rank[Int(i)] = Int32(r) }
        popularityOrder = order
        popularityRank = rank
        var m: Float = 0
        for i in 0..<n { m = max(m, popularity[i]) }
        maxPopularity = m > 0 ? m : 1
    }

    /// 16 hex digits over everything retrieval and titles depend on: the info (id,
    /// version, method, parameters, retrieval settings), every id and title, popularity
    /// and the neighbour table. Results cached against a catalog name it, so a catalog
    /// rebuilt under the same id (an item dropped, neighbours recomputed) never serves
    /// its predecessor's rankings. Computed on each call: one pass over the tables,
    /// word by word (about 2.5 ms for the bundled 8 MB pack: 3% of a cached `recommend`).
    public var contentDigest: String {
        var h = WordHash()
        for field in [info.id, info.name, String(info.version), info.method, info.parameters,
                      "\(info.retrieval.historyLength) \(info.retrieval.recencyDecay) \(info.retrieval.popularityWeight)"] {
            h.add(string: field)
        }
        h.add(UInt64(count))
        h.add(UInt64(k))
        for i in 0..<count {
            h.add(string: ids[i])
            h.add(string: titles[i])
        }
        h.add(UnsafeRawBufferPointer(start: popularity, count: count * 4))
        h.add(UnsafeRawBufferPointer(start: neighbourIds, count: count * k * 4))
        h.add(UnsafeRawBufferPointer(start: neighbourScores, count: count * k * 4))
        let hex = String(h.state, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// An in-memory catalog (fresh from the builder or an import).
    public convenience init(info: CatalogInfo, items: ItemList, popularity: [Float], neighbours: NeighbourTable) throws(CatalogPackError) {
        guard items.count > 0 else { throw .emptyCatalog }
        guard items.titles.count == items.count else {
            throw .countMismatch(key: CatalogPack.Key.itemTitles, expected: items.count, found: items.titles.count)
        }
        guard popularity.count == items.count else {
            throw .wrongTensorShape(tensor: CatalogPack.Tensor.popularity, expected: [items.count], found: [popularity.count])
        }
        guard neighbours.itemCount == items.count else {
            throw .wrongTensorShape(tensor: CatalogPack.Tensor.neighbourIds, expected: [neighbours.k, items.count],
                                    found: [neighbours.k, neighbours.itemCount])
        }
        let index = try Self.makeIndex(items.ids)
        try CatalogPack.validate(ids: neighbours.ids, scores: neighbours.scores, k: neighbours.k, n: items.count)
        let owner = InMemoryStorage(neighbours: neighbours, popularity: popularity)
        self.init(info: info, ids: items.ids, titles: items.titles, k: neighbours.k, popularity: owner.popularity,
                  neighbourIds: neighbours.ids, neighbourScores: neighbours.scores, owner: owner, index: index)
    }

    static func makeIndex(_ ids: [String]) throws(CatalogPackError) -> [String: Int32] {
        var index: [String: Int32] = [:]
        index.reserveCapacity(ids.count)
        for (i, id) in ids.enumerated() {
            guard !id.isEmpty else { throw .badValue(key: CatalogPack.Key.itemIds, reason: "item \(i) has an empty id") }
            if let first = index[id] { throw .duplicateItemId(id, first: Int(first), second: i) }
            index[id] = Int32(i)
        }
        return index
    }

    /// The catalog index of an external item id.
    public func index(of id: String) -> Int32? { index[id] }

    public func popularity(of item: Int) -> Float { popularity[item] }

    /// Item `item`'s neighbours, best first (allocates; for tools, export and tests).
    public func neighbours(of item: Int) -> [(item: Int32, score: Float)] {
        precondition(item >= 0 && item < count)
        var out: [(item: Int32, score: Float)] = []
        for s in 0..<k {
            let j = neighbourIds[item * k + s]
            if j < 0 || j >= Int32(count) { break }   // see Retriever.finish
            out.append((j, neighbourScores[item * k + s]))
        }
        return out
    }

    /// All popularity values (allocates).
    public var popularityValues: [Float] { Array(UnsafeBufferPointer(start: popularity, count: count)) }
}

/// Keeps a builder's table and popularity alive for an in-memory catalog.
final class InMemoryStorage {
    let neighbours: NeighbourTable
    let popularityStorage: UnsafeMutablePointer<Float>  // (n_items) owned; freed in deinit
    var popularity: UnsafePointer<Float> { UnsafePointer(popularityStorage) }

    init(neighbours: NeighbourTable, popularity: [Float]) {
        self.neighbours = neighbours
        popularityStorage = .allocate(capacity: max(popularity.count, 1))
        popularityStorage.initialize(repeating: 0, count: max(popularity.count, 1))
        for (i, p) in popularity.enumerated() { popularityStorage[i] = p }
    }

    deinit { popularityStorage.deallocate() }
}

/// A fast 64-bit hash for change detection (not for security): each 8-byte word is
/// mixed in with a multiply and a rotate; byte strings are framed by their length, so
/// the encoding of a field sequence is unambiguous.
struct WordHash {
    private(set) var state: UInt64 = 0x9E37_79B9_7F4A_7C15

    mutating func add(_ word: UInt64) {
        state = ((state ^ word) &* 0xFF51_AFD7_ED55_8CCD)
        state = (state << 29) | (state >> 35)
    }

    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        add(UInt64(bytes.count))
        var i = 0
        while i + 8 <= bytes.count {
            add(bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < bytes.count {
            tail |= UInt64(bytes[i]) << shift
            shift += 8
            i += 1
        }
        add(tail)
    }

    mutating func add(string: String) {
        var s = string
        s.withUTF8 { add(UnsafeRawBufferPointer($0)) }
    }
}
