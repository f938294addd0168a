// Catalog pack: a GGUF v3 file holding one item catalog.
//
//   metadata
//     general.architecture                  string   "palr-catalog"
//     general.name                          string   human-readable name
//     palr.catalog.id                       string   stable id (cached results name it)
//     palr.catalog.version                  uint32   bumped on every rebuild of the same id
//     palr.catalog.item_count               uint32   n_items
//     palr.catalog.item_ids                 [string] (n_items) external ids, unique, non-empty
//     palr.catalog.item_titles              [string] (n_items)
//     palr.catalog.neighbour_method         string   cooc | seq | combined | imported
//     palr.catalog.k                        uint32   K, neighbour slots per item
//     palr.catalog.neighbour_parameters     string   builder parameters as JSON (optional)
//     palr.catalog.retrieval.history_length uint32   (optional, default 10)
//     palr.catalog.retrieval.recency_decay  float32  (optional, default 0.7)
//     palr.catalog.retrieval.popularity_weight float32 (optional, default 0)
//   tensors (dims fastest first, as in all GGUF)
//     popularity        F32 [n_items]      training interactions per item
//     neighbour_ids     I32 [K, n_items]   row i = item i's neighbours, best first, -1 pads the end
//     neighbour_scores  F32 [K, n_items]   matching scores, non-increasing within a row, finite
//
// The loader checks every key's type, every count against n_items, every tensor's
// type and shape, rejects extra tensors, and checks every neighbour id is in range
// (not the item itself, not twice in a row, padding only at the end of a row). The tensors are then
// used in place in the mapping: nothing of the table is copied.

import FileSafety
import Foundation
import GGUF

public enum CatalogPackError: Error, Equatable, CustomStringConvertible {
    case file(GGUFError)
    case notACatalog(architecture: String?)
    case missingKey(String)
    case wrongKeyType(key: String, expected: String)
    case badValue(key: String, reason: String)
    case countMismatch(key: String, expected: Int, found: Int)
    case duplicateItemId(String, first: Int, second: Int)
    case missingTensor(String)
    case unexpectedTensor(String)
    case wrongTensorType(tensor: String, expected: String, found: String)
    case wrongTensorShape(tensor: String, expected: [Int], found: [Int])
    case misalignedTensor(String)
    case badNeighbour(item: Int, slot: Int, reason: String)
    case badScore(tensor: String, index: Int, value: Float)
    case emptyCatalog

    /// One line, whatever the file held (see `oneLine`).
    public var description: String { oneLine(message) }

    private var message: String {
        switch self {
        case .file(let e): return e.description
        case .notACatalog(let a):
            return "not a catalog pack: general.architecture is \(a.map { "'\($0)'" } ?? "missing") (expected '\(CatalogPack.architecture)')"
        case .missingKey(let k): return "catalog pack: metadata key '\(k)' is missing"
        case .wrongKeyType(let k, let e): return "catalog pack: metadata key '\(k)' should be \(e)"
        case .badValue(let k, let r): return "catalog pack: '\(k)': \(r)"
        case .countMismatch(let k, let e, let f): return "catalog pack: '\(k)' has \(f) entries, expected \(e) (palr.catalog.item_count)"
        case .duplicateItemId(let id, let a, let b): return "catalog pack: item id '\(id)' appears twice (items \(a) and \(b))"
        case .missingTensor(let t): return "catalog pack: tensor '\(t)' is missing"
        case .unexpectedTensor(let t): return "catalog pack: unexpected tensor '\(t)'"
        case .wrongTensorType(let t, let e, let f): return "catalog pack: tensor '\(t)' is \(f), expected \(e)"
        case .wrongTensorShape(let t, let e, let f): return "catalog pack: tensor '\(t)' has shape \(f), expected \(e)"
        case .misalignedTensor(let t): return "catalog pack: tensor '\(t)' is not 4-byte aligned"
        case .badNeighbour(let i, let s, let r): return "catalog pack: neighbour_ids item \(i) slot \(s): \(r)"
        case .badScore(let t, let i, let v):
            return "catalog pack: tensor '\(t)' element \(i) is \(v) (popularity must be finite and ≥ 0, "
                + "neighbour scores finite and at most 1e30 in magnitude)"
        case .emptyCatalog: return "catalog has no items"
        }
    }
}

public enum CatalogPack {
    public static let architecture = "palr-catalog"

    public enum Key {
        public static let architecture = "general.architecture"
        public static let name = "general.name"
        public static let id = "palr.catalog.id"
        public static let version = "palr.catalog.version"
        public static let itemCount = "palr.catalog.item_count"
        public static let itemIds = "palr.catalog.item_ids"
        public static let itemTitles = "palr.catalog.item_titles"
        public static let method = "palr.catalog.neighbour_method"
        public static let k = "palr.catalog.k"
        public static let parameters = "palr.catalog.neighbour_parameters"
        public static let historyLength = "palr.catalog.retrieval.history_length"
        public static let recencyDecay = "palr.catalog.retrieval.recency_decay"
        public static let popularityWeight = "palr.catalog.retrieval.popularity_weight"
    }

    public enum Tensor {
        public static let popularity = "popularity"
        public static let neighbourIds = "neighbour_ids"
        public static let neighbourScores = "neighbour_scores"
    }

    // MARK: writing

    public static func write(_ catalog: ItemCatalog, to path: String) throws(CatalogPackError) {
        let n = catalog.count, k = catalog.k
        let info = catalog.info
        let metadata: [(String, GGUFValue)] = [
            (Key.architecture, .string(architecture)),
            (Key.name, .string(info.name)),
            (Key.id, .string(info.id)),
            (Key.version, .uint32(UInt32(clamping: info.version))),
            (Key.itemCount, .uint32(UInt32(n))),
            (Key.itemIds, .array(.string, catalog.ids.map { .string($0) })),
            (Key.itemTitles, .array(.string, catalog.titles.map { .string($0) })),
            (Key.method, .string(info.method)),
            (Key.k, .uint32(UInt32(k))),
            (Key.parameters, .string(info.parameters)),
            (Key.historyLength, .uint32(UInt32(clamping: info.retrieval.historyLength))),
            (Key.recencyDecay, .float32(Float(info.retrieval.recencyDecay))),
            (Key.popularityWeight, .float32(Float(info.retrieval.popularityWeight))),
        ]
        let plan = [
            GGUFTensorPlan(name: Tensor.popularity, dims: [n], type: .f32),
            GGUFTensorPlan(name: Tensor.neighbourIds, dims: [k, n], type: .i32),
            GGUFTensorPlan(name: Tensor.neighbourScores, dims: [k, n], type: .f32),
        ]
        do {
            let w = try GGUFWriter(path: path, metadata: metadata, tensors: plan)
            // All three tensors are little-endian in memory already on the platforms palr supports.
            try w.write(tensor: Tensor.popularity, bytes: UnsafeRawBufferPointer(start: catalog.popularity, count: n * 4))
            try w.write(tensor: Tensor.neighbourIds, bytes: UnsafeRawBufferPointer(start: catalog.neighbourIds, count: n * k * 4))
            try w.write(tensor: Tensor.neighbourScores, bytes: UnsafeRawBufferPointer(start: catalog.neighbourScores, count: n * k * 4))
            try w.finish()
        } catch {
            throw .file(error)
        }
    }

    // MARK: reading

    public static func open(path: String) throws(CatalogPackError) -> ItemCatalog {
        let file: GGUFFile
        do { file = try GGUFFile(path: path) } catch { throw .file(error) }
        return try load(file)
    }

    /// Validates a parsed GGUF file as a catalog pack and wraps it; the catalog keeps `file` alive.
    public static func load(_ file: GGUFFile) throws(CatalogPackError) -> ItemCatalog {
        let arch = file[Key.architecture]?.string
        guard arch == architecture else { throw .notACatalog(architecture: arch) }

        let n = try requiredInt(file, Key.itemCount)
        guard n >= 1 else { throw .emptyCatalog }
        let k = try requiredInt(file, Key.k)
        guard k >= 1 else { throw .badValue(key: Key.k, reason: "K is \(k), must be at least 1") }
        let ids = try stringArray(file, Key.itemIds, count: n)
        let index = try ItemCatalog.makeIndex(ids)
        // Every id must be one the history store can record: an item it refuses could be
        // recommended for ever (never marked seen), and no ranking holding it could be cached.
        for (i, id) in ids.enumerated() {
            if let problem = storableIDProblem(id) {
                throw .badValue(key: Key.itemIds, reason: "item \(i) (\(shown(id))) \(problem)")
            }
        }
        // Each title is one line of a prompt: a line break or other control character in
        // it would add lines to the prompt's lists (a fake candidate line), so they become
        // one space, as when a catalog is built from data files; a blank title is an error.
        var titles = try stringArray(file, Key.itemTitles, count: n)
        for i in titles.indices {
            titles[i] = promptLine(titles[i])
            guard titles[i].contains(where: { !$0.isWhitespace }) else {
                throw .badValue(key: Key.itemTitles, reason: "item \(i) (\(shown(ids[i]))) has an empty title")
            }
        }

        var retrieval = RetrievalSettings()
        // The ranges `palr retrieve --params` and `palr-convert catalog` take: a history length
        // of 4·10⁹ made every recommend allocate 16 GB of scratch, a popularity weight of 10³⁰
        // made retrieval scores NaN.
        if let v = try optional(file, Key.historyLength, \.int, "an integer") {
            guard RetrievalSettings.historyLengthRange.contains(v) else {
                throw .badValue(key: Key.historyLength, reason: "\(v) is not in \(RetrievalSettings.historyLengthRange)")
            }
            retrieval.historyLength = v
        }
        if let v = try optional(file, Key.recencyDecay, \.double, "a number") {
            guard v > 0, v <= 1 else { throw .badValue(key: Key.recencyDecay, reason: "\(v) is not in (0, 1]") }
            retrieval.recencyDecay = v
        }
        if let v = try optional(file, Key.popularityWeight, \.double, "a number") {
            let range = RetrievalSettings.popularityWeightRange
            guard v.isFinite, range.contains(v) else {
                throw .badValue(key: Key.popularityWeight, reason: "\(v) is not a number in \(Int(range.lowerBound))...\(Int(range.upperBound))")
            }
            retrieval.popularityWeight = v
        }
        let info = CatalogInfo(
            id: try requiredString(file, Key.id),
            name: try optional(file, Key.name, \.string, "a string") ?? "",
            version: try requiredInt(file, Key.version),
            method: try requiredString(file, Key.method),
            parameters: try optional(file, Key.parameters, \.string, "a string") ?? "",
            retrieval: retrieval)

        let known: Set = [Tensor.popularity, Tensor.neighbourIds, Tensor.neighbourScores]
        if let extra = file.tensors.first(where: { !known.contains($0.name) }) { throw .unexpectedTensor(extra.name) }
        let pop = try tensor(file, Tensor.popularity, .f32, [n], as: Float.self)
        let nIds = try tensor(file, Tensor.neighbourIds, .i32, [k, n], as: Int32.self)
        let nScores = try tensor(file, Tensor.neighbourScores, .f32, [k, n], as: Float.self)
        for i in 0..<n where !(pop[i].isFinite && pop[i] >= 0) {
            throw .badScore(tensor: Tensor.popularity, index: i, value: pop[i])
        }
        try validate(ids: nIds, scores: nScores, k: k, n: n)
        return ItemCatalog(info: info, ids: ids, titles: titles, k: k, popularity: pop, neighbourIds: nIds,
                           neighbourScores: nScores, owner: file, index: index)
    }

    /// The largest neighbour score a pack may hold, in magnitude.
    static let maxNeighbourScore: Float = 1e30

    /// Every id in -1..<n, not the item itself and once per row, -1 only as trailing padding,
    /// scores finite, at most `maxNeighbourScore` in magnitude and non-increasing along a row.
    static func validate(ids: UnsafePointer<Int32>, scores: UnsafePointer<Float>, k: Int, n: Int) throws(CatalogPackError) {
        // lastRow[j] = the last row that named item j: a repeat within a row is found in O(1).
        var lastRow = [Int32](repeating: -1, count: n)
        for i in 0..<n {
            var padding = false
            for s in 0..<k {
                let j = ids[i * k + s]
                let v = scores[i * k + s]
                if j == -1 { padding = true; continue }
                guard !padding else { throw .badNeighbour(item: i, slot: s, reason: "id \(j) after padding (-1)") }
                guard j >= 0 && Int(j) < n else { throw .badNeighbour(item: i, slot: s, reason: "id \(j) is outside 0..<\(n)") }
                guard Int(j) != i else { throw .badNeighbour(item: i, slot: s, reason: "an item cannot be its own neighbour") }
                // Retrieval adds up a row's scores per item: a repeated id multiplied its weight.
                // No builder writes one (imports skip repeats).
                guard lastRow[Int(j)] != Int32(i) else {
                    throw .badNeighbour(item: i, slot: s, reason: "id \(j) appears twice in the row")
                }
                lastRow[Int(j)] = Int32(i)
                // Retrieval sums up to 1,000 weighted scores per candidate: a score near
                // Float's limit (3.4e38) overflowed them to ∞ and NaN. No builder writes
                // anything near 1e30.
                guard v.isFinite && abs(v) <= maxNeighbourScore else {
                    throw .badScore(tensor: Tensor.neighbourScores, index: i * k + s, value: v)
                }
                guard s == 0 || v <= scores[i * k + s - 1] else {
                    throw .badNeighbour(item: i, slot: s, reason: "scores are not in descending order")
                }
            }
        }
    }

    /// Why the history store would refuse `id` as an item id (its rule: at most 256 bytes,
    /// no control or bidirectional control character, not only whitespace), or nil.
    /// (Empty and duplicate ids are caught by `ItemCatalog.makeIndex`.)
    static func storableIDProblem(_ id: String) -> String? {
        switch StoredNames.problem(id) {
        case nil: return nil
        case .empty: return "is empty"
        case .tooLong(let bytes): return "is \(bytes) bytes long; the history store takes at most \(StoredNames.maxBytes)"
        case .controlCharacter: return "contains a control character, which the history store refuses"
        case .bidirectionalControl: return "contains a bidirectional control character, which the history store refuses"
        case .onlyWhitespace: return "is only whitespace, which the history store refuses"
        }
    }

    /// `s` with every run of control characters and line or paragraph separators
    /// (U+2028, U+2029) replaced by one space.
    static func promptLine(_ s: String) -> String {
        func breaks(_ u: Unicode.Scalar) -> Bool { StoredNames.isControl(u) || u == "\u{2028}" || u == "\u{2029}" }
        // Nearly every title is printable ASCII: no scalar checks then.
        guard !StoredNames.isPrintableASCII(s), s.unicodeScalars.contains(where: breaks) else { return s }
        var out = String.UnicodeScalarView()
        var lastWasBreak = false
        for u in s.unicodeScalars {
            if breaks(u) {
                if !lastWasBreak { out.append(" ") }
                lastWasBreak = true
            } else {
                out.append(u)
                lastWasBreak = false
            }
        }
        return String(out)
    }

    /// An id as an error message shows it: escaped, on one line, cut after 40 characters.
    static func shown(_ id: String) -> String {
        let cut = id.unicodeScalars.count > 40 ? String(String.UnicodeScalarView(id.unicodeScalars.prefix(40))) + "…" : id
        return "'\(oneLine(cut))'"
    }

    private static func requiredInt(_ f: GGUFFile, _ key: String) throws(CatalogPackError) -> Int {
        guard let v = f[key] else { throw .missingKey(key) }
        guard let i = v.int else { throw .wrongKeyType(key: key, expected: "an integer") }
        return i
    }

    private static func requiredString(_ f: GGUFFile, _ key: String) throws(CatalogPackError) -> String {
        guard let v = f[key] else { throw .missingKey(key) }
        guard let s = v.string else { throw .wrongKeyType(key: key, expected: "a string") }
        return s
    }

    private static func optional<T>(_ f: GGUFFile, _ key: String, _ get: (GGUFValue) -> T?, _ expected: String) throws(CatalogPackError) -> T? {
        guard let v = f[key] else { return nil }
        guard let t = get(v) else { throw .wrongKeyType(key: key, expected: expected) }
        return t
    }

    private static func stringArray(_ f: GGUFFile, _ key: String, count n: Int) throws(CatalogPackError) -> [String] {
        guard let v = f[key] else { throw .missingKey(key) }
        guard let a = v.stringArray else { throw .wrongKeyType(key: key, expected: "an array of strings") }
        guard a.count == n else { throw .countMismatch(key: key, expected: n, found: a.count) }
        return a
    }

    private static func tensor<T>(_ f: GGUFFile, _ name: String, _ type: GGMLType, _ dims: [Int], as: T.Type) throws(CatalogPackError) -> UnsafePointer<T> {
        guard let t = f.tensor(named: name) else { throw .missingTensor(name) }
        guard t.rawType == type.rawValue else { throw .wrongTensorType(tensor: name, expected: type.description, found: t.typeInfo.name) }
        guard t.dims == dims else { throw .wrongTensorShape(tensor: name, expected: dims, found: t.dims) }
        let raw = f.data(of: t)
        guard let base = raw.baseAddress, Int(bitPattern: base) % MemoryLayout<T>.alignment == 0 else {
            throw .misalignedTensor(name)
        }
        return base.assumingMemoryBound(to: T.self)
    }
}
