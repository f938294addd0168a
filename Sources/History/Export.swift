// Export of interactions as CSV (RFC 4180, with a header) or JSON Lines.
//
// Rows come in profile-name order, then time order with ties in insertion
// order: the order recent() uses. The CSV re-imports with
//   ImportFormat.csv(CSVMapping(profileColumn: "profile", itemColumn: "item",
//                    timeColumn: "timestamp", valueColumn: "value", kindColumn: "kind"))
// and gives the same histories (and digests) in a new store.

import FileSafety
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The layout of an export.
public enum ExportFormat: String, Hashable, Sendable, CaseIterable {
    /// Header `id,profile,item,kind,value,timestamp`; an empty value means none.
    case csv
    /// One JSON object a line: `{"id":1,"profile":"196","item":"242","kind":"rating","value":3,"timestamp":881250949}`.
    case jsonl
}

extension HistoryStore {
    /// Writes the interactions of `profile` (nil: of all profiles) to `write`,
    /// which receives whole lines in chunks of about 64 KiB. All rows come from
    /// one snapshot. Returns the number of interactions written.
    @discardableResult
    public func export(format: ExportFormat, profile: String? = nil, to write: (String) throws -> Void) throws -> Int {
        try connection.read("export") {
            let profileID = try profile.map { try requireProfile($0) }
            // An export is a backup: rows the joins below would drop (their profile, item or
            // kind missing: a store edited by another tool) are reported, not left out.
            if profileID == nil {
                let orphan = try connection.prepare("""
                    SELECT i.seq, i.profile FROM interactions AS i
                    WHERE NOT EXISTS (SELECT 1 FROM profiles AS p WHERE p.id = i.profile) LIMIT 1
                    """)
                defer { orphan.reset() }
                if try orphan.step() {
                    throw HistoryError.corrupt(path: path, reason: "interaction \(orphan.describe(0)) refers to profile id "
                                               + "\(orphan.describe(1)), which is not in the profiles table")
                }
            }
            let statement = try connection.prepare("""
                SELECT i.seq, i.ts, it.external_id, k.name, i.value, i.item, i.kind, p.name
                FROM profiles AS p CROSS JOIN interactions AS i ON i.profile = p.id
                    LEFT JOIN items AS it ON it.id = i.item LEFT JOIN kinds AS k ON k.id = i.kind
                WHERE ?1 = 0 OR p.id = ?1
                ORDER BY p.name, i.ts, i.seq
                """)
            defer { statement.reset() }
            try statement.bind(1, profileID ?? 0)  // profile ids start at 1
            var chunk = format == .csv ? "id,profile,item,kind,value,timestamp\n" : ""
            var rows = 0
            while try statement.step() {
                guard let name = statement.validText(7) else {
                    throw HistoryError.corrupt(path: path, reason: "a profile has the name \(statement.describe(7))")
                }
                let row = try checkedInteraction(statement, profile: name)
                let value = row.value.map(Self.format(value:))
                let (id, item, kind, time) = (row.id, row.item, row.kind.rawValue, row.timestamp)
                switch format {
                case .csv:
                    chunk += "\(id),\(csvField(name)),\(csvField(item)),\(kind),\(value ?? ""),\(time)\n"
                case .jsonl:
                    chunk += "{\"id\":\(id),\"profile\":\(jsonString(name)),\"item\":\(jsonString(item)),"
                        + "\"kind\":\(jsonString(kind)),\"value\":\(value ?? "null"),\"timestamp\":\(time)}\n"
                }
                rows += 1
                if chunk.utf8.count >= 65536 {
                    try write(chunk)
                    chunk = ""
                }
            }
            if !chunk.isEmpty { try write(chunk) }
            return rows
        }
    }

    /// Writes the export to the file at `path`, atomically (FileSafety's
    /// `AtomicFile`): into a temporary file in the same folder, fsynced, then
    /// renamed over `path` (a symlink is followed and its target replaced). A
    /// failure or a kill midway leaves any previous file as it was; on a failure,
    /// and on SIGINT/SIGTERM/SIGHUP once the executable installed
    /// `SignalCleanup`'s handlers, the temporary file is removed. Refuses a `path`
    /// that is a directory, device, FIFO or socket (`HistoryError.notARegularFile`)
    /// or the database itself. Returns the number of interactions written.
    @discardableResult
    public func export(format: ExportFormat, profile: String? = nil, toFile path: String) throws -> Int {
        guard !path.isEmpty else { throw HistoryError.invalidArgument("the output path is empty") }
        let file: AtomicFile
        do { file = try AtomicFile(replacing: path) } catch { throw Self.historyError(error, path: path) }
        // Checked against the file the writer will replace, as it resolved it: the
        // database and its companions (WAL, shared memory, journal, reserve), beside the path given
        // and beside the file a symbolic link --db points to (where SQLite keeps them).
        var databaseFiles: [String] = []
        let resolved = (try? Destination.target(of: self.path)) ?? self.path
        for base in resolved == self.path ? [self.path] : [self.path, resolved] {
            databaseFiles += ([""] + Self.companionSuffixes).map { base + $0 }
        }
        // A companion name (`X-wal`) whose base X is the database under another name
        // (a hard link) is the WAL SQLite would use when the database is opened as X.
        for suffix in Self.companionSuffixes where file.target.hasSuffix(suffix) {
            let base = String(file.target.dropLast(suffix.count))
            if Destination.overwrittenInput(target: base, inputs: [self.path]) != nil, !base.isEmpty {
                databaseFiles.append(file.target)
            }
        }
        if let hit = Destination.overwrittenInput(target: file.target, inputs: databaseFiles) {
            file.discard()
            throw HistoryError.invalidArgument("refusing to export onto the history database's own file \(hit) (\(path))")
        }
        let rows = try export(format: format, profile: profile) { (text: String) throws in
            do { try file.write(text) } catch let error as AtomicFileError { throw Self.historyError(error, path: path) }
        }
        do { try file.commit() } catch { throw Self.historyError(error, path: path) }
        return rows
    }

    /// An AtomicFile failure as the HistoryError it has always been.
    static func historyError(_ error: AtomicFileError, path: String) -> HistoryError {
        switch error {
        case .destination(.notRegularFile(_, let kind)): return .notARegularFile(path: path, kind: kind)
        case .destination(.unresolvableLink(_, let reason)):
            return .cannotWrite(path: path, reason: "it is a symbolic link that cannot be followed (\(reason))")
        case .cannotWrite(_, let reason): return .cannotWrite(path: path, reason: reason)
        }
    }

    /// Writes the export to an open file descriptor (standard output: 1),
    /// checking every write; `name` names it in errors
    /// (`HistoryError.cannotWrite`). Returns the number of interactions written.
    @discardableResult
    public func export(format: ExportFormat, profile: String? = nil, toFileDescriptor descriptor: Int32,
                       name: String) throws -> Int {
        try export(format: format, profile: profile) { try writeAll($0, to: descriptor, name: name) }
    }

    /// A value as the shortest text that reads back to the same Double
    /// ("3" rather than "3.0" for whole numbers).
    static func format(value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}

/// A CSV field, quoted when it holds a comma or a quote.
func csvField(_ text: String) -> String {
    guard text.utf8.contains(where: { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") }) else { return text }
    return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

/// A JSON string literal.
func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// The text of an errno value.
private func systemError(_ code: Int32) -> String { String(cString: strerror(code)) }

/// Writes all of `text` to `descriptor`, retrying short and interrupted writes.
private func writeAll(_ text: String, to descriptor: Int32, name: String) throws(HistoryError) {
    var text = text
    let failure: Int32? = text.withUTF8 { writeFully(descriptor, UnsafeRawBufferPointer($0)) }
    if let failure { throw .cannotWrite(path: name, reason: systemError(failure)) }
}
