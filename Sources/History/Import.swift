// Import of interaction files: MovieLens u.data, ratings.dat and ratings.csv,
// and any CSV whose header names the columns.
//
// An import is all or nothing: the whole file is parsed and checked first, and
// only then written, in one transaction. The first malformed line aborts the
// import with an ImportError naming the file, the 1-based line number and the
// reason; the store is left as it was. Neither pass keeps the file's rows: the
// check discards them and the write parses the file again and inserts it in
// batches of `importBatch` rows, so memory does not grow with the file (the
// file is read in 1 MiB chunks). Lines end in LF or CRLF; one final line
// ending is allowed, empty lines elsewhere are errors. Quoted CSV fields may
// contain the delimiter and doubled quotes, but not line breaks.
//
// Import appends: importing the same file twice records its rows twice. It does
// not apply the retention cap (which would silently drop rows); the report
// lists profiles now over the cap, which the next write to them or the next
// compaction trims.
import FileSafety
import Foundation

/// The layout of an import file.
public enum ImportFormat: Hashable, Sendable {
    /// MovieLens 100K `u.data`: `user<TAB>item<TAB>rating<TAB>timestamp`, no header.
    case movieLensUData
    /// MovieLens 1M/10M `ratings.dat`: `user::item::rating::timestamp`, no header.
    case movieLensDat
    /// MovieLens (latest) `ratings.csv`: header `userId,movieId,rating,timestamp`.
    case movieLensCSV
    /// A CSV file with a header; the mapping names the columns to use.
    case csv(CSVMapping)
}

/// Which columns of a CSV file hold what. Other columns are ignored.
public struct CSVMapping: Hashable, Sendable {
    public var profileColumn: String
    public var itemColumn: String
    public var timeColumn: String
    /// Column of the optional value; an empty field means no value.
    public var valueColumn: String?
    /// Column of the interaction kind; without one, `ImportOptions.kind` is used.
    public var kindColumn: String?
    /// One ASCII character; ',' by default.
    public var delimiter: UInt8
    public var timeUnit: TimeUnit

    public init(profileColumn: String, itemColumn: String, timeColumn: String, valueColumn: String? = nil,
                kindColumn: String? = nil, delimiter: UInt8 = UInt8(ascii: ","), timeUnit: TimeUnit = .seconds) {
        self.profileColumn = profileColumn
        self.itemColumn = itemColumn
        self.timeColumn = timeColumn
        self.valueColumn = valueColumn
        self.kindColumn = kindColumn
        self.delimiter = delimiter
        self.timeUnit = timeUnit
    }

    /// Why this mapping cannot be read, or nil: one column named for two roles
    /// (the item would silently be the profile), or a delimiter that cannot
    /// separate fields (the quote, a line break or another control character
    /// than tab, a byte outside ASCII).
    public var problem: String? {
        let roles: [(String, String?)] = [("profile", profileColumn), ("item", itemColumn), ("time", timeColumn),
                                          ("value", valueColumn), ("kind", kindColumn)]
        for (index, (role, column)) in roles.enumerated() {
            guard let column else { continue }
            if let other = roles[(index + 1)...].first(where: { $0.1 == column }) {
                return "column \(Validation.quoted(column)) is given as both the \(role) column and the \(other.0) "
                    + "column; each role needs a column of its own"
            }
        }
        let shown = Validation.quoted(String(Unicode.Scalar(delimiter)))
        if delimiter >= 0x80 { return "the delimiter \(shown) is not an ASCII character" }
        if delimiter == UInt8(ascii: "\"") { return "the delimiter \(shown) is the quote character of CSV fields" }
        if (delimiter < 0x20 && delimiter != UInt8(ascii: "\t")) || delimiter == 0x7f {
            return "the delimiter \(shown) is a control character (of those only tab can separate fields)"
        }
        return nil
    }
}

/// The unit of a time column: integers since the Unix epoch.
public enum TimeUnit: String, Hashable, Sendable, CaseIterable {
    case seconds
    case milliseconds
}

/// How to import a file.
public struct ImportOptions: Hashable, Sendable {
    public var format: ImportFormat
    /// Put before every profile name (e.g. "ml100k:"), to keep several data
    /// sets apart in one store. Empty by default: ML-100K user 196 becomes
    /// profile "196".
    public var profilePrefix: String
    /// The kind of every row when the file has no kind column. nil: `.rating`
    /// for the MovieLens formats, `.view` for CSV.
    public var kind: InteractionKind?

    public init(format: ImportFormat, profilePrefix: String = "", kind: InteractionKind? = nil) {
        self.format = format
        self.profilePrefix = profilePrefix
        self.kind = kind
    }
}

/// What an import did.
public struct ImportReport: Hashable, Sendable, Codable {
    public var file: String
    /// Interactions imported (data lines in the file).
    public var interactions: Int
    /// Profiles the file has rows for, and how many of them were new.
    public var profiles: Int
    public var newProfiles: Int
    public var newItems: Int
    /// Ids given to the first and last imported interaction (nil when none).
    public var firstID: Int64?
    public var lastID: Int64?
    /// Profiles with more interactions than the retention cap after the import,
    /// by name; the next write to them or the next compaction trims them.
    public var profilesOverCap: [String]
    public var retentionCap: Int?
}

extension HistoryStore {
    /// A value as import and `palr history add` read it: a finite number in decimal
    /// notation (an optional sign, digits with an optional '.', an optional exponent
    /// `e`/`E` with optional sign and digits), or nil. Swift's `Double(_:)` alone would
    /// also take hexadecimal ("0x1p3"), "nan" and "inf". A value too small for a
    /// Double is 0.
    public static func parseValue(_ text: String) -> Double? {
        var bytes = text.utf8[...]
        func digits() -> Int {
            let count = bytes.prefix(while: { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }).count
            bytes = bytes.dropFirst(count)
            return count
        }
        func skip(_ characters: String) -> Bool {
            guard let first = bytes.first, characters.utf8.contains(first) else { return false }
            bytes = bytes.dropFirst()
            return true
        }
        _ = skip("+-")
        var mantissa = digits()
        if skip(".") { mantissa += digits() }
        guard mantissa > 0 else { return nil }
        if skip("eE") {
            _ = skip("+-")
            guard digits() > 0 else { return nil }
        }
        guard bytes.isEmpty, let number = Double(text), number.isFinite else { return nil }
        return number
    }

    /// Imports the file at `path` in one transaction; see `ImportOptions`.
    public func importFile(_ path: String, options: ImportOptions) throws -> ImportReport {
        try importInput(try ImportInput(path: path), options: options)
    }

    /// Imports `data` (the contents of a file called `name` in messages).
    public func importData(_ data: Data, name: String, options: ImportOptions) throws -> ImportReport {
        try importInput(ImportInput(data: data, name: name), options: options)
    }

    /// Imports an input opened beforehand (a command opens it before it creates a
    /// database, so that a file it cannot read leaves no database behind).
    public func importInput(_ source: ImportInput, options: ImportOptions) throws -> ImportReport {
        let report = try importSource(source, name: source.name, options: options)
        ensureReserve()   // the store grew: its reserve grows with it
        return report
    }

    private func importSource(_ source: ImportInput, name: String, options: ImportOptions) throws -> ImportReport {
        // Pass 1, outside any transaction (unless the caller ran it already).
        let total = try source.check(options: options)
        // Every profile id is looked up or created in the same transaction, so
        // the per-row foreign-key check is redundant work here (it can only be
        // switched outside a transaction).
        try connection.run("import \(name)") { try connection.exec("PRAGMA foreign_keys = OFF") }
        defer { try? connection.run("import \(name)") { try connection.exec("PRAGMA foreign_keys = ON") } }
        return try connection.write("import \(name)") {
            // Pass 2: parse again and insert batch by batch. `batch` is owned here
            // and reused; it never holds more than `importBatch` rows. It reads the
            // same open file, exactly the bytes pass 1 checked; a file changed since
            // (size, modification time) throws, and the transaction rolls back.
            var resolver = IDResolver(store: self, createProfiles: true, now: Self.now())
            var batch: [NewInteraction] = []
            batch.reserveCapacity(min(total, Self.importBatch))
            var first: Int64? = nil, last: Int64? = nil, inserted = 0
            func flush() throws {
                let ids = try insert(try resolver.rows(batch))
                first = first ?? ids.first
                last = ids.last ?? last
                inserted += batch.count
                batch.removeAll(keepingCapacity: true)
            }
            var parser = try ImportParser(file: name, options: options)
            try source.forEachLine(pass: .write) { bytes, text in
                try parser.line(bytes, text) { row in
                    batch.append(row)
                    if batch.count == Self.importBatch { try flush() }
                }
            }
            guard try parser.finish() == total else { throw source.changed() }
            try flush()
            let cap = try retentionCapValue()
            var overCap: [String] = []
            if let cap {
                for (name, id) in resolver.profileIDs where try count(profile: id) > cap { overCap.append(name) }
            }
            return ImportReport(file: name, interactions: inserted, profiles: resolver.profileIDs.count,
                                newProfiles: resolver.createdProfiles.count, newItems: resolver.createdItems,
                                firstID: first, lastID: last, profilesOverCap: overCap.sorted(),
                                retentionCap: cap)
        }
    }

    /// Rows an import resolves and inserts at a time (about 2 MB of parsed rows).
    static let importBatch = 16_384
}

/// What an import reads: a regular file, kept open and read in chunks twice (once
/// to check, once to write: the same file even if its name is replaced meanwhile,
/// and exactly the bytes the check read), or bytes in memory (a pipe or device is
/// read whole when opened, since it cannot be read twice). A UTF-8 byte order mark
/// at the start is skipped.
public final class ImportInput {
    /// The name in messages (the path as given).
    public let name: String
    private enum Storage {
        /// A regular file, read from `base` (0, or where standard input stood).
        case file(descriptor: Int32, base: Int)
        case memory([UInt8])
    }
    private let storage: Storage
    /// The file's size and modification time when opened (regular files). Not the
    /// change time: a rename, chmod or link changes it without changing a byte (log
    /// rotation renames a file being read). A same-size rewrite whose writer sets the
    /// modification time back is not noticed.
    private var opened: (size: Int, modified: timespec)?
    /// Bytes the check pass read; the write pass reads exactly these.
    private var checkedLength: Int?
    /// The options the check pass ran with, and the rows it found.
    private var checked: (options: ImportOptions, rows: Int)?

    /// Pass 1: checks every line as `options` read them, keeping nothing; returns the
    /// number of rows. An import runs it when its caller has not (a command runs it
    /// first so that a malformed file leaves no new database behind).
    @discardableResult
    public func check(options: ImportOptions) throws -> Int {
        if let checked, checked.options == options { return checked.rows }
        var checker = try ImportParser(file: name, options: options)
        try forEachLine(pass: .check) { bytes, text in try checker.line(bytes, text) { _ in } }
        let rows = try checker.finish()
        checked = (options, rows)
        return rows
    }

    enum Pass { case check, write }

    /// Bytes read from a file at a time.
    static let chunk = 1 << 20
    /// The most a pipe or device may give (it is held in memory).
    static let maxPipeBytes = 1 << 30
    /// The longest line (the chunk buffer grows up to it).
    static let maxLineBytes = 16 << 20

    public init(data: Data, name: String) {
        self.name = name
        storage = .memory([UInt8](data))
    }

    /// Opens `path` ("-": standard input). A pipe or a device is read to its end here
    /// (at most `maxPipeBytes`).
    public init(path: String) throws(ImportError) {
        let display = path == "-" ? "standard input" : path
        name = display
        func failure(_ e: Int32) -> ImportError {
            ImportError(file: display, line: 0, reason: "cannot read the file: \(String(cString: strerror(e)))")
        }
        let fd = openInput(path)
        guard fd >= 0 else { throw failure(errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let e = errno
            close(fd)
            throw failure(e)
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            // Standard input may already have been read from (`{ read l; palr … -; } < f`):
            // the import starts where it stands, as reading it would.
            let base = path == "-" ? Int(max(lseek(fd, 0, SEEK_CUR), 0)) : 0
            storage = .file(descriptor: fd, base: base)
            opened = (Int(info.st_size), info.st_mtim)
        case S_IFDIR:
            close(fd)
            throw ImportError(file: display, line: 0, reason: "it is a folder, not a file")
        default:
            defer { close(fd) }
            do { storage = .memory(try readFully(fd, limit: Self.maxPipeBytes)) } catch {
                throw ImportError(file: display, line: 0, reason: "cannot read the file: \(error.reason)"
                                  + (error == .tooLarge(limit: Self.maxPipeBytes) ? "; import a regular file instead" : ""))
            }
        }
    }

    deinit {
        if case .file(let fd, _) = storage { close(fd) }
    }

    /// The error for a file that changed between or during the passes.
    func changed() -> ImportError {
        ImportError(file: name, line: 0, reason: "the file changed while it was being imported (its size or modification time); import a copy that nothing writes to")
    }

    /// Throws `changed()` if the file's size or modification time differ from when it was opened.
    private func checkUnchanged(_ fd: Int32) throws(ImportError) {
        guard let opened else { return }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw ImportError(file: name, line: 0, reason: "cannot read the file: \(String(cString: strerror(errno)))")
        }
        guard Int(info.st_size) == opened.size, info.st_mtim.tv_sec == opened.modified.tv_sec,
              info.st_mtim.tv_nsec == opened.modified.tv_nsec else { throw changed() }
    }

    /// Calls `body` with each line, without its "\n", as a range of a buffer that
    /// is valid only during the call. Lines are split at "\n"; a final line
    /// ending does not start another line.
    func forEachLine(pass: Pass, _ body: (UnsafeBufferPointer<UInt8>, Range<Int>) throws -> Void) throws {
        switch storage {
        case .memory(let data):
            try data.withUnsafeBufferPointer { bytes in
                var position = bytes.starts(with: Self.byteOrderMark) ? 3 : 0
                while position < bytes.count {
                    var end = position
                    while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
                    try body(bytes, position..<end)
                    position = end + 1
                }
            }
        case .file(let fd, let base):
            let limit = pass == .write ? checkedLength : nil
            let length = try readLines(fd, base: base, limit: limit, body)
            if pass == .check { checkedLength = length }
            try checkUnchanged(fd)
            // Standard input is left where reading it would leave it: at its end.
            if pass == .write && name == "standard input" { _ = lseek(fd, off_t(base + length), SEEK_SET) }
        }
    }

    static let byteOrderMark: [UInt8] = [0xef, 0xbb, 0xbf]

    /// Reads `fd` from its start (up to `limit` bytes, which must all be there)
    /// and hands over its lines; returns how many bytes it read.
    private func readLines(_ fd: Int32, base: Int, limit: Int?,
                           _ body: (UnsafeBufferPointer<UInt8>, Range<Int>) throws -> Void) throws -> Int {
        // The buffer is owned by this call: `filled` bytes are valid, lines before
        // `start` are done. It grows only for a line longer than it.
        var buffer = [UInt8](repeating: 0, count: Self.chunk)
        var filled = 0, start = 0, scan = 0, offset = 0, first = true
        var lines = 0   // lines handed over so far (the long one is line lines + 1)
        while true {
            if start > 0 {  // keep the unfinished line at the front
                buffer.withUnsafeMutableBytes { b in
                    _ = memmove(b.baseAddress!, b.baseAddress! + start, filled - start)
                }
                filled -= start
                scan -= start
                start = 0
            }
            if filled == buffer.count {
                guard buffer.count < Self.maxLineBytes else {
                    throw ImportError(file: name, line: lines + 1, reason: "the line is longer than \(Self.maxLineBytes >> 20) MiB")
                }
                buffer.append(contentsOf: repeatElement(0, count: buffer.count))
            }
            var want = buffer.count - filled
            if let limit { want = min(want, limit - offset) }
            let got = want == 0 ? 0 : buffer.withUnsafeMutableBytes { b in pread(fd, b.baseAddress! + filled, want, off_t(base + offset)) }
            if got < 0 {
                if errno == EINTR { continue }
                throw ImportError(file: name, line: 0, reason: "cannot read the file: \(String(cString: strerror(errno)))")
            }
            if got == 0 {  // the end: the last line may lack its line ending
                if let limit, offset < limit { throw changed() }
                if filled > start { try buffer.withUnsafeBufferPointer { try body($0, start..<filled) } }
                return offset
            }
            filled += got
            offset += got
            if first && filled >= 3 {
                first = false
                if buffer.starts(with: Self.byteOrderMark) { start = 3; scan = 3 }
            }
            try buffer.withUnsafeBufferPointer { b in
                while scan < filled {
                    if b[scan] == UInt8(ascii: "\n") {
                        try body(b, start..<scan)
                        lines += 1
                        start = scan + 1
                    }
                    scan += 1
                }
            }
        }
    }
}

/// Splits a file into lines and fields, and checks every field.
struct ImportParser {
    let file: String
    let options: ImportOptions
    private let defaultKind: InteractionKind
    private var line = 0
    private var rows = 0
    private var columns: Columns?
    /// The current line's fields; owned here, reused from line to line.
    private var fields: [String] = []

    init(file: String, options: ImportOptions) throws {
        self.file = file
        self.options = options
        switch options.format {
        case .csv: defaultKind = options.kind ?? .view
        default: defaultKind = options.kind ?? .rating
        }
        if let problem = defaultKind.problem { throw ImportError(file: file, line: 0, reason: problem) }
        if case .csv(let mapping) = options.format, let problem = mapping.problem {
            throw ImportError(file: file, line: 0, reason: problem)
        }
        switch options.format {
        case .movieLensUData, .movieLensDat: columns = Columns()
        case .movieLensCSV, .csv: columns = nil  // read from the header
        }
    }

    /// Where the fields of a data line are, once the header (if any) is read.
    private struct Columns {
        var profile = 0, item = 1, value: Int? = 2, time = 3, kind: Int? = nil
        var count = 4
        var timeUnit = TimeUnit.seconds
    }

    /// Reads one line (`text` in `bytes`, without its "\n"), handing a data row
    /// to `body`. Throws if the line is malformed.
    mutating func line(_ bytes: UnsafeBufferPointer<UInt8>, _ text: Range<Int>,
                       _ body: (NewInteraction) throws -> Void) throws {
        line += 1
        var text = text
        if !text.isEmpty && bytes[text.upperBound - 1] == UInt8(ascii: "\r") { text = text.dropLast() }
        if text.isEmpty { throw error("empty line") }
        fields.removeAll(keepingCapacity: true)
        try split(bytes, text, into: &fields)
        guard let layout = columns else {
            columns = try header(fields)
            return
        }
        guard fields.count == layout.count else {
            throw error("expected \(layout.count) fields\(separatorName), found \(fields.count)")
        }
        try body(try row(fields, layout, defaultKind: defaultKind))
        rows += 1
    }

    /// After the last line: how many data rows there were.
    func finish() throws -> Int {
        if columns == nil { throw error("the file is empty: expected a header line") }
        return rows
    }

    private var separatorName: String {
        switch options.format {
        case .movieLensUData: return " separated by tabs"
        case .movieLensDat: return " separated by '::'"
        case .movieLensCSV: return " separated by ','"
        case .csv(let mapping): return " separated by \(Validation.quoted(String(Unicode.Scalar(mapping.delimiter))))"
        }
    }

    /// Maps the header's column names to positions.
    private func header(_ names: [String]) throws -> Columns {
        switch options.format {
        case .movieLensCSV:
            let expected = ["userId", "movieId", "rating", "timestamp"]
            guard names == expected else {
                throw error("expected the header '\(expected.joined(separator: ","))', found "
                            + Validation.quoted(names.joined(separator: ","), limit: 200))
            }
            return Columns()
        case .csv(let mapping):
            func position(_ name: String) throws -> Int {
                let matches = names.indices.filter { names[$0] == name }
                guard matches.count == 1 else {
                    throw error(matches.isEmpty
                        ? "no column named \(Validation.quoted(name)) in the header (columns: "
                            + "\(Validation.quoted(names.joined(separator: ", "), limit: 200, quote: "")))"
                        : "the header names column \(Validation.quoted(name)) \(matches.count) times")
                }
                return matches[0]
            }
            return Columns(profile: try position(mapping.profileColumn), item: try position(mapping.itemColumn),
                           value: try mapping.valueColumn.map(position), time: try position(mapping.timeColumn),
                           kind: try mapping.kindColumn.map(position), count: names.count,
                           timeUnit: mapping.timeUnit)
        case .movieLensUData, .movieLensDat:
            return Columns()
        }
    }

    private func row(_ fields: [String], _ columns: Columns, defaultKind: InteractionKind) throws -> NewInteraction {
        let profile = options.profilePrefix + fields[columns.profile]
        if let problem = Validation.problem(profile, as: "profile name") { throw error(problem) }
        let item = fields[columns.item]
        if let problem = Validation.problem(item, as: "item id") { throw error(problem) }

        var kind = defaultKind
        if let index = columns.kind {
            kind = InteractionKind(rawValue: fields[index])
            if let problem = kind.problem { throw error(problem) }
        }

        var value: Double? = nil
        if let index = columns.value {
            let text = fields[index]
            let required: Bool
            if case .csv = options.format { required = false } else { required = true }
            if !text.isEmpty || required {
                guard let number = HistoryStore.parseValue(text) else {
                    throw error("value \(Validation.quoted(text)) is not a finite number in decimal notation")
                }
                value = number
            }
        }

        let timeText = fields[columns.time]
        guard var timestamp = Int64(timeText) else {
            throw error("timestamp \(Validation.quoted(timeText)) is not an integer")
        }
        if columns.timeUnit == .milliseconds {
            // Checked as written: the message must not show the number in seconds.
            let maxMilliseconds = HistoryStore.maxTimestamp * 1000 + 999
            guard (0...maxMilliseconds).contains(timestamp) else {
                throw error("timestamp \(Validation.quoted(timeText)) is out of range "
                            + "(expected Unix milliseconds, 0...\(maxMilliseconds))")
            }
            timestamp /= 1000
        }
        if let problem = Validation.problem(timestamp: timestamp) { throw error(problem) }
        return NewInteraction(profile: profile, item: item, kind: kind, value: value, timestamp: timestamp)
    }

    /// Splits one line (the range `text` of `bytes`, without its line ending) into fields.
    private func split(_ bytes: UnsafeBufferPointer<UInt8>, _ text: Range<Int>, into fields: inout [String]) throws {
        switch options.format {
        case .movieLensUData:
            try splitPlain(bytes, text, separator: UInt8(ascii: "\t"), width: 1, into: &fields)
        case .movieLensDat:
            try splitPlain(bytes, text, separator: UInt8(ascii: ":"), width: 2, into: &fields)
        case .movieLensCSV:
            try splitCSV(bytes, text, delimiter: UInt8(ascii: ","), into: &fields)
        case .csv(let mapping):
            try splitCSV(bytes, text, delimiter: mapping.delimiter, into: &fields)
        }
    }

    /// Fields separated by `width` copies of `separator` (a tab; "::").
    private func splitPlain(_ bytes: UnsafeBufferPointer<UInt8>, _ text: Range<Int>, separator: UInt8, width: Int,
                            into fields: inout [String]) throws {
        var start = text.lowerBound
        var index = start
        while index <= text.upperBound - width {
            if bytes[index] == separator && (width == 1 || bytes[index + 1] == separator) {
                fields.append(try string(bytes, start..<index))
                index += width
                start = index
            } else {
                index += 1
            }
        }
        fields.append(try string(bytes, start..<text.upperBound))
    }

    /// RFC 4180 fields: "quoted" fields may hold the delimiter and "" for ".
    private func splitCSV(_ bytes: UnsafeBufferPointer<UInt8>, _ text: Range<Int>, delimiter: UInt8,
                          into fields: inout [String]) throws {
        let quote = UInt8(ascii: "\"")
        var index = text.lowerBound
        while true {
            if index < text.upperBound, bytes[index] == quote {
                var field: [UInt8] = []
                index += 1
                while true {
                    guard index < text.upperBound else {
                        throw error("unterminated quoted field (a quoted field must end on its own line)")
                    }
                    if bytes[index] == quote {
                        if index + 1 < text.upperBound, bytes[index + 1] == quote {
                            field.append(quote)
                            index += 2
                            continue
                        }
                        index += 1
                        break
                    }
                    field.append(bytes[index])
                    index += 1
                }
                fields.append(try field.withUnsafeBufferPointer { try string($0, 0..<$0.count) })
                if index == text.upperBound { return }
                guard bytes[index] == delimiter else {
                    throw error("unexpected character after the closing quote of field \(fields.count)")
                }
                index += 1
            } else {
                var end = index
                while end < text.upperBound && bytes[end] != delimiter {
                    guard bytes[end] != quote else {
                        throw error("a quote inside unquoted field \(fields.count + 1) (RFC 4180: quote the whole "
                                    + "field and double the quotes in it)")
                    }
                    end += 1
                }
                fields.append(try string(bytes, index..<end))
                if end == text.upperBound { return }
                index = end + 1
            }
        }
    }

    /// The UTF-8 text in `range` of `bytes`; ASCII (the usual case) skips validation.
    private func string(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) throws -> String {
        let slice = UnsafeBufferPointer(rebasing: bytes[range])
        var ascii = true
        for byte in slice where byte >= 0x80 {
            ascii = false
            break
        }
        if ascii { return String(decoding: slice, as: UTF8.self) }
        guard let text = String(validating: slice, as: UTF8.self) else { throw error("invalid UTF-8") }
        return text
    }

    private func error(_ reason: String) -> ImportError {
        ImportError(file: file, line: line, reason: reason)
    }
}
