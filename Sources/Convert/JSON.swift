// A small strict JSON reader for config files and safetensors headers.
//
// Why not Foundation's JSONSerialization: it loses object key order (PEFT's
// rank_pattern is "first matching key wins") and on Linux it does not tell `1`
// from `true`, which a strict config check must. Numbers keep their literal so
// integers are read exactly and floats are rounded once.

/// One JSON value. Objects keep their keys in file order.
public enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The value of `key` in an object (the last one if a key repeats, as Python does).
    public subscript(key: String) -> JSON? {
        guard case .object(let members) = self else { return nil }
        return members.last(where: { $0.0 == key })?.1
    }

    public var isNull: Bool { if case .null = self { return true } else { return false } }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var array: [JSON]? { if case .array(let a) = self { return a } else { return nil } }
    public var object: [(String, JSON)]? { if case .object(let o) = self { return o } else { return nil } }

    /// An integer literal, or a float literal with an integral value (`2.0`).
    public var int: Int? {
        guard case .number(let s) = self else { return nil }
        if let i = Int(s) { return i }
        guard let d = Double(s), d == d.rounded(), abs(d) < 9.007e15 else { return nil }
        return Int(d)
    }

    /// An integer literal only (`2`, not `2.0` or `2e0`): what the safetensors reference
    /// reader takes for shapes and offsets.
    public var integerLiteral: Int? {
        guard case .number(let s) = self else { return nil }
        return Int(s)
    }

    public var double: Double? {
        guard case .number(let s) = self else { return nil }
        return Double(s)
    }

    /// A short rendering for error messages.
    public var brief: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .number(let s): return s
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.prefix(4).map(\.brief).joined(separator: ", ") + (a.count > 4 ? ", …]" : "]")
        case .object(let o): return "{" + o.prefix(3).map { "\"\($0.0)\": \($0.1.brief)" }.joined(separator: ", ") + (o.count > 3 ? ", …}" : "}")
        }
    }

    /// Parses a complete JSON document.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONParseError) -> JSON {
        var p = JSONParser(bytes: bytes)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == bytes.count else { throw p.error("unexpected text after the value") }
        return v
    }

    public static func parse(_ text: String) throws(JSONParseError) -> JSON {
        var utf8 = Array(text.utf8)
        var result: Result<JSON, JSONParseError> = .success(.null)
        utf8.withUnsafeMutableBytes { buf in
            do throws(JSONParseError) { result = .success(try parse(UnsafeRawBufferPointer(buf))) } catch { result = .failure(error) }
        }
        return try result.get()
    }
}

public struct JSONParseError: Error, CustomStringConvertible {
    public let offset: Int
    public let reason: String
    public var description: String { "\(reason) at byte \(offset)" }
}

private struct JSONParser {
    let bytes: UnsafeRawBufferPointer
    var i = 0
    static let maxDepth = 64

    func error(_ reason: String) -> JSONParseError { JSONParseError(offset: i, reason: reason) }

    var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    mutating func skipSpace() {
        while let c = peek, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 }
    }

    mutating func expect(_ literal: String) throws(JSONParseError) {
        for b in literal.utf8 {
            guard peek == b else { throw error("expected '\(literal)'") }
            i += 1
        }
    }

    mutating func value(depth: Int) throws(JSONParseError) -> JSON {
        guard depth < Self.maxDepth else { throw error("nesting too deep") }
        guard let c = peek else { throw error("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"):
            i += 1
            var members: [(String, JSON)] = []
            skipSpace()
            if peek == UInt8(ascii: "}") { i += 1; return .object(members) }
            while true {
                skipSpace()
                guard peek == UInt8(ascii: "\"") else { throw error("expected a string key") }
                let key = try string()
                skipSpace()
                try expect(":")
                skipSpace()
                members.append((key, try value(depth: depth + 1)))
                skipSpace()
                if peek == UInt8(ascii: ",") { i += 1; continue }
                try expect("}")
                return .object(members)
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [JSON] = []
            skipSpace()
            if peek == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                if peek == UInt8(ascii: ",") { i += 1; continue }
                try expect("]")
                return .array(items)
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        // Python's json.dumps writes these for non-finite floats.
        case UInt8(ascii: "N"): try expect("NaN"); return .number("nan")
        case UInt8(ascii: "I"): try expect("Infinity"); return .number("inf")
        default: return try number()
        }
    }

    mutating func number() throws(JSONParseError) -> JSON {
        let start = i
        if peek == UInt8(ascii: "-") {
            i += 1
            if peek == UInt8(ascii: "I") { try expect("Infinity"); return .number("-inf") }
        }
        var digits = 0
        while let c = peek, (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: ".") || c == UInt8(ascii: "e")
                || c == UInt8(ascii: "E") || c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
            if c >= 0x30 && c <= 0x39 { digits += 1 }
            i += 1
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
        guard digits > 0, Double(text) != nil else {
            i = start
            throw error("invalid value")
        }
        return .number(text)
    }

    mutating func hex4() throws(JSONParseError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let c = peek else { throw error("unexpected end in \\u escape") }
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw error("bad \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    mutating func string() throws(JSONParseError) -> String {
        i += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard let c = peek else { throw error("unterminated string") }
            i += 1
            switch c {
            case UInt8(ascii: "\""):
                guard let s = String(validating: out, as: UTF8.self) else { throw error("string is not valid UTF-8") }
                return s
            case UInt8(ascii: "\\"):
                guard let e = peek else { throw error("unterminated escape") }
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        // A surrogate pair.
                        try expect("\\u")
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw error("invalid escape")
                }
            case 0..<0x20: throw error("control character in string")
            default: out.append(c)
            }
        }
    }
}
