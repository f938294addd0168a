// Decoding ids to text as SentencePiece `DecodeIds` does:
//
//   - control pieces (<s>, </s>) decode to nothing; <unk> to the unknown surface (" ⁇ ");
//   - "▁" becomes a space; the dummy-prefix space is dropped from the first piece that
//     starts with "▁" while nothing has been written yet (with remove_extra_whitespaces,
//     from every such piece until something has);
//   - a run of <0xNN> byte pieces is reassembled into UTF-8; each byte that does not start
//     a well-formed character (or ends the run inside one) becomes U+FFFD, one per byte.
//
// Ids outside the vocabulary (SentencePiece rejects them) decode as the unknown surface.

extension SentencePieceTokenizer {
    /// The text of `ids`.
    public func decode(_ ids: [Int32]) -> String {
        var out: [UInt8] = []
        var run: [UInt8] = []
        var state = LeadingSpace()
        for id in ids {
            if let b = byte(of: id) {
                run.append(b)
                continue
            }
            _ = Self.appendCharacters(of: run, final: true, to: &out)
            run.removeAll(keepingCapacity: true)
            appendSurface(of: id, &state, textIsEmpty: out.isEmpty, to: &out)
        }
        _ = Self.appendCharacters(of: run, final: true, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// An incremental decoder for generation: feed ids one at a time and get the text
    /// that became complete. The concatenated outputs (with `finish()`) equal `decode(ids)`.
    public func makeStreamingDecoder() -> StreamingDecoder { StreamingDecoder(self) }

    /// The byte a `<0xNN>` piece stands for; nil for other ids.
    @inline(__always)
    func byte(of id: Int32) -> UInt8? {
        guard id >= 0, Int(id) < byteValue.count, byteValue[Int(id)] >= 0 else { return nil }
        return UInt8(byteValue[Int(id)])
    }

    /// Where decoding stands with respect to the dummy-prefix space.
    struct LeadingSpace {
        /// Whether a leading "▁" may still be dropped.
        var mayDrop = true
        /// Whether the previous piece had one dropped.
        var dropped = false
    }

    /// Appends the surface of a non-byte piece (SentencePiece `DecodeSentencePiece`).
    func appendSurface(of id: Int32, _ s: inout LeadingSpace, textIsEmpty: Bool, to out: inout [UInt8]) {
        if s.dropped || !textIsEmpty { s.mayDrop = false }
        s.dropped = false
        guard let type = tokenType(id) else {
            out.append(contentsOf: vocabulary.unknownSurface.utf8)
            return
        }
        switch type {
        case .control: return
        case .unknown:
            out.append(contentsOf: vocabulary.unknownSurface.utf8)
            return
        case .normal, .userDefined, .unused, .byte: break
        }
        let piece = table.bytes(of: Int(id))
        let space = Self.spaceSymbol
        var i = 0
        if s.mayDrop, vocabulary.addDummyPrefix || vocabulary.removeExtraWhitespaces,
           piece.count >= 3, piece[0] == space[0], piece[1] == space[1], piece[2] == space[2] {
            i = 3
            // With remove_extra_whitespaces every leading space goes, so keep dropping.
            s.dropped = !vocabulary.removeExtraWhitespaces
        }
        while i < piece.count {
            if i + 2 < piece.count, piece[i] == space[0], piece[i + 1] == space[1], piece[i + 2] == space[2] {
                out.append(0x20)
                i += 3
            } else {
                out.append(piece[i])
                i += 1
            }
        }
    }

    /// What the bytes at the start of `b` hold, by SentencePiece's `DecodeUTF8` rules
    /// (shortest form, no surrogates, at most U+10FFFF).
    enum CharacterStart: Equatable {
        case valid(length: Int)
        case invalid
        /// A well-formed prefix that more bytes could complete.
        case incomplete
    }

    static func characterStart(_ b: ArraySlice<UInt8>) -> CharacterStart {
        guard let b0 = b.first else { return .incomplete }
        if b0 < 0x80 { return .valid(length: 1) }
        let need: Int
        let minimum: UInt32
        var cp: UInt32
        switch b0 {
        case 0xC0...0xDF: (need, minimum, cp) = (2, 0x80, UInt32(b0 & 0x1F))
        case 0xE0...0xEF: (need, minimum, cp) = (3, 0x800, UInt32(b0 & 0x0F))
        case 0xF0...0xF7: (need, minimum, cp) = (4, 0x10000, UInt32(b0 & 0x07))
        default: return .invalid
        }
        let available = min(need, b.count)
        var k = 1
        var i = b.index(after: b.startIndex)
        while k < available {
            guard b[i] & 0xC0 == 0x80 else { return .invalid }
            cp = cp << 6 | UInt32(b[i] & 0x3F)
            k += 1
            i = b.index(after: i)
        }
        if available < need { return .incomplete }
        guard cp >= minimum, cp < 0xD800 || (cp >= 0xE000 && cp <= 0x10FFFF) else { return .invalid }
        return .valid(length: need)
    }

    /// Appends the characters of a run of byte-piece bytes, each invalid byte as U+FFFD.
    /// Unless `final`, stops before an incomplete character; returns the bytes consumed.
    static func appendCharacters(of run: [UInt8], final: Bool, to out: inout [UInt8]) -> Int {
        var i = 0
        while i < run.count {
            switch characterStart(run[i...]) {
            case .valid(let n):
                out.append(contentsOf: run[i..<(i + n)])
                i += n
            case .incomplete where !final:
                return i
            case .invalid, .incomplete:
                out.append(contentsOf: [0xEF, 0xBF, 0xBD])  // U+FFFD
                i += 1
            }
        }
        return i
    }
}

/// Decodes ids one at a time for generation. A character spelled by several `<0xNN>` byte
/// pieces is returned once its last byte arrives; `finish()` returns what is left
/// (bytes of an unfinished character, each as U+FFFD).
public struct StreamingDecoder: Sendable {
    public let tokenizer: SentencePieceTokenizer
    private var pending: [UInt8] = []
    private var state = SentencePieceTokenizer.LeadingSpace()
    private var wroteText = false

    public init(_ tokenizer: SentencePieceTokenizer) { self.tokenizer = tokenizer }

    /// The text that `id` completes (often empty for a byte piece or a control token).
    public mutating func append(_ id: Int32) -> String {
        var out: [UInt8] = []
        if let b = tokenizer.byte(of: id) {
            pending.append(b)
            let used = SentencePieceTokenizer.appendCharacters(of: pending, final: false, to: &out)
            pending.removeFirst(used)
        } else {
            _ = SentencePieceTokenizer.appendCharacters(of: pending, final: true, to: &out)
            pending.removeAll()
            tokenizer.appendSurface(of: id, &state, textIsEmpty: !wroteText && out.isEmpty, to: &out)
        }
        if !out.isEmpty { wroteText = true }
        return String(decoding: out, as: UTF8.self)
    }

    /// What remains at the end of the sequence.
    public mutating func finish() -> String {
        var out: [UInt8] = []
        _ = SentencePieceTokenizer.appendCharacters(of: pending, final: true, to: &out)
        pending.removeAll()
        if !out.isEmpty { wroteText = true }
        return String(decoding: out, as: UTF8.self)
    }
}
