// The tokenizer: loading (GGUF or tokenizer.model, validated as SentencePiece does),
// pieces and special tokens, and the GGUF keys a converter writes. Encoding is in
// Encoding.swift, decoding in Decoding.swift.

import GGUF

/// A SentencePiece BPE tokenizer loaded from a GGUF file or a `tokenizer.model`.
/// Immutable and thread-safe.
public final class SentencePieceTokenizer: Sendable {
    /// The validated vocabulary and settings it was built from.
    public let vocabulary: Vocabulary
    /// The `<unk>` id (the one piece of type UNKNOWN).
    public let unk: Int32
    let table: PieceTable
    /// nil for vocabularies of 65,535 pieces or more (merges then look up bytes).
    let merges: MergeTable?
    /// Byte fallback: the id of `<0xNN>` for each byte, empty when byte fallback is off.
    let byteIDs: [Int32]
    /// For each id, the byte a BYTE piece stands for, or -1.
    let byteValue: [Int16]
    let userDefined: PrefixMatcher?
    let hasUnusedPieces: Bool
    /// No mergeable piece has a "▁" right after another character, so no merge can cross
    /// the start of a "▁" that follows a non-"▁" character: the text can be merged word
    /// by word, with small queues (true for LLaMA's vocabularies).
    let mergesStopAtSpaces: Bool

    public var vocabSize: Int { vocabulary.pieces.count }
    public var bos: Int32? { vocabulary.bos }
    public var eos: Int32? { vocabulary.eos }
    public var pad: Int32? { vocabulary.pad }

    /// Validates a vocabulary as SentencePiece does when it loads a model.
    public convenience init(vocabulary: Vocabulary) throws(TokenizerError) {
        try self.init(vocabulary: vocabulary, fastPaths: true)
    }

    /// `fastPaths: false` merges whole texts and looks merges up by bytes only, as
    /// SentencePiece does (for tests that check the fast paths give the same ids).
    init(vocabulary v: Vocabulary, fastPaths: Bool) throws(TokenizerError) {
        let n = v.pieces.count
        guard n > 0 else { throw .emptyVocabulary }
        guard v.scores.count == n else { throw .lengthMismatch(key: "scores", count: v.scores.count, expected: n) }
        guard v.types.count == n else { throw .lengthMismatch(key: "token types", count: v.types.count, expected: n) }
        for (key, id) in [("bos", v.bos), ("eos", v.eos), ("pad", v.pad)] {
            if let id, id < 0 || Int(id) >= n { throw .specialTokenOutOfRange(key: key, id: Int(id), vocabSize: n) }
        }
        table = try PieceTable(v)
        merges = fastPaths ? MergeTable(table) : nil

        var unk: Int32?
        var byteIDs = [Int32](repeating: -1, count: 256)
        var byteValue = [Int16](repeating: -1, count: n)
        var userPieces: [String] = []
        for (i, type) in v.types.enumerated() {
            switch type {
            case .unknown:
                if let u = unk { throw .multipleUnknownPieces(Int(u), i) }
                unk = Int32(i)
            case .byte:
                guard v.byteFallback else { throw .unexpectedBytePiece(id: i, piece: v.pieces[i]) }
                guard let b = Vocabulary.byteValue(ofPiece: v.pieces[i]) else {
                    throw .invalidBytePiece(id: i, piece: v.pieces[i])
                }
                byteIDs[Int(b)] = Int32(i)
                byteValue[i] = Int16(b)
            case .userDefined: userPieces.append(v.pieces[i])
            case .unused, .normal, .control: break
            }
        }
        guard let unk else { throw .missingUnknownPiece }
        if v.byteFallback {
            let missing = byteIDs.filter { $0 < 0 }.count
            guard missing == 0 else { throw .missingBytePieces(count: missing) }
        }
        self.vocabulary = v
        self.unk = unk
        self.byteIDs = v.byteFallback ? byteIDs : []
        self.byteValue = byteValue
        self.userDefined = userPieces.isEmpty ? nil : PrefixMatcher(userPieces)
        self.hasUnusedPieces = v.types.contains(.unused)
        self.mergesStopAtSpaces = fastPaths && !zip(v.pieces, v.types).contains { piece, type in
            guard type == .normal || type == .userDefined || type == .unused else { return false }
            var previous: Unicode.Scalar?
            for c in piece.unicodeScalars {
                if c == "\u{2581}", let p = previous, p != "\u{2581}" { return true }
                previous = c
            }
            return false
        }
    }

    /// Reads the `tokenizer.ggml.*` keys of a GGUF file.
    public convenience init(gguf: GGUFFile) throws(TokenizerError) {
        try self.init(vocabulary: Vocabulary(gguf: gguf))
    }

    /// Reads a SentencePiece `tokenizer.model` (protobuf).
    public convenience init(modelFile path: String) throws(TokenizerError) {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw .gguf(error) }
        try self.init(vocabulary: Vocabulary(sentencePieceModel: file.bytes))
    }

    /// Reads a SentencePiece model from memory.
    public convenience init(modelData: [UInt8]) throws(TokenizerError) {
        let v = modelData.withUnsafeBytes { b in
            Result { () throws(TokenizerError) in try Vocabulary(sentencePieceModel: b) }
        }
        try self.init(vocabulary: v.get())
    }

    /// Loads a GGUF file or a `tokenizer.model`, told apart by their first bytes: GGUF
    /// starts with the magic "GGUF"; a SentencePiece model with its first piece (protobuf
    /// field 1, length-delimited: byte 0x0a).
    public static func load(path: String) throws(TokenizerError) -> SentencePieceTokenizer {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw .gguf(error) }
        let head = Array(file.bytes.prefix(8))
        if head.count >= 4, Array(head[0..<4]) == Array("GGUF".utf8) {
            let gguf: GGUFFile
            do { gguf = try GGUFFile(file: file) } catch { throw .gguf(error) }
            return try SentencePieceTokenizer(gguf: gguf)
        }
        guard head.first == 0x0A else { throw .unrecognizedFormat(path: path, firstBytes: head) }
        return try SentencePieceTokenizer(vocabulary: Vocabulary(sentencePieceModel: file.bytes))
    }

    // MARK: pieces and special tokens

    /// The text of piece `id` ("▁" for spaces, "<0x0A>" for a byte piece), nil outside the vocabulary.
    public func piece(_ id: Int32) -> String? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return vocabulary.pieces[Int(id)]
    }

    public func tokenType(_ id: Int32) -> TokenType? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return vocabulary.types[Int(id)]
    }

    public func score(_ id: Int32) -> Float? {
        guard id >= 0, Int(id) < vocabSize else { return nil }
        return vocabulary.scores[Int(id)]
    }

    /// SentencePiece `PieceToId`: the id of a piece text, nil when it is not in the vocabulary.
    public func id(ofPiece piece: String) -> Int32? {
        let id = table.id(of: piece)
        return id >= 0 ? id : nil
    }

    /// Ids of the control pieces (BOS, EOS and any others): never produced by `encode` from text.
    public var controlTokens: [Int32] {
        vocabulary.types.indices.filter { vocabulary.types[$0] == .control }.map(Int32.init)
    }

    /// The `tokenizer.ggml.*` GGUF metadata for this tokenizer (`tokenizer.ggml.model` = "llama"),
    /// for a converter to write.
    public var ggufMetadata: [(String, GGUFValue)] {
        let v = vocabulary
        var m: [(String, GGUFValue)] = [
            (TokenizerKey.model, .string("llama")),
            (TokenizerKey.pre, .string("default")),
            (TokenizerKey.tokens, .array(.string, v.pieces.map { .string($0) })),
            (TokenizerKey.scores, .array(.float32, v.scores.map { .float32($0) })),
            (TokenizerKey.tokenType, .array(.int32, v.types.map { .int32($0.rawValue) })),
        ]
        // Ids are validated to lie in 0..<vocabSize.
        if let bos { m.append((TokenizerKey.bos, .uint32(UInt32(bos)))) }
        if let eos { m.append((TokenizerKey.eos, .uint32(UInt32(eos)))) }
        m.append((TokenizerKey.unknown, .uint32(UInt32(unk))))
        if let pad { m.append((TokenizerKey.padding, .uint32(UInt32(pad)))) }
        m.append((TokenizerKey.addBOS, .bool(v.addBOS)))
        m.append((TokenizerKey.addEOS, .bool(v.addEOS)))
        m.append((TokenizerKey.addSpacePrefix, .bool(v.addDummyPrefix)))
        m.append((TokenizerKey.removeExtraWhitespaces, .bool(v.removeExtraWhitespaces)))
        return m
    }
}
