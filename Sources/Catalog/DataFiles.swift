// Readers for the interaction and item files a catalog is built from and
// evaluated on: the MovieLens formats and generic CSV with a header.
//
//   interactions                      items
//   u.data       user\titem\trating\ttime       u.item      id|title|date|…   ISO-8859-1
//   ratings.dat  user::item::rating::time       movies.dat  id::title::genres ISO-8859-1
//   ratings.csv  userId,movieId,rating,timestamp movies.csv movieId,title,genres (quoted CSV, UTF-8)
//   any CSV with a header: columns named by a mapping (see `CSVColumns`)
//
// Every interaction counts (ratings are implicit feedback here); the rating is
// checked (a number) but not kept. Row order in the file is kept: it breaks
// timestamp ties. A malformed line is a `DataFileError.malformed` naming file,
// line and reason. Strict everywhere:
//   - every line has the format's field count (u.data and ratings.dat 4, movies.dat 3,
//     u.item as many as its first line, a CSV as many as its header);
//   - ids are not empty; a rating (the MovieLens formats, a CSV `rating` column) is a
//     finite number; a timestamp is an integer (any: negative and millisecond values too);
//   - lines end in LF or CRLF; blank lines are allowed only at the end of the file
//     (a blank line between records is an error).

import FileSafety
import Foundation
import GGUF

public enum DataFileError: Error, Equatable, CustomStringConvertible {
    case cannotRead(path: String, reason: String)
    case cannotWrite(path: String, reason: String)
    case malformed(path: String, line: Int, reason: String)
    case missingColumn(path: String, role: String, tried: [String], header: [String])
    case unknownFormat(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotRead(let p, let r): return "cannot read \(p): \(r)"
        case .cannotWrite(let p, let r): return "cannot write \(p): \(r)"
        // What the file held (fields, header names) is quoted on one line: a stray CR or
        // a terminal escape in a field is shown escaped (GGUF's oneLine).
        case .malformed(let p, let l, let r): return "\(p):\(l): \(oneLine(r))"
        case .missingColumn(let p, let role, let tried, let header):
            let text = header.joined(separator: ",")
            return "\(p): no \(role) column (looked for \(tried.joined(separator: ", ")); header is \(oneLine(excerpt(text)))"
        case .unknownFormat(let p, let r): return "\(p): \(oneLine(r))"
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
    /// False when the file had no time column: `times` is then the row index (file order),
    /// which may say nothing about when things happened (a file sorted by item).
    public var hasTimes = true
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
    /// A column of this name is checked to hold numbers (its values are not kept).
    public static let knownRating = ["rating"]

    /// Parses "user=uid,item=sku,time=ts" (any subset, at least one). A role given twice
    /// and an empty piece ("user=a,,item=b") are errors, as in `--params`: which one
    /// would win is not obvious (the last one did, silently).
    public init(mapping: String) throws(DataFileError) {
        guard !mapping.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw .unknownFormat(path: "--columns", reason: "no role=column given (roles: user, item, time)")
        }
        var seen = Set<String>()
        for part in mapping.split(separator: ",", omittingEmptySubsequences: false) {
            guard !part.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw .unknownFormat(path: "--columns", reason: "an empty piece (a trailing or doubled comma) in '\(mapping)'")
            }
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, !kv[1].isEmpty else {
                throw .unknownFormat(path: "--columns", reason: "'\(part)' is not role=column")
            }
            let role = kv[0] == "timestamp" ? "time" : kv[0]
            switch role {
            case "user": user = kv[1]
            case "item": item = kv[1]
            case "time": time = kv[1]
            default: throw .unknownFormat(path: "--columns", reason: "unknown role '\(kv[0])' (user, item, time)")
            }
            guard seen.insert(role).inserted else {
                throw .unknownFormat(path: "--columns", reason: "the \(role) column is given twice")
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
            try forEachLine(bytes, name: name) { (line, range) throws(DataFileError) in
                split(bytes, range, by: sep, into: &fields)
                guard fields.count == 4 else {
                    throw .malformed(path: name, line: line,
                                     reason: "expected 4 \(sepName)-separated fields (user, item, rating, timestamp), found \(fields.count)")
                }
                let user = try utf8(bytes, fields[0], name, line, "user id")
                let item = try utf8(bytes, fields[1], name, line, "item id")
                guard isNumber(bytes, fields[2]) else {
                    throw .malformed(path: name, line: line, reason: "rating '\(excerpt(latin1(bytes, fields[2]), limit: 80))' is not a number")
                }
                guard let time = parseInt(bytes, fields[3]) else {
                    throw .malformed(path: name, line: line, reason: "timestamp '\(excerpt(latin1(bytes, fields[3]), limit: 80))' is not an integer")
                }
                log.append(user: user, item: item, time: time)
            }
        case .csv(let columns):
            var col: (user: Int, item: Int, time: Int?, rating: Int?, count: Int)?
            try forEachCSVRecord(bytes, name: name) { (line, fields) throws(DataFileError) in
                guard let c = col else {
                    let u = try column(fields, columns.user, CSVColumns.knownUser, "user", name)
                    let i = try column(fields, columns.item, CSVColumns.knownItem, "item", name)
                    let t: Int? = columns.time == nil
                        ? findColumn(fields, CSVColumns.knownTime)
                        : try column(fields, columns.time, [], "time", name)
                    // One column in two roles (`--columns time=userId`, or `item=userId` next to
                    // the detected user column) would read the file silently differently.
                    let roles = [("user", u), ("item", i)] + (t.map { [("time", $0)] } ?? [])
                    for (a, x) in roles.enumerated() {
                        for (b, y) in roles.enumerated() where b > a && x.1 == y.1 {
                            throw .unknownFormat(path: name, reason: "column '\(excerpt(fields[x.1], limit: 80))' would be both the "
                                                 + "\(x.0) and the \(y.0) column; name distinct columns with --columns")
                        }
                    }
                    let r = findColumn(fields, CSVColumns.knownRating).flatMap { [u, i, t].contains($0) ? nil : $0 }
                    col = (u, i, t, r, fields.count)
                    if t == nil { log.hasTimes = false }
                    return
                }
                guard fields.count == c.count else {
                    throw .malformed(path: name, line: line, reason: "expected \(c.count) fields as in the header, found \(fields.count)")
                }
                guard !fields[c.user].isEmpty else { throw .malformed(path: name, line: line, reason: "empty user id") }
                guard !fields[c.item].isEmpty else { throw .malformed(path: name, line: line, reason: "empty item id") }
                if let r = c.rating, !fields[r].isEmpty {   // empty: no rating (an implicit view)
                    guard isNumber(fields[r]) else {
                        throw .malformed(path: name, line: line, reason: "rating '\(excerpt(fields[r], limit: 80))' is not a number")
                    }
                }
                var time = Int64(log.count)
                if let t = c.time {
                    guard let v = Int64(fields[t]) else {
                        throw .malformed(path: name, line: line, reason: "timestamp '\(excerpt(fields[t], limit: 80))' is not an integer")
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
            // As the history store takes ids (and palr takes a pack's): at most 256 bytes, no
            // control or bidirectional control character, not only whitespace.
            if let problem = CatalogPack.storableIDProblem(id) {
                throw .malformed(path: name, line: line, reason: "item id \(CatalogPack.shown(id)) \(problem)")
            }
            // A title goes into prompts one per line: control characters (a newline inside a
            // quoted field, a tab, NUL) and line separators become one space; an empty title
            // gives the model nothing.
            let title = CatalogPack.promptLine(title)
            guard title.contains(where: { !$0.isWhitespace }) else {
                throw .malformed(path: name, line: line, reason: "item '\(id)' has an empty title")
            }
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
            let sepName = "'\(String(decoding: sep, as: UTF8.self))'-separated"
            // movies.dat is id::title::genres; u.item has id|title| and then a fixed set of
            // columns (24 in ML-100K): every line as many as the first.
            var expected: Int? = format == .movieLens1M ? 3 : nil
            var fields: [Range<Int>] = []
            try forEachLine(bytes, name: name) { (line, range) throws(DataFileError) in
                split(bytes, range, by: sep, into: &fields)
                if let expected {
                    guard fields.count == expected else {
                        let what = format == .movieLens1M ? " (id, title, genres)" : " as on the first line"
                        throw .malformed(path: name, line: line, reason: "expected \(expected) \(sepName) fields\(what), found \(fields.count)")
                    }
                } else {
                    guard fields.count >= 2 else {
                        throw .malformed(path: name, line: line, reason: "expected at least 2 \(sepName) fields (id, title), found \(fields.count)")
                    }
                    expected = fields.count
                }
                // Both MovieLens item files are ISO-8859-1: every byte is one code point.
                try add(latin1(bytes, fields[0]), latin1(bytes, fields[1]), line)
            }
        case .csv(let idName, let titleName):
            var col: (id: Int, title: Int, count: Int)?
            try forEachCSVRecord(bytes, name: name) { (line, fields) throws(DataFileError) in
                guard let c = col else {
                    col = (try column(fields, idName, CSVColumns.knownId, "item id", name),
                           try column(fields, titleName, CSVColumns.knownTitle, "title", name), fields.count)
                    return
                }
                guard fields.count == c.count else {
                    throw .malformed(path: name, line: line, reason: "expected \(c.count) fields as in the header, found \(fields.count)")
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
        var col: (item: Int, neighbour: Int, score: Int, count: Int)?
        try forEachCSVRecord(bytes, name: name) { (line, fields) throws(DataFileError) in
            guard let c = col else {
                col = (try column(fields, nil, ["item", "item_id", "item1", "item_i", "source"], "item", name),
                       try column(fields, nil, CSVColumns.knownNeighbour, "neighbour", name),
                       try column(fields, nil, CSVColumns.knownScore, "score", name), fields.count)
                return
            }
            guard fields.count == c.count else {
                throw .malformed(path: name, line: line, reason: "expected \(c.count) fields as in the header, found \(fields.count)")
            }
            guard !fields[c.item].isEmpty else { throw .malformed(path: name, line: line, reason: "empty item id") }
            guard !fields[c.neighbour].isEmpty else { throw .malformed(path: name, line: line, reason: "empty neighbour id") }
            guard let s = Float(fields[c.score]), s.isFinite else {
                throw .malformed(path: name, line: line, reason: "score '\(excerpt(fields[c.score], limit: 80))' is not a finite number")
            }
            out.append((fields[c.item], fields[c.neighbour], s))
        }
        if col == nil { throw .malformed(path: name, line: 1, reason: "no header line") }
        return out
    }

    // MARK: helpers

    /// The most a data file may hold (it is read into memory).
    static let maxFileBytes = 4 << 30
    /// The most a pipe or device may give.
    static let maxStreamBytes = 1 << 30

    /// Reads the file into memory (not mapped: a file shortened while it is read would
    /// kill a process that maps it with SIGBUS) and hands its bytes to `body`. Pipes
    /// (`<(…)`) work too.
    static func withFileBytes<T>(_ path: String, _ body: (UnsafeRawBufferPointer) throws(DataFileError) -> T) throws(DataFileError) -> T {
        if let problem = readProblem(path) { throw .cannotRead(path: path, reason: problem) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotRead(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        let bytes: [UInt8]
        // A pipe or device gives no size up front: capped lower, as it is read to its end.
        var info = stat()
        let regular = fstat(fd, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
        do { bytes = try readFully(fd, limit: regular ? maxFileBytes : maxStreamBytes) } catch {
            throw .cannotRead(path: path, reason: error.reason)
        }
        let result: Result<T, DataFileError> = bytes.withUnsafeBytes { raw in
            do throws(DataFileError) { return .success(try body(raw)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Why `path` cannot be read as a file, in words ("No such file or directory",
    /// "is a directory", "Permission denied"), or nil.
    static func readProblem(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return String(cString: strerror(errno)) }
        if (st.st_mode & S_IFMT) == S_IFDIR { return "is a directory" }
        guard access(path, R_OK) == 0 else { return String(cString: strerror(errno)) }
        return nil
    }

    /// Calls `body` with each line's 1-based number and byte range, without the
    /// line terminator (LF or CRLF). Blank lines at the end of the file are skipped;
    /// a blank line followed by a non-blank one is malformed.
    /// 3 when the file starts with a UTF-8 byte order mark (as spreadsheets write
    /// "CSV UTF-8"), else 0: the mark is not part of the first field.
    static func byteOrderMarkLength(_ bytes: UnsafeRawBufferPointer) -> Int {
        bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0
    }

    static func forEachLine(_ bytes: UnsafeRawBufferPointer, name: String,
                            _ body: (Int, Range<Int>) throws(DataFileError) -> Void) throws(DataFileError) {
        var start = byteOrderMarkLength(bytes)
        var line = 1
        var blank: Int? = nil   // the first blank line since the last non-blank one
        let n = bytes.count
        while start < n {
            var end = start
            while end < n && bytes[end] != 0x0A { end += 1 }
            var stop = end
            if stop > start && bytes[stop - 1] == 0x0D { stop -= 1 }
            if stop > start {
                if let blank { throw blankLine(name, blank) }
                try body(line, start..<stop)
            } else if blank == nil {
                blank = line
            }
            start = end + 1
            line += 1
        }
    }

    static func blankLine(_ name: String, _ line: Int) -> DataFileError {
        .malformed(path: name, line: line, reason: "blank line (blank lines are allowed only at the end of the file)")
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

    /// A finite decimal number: digits with an optional sign, point and exponent
    /// ("4", "3.5", "-1e2"); not "nan", "inf" or hexadecimal.
    static func isNumber(_ bytes: UnsafeRawBufferPointer, _ r: Range<Int>) -> Bool {
        isNumber(UnsafeRawBufferPointer(rebasing: bytes[r]))
    }

    static func isNumber(_ s: String) -> Bool {
        var s = s
        return s.withUTF8 { isNumber(UnsafeRawBufferPointer($0)) }
    }

    static func isNumber(_ b: UnsafeRawBufferPointer) -> Bool {
        guard !b.isEmpty else { return false }
        var plain = true  // only digits and at most one point: the common case, no String made
        var points = 0
        for c in b {
            if c == 0x2E { points += 1 } else if c < 0x30 || c > 0x39 { plain = false; break }
        }
        if plain { return points <= 1 && b.count > points }
        for c in b where !(c >= 0x30 && c <= 0x39) && !"+-.eE".utf8.contains(c) { return false }
        guard let v = Double(String(decoding: b, as: UTF8.self)) else { return false }
        return v.isFinite
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
            // Newlines too: a stray CR at the end of a header line is not part of the name.
            if let i = header.firstIndex(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines).caseInsensitiveCompare(n) == .orderedSame }) {
                return i
            }
        }
        return nil
    }

    /// The most columns a CSV header may have: far more than any item or interaction file
    /// (a spreadsheet stops at 16,384), few enough that finding the named columns stays
    /// quick (a header of 1,000,000 columns took 10 s of CPU time to be refused).
    static let maxColumns = 65_536

    static func column(_ header: [String], _ wanted: String?, _ known: [String], _ role: String, _ name: String) throws(DataFileError) -> Int {
        guard header.count <= maxColumns else {
            throw .malformed(path: name, line: 1, reason: "the header has \(header.count) columns, more than palr reads (at most \(maxColumns))")
        }
        let tried = wanted.map { [$0] } ?? known
        guard let i = findColumn(header, tried) else {
            throw .missingColumn(path: name, role: role, tried: tried, header: header)
        }
        return i
    }

    /// RFC 4180 records: comma-separated, fields optionally in double quotes with
    /// `""` for a quote; a quoted field may span lines. UTF-8. Blank lines at the
    /// end of the file are skipped; a blank line followed by a record is malformed.
    /// `body` gets the record's first line number and its fields.
    static func forEachCSVRecord(_ bytes: UnsafeRawBufferPointer, name: String,
                                 _ body: (Int, [String]) throws(DataFileError) -> Void) throws(DataFileError) {
        var fields: [String] = []
        var field: [UInt8] = []
        var i = byteOrderMarkLength(bytes)
        var line = 1
        let n = bytes.count
        func finishField(_ line: Int) throws(DataFileError) {
            guard let s = String(validating: field, as: UTF8.self) else {
                throw .malformed(path: name, line: line, reason: "field \(fields.count + 1) is not valid UTF-8")
            }
            fields.append(s)
            field.removeAll(keepingCapacity: true)
        }
        var blank: Int? = nil   // the first blank line since the last record
        while i < n {
            let recordLine = line
            fields.removeAll(keepingCapacity: true)
            field.removeAll(keepingCapacity: true)
            // Blank line (LF, CRLF, or a lone CR at the end): an error unless only blank lines follow.
            if bytes[i] == 0x0A || (bytes[i] == 0x0D && (i + 1 == n || bytes[i + 1] == 0x0A)) {
                i += bytes[i] == 0x0D && i + 1 < n ? 2 : 1
                if blank == nil { blank = line }
                line += 1
                continue
            }
            if let blank { throw blankLine(name, blank) }
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

// MARK: - Other files a command reads or writes

extension DataFiles {
    /// Throws `cannotRead` naming `path` and the reason ("No such file or directory",
    /// "is a directory", "Permission denied") unless it is a readable file.
    public static func checkReadable(path: String) throws(DataFileError) {
        if let problem = readProblem(path) { throw .cannotRead(path: path, reason: problem) }
    }

    /// A list of ids, one per line (e.g. `palr eval --user-list`): surrounding
    /// whitespace trimmed, blank lines ignored, UTF-8.
    public static func readIdList(path: String) throws(DataFileError) -> [String] {
        try withFileBytes(path) { (bytes) throws(DataFileError) in try parseIdList(bytes, name: path) }
    }

    /// The lines of `readIdList`; `name` names the bytes in errors.
    static func parseIdList(_ bytes: UnsafeRawBufferPointer, name: String) throws(DataFileError) -> [String] {
        var ids: [String] = []
        var start = byteOrderMarkLength(bytes)
        var line = 1
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            guard let text = String(validating: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self) else {
                throw .malformed(path: name, line: line, reason: "not valid UTF-8")
            }
            let id = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !id.isEmpty { ids.append(id) }
            start = end + 1
            line += 1
        }
        return ids
    }

    /// Checks up front that `writeAtomically` can create `path`: its folder exists
    /// and is writable, and `path` is not a folder. Commands call it before long work.
    /// Returns the file a write replaces (`path`, or what its symbolic link points to).
    @discardableResult
    public static func checkWritable(path: String) throws(DataFileError) -> String {
        // A device, FIFO, folder or dangling link would be replaced by the rename.
        let target: String
        do { target = try Destination.target(of: path) } catch { throw .cannotWrite(path: path, reason: error.reason) }
        let folder = folderOf(target)
        var st = stat()
        guard stat(folder, &st) == 0 else {
            let e = errno
            throw .cannotWrite(path: path, reason: "folder \(folder): \(String(cString: strerror(e)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw .cannotWrite(path: path, reason: "\(folder) is not a directory") }
        guard access(folder, W_OK | X_OK) == 0 else {
            let e = errno
            throw .cannotWrite(path: path, reason: "folder \(folder): \(String(cString: strerror(e)))")
        }
        return target
    }

    /// Writes `text` to `path` atomically: a temporary file in the same folder,
    /// flushed to disk, then renamed over `path` (readers see the old file or the
    /// new one, never a part). On failure `path` is untouched and the temporary removed.
    /// A symbolic link is followed (the file it points to is replaced, keeping its
    /// mode); anything but a regular file is refused, also if it appears meanwhile.
    public static func writeAtomically(_ text: String, to path: String) throws(DataFileError) {
        try checkWritable(path: path)
        do {
            let file = try AtomicFile(replacing: path)
            try file.write(text)
            try file.commit()
        } catch {
            throw .cannotWrite(path: path, reason: error.reason)
        }
    }

    static func folderOf(_ path: String) -> String {
        let folder = (path as NSString).deletingLastPathComponent
        return folder.isEmpty ? "." : folder
    }
}

// MARK: - Neighbour import (`--neighbours-csv`)

/// The outcome of importing neighbour pairs: the table and what became of every data row.
public struct NeighbourImport {
    public var table: NeighbourTable
    /// Data rows in the file (the header is not one).
    public var rows: Int
    /// Pairs in the table.
    public var imported: Int
    /// Rows naming an unknown item, pairing an item with itself, or repeating a pair.
    public var skipped: Int
    /// Valid pairs past an item's K best.
    public var beyondK: Int

    /// "3 rows: 1 pair imported, 1 skipped (unknown id, self pair or repeat), 1 beyond K=1".
    public var summary: String {
        var s = "\(rows) row\(rows == 1 ? "" : "s"): \(imported) pair\(imported == 1 ? "" : "s") imported"
        if skipped > 0 { s += ", \(skipped) skipped (unknown id, self pair or repeat)" }
        if beyondK > 0 { s += ", \(beyondK) beyond K=\(table.k)" }
        return s
    }
}

extension DataFiles {
    /// Reads `item,neighbour,score` rows (`readNeighbourPairs`) and builds the table
    /// (`NeighbourBuilder.table(fromPairs:)`), counting what became of every row.
    public static func importNeighbours(path: String, itemCount: Int, k: Int,
                                        itemIndex: (String) -> Int32?) throws(DataFileError) -> NeighbourImport {
        let pairs = try readNeighbourPairs(path: path)
        let made = NeighbourBuilder.table(fromPairs: pairs, itemCount: itemCount, k: k, itemIndex: itemIndex)
        var imported = 0
        for i in 0..<itemCount { imported += made.table.row(i).count }
        return NeighbourImport(table: made.table, rows: pairs.count, imported: imported, skipped: made.skipped,
                               beyondK: pairs.count - made.skipped - imported)
    }
}

// MARK: - Retrieval settings from a command line

extension RetrievalSettings {
    /// `history_length`: the newest known items whose neighbours are summed. Past a
    /// few hundred the decayed weights are ~0 and only the cost grows (O(L·K)).
    public static let historyLengthRange = 1...1000
    /// `popularity_weight`: times normalised popularity (0...1) added to every score.
    /// Neighbour scores are O(1), so weights past ~100 already rank by popularity
    /// alone; beyond 1000 a value is a typo (and 1e39 is infinite as a Float).
    public static let popularityWeightRange = 0.0...1000.0

    /// These settings, if every value is finite and within the ranges above
    /// (`recency_decay`, the weight recencyDecay^a of the item a steps back, in
    /// (0, 1]); otherwise an error naming the parameter.
    public func validated() throws(NeighbourError) -> RetrievalSettings {
        guard Self.historyLengthRange.contains(historyLength) else {
            throw .badParameter("history_length must be in \(Self.historyLengthRange), is \(historyLength)")
        }
        guard recencyDecay.isFinite, recencyDecay > 0, recencyDecay <= 1 else {
            throw .badParameter("recency_decay must be in (0, 1], is \(g(recencyDecay))")
        }
        guard popularityWeight.isFinite, Self.popularityWeightRange.contains(popularityWeight) else {
            let r = Self.popularityWeightRange
            throw .badParameter("popularity_weight must be in \(g(r.lowerBound))...\(g(r.upperBound)), is \(g(popularityWeight))")
        }
        return self
    }

    private func g(_ v: Double) -> String { String(format: "%g", v) }
}
