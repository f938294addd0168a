// Readers for the interaction and item files a catalog is built from and
// evaluated on: the MovieLens formats and generic CSV with a header.
//
//   interactions                      items
//   u.data       user\titem\trating\ttime       u.item      id|title|date|…   ISO-8859-1
//   ratings.dat  user::item::rating::time       movies.dat  id::title::genres ISO-8859-1
//   ratings.csv  userId,movieId,rating,timestamp movies.csv movieId,title,genres (quoted CSV, UTF-8)
//   any CSV with a header: columns named by a mapping (see `CSVColumns`)
//
// Every interaction counts (ratings are implicit feedback here); the rating
// column is not read. Row order in the file is kept: it breaks timestamp ties.
// A malformed line is a `DataFileError.malformed` naming file, line and reason.

import Foundation
import GGUF

public enum DataFileError: Error, Equatable, CustomStringConvertible {
    case cannotRead(path: String, reason: String)
    case malformed(path: String, line: Int, reason: String)
    case missingColumn(path: String, role: String, tried: [String], header: [String])
    case unknownFormat(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotRead(let p, let r): return "cannot read \(p): \(r)"
        case .malformed(let p, let l, let r): return "\(p):\(l): \(r)"
        case .missingColumn(let p, let role, let tried, let header):
            return "\(p): no \(role) column (looked for \(tried.joined(separator: ", ")); header is \(header.joined(separator: ","))"
        case .unknownFormat(let p, let r): return "\(p): \(r)"
        }
    }
}

// MARK: - Interactions

/// Interactions in file order, with user and item ids interned.
public struct InteractionLog: Sendable {
    public var userIds: [String] = []   // (n_users) external ids, in order of first appearance
    public var itemIds: [String] = []   // (n_item_ids) external ids, in order of first appearance
    public var users: [Int32] = []      // (n_rows) index into userIds
    public var items: [Int32] = []      // (n_rows) index into itemIds
    public var times: [Int64] = []      // (n_rows) timestamp; the row index is the original file order
    public var count: Int { users.count }

    public init() {}

    private var userIndex: [String: Int32] = [:]
    private var itemIndex: [String: Int32] = [:]

    /// Appends one interaction, interning its ids.
    public mutating func append(user: String, item: String, time: Int64) {
        users.append(Self.intern(user, &userIndex, &userIds))
        items.append(Self.intern(item, &itemIndex, &itemIds))
        times.append(time)
    }

    private static func intern(_ s: String, _ index: inout [String: Int32], _ list: inout [String]) -> Int32 {
        if let i = index[s] { return i }
        let i = Int32(list.count)
        index[s] = i
        list.append(s)
        return i
    }
}

/// Which columns of a CSV with a header hold the user, item and timestamp.
/// A nil name means "the first header name in the matching `known…` list".
public struct CSVColumns: Sendable, Equatable {
    public var user: String?
    public var item: String?
    /// Without a timestamp column, file order is the time order.
    public var time: String?

    public init(user: String? = nil, item: String? = nil, time: String? = nil) {
        self.user = user
        self.item = item
        self.time = time
    }

    public static let knownUser = ["userId", "user_id", "user", "uid", "visitorid", "customer_id"]
    public static let knownItem = ["movieId", "itemId", "item_id", "item", "movie_id", "iid", "itemid", "article_id"]
    public static let knownTime = ["timestamp", "time", "ts", "t", "datetime"]
    public static let knownId = ["movieId", "itemId", "item_id", "id", "item", "movie_id", "iid"]
    public static let knownTitle = ["title", "name", "item_title"]
    public static let knownNeighbour = ["neighbour", "neighbor", "neighbour_id", "neighbor_id", "other", "item2", "item_j"]
    public static let knownScore = ["score", "similarity", "weight", "value"]

    /// Parses "user=uid,item=sku,time=ts" (any subset).
    public init(mapping: String) throws(DataFileError) {
        for part in mapping.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, !kv[1].isEmpty else {
                throw .unknownFormat(path: "--columns", reason: "'\(part)' is not role=column")
            }
            switch kv[0] {
            case "user": user = kv[1]
            case "item": item = kv[1]
            case "time", "timestamp": time = kv[1]
            default: throw .unknownFormat(path: "--columns", reason: "unknown role '\(kv[0])' (user, item, time)")
            }
        }
    }
}

public enum InteractionFormat: Sendable, Equatable {
    /// MovieLens 100K `u.data`: user, item, rating, timestamp separated by tabs.
    case movieLens100K
    /// MovieLens 1M/10M `ratings.dat`: user::item::rating::timestamp.
    case movieLens1M
    /// CSV with a header (MovieLens latest `ratings.csv`, or any mapping).
    case csv(CSVColumns)

    /// By file name: `u.data` (or `.data`/`.tsv`), `.dat`, `.csv`. nil when the name says nothing.
    public static func detect(path: String) -> InteractionFormat? {
        let name = (path as NSString).lastPathComponent.lowercased()
        if name.hasSuffix(".data") || name.hasSuffix(".tsv") { return .movieLens100K }
        if name.hasSuffix(".dat") { return .movieLens1M }
        if name.hasSuffix(".csv") { return .csv(CSVColumns()) }
        return nil
    }

    /// "ml-100k", "ml-1m" or "csv" (command-line flags).
    public init?(name: String) {
        switch name.lowercased() {
        case "ml-100k", "u.data", "tab": self = .movieLens100K
        case "ml-1m", "ratings.dat", "dat": self = .movieLens1M
        case "csv": self = .csv(CSVColumns())
        default: return nil
        }
    }
}

public enum ItemFormat: Sendable, Equatable {
    /// MovieLens 100K `u.item`: id|title|release date|… in ISO-8859-1.
    case movieLens100K
    /// MovieLens 1M `movies.dat`: id::title::genres in ISO-8859-1.
    case movieLens1M
    /// UTF-8 CSV with a header holding an id and a title column (`movies.csv`, or `id,title`).
    case csv(id: String?, title: String?)

    public static func detect(path: String) -> ItemFormat? {
        let name = (path as NSString).lastPathComponent.lowercased()
        if name.hasSuffix(".item") { return .movieLens100K }
        if name.hasSuffix(".dat") { return .movieLens1M }
        if name.hasSuffix(".csv") { return .csv(id: nil, title: nil) }
        return nil
    }

    public init?(name: String) {
        switch name.lowercased() {
        case "ml-100k", "u.item": self = .movieLens100K
        case "ml-1m", "movies.dat", "dat": self = .movieLens1M
        case "csv": self = .csv(id: nil, title: nil)
        default: return nil
        }
    }
}

/// Item external ids and titles, in file order.
public struct ItemList: Sendable, Equatable {
    public var ids: [String]
    public var titles: [String]
    public var count: Int { ids.count }

    public init(ids: [String], titles: [String]) {
        self.ids = ids
        self.titles = titles
    }
}

public enum DataFiles {
    public static func readInteractions(path: String, format: InteractionFormat? = nil) throws(DataFileError) -> InteractionLog {
        guard let format = format ?? InteractionFormat.detect(path: path) else {
            throw .unknownFormat(path: path, reason: "cannot tell the interaction format from the name; name it (ml-100k, ml-1m, csv)")
        }
        return try withFileBytes(path) { (bytes) throws(DataFileError) in try parseInteractions(bytes, name: path, format: format) }
    }

    public static func readItems(path: String, format: ItemFormat? = nil) throws(DataFileError) -> ItemList {
        guard let format = format ?? ItemFormat.detect(path: path) else {
            throw .unknownFormat(path: path, reason: "cannot tell the item format from the name; name it (ml-100k, ml-1m, csv)")
        }
        return try withFileBytes(path) { (bytes) throws(DataFileError) in try parseItems(bytes, name: path, format: format) }
    }

    /// Neighbour lists computed elsewhere: a CSV with a header naming an item, a
    /// neighbour and a score column (`item,neighbour,score`), one row per pair.
    public static func readNeighbourPairs(path: String) throws(DataFileError) -> [(item: String, neighbour: String, score: Float)] {
        try withFileBytes(path) { (bytes) throws(DataFileError) in try parseNeighbourPairs(bytes, name: path) }
    }

    /// The command-line form: an optional format name ("ml-100k", "ml-1m", "csv")
    /// and an optional CSV column mapping ("user=uid,item=sku,time=ts").
    public static func readInteractions(path: String, formatName: String?, columns: String?) throws(DataFileError) -> InteractionLog {
        var format: InteractionFormat? = nil
        if let formatName {
            guard let f = InteractionFormat(name: formatName) else {
                throw .unknownFormat(path: path, reason: "unknown interaction format '\(formatName)' (ml-100k, ml-1m, csv)")
            }
            format = f
        }
        if let columns {
            guard format == nil || format == .csv(CSVColumns()) else {
                throw .unknownFormat(path: path, reason: "a column mapping applies only to CSV")
            }
            format = .csv(try CSVColumns(mapping: columns))
        }
        return try readInteractions(path: path, format: format)
    }

    public static func readItems(path: String, formatName: String?) throws(DataFileError) -> ItemList {
        var format: ItemFormat? = nil
        if let formatName {
            guard let f = ItemFormat(name: formatName) else {
                throw .unknownFormat(path: path, reason: "unknown item format '\(formatName)' (ml-100k, ml-1m, csv)")
            }
            format = f
        }
        return try readItems(path: path, format: format)
    }

    // MARK: parsing from bytes (tests call these directly)

    public static func parseInteractions(_ bytes: UnsafeRawBufferPointer, name: String,
                                         format: InteractionFormat) throws(DataFileError) -> InteractionLog {
        var log = InteractionLog()
        switch format {
        case .movieLens100K, .movieLens1M:
            let sep: [UInt8] = format == .movieLens100K ? [0x09] : [0x3A, 0x3A]
            let sepName = format == .movieLens100K ? "tab" : "'::'"
            var fields: [Range<Int>] = []
            try forEachLine(bytes) { (line, range) throws(DataFileError) in
                split(bytes, range, by: sep, into: &fields)
                guard fields.count == 4 else {
                    throw .malformed(path: name, line: line,
                                     reason: "expected 4 \(sepName)-separated fields (user, item, rating, timestamp), found \(fields.count)")
                }
                let user = try utf8(bytes, fields[0], name, line, "user id")
                let item = try utf8(bytes, fields[1], name, line, "item id")
                guard let time = parseInt(bytes, fields[3]) else {
                    throw .malformed(path: name, line: line, reason: "timestamp '\(latin1(bytes, fields[3]))' is not an integer")
                }
                log.append(user: user, item: item, time: time)
            }
        case .csv(let columns):
            var col: (user: Int, item: Int, time: Int?)?
            try forEachCSVRecord(bytes, name: name) { (line, fields) throws(DataFileError) in
                guard let c = col else {
                    let u = try column(fields, columns.user, CSVColumns.knownUser, "user", name)
                    let i = try column(fields, columns.item, CSVColumns.knownItem, "item", name)
                    let t: Int? = columns.time == nil
                        ? findColumn(fields, CSVColumns.knownTime)
                        : try column(fields, columns.time, [], "time", name)
                    col = (u, i, t)
                    return
                }
                let needed = max(c.user, c.item, c.time ?? 0) + 1
                guard fields.count >= needed else {
                    throw .malformed(path: name, line: line, reason: "expected at least \(needed) fields, found \(fields.count)")
                }
                guard !fields[c.user].isEmpty, !fields[c.item].isEmpty else {
                    throw .malformed(path: name, line: line, reason: "empty user or item id")
                }
                var time = Int64(log.count)
                if let t = c.time {
                    guard let v = Int64(fields[t]) else {
                        throw .malformed(path: name, line: line, reason: "timestamp '\(fields[t])' is not an integer")
                    }
                    time = v
                }
                log.append(user: fields[c.user], item: fields[c.item], time: time)
            }
            if col == nil { throw .malformed(path: name, line: 1, reason: "no header line") }
        }
        return log
    }

    public static func parseItems(_ bytes: UnsafeRawBufferPointer, name: String, format: ItemFormat) throws(DataFileError) -> ItemList {
        var list = ItemList(ids: [], titles: [])
        var firstLine: [String: Int] = [:]
        func add(_ id: String, _ title: String, _ line: Int) throws(DataFileError) {
            guard !id.isEmpty else { throw .malformed(path: name, line: line, reason: "empty item id") }
            if let first = firstLine[id] {
                throw .malformed(path: name, line: line, reason: "item id '\(id)' already appears on line \(first)")
            }
            firstLine[id] = line
            list.ids.append(id)
            list.titles.append(title)
        }
        switch format {
        case .movieLens100K, .movieLens1M:
            let sep: [UInt8] = format == .movieLens100K ? [0x7C] : [0x3A, 0x3A]
            let minimum = format == .movieLens100K ? 2 : 3
            var fields: [Range<Int>] = []
            try forEachLine(bytes) { (line, range) throws(DataFileError) in
                split(bytes, range, by: sep, into: &fields)
                guard fields.count >= minimum else {
                    throw .malformed(path: name, line: line,
                                     reason: "expected at least \(minimum) '\(String(decoding: sep, as: UTF8.self))'-separated fields, found \(fields.count)")
                }
                // Both MovieLens item files are ISO-8859-1: every byte is one code point.
                try add(latin1(bytes, fields[0]), latin1(bytes, fields[1]), line)
            }
        case .csv(let idName, let titleName):
            var col: (id: Int, title: Int)?
            try forEachCSVRecord(bytes, name: name) { (line, fields) throws(DataFileError) in
                guard let c = col else {
                    col = (try column(fields, idName, CSVColumns.knownId, "item id", name),
                           try column(fields, titleName, CSVColumns.knownTitle, "title", name))
                    return
                }
                guard fields.count > max(c.id, c.title) else {
                    throw .malformed(path: name, line: line, reason: "expected at least \(max(c.id, c.title) + 1) fields, found \(fields.count)")
                }
                try add(fields[c.id], fields[c.title], line)
            }
            if col == nil { throw .malformed(path: name, line: 1, reason: "no header line") }
        }
        return list
    }

    public static func parseNeighbourPairs(_ bytes: UnsafeRawBufferPointer, name: String) throws(DataFileError)
        -> [(item: String, neighbour: String, score: Float)] {
        var out: [(item: String, neighbour: String, score: Float)] = []
        var col: (item: Int, neighbour: Int, score: Int)?
        try forEachCSVRecord(bytes, name: name) { (line, fields) throws(DataFileError) in
            guard let c = col else {
                col = (try column(fields, nil, ["item", "item_id", "item1", "item_i", "source"], "item", name),
                       try column(fields, nil, CSVColumns.knownNeighbour, "neighbour", name),
                       try column(fields, nil, CSVColumns.knownScore, "score", name))
                return
            }
            guard fields.count > max(c.item, c.neighbour, c.score) else {
                throw .malformed(path: name, line: line, reason: "expected \(max(c.item, c.neighbour, c.score) + 1) fields, found \(fields.count)")
            }
            guard let s = Float(fields[c.score]), s.isFinite else {
                throw .malformed(path: name, line: line, reason: "score '\(fields[c.score])' is not a finite number")
            }
            out.append((fields[c.item], fields[c.neighbour], s))
        }
        if col == nil { throw .malformed(path: name, line: 1, reason: "no header line") }
        return out
    }

    // MARK: helpers

    static func withFileBytes<T>(_ path: String, _ body: (UnsafeRawBufferPointer) throws(DataFileError) -> T) throws(DataFileError) -> T {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch {
            if case .cannotOpen(_, let reason) = error { throw .cannotRead(path: path, reason: reason) }
            throw .cannotRead(path: path, reason: error.description)
        }
        return try body(file.bytes)
    }

    /// Calls `body` with each line's 1-based number and byte range, without the
    /// line terminator (LF or CRLF). Empty lines are skipped.
    static func forEachLine(_ bytes: UnsafeRawBufferPointer,
                            _ body: (Int, Range<Int>) throws(DataFileError) -> Void) throws(DataFileError) {
        var start = 0
        var line = 1
        let n = bytes.count
        while start < n {
            var end = start
            while end < n && bytes[end] != 0x0A { end += 1 }
            var stop = end
            if stop > start && bytes[stop - 1] == 0x0D { stop -= 1 }
            if stop > start { try body(line, start..<stop) }
            start = end + 1
            line += 1
        }
    }

    /// Splits `range` at every occurrence of `sep` (one or two bytes).
    static func split(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, by sep: [UInt8], into fields: inout [Range<Int>]) {
        fields.removeAll(keepingCapacity: true)
        var fieldStart = range.lowerBound
        var i = range.lowerBound
        let s0 = sep[0]
        while i < range.upperBound {
            if bytes[i] == s0 && (sep.count == 1 || (i + 1 < range.upperBound && bytes[i + 1] == sep[1])) {
                fields.append(fieldStart..<i)
                i += sep.count
                fieldStart = i
            } else {
                i += 1
            }
        }
        fields.append(fieldStart..<range.upperBound)
    }

    static func parseInt(_ bytes: UnsafeRawBufferPointer, _ r: Range<Int>) -> Int64? {
        var i = r.lowerBound
        var negative = false
        if i < r.upperBound && (bytes[i] == 0x2D || bytes[i] == 0x2B) { negative = bytes[i] == 0x2D; i += 1 }
        guard i < r.upperBound else { return nil }
        var v: Int64 = 0
        while i < r.upperBound {
            let d = Int64(bytes[i]) - 0x30
            guard d >= 0 && d <= 9 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(d)
            guard !o1 && !o2 else { return nil }
            v = a
            i += 1
        }
        return negative ? -v : v
    }

    static func utf8(_ bytes: UnsafeRawBufferPointer, _ r: Range<Int>, _ name: String, _ line: Int, _ what: String) throws(DataFileError) -> String {
        guard !r.isEmpty else { throw .malformed(path: name, line: line, reason: "empty \(what)") }
        guard let s = String(validating: UnsafeRawBufferPointer(rebasing: bytes[r]), as: UTF8.self) else {
            throw .malformed(path: name, line: line, reason: "\(what) is not valid UTF-8")
        }
        return s
    }

    /// ISO-8859-1: byte value = code point.
    static func latin1(_ bytes: UnsafeRawBufferPointer, _ r: Range<Int>) -> String {
        var s = ""
        s.unicodeScalars.reserveCapacity(r.count)
        for i in r { s.unicodeScalars.append(Unicode.Scalar(bytes[i])) }
        return s
    }

    static func findColumn(_ header: [String], _ names: [String]) -> Int? {
        for n in names {
            if let i = header.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces).caseInsensitiveCompare(n) == .orderedSame }) {
                return i
            }
        }
        return nil
    }

    static func column(_ header: [String], _ wanted: String?, _ known: [String], _ role: String, _ name: String) throws(DataFileError) -> Int {
        let tried = wanted.map { [$0] } ?? known
        guard let i = findColumn(header, tried) else {
            throw .missingColumn(path: name, role: role, tried: tried, header: header)
        }
        return i
    }

    /// RFC 4180 records: comma-separated, fields optionally in double quotes with
    /// `""` for a quote; a quoted field may span lines. UTF-8. Blank lines are
    /// skipped. `body` gets the record's first line number and its fields.
    static func forEachCSVRecord(_ bytes: UnsafeRawBufferPointer, name: String,
                                 _ body: (Int, [String]) throws(DataFileError) -> Void) throws(DataFileError) {
        var fields: [String] = []
        var field: [UInt8] = []
        var i = 0
        var line = 1
        let n = bytes.count
        func finishField(_ line: Int) throws(DataFileError) {
            guard let s = String(validating: field, as: UTF8.self) else {
                throw .malformed(path: name, line: line, reason: "field \(fields.count + 1) is not valid UTF-8")
            }
            fields.append(s)
            field.removeAll(keepingCapacity: true)
        }
        while i < n {
            let recordLine = line
            fields.removeAll(keepingCapacity: true)
            field.removeAll(keepingCapacity: true)
            // Blank line (LF or CRLF): skip.
            if bytes[i] == 0x0A || (bytes[i] == 0x0D && i + 1 < n && bytes[i + 1] == 0x0A) {
                i += bytes[i] == 0x0D ? 2 : 1
                line += 1
                continue
            }
            var endOfRecord = false
            while !endOfRecord {
                if i < n && bytes[i] == 0x22 {  // quoted field
                    i += 1
                    var closed = false
                    while i < n {
                        let b = bytes[i]
                        if b == 0x22 {
                            if i + 1 < n && bytes[i + 1] == 0x22 { field.append(0x22); i += 2; continue }
                            i += 1
                            closed = true
                            break
                        }
                        if b == 0x0A { line += 1 }
                        field.append(b)
                        i += 1
                    }
                    guard closed else {
                        throw .malformed(path: name, line: recordLine, reason: "a quoted field is never closed")
                    }
                    if i < n && bytes[i] != 0x2C && bytes[i] != 0x0A && bytes[i] != 0x0D {
                        throw .malformed(path: name, line: line, reason: "unexpected character after a closing quote")
                    }
                } else {
                    while i < n && bytes[i] != 0x2C && bytes[i] != 0x0A && !(bytes[i] == 0x0D && (i + 1 == n || bytes[i + 1] == 0x0A)) {
                        if bytes[i] == 0x22 {
                            throw .malformed(path: name, line: line, reason: "a quote inside an unquoted field")
                        }
                        field.append(bytes[i])
                        i += 1
                    }
                }
                try finishField(line)
                if i >= n { endOfRecord = true }
                else if bytes[i] == 0x2C { i += 1 }
                else {  // CR LF or LF
                    if bytes[i] == 0x0D { i += 1 }
                    if i < n && bytes[i] == 0x0A { i += 1 }
                    line += 1
                    endOfRecord = true
                }
            }
            try body(recordLine, fields)
        }
    }
}
