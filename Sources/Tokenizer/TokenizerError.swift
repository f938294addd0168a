import FileSafety
import GGUF

/// Everything that can be wrong with a tokenizer file, each naming what and where.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    /// The file could not be opened or mapped, or a GGUF file is malformed.
    case gguf(GGUFError)
    /// Neither a GGUF file nor a SentencePiece model, judged by the first bytes.
    case unrecognizedFormat(path: String, firstBytes: [UInt8])
    /// A GGUF file without `tokenizer.ggml.*` keys (a weights-only file, a catalog pack).
    case noTokenizer(path: String)
    /// `tokenizer.ggml.model` names a tokenizer other than SentencePiece BPE ("llama").
    case unsupportedTokenizerModel(String)
    /// The protobuf ended inside `what`, which starts at byte `offset`.
    case truncatedProtobuf(what: String, offset: Int)
    /// The protobuf is structurally wrong at byte `offset`.
    case malformedProtobuf(what: String, offset: Int, reason: String)
    /// The SentencePiece model is not BPE (unigram, word, char).
    case unsupportedModelType(String)
    /// A normalizer or trainer setting palr does not implement.
    case unsupportedSetting(String)
    case emptyVocabulary
    case emptyPiece(id: Int)
    case invalidPieceUTF8(id: Int)
    case duplicatePiece(id: Int, firstID: Int, piece: String)
    case invalidTokenType(id: Int, value: Int)
    /// SentencePiece requires exactly one piece of type UNKNOWN.
    case missingUnknownPiece
    case multipleUnknownPieces(Int, Int)
    /// A BYTE piece whose text is not `<0xNN>`.
    case invalidBytePiece(id: Int, piece: String)
    /// Byte fallback is on but some of the 256 `<0xNN>` pieces are missing.
    case missingBytePieces(count: Int)
    /// Byte pieces exist although byte fallback is off (SentencePiece refuses such a model).
    case unexpectedBytePiece(id: Int, piece: String)
    /// Parallel GGUF arrays of different lengths.
    case lengthMismatch(key: String, count: Int, expected: Int)
    case specialTokenOutOfRange(key: String, id: Int, vocabSize: Int)
    /// A special-token key disagrees with the token types.
    case inconsistentSpecialToken(key: String, id: Int, reason: String)

    /// One line, whatever the file held (see `oneLine`).
    public var description: String { oneLine(message) }

    private var message: String {
        switch self {
        case .gguf(let e): return e.description
        case .unrecognizedFormat(let p, let b):
            let hex = b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
            return "\(p) is neither a GGUF file (magic \"GGUF\") nor a SentencePiece tokenizer.model "
                + "(a protobuf starting with its pieces field, byte 0x0a); first bytes: [\(hex)]"
        case .noTokenizer(let p):
            return "\(p) has no tokenizer: metadata key 'tokenizer.ggml.model' is missing"
        case .unsupportedTokenizerModel(let m):
            return "tokenizer.ggml.model is '\(m)'; palr supports only 'llama' (SentencePiece BPE)"
        case .truncatedProtobuf(let w, let o):
            return "tokenizer.model is truncated: it ends inside \(w) (which starts at byte \(o))"
        case .malformedProtobuf(let w, let o, let r):
            return "tokenizer.model is malformed at byte \(o), in \(w): \(r)"
        case .unsupportedModelType(let t):
            return "the SentencePiece model type is \(t); palr supports only BPE (as LLaMA uses)"
        case .unsupportedSetting(let s): return "unsupported tokenizer setting: \(s)"
        case .emptyVocabulary: return "the tokenizer has no pieces"
        case .emptyPiece(let i): return "piece \(i) is empty"
        case .invalidPieceUTF8(let i): return "piece \(i) is not valid UTF-8"
        case .duplicatePiece(let i, let f, let p): return "piece \(i) '\(p)' duplicates piece \(f)"
        case .invalidTokenType(let i, let v):
            return "piece \(i) has token type \(v) (expected 1 normal … 6 byte)"
        case .missingUnknownPiece: return "the vocabulary has no piece of type UNKNOWN"
        case .multipleUnknownPieces(let a, let b): return "pieces \(a) and \(b) are both of type UNKNOWN"
        case .invalidBytePiece(let i, let p): return "byte piece \(i) is '\(p)', not <0xNN>"
        case .missingBytePieces(let n):
            return "byte fallback is on but \(n) of the 256 <0xNN> byte pieces are missing"
        case .unexpectedBytePiece(let i, let p):
            return "byte piece \(i) '\(p)' is present although byte_fallback is off"
        case .lengthMismatch(let k, let c, let e): return "\(k) has \(c) entries; tokenizer.ggml.tokens has \(e)"
        case .specialTokenOutOfRange(let k, let i, let n): return "\(k) = \(i) is outside the vocabulary (\(n) pieces)"
        case .inconsistentSpecialToken(let k, let i, let r): return "\(k) = \(i): \(r)"
        }
    }
}
