// Export of interactions as CSV (RFC 4180, with a header) or JSON Lines.
//
// Rows come in profile-name order, then time order with ties in insertion
// order: the order recent() uses. The CSV re-imports with
//   ImportFormat.csv(CSVMapping(profileColumn: "profile", itemColumn: "item",
//                    timeColumn: "timestamp", valueColumn: "value", kindColumn: "kind"))
// and gives the same histories (and digests) in a new store.

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
            let statement = try connection.prepare("""
                SELECT i.seq, p.name, it.external_id, k.name, i.value, i.ts
                FROM profiles AS p CROSS JOIN interactions AS i ON i.profile = p.id
                    CROSS JOIN items AS it ON it.id = i.item CROSS JOIN kinds AS k ON k.id = i.kind
                WHERE ?1 = 0 OR p.id = ?1
                ORDER BY p.name, i.ts, i.seq
                """)
            defer { statement.reset() }
            try statement.bind(1, profileID ?? 0)  // profile ids start at 1
            var chunk = format == .csv ? "id,profile,item,kind,value,timestamp\n" : ""
            var rows = 0
            while try statement.step() {
                let value = statement.optionalDouble(4).map(Self.format(value:))
                let (id, name, item, kind, time) = (statement.int64(0), statement.text(1), statement.text(2),
                                                    statement.text(3), statement.int64(5))
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
