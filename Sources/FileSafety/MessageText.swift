// Text from files, stores and the command line as messages show it. A hostile file (or
// a path, id or title) can hold newlines and terminal escapes; a message quoting it must
// neither act on the terminal nor break onto a line of its own. One classifier and one
// escape, shared by every module that words errors (GGUF, Llama, Tokenizer, Catalog) and
// by both executables, which pass every error they print through `terminalLines`.

/// Whether a terminal would act on `u` rather than show it: C0 and C1 controls (ESC,
/// the 8-bit CSI U+009B), format characters (the bidirectional overrides, zero-width
/// characters) and the line and paragraph separators.
public func actsOnTerminal(_ u: Unicode.Scalar) -> Bool {
    // Printable ASCII, nearly every character of a message: no Unicode property lookup.
    if u.value >= 0x20 && u.value < 0x7F { return false }
    switch u.properties.generalCategory {
    case .control, .format, .lineSeparator, .paragraphSeparator: return true
    default: return false
    }
}

/// `u` as `\u{1B}` when `actsOnTerminal(u)`, else nil.
public func escapedForMessage(_ u: Unicode.Scalar) -> String? {
    actsOnTerminal(u) ? "\\u{" + String(u.value, radix: 16, uppercase: true) + "}" : nil
}

/// `s` on one line for an error message, every character `actsOnTerminal` names escaped
/// (`\u{1B}`, `\u{A}`). Error descriptions pass through it: they quote keys, tensor
/// names, ids and string values from files, which a hostile file fills with newlines
/// and terminal escapes. Idempotent: an escape is plain ASCII.
public func oneLine(_ s: String) -> String {
    guard s.unicodeScalars.contains(where: actsOnTerminal) else { return s }
    return s.unicodeScalars.map { escapedForMessage($0) ?? String($0) }.joined()
}

/// `text` for standard error: each line through `oneLine`, the line breaks themselves
/// kept (a usage message spans lines; a path given on the command line with an escape
/// in it does not get to act on the terminal).
public func terminalLines(_ text: String) -> String {
    // Split by scalars: as Characters, "\r\n" is one, unequal to "\n".
    text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
        .map { oneLine(String(String.UnicodeScalarView($0))) }.joined(separator: "\n")
}
