// TEMPORARY: token ids → text from the GGUF's tokenizer.ggml.* keys, for
// `palr generate` until the Tokenizer module (issue 3) provides decoding.
//
// SentencePiece pieces: "▁" is a space; "<0xNN>" byte pieces are raw bytes that
// may form a multi-byte UTF-8 character across several tokens; control pieces
// (<s>, </s>) print nothing; the space a dummy prefix put before the first word
// is dropped at the start of the text (as sentencepiece and llama2.c do).

import GGUF

struct PieceText {
    let pieces: [String]
    let types: [Int32]       // tokenizer.ggml.token_type: 3 control, 6 byte
    let bos: Int32?
    let eos: Int32?
    let addBOS: Bool
    let stripLeadingSpace: Bool
    private var pending: [UInt8] = []
    private var atStart = true

    /// nil when the file has no tokenizer.ggml.tokens.
    init?(_ file: GGUFFile) {
        guard let pieces = file["tokenizer.ggml.tokens"]?.stringArray else { return nil }
        self.pieces = pieces
        let t = file["tokenizer.ggml.token_type"]?.intArray ?? []
        types = t.count == pieces.count ? t.map { Int32(truncatingIfNeeded: $0) } : Array(repeating: 1, count: pieces.count)
        bos = file["tokenizer.ggml.bos_token_id"]?.int.map { Int32($0) }
        eos = file["tokenizer.ggml.eos_token_id"]?.int.map { Int32($0) }
        addBOS = file["tokenizer.ggml.add_bos_token"]?.bool ?? true
        stripLeadingSpace = file["tokenizer.ggml.add_space_prefix"]?.bool ?? true
    }

    /// The bytes of one piece.
    func bytes(of token: Int32) -> [UInt8] {
        let i = Int(token)
        guard i >= 0, i < pieces.count else { return [] }
        let p = pieces[i]
        switch types[i] {
        case 3: return []                                   // control: <s>, </s>
        case 6:                                             // byte: <0xNN>
            if p.count == 6, p.hasPrefix("<0x"), p.hasSuffix(">"), let b = UInt8(p.dropFirst(3).prefix(2), radix: 16) { return [b] }
            return Array(p.utf8)
        default:
            return Array(p.replacing("\u{2581}", with: " ").utf8)
        }
    }

    /// Text that is complete after `token`; an unfinished UTF-8 character is held back.
    mutating func append(_ token: Int32) -> String {
        var b = bytes(of: token)
        if token == bos { atStart = true }
        if atStart, !b.isEmpty {
            if stripLeadingSpace, b.first == 0x20 { b.removeFirst() }
            atStart = false
        }
        pending += b
        let n = Self.completePrefix(pending)
        let out = String(decoding: pending[..<n], as: UTF8.self)
        pending.removeFirst(n)
        return out
    }

    /// Whatever is still held back (an incomplete character becomes U+FFFD).
    mutating func flush() -> String {
        defer { pending = [] }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside a UTF-8 sequence.
    static func completePrefix(_ b: [UInt8]) -> Int {
        var i = b.count - 1, continuation = 0
        while i >= 0, continuation < 3, b[i] & 0xC0 == 0x80 { i -= 1; continuation += 1 }
        guard i >= 0 else { return b.count }
        let lead = b[i]
        let need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
        return b.count - i < need ? i : b.count
    }
}
