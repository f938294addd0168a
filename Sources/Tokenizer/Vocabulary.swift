/// Token types, with the ids SentencePiece (`ModelProto.SentencePiece.Type`) and GGUF
/// (`tokenizer.ggml.token_type`) both use.
public enum TokenType: Int32, Sendable, CaseIterable {
    case normal = 1
    /// The one `<unk>` piece.
    case unknown = 2
    /// `<s>`, `</s>`: never produced from text, decoded as nothing.
    case control = 3
    /// Matched as a whole in the input before merging; never split.
    case userDefined = 4
    /// Reachable by merges, but split again into its parts on output.
    case unused = 5
    /// `<0xNN>`: one UTF-8 byte, for byte fallback.
    case byte = 6
}

/// Everything a SentencePiece BPE tokenizer is made of, as read from a `tokenizer.model`
/// or from GGUF `tokenizer.ggml.*` keys. `SentencePieceTokenizer(vocabulary:)` validates it.
public struct Vocabulary: Sendable, Equatable {
    /// Piece texts, with spaces shown as "▁" (U+2581); index = token id.
    public var pieces: [String]
    /// Merge priority: of two candidate merges, the higher score wins.
    public var scores: [Float]
    public var types: [TokenType]
    /// Normalization: prepend "▁" to non-empty input (SentencePiece `add_dummy_prefix`,
    /// GGUF `tokenizer.ggml.add_space_prefix`).
    public var addDummyPrefix: Bool
    /// Normalization: drop leading and trailing spaces and collapse runs of spaces
    /// (SentencePiece `remove_extra_whitespaces`, GGUF `tokenizer.ggml.remove_extra_whitespaces`).
    public var removeExtraWhitespaces: Bool
    /// Characters outside the vocabulary become `<0xNN>` byte pieces instead of `<unk>`.
    public var byteFallback: Bool
    /// What `<unk>` decodes to (SentencePiece `unk_surface`, default " ⁇ ").
    public var unknownSurface: String
    public var bos: Int32?
    public var eos: Int32?
    public var pad: Int32?
    /// Whether the model was trained to see BOS / EOS (GGUF `add_bos_token` / `add_eos_token`);
    /// informational: `encode` takes explicit flags.
    public var addBOS: Bool
    public var addEOS: Bool

    public static let defaultUnknownSurface = " \u{2047} "

    public init(pieces: [String], scores: [Float], types: [TokenType],
                addDummyPrefix: Bool = true, removeExtraWhitespaces: Bool = false, byteFallback: Bool = true,
                unknownSurface: String = Vocabulary.defaultUnknownSurface,
                bos: Int32? = nil, eos: Int32? = nil, pad: Int32? = nil, addBOS: Bool = true, addEOS: Bool = false) {
        self.pieces = pieces
        self.scores = scores
        self.types = types
        self.addDummyPrefix = addDummyPrefix
        self.removeExtraWhitespaces = removeExtraWhitespaces
        self.byteFallback = byteFallback
        self.unknownSurface = unknownSurface
        self.bos = bos
        self.eos = eos
        self.pad = pad
        self.addBOS = addBOS
        self.addEOS = addEOS
    }

    /// The text of the byte piece for `byte`, as SentencePiece writes it: `<0x0A>`.
    public static func bytePiece(_ byte: UInt8) -> String {
        let hex = String(byte, radix: 16, uppercase: true)
        return "<0x" + (byte < 16 ? "0" : "") + hex + ">"
    }

    /// The byte a `<0xNN>` piece stands for (upper-case hex, as SentencePiece requires).
    static func byteValue(ofPiece piece: String) -> UInt8? {
        let u = Array(piece.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            default: return nil
            }
        }
        guard let hi = hex(u[3]), let lo = hex(u[4]) else { return nil }
        return hi << 4 | lo
    }
}
