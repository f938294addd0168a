// TEMPORARY: a minimal SentencePiece `tokenizer.model` reader that produces the
// `tokenizer.ggml.*` GGUF keys. It exists only so that the converter does not
// wait for the Tokenizer module (issue 3), which parses the same protobuf with
// full fidelity. Replace `SentencePieceVocab` with the Tokenizer module's API
// when it lands; nothing else in Convert depends on how the pieces are read.
//
// tokenizer.model is a protobuf `ModelProto` (sentencepiece_model.proto):
//   1 pieces           repeated { 1 piece: string, 2 score: float, 3 type: enum }
//   2 trainer_spec     { 3 model_type, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id }
//   3 normalizer_spec  { 3 add_dummy_prefix: bool (default true) }
// Piece types: 1 NORMAL, 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE;
// GGUF's tokenizer.ggml.token_type uses the same numbers.

import GGUF

/// The vocabulary of a SentencePiece model, as llama.cpp's converter writes it.
public struct SentencePieceVocab: Sendable {
    public var pieces: [String]
    public var scores: [Float]
    public var types: [Int32]
    public var unkId: Int
    public var bosId: Int
    public var eosId: Int
    /// -1: no padding token.
    public var padId: Int
    public var addDummyPrefix: Bool

    public static let fileName = "tokenizer.model"

    public init(pieces: [String], scores: [Float], types: [Int32], unkId: Int = 0, bosId: Int = 1, eosId: Int = 2,
                padId: Int = -1, addDummyPrefix: Bool = true) {
        self.pieces = pieces
        self.scores = scores
        self.types = types
        self.unkId = unkId
        self.bosId = bosId
        self.eosId = eosId
        self.padId = padId
        self.addDummyPrefix = addDummyPrefix
    }

    public init(path: String) throws(ConvertError) {
        let file = try Files.map(path)
        func bad(_ why: String) -> ConvertError { .badTokenizer(path: path, reason: "not a SentencePiece model: \(why)") }
        var pieces: [String] = []
        var scores: [Float] = []
        var types: [Int32] = []
        var unk: Int64 = 0, bos: Int64 = 1, eos: Int64 = 2, pad: Int64 = -1
        var dummyPrefix = true
        do throws(ProtoError) {
            var top = ProtoReader(file.bytes)
            while let (field, wire) = try top.next() {
                switch (field, wire) {
                case (1, 2):
                    var m = ProtoReader(try top.bytes())
                    var piece: String?
                    var score: Float = 0
                    var type: Int32 = 1
                    while let (f, w) = try m.next() {
                        switch (f, w) {
                        case (1, 2):
                            guard let s = String(validating: try m.bytes(), as: UTF8.self) else { throw ProtoError("piece \(pieces.count) is not UTF-8") }
                            piece = s
                        case (2, 5): score = Float(bitPattern: try m.fixed32())
                        case (3, 0): type = Int32(truncatingIfNeeded: try m.varint())
                        default: try m.skip(w)
                        }
                    }
                    guard let piece else { throw ProtoError("piece \(pieces.count) has no text") }
                    guard (1...6).contains(type) else { throw ProtoError("piece \(pieces.count) has type \(type)") }
                    pieces.append(piece)
                    scores.append(score)
                    types.append(type)
                case (2, 2):
                    var m = ProtoReader(try top.bytes())
                    while let (f, w) = try m.next() {
                        switch (f, w) {
                        case (40, 0): unk = Int64(Int32(truncatingIfNeeded: try m.varint()))
                        case (41, 0): bos = Int64(Int32(truncatingIfNeeded: try m.varint()))
                        case (42, 0): eos = Int64(Int32(truncatingIfNeeded: try m.varint()))
                        case (43, 0): pad = Int64(Int32(truncatingIfNeeded: try m.varint()))
                        default: try m.skip(w)
                        }
                    }
                case (3, 2):
                    var m = ProtoReader(try top.bytes())
                    while let (f, w) = try m.next() {
                        if f == 3, w == 0 { dummyPrefix = try m.varint() != 0 } else { try m.skip(w) }
                    }
                default:
                    try top.skip(wire)
                }
            }
        } catch {
            throw bad(error.reason)
        }
        guard !pieces.isEmpty else { throw bad("it holds no pieces") }
        for (name, id) in [("unk_id", unk), ("bos_id", bos), ("eos_id", eos)] where id < 0 || id >= Int64(pieces.count) {
            throw bad("trainer_spec.\(name) \(id) is outside the \(pieces.count) pieces")
        }
        guard pad < Int64(pieces.count) else { throw bad("trainer_spec.pad_id \(pad) is outside the \(pieces.count) pieces") }
        self.pieces = pieces
        self.scores = scores
        self.types = types
        unkId = Int(unk)
        bosId = Int(bos)
        eosId = Int(eos)
        padId = Int(pad)
        addDummyPrefix = dummyPrefix
    }

    /// Pads the vocabulary to `size` entries as llama.cpp does (`[PADi]`, UNUSED,
    /// score -1000) when the embedding has more rows than the tokenizer has pieces.
    public mutating func pad(to size: Int) {
        while pieces.count < size {
            pieces.append("[PAD\(pieces.count)]")
            scores.append(-1000)
            types.append(5)
        }
    }

    /// The `tokenizer.ggml.*` keys, with gguf-py's value types.
    public func ggufMetadata(addBOS: Bool = true, addEOS: Bool = false) -> [(String, GGUFValue)] {
        var m: [(String, GGUFValue)] = [
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.pre", .string("default")),
            ("tokenizer.ggml.tokens", .array(.string, pieces.map { .string($0) })),
            ("tokenizer.ggml.scores", .array(.float32, scores.map { .float32($0) })),
            ("tokenizer.ggml.token_type", .array(.int32, types.map { .int32($0) })),
            ("tokenizer.ggml.bos_token_id", .uint32(UInt32(bosId))),
            ("tokenizer.ggml.eos_token_id", .uint32(UInt32(eosId))),
            ("tokenizer.ggml.unknown_token_id", .uint32(UInt32(unkId))),
        ]
        if padId >= 0 { m.append(("tokenizer.ggml.padding_token_id", .uint32(UInt32(padId)))) }
        m += [
            ("tokenizer.ggml.add_bos_token", .bool(addBOS)),
            ("tokenizer.ggml.add_eos_token", .bool(addEOS)),
            ("tokenizer.ggml.add_space_prefix", .bool(addDummyPrefix)),
        ]
        return m
    }
}

struct ProtoError: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Reads protobuf wire format: (field, wire type) keys and their values, bounds-checked.
struct ProtoReader {
    let buf: UnsafeRawBufferPointer
    var i = 0

    init(_ buf: UnsafeRawBufferPointer) { self.buf = buf }

    mutating func varint() throws(ProtoError) -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard i < buf.count else { throw ProtoError("truncated varint at byte \(i)") }
            let b = buf[i]
            i += 1
            guard shift < 64 else { throw ProtoError("varint too long at byte \(i)") }
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
        }
    }

    /// The next field key, or nil at the end.
    mutating func next() throws(ProtoError) -> (field: Int, wire: Int)? {
        guard i < buf.count else { return nil }
        let key = try varint()
        return (Int(key >> 3), Int(key & 7))
    }

    mutating func bytes() throws(ProtoError) -> UnsafeRawBufferPointer {
        let n = try varint()
        guard n <= UInt64(buf.count - i) else { throw ProtoError("a \(n)-byte field at byte \(i) runs past the end") }
        let out = UnsafeRawBufferPointer(rebasing: buf[i..<(i + Int(n))])
        i += Int(n)
        return out
    }

    mutating func fixed32() throws(ProtoError) -> UInt32 {
        guard buf.count - i >= 4 else { throw ProtoError("truncated fixed32 at byte \(i)") }
        let v = buf.loadUnaligned(fromByteOffset: i, as: UInt32.self).littleEndian
        i += 4
        return v
    }

    mutating func skip(_ wire: Int) throws(ProtoError) {
        switch wire {
        case 0: _ = try varint()
        case 1:
            guard buf.count - i >= 8 else { throw ProtoError("truncated fixed64 at byte \(i)") }
            i += 8
        case 2: _ = try bytes()
        case 5: _ = try fixed32()
        default: throw ProtoError("unsupported wire type \(wire) at byte \(i)")
        }
    }
}
