import GGUF

// The GGUF `tokenizer.ggml.*` keys of a SentencePiece BPE ("llama") tokenizer, as llama.cpp
// reads and writes them:
//
//   tokenizer.ggml.model                    string   "llama"
//   tokenizer.ggml.pre                      string   "default" (written; not needed to read)
//   tokenizer.ggml.tokens                   [string] piece texts, "▁" for space
//   tokenizer.ggml.scores                   [float32]
//   tokenizer.ggml.token_type               [int32]  1 normal … 6 byte (TokenType)
//   tokenizer.ggml.bos_token_id …           uint32   bos / eos / unknown / padding, optional
//   tokenizer.ggml.add_bos_token            bool     default true
//   tokenizer.ggml.add_eos_token            bool     default false
//   tokenizer.ggml.add_space_prefix         bool     default true
//   tokenizer.ggml.remove_extra_whitespaces bool     default false
//
// Byte fallback has no key: llama.cpp always falls back to bytes, so palr does when all
// 256 `<0xNN>` byte pieces are present.

public enum TokenizerKey {
    public static let model = "tokenizer.ggml.model"
    public static let pre = "tokenizer.ggml.pre"
    public static let tokens = "tokenizer.ggml.tokens"
    public static let scores = "tokenizer.ggml.scores"
    public static let tokenType = "tokenizer.ggml.token_type"
    public static let bos = "tokenizer.ggml.bos_token_id"
    public static let eos = "tokenizer.ggml.eos_token_id"
    public static let unknown = "tokenizer.ggml.unknown_token_id"
    public static let padding = "tokenizer.ggml.padding_token_id"
    public static let addBOS = "tokenizer.ggml.add_bos_token"
    public static let addEOS = "tokenizer.ggml.add_eos_token"
    public static let addSpacePrefix = "tokenizer.ggml.add_space_prefix"
    public static let removeExtraWhitespaces = "tokenizer.ggml.remove_extra_whitespaces"
}

/// Runs a GGUF lookup, reporting its error as a tokenizer error.
private func lookup<T>(_ body: () throws(GGUFError) -> T) throws(TokenizerError) -> T {
    do { return try body() } catch { throw .gguf(error) }
}

extension Vocabulary {
    /// Reads the `tokenizer.ggml.*` keys of a GGUF file.
    public init(gguf: GGUFFile) throws(TokenizerError) {
        guard let model = try lookup({ () throws(GGUFError) in try gguf.optionalString(TokenizerKey.model) }) else {
            throw .noTokenizer(path: gguf.path)
        }
        guard model == "llama" else { throw .unsupportedTokenizerModel(model) }

        func array<T>(_ key: String, _ element: String, _ get: (GGUFValue) -> [T]?) throws(TokenizerError) -> [T] {
            guard let v = gguf[key] else { throw .gguf(.missingKey(key)) }
            guard let a = get(v) else {
                throw .gguf(.wrongValueType(key: key, expected: "array of \(element)", found: "\(v)"))
            }
            return a
        }
        let pieces = try array(TokenizerKey.tokens, "string") { $0.stringArray }
        let scores = try array(TokenizerKey.scores, "float32") { $0.floatArray }
        let rawTypes = try array(TokenizerKey.tokenType, "int32") { $0.intArray }
        guard scores.count == pieces.count else {
            throw .lengthMismatch(key: TokenizerKey.scores, count: scores.count, expected: pieces.count)
        }
        guard rawTypes.count == pieces.count else {
            throw .lengthMismatch(key: TokenizerKey.tokenType, count: rawTypes.count, expected: pieces.count)
        }
        var types: [TokenType] = []
        types.reserveCapacity(rawTypes.count)
        for (i, t) in rawTypes.enumerated() {
            guard let type = Int32(exactly: t).flatMap(TokenType.init(rawValue:)) else {
                throw .invalidTokenType(id: i, value: t)
            }
            types.append(type)
        }

        func id(_ key: String) throws(TokenizerError) -> Int32? {
            guard let i = try lookup({ () throws(GGUFError) in try gguf.optionalInt(key) }) else { return nil }
            guard i >= 0, i < pieces.count else {
                throw .specialTokenOutOfRange(key: key, id: i, vocabSize: pieces.count)
            }
            return Int32(i)
        }
        func flag(_ key: String, _ defaultValue: Bool) throws(TokenizerError) -> Bool {
            try lookup({ () throws(GGUFError) in try gguf.optionalBool(key) }) ?? defaultValue
        }
        // The unknown piece is the one of type UNKNOWN (as in SentencePiece); the key must agree.
        if let unk = try id(TokenizerKey.unknown), types[Int(unk)] != .unknown {
            throw .inconsistentSpecialToken(key: TokenizerKey.unknown, id: Int(unk),
                                            reason: "token \(unk) is of type \(types[Int(unk)]), not unknown")
        }
        self.init(pieces: pieces, scores: scores, types: types,
                  addDummyPrefix: try flag(TokenizerKey.addSpacePrefix, true),
                  removeExtraWhitespaces: try flag(TokenizerKey.removeExtraWhitespaces, false),
                  byteFallback: types.contains(.byte),
                  bos: try id(TokenizerKey.bos), eos: try id(TokenizerKey.eos), pad: try id(TokenizerKey.padding),
                  addBOS: try flag(TokenizerKey.addBOS, true), addEOS: try flag(TokenizerKey.addEOS, false))
    }
}
