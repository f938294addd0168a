// The rule for names the history store keeps (profile names, item ids, model and catalog
// ids), in one place for the modules that must agree on it: History applies it to every
// write, Catalog to the item ids of a pack (palr-convert refuses what palr would refuse at
// load), Ranker to the model and catalog ids it caches rankings under. Each caller words
// its own message.

public enum StoredNames {
    /// Longest name, in UTF-8 bytes.
    public static let maxBytes = 256

    /// Why a name cannot be stored.
    public enum Problem: Equatable, Sendable {
        case empty
        case tooLong(bytes: Int)
        /// A C0 or C1 control character (a line break, a tab, an escape).
        case controlCharacter
        /// An embedding, override or isolate control (U+202A–U+202E, U+2066–U+2069), which
        /// makes text display in another order than it is stored.
        case bidirectionalControl
        case onlyWhitespace
    }

    /// The first problem of `name`, in the order above, or nil.
    public static func problem(_ name: String) -> Problem? {
        if name.isEmpty { return .empty }
        let bytes = name.utf8.count
        if bytes > maxBytes { return .tooLong(bytes: bytes) }
        // Nearly every name is printable ASCII: no Unicode property lookups then.
        if isPrintableASCII(name) { return name.utf8.contains { $0 != 0x20 } ? nil : .onlyWhitespace }
        if name.unicodeScalars.contains(where: isControl) { return .controlCharacter }
        if name.unicodeScalars.contains(where: isBidirectionalControl) { return .bidirectionalControl }
        if name.unicodeScalars.allSatisfy(\.properties.isWhitespace) { return .onlyWhitespace }
        return nil
    }

    /// The longest run of `text`'s first characters that takes at most `maxBytes` bytes of
    /// UTF-8 (whole characters only), in one pass; `cut` tells whether anything was left out.
    public static func prefix(_ text: String, maxBytes: Int) -> (text: String, cut: Bool) {
        var out = "", bytes = 0
        for c in text {
            bytes += c.utf8.count
            if bytes > maxBytes { return (out, true) }
            out.append(c)
        }
        return (out, false)
    }

    /// Only bytes 0x20–0x7E: no control, bidirectional or line-breaking character.
    public static func isPrintableASCII(_ s: String) -> Bool { s.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F } }

    /// A C0 or C1 control character (general category Cc).
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    /// The embedding, override and isolate controls (not the marks U+200E/U+200F).
    public static func isBidirectionalControl(_ scalar: Unicode.Scalar) -> Bool {
        (0x202A...0x202E).contains(scalar.value) || (0x2066...0x2069).contains(scalar.value)
    }

    /// `name` with every character the rule refuses inside a name (controls, bidirectional
    /// controls) replaced by U+FFFD.
    public static func replacingRefused(_ name: String) -> String {
        func refused(_ u: Unicode.Scalar) -> Bool { isControl(u) || isBidirectionalControl(u) }
        guard !isPrintableASCII(name), name.unicodeScalars.contains(where: refused) else { return name }
        return String(String.UnicodeScalarView(name.unicodeScalars.map { refused($0) ? "\u{FFFD}" : $0 }))
    }
}
