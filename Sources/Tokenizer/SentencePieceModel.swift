// Reading a SentencePiece `tokenizer.model`: a protobuf `ModelProto` (sentencepiece_model.proto).
//
// Only the fields that change BPE encoding or decoding are read; everything else is skipped
// by wire type, so newer trainer fields do not break loading:
//
//   ModelProto       1 pieces (repeated SentencePiece)  2 trainer_spec  3 normalizer_spec
//                    5 denormalizer_spec
//   SentencePiece    1 piece (string)  2 score (float)  3 type (enum, default NORMAL = 1)
//   TrainerSpec      3 model_type (enum UNIGRAM = 1 (default), BPE = 2, WORD = 3, CHAR = 4)
//                    24 treat_whitespace_as_suffix  35 byte_fallback  44 unk_surface
//                    46 bos_piece  47 eos_piece  48 pad_piece
//                    (40–43 unk_id … pad_id are training inputs: SentencePiece itself finds
//                    BOS/EOS/PAD by piece text and <unk> by type, and so does palr)
//   NormalizerSpec   1 name  2 precompiled_charsmap  3 add_dummy_prefix (default true)
//                    4 remove_extra_whitespaces (default true)  5 escape_whitespaces (default true)
//
// Wire format: each field is a varint tag (number << 3 | wire type) and a value: wire 0 a
// varint, 1 eight bytes, 2 a varint length and that many bytes, 5 four bytes (little-endian).

/// A bounds-checked protobuf wire-format reader over one message's bytes.
struct ProtobufReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset: Int
    let end: Int

    init(bytes: UnsafeRawBufferPointer, offset: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.offset = offset
        self.end = end ?? bytes.count
    }

    struct Field {
        let number: Int
        let wire: Int
        /// Where the tag starts, for error messages.
        let offset: Int
    }

    mutating func varint(_ what: @autoclosure () -> String) throws(TokenizerError) -> UInt64 {
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < end else { throw .truncatedProtobuf(what: what(), offset: start) }
            let b = bytes[offset]
            offset += 1
            guard shift < 63 || b <= 1 else {
                throw .malformedProtobuf(what: what(), offset: start, reason: "varint longer than 64 bits")
            }
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return result }
            shift += 7
        }
    }

    /// The next field of this message, nil at its end.
    mutating func nextField(_ message: @autoclosure () -> String) throws(TokenizerError) -> Field? {
        guard offset < end else { return nil }
        let start = offset
        let tag = try varint("a field tag of \(message())")
        let number = tag >> 3
        guard number >= 1, number <= 536_870_911 else {
            throw .malformedProtobuf(what: message(), offset: start, reason: "field number \(number)")
        }
        return Field(number: Int(number), wire: Int(tag & 7), offset: start)
    }

    private func expect(_ f: Field, wire: Int, _ what: () -> String) throws(TokenizerError) {
        guard f.wire == wire else {
            throw .malformedProtobuf(what: what(), offset: f.offset,
                                     reason: "field \(f.number) has wire type \(f.wire), expected \(wire)")
        }
    }

    private mutating func lengthPrefixed(_ what: () -> String) throws(TokenizerError) -> Range<Int> {
        let start = offset
        let n = try varint(what())
        guard n <= UInt64(end - offset) else { throw .truncatedProtobuf(what: what(), offset: start) }
        let range = offset..<(offset + Int(n))
        offset = range.upperBound
        return range
    }

    /// A sub-reader over a length-delimited field that holds a message.
    mutating func message(_ f: Field, _ what: @autoclosure () -> String) throws(TokenizerError) -> ProtobufReader {
        try expect(f, wire: 2, what)
        let r = try lengthPrefixed(what)
        return ProtobufReader(bytes: bytes, offset: r.lowerBound, end: r.upperBound)
    }

    mutating func bytesField(_ f: Field, _ what: @autoclosure () -> String) throws(TokenizerError) -> UnsafeRawBufferPointer {
        try expect(f, wire: 2, what)
        let r = try lengthPrefixed(what)
        return UnsafeRawBufferPointer(rebasing: bytes[r])
    }

    mutating func string(_ f: Field, _ what: @autoclosure () -> String) throws(TokenizerError) -> String {
        let start = offset
        let raw = try bytesField(f, what())
        guard let s = String(validating: raw.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw .malformedProtobuf(what: what(), offset: start, reason: "string is not valid UTF-8")
        }
        return s
    }

    mutating func uint64(_ f: Field, _ what: @autoclosure () -> String) throws(TokenizerError) -> UInt64 {
        try expect(f, wire: 0, what)
        return try varint(what())
    }

    mutating func bool(_ f: Field, _ what: @autoclosure () -> String) throws(TokenizerError) -> Bool {
        try uint64(f, what()) != 0
    }

    mutating func float(_ f: Field, _ what: @autoclosure () -> String) throws(TokenizerError) -> Float {
        try expect(f, wire: 5, what)
        guard end - offset >= 4 else { throw .truncatedProtobuf(what: what(), offset: offset) }
        let v = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        offset += 4
        return Float(bitPattern: UInt32(littleEndian: v))
    }

    /// Skips a field palr does not read.
    mutating func skip(_ f: Field, _ what: @autoclosure () -> String) throws(TokenizerError) {
        switch f.wire {
        case 0: _ = try varint(what())
        case 1, 5:
            let n = f.wire == 1 ? 8 : 4
            guard end - offset >= n else { throw .truncatedProtobuf(what: what(), offset: offset) }
            offset += n
        case 2: _ = try lengthPrefixed(what)
        default:
            throw .malformedProtobuf(what: what(), offset: f.offset,
                                     reason: "field \(f.number) has wire type \(f.wire) (groups and types 6, 7 are not used by SentencePiece)")
        }
    }
}

extension Vocabulary {
    /// Reads a SentencePiece `ModelProto`. Throws for anything but a BPE model with
    /// identity normalization (what LLaMA uses).
    public init(sentencePieceModel data: UnsafeRawBufferPointer) throws(TokenizerError) {
        var pieces: [String] = []
        var scores: [Float] = []
        var types: [TokenType] = []
        // TrainerSpec, with the proto's defaults.
        var modelType: UInt64 = 1
        var whitespaceAsSuffix = false
        var byteFallback = false
        var unknownSurface = Vocabulary.defaultUnknownSurface
        var specialPieces = ["bos": "<s>", "eos": "</s>", "pad": "<pad>"]
        // NormalizerSpec, with the proto's defaults.
        var normalizerName = ""
        var charsmapSize = 0
        var addDummyPrefix = true
        var removeExtraWhitespaces = true
        var escapeWhitespaces = true

        var r = ProtobufReader(bytes: data)
        while let f = try r.nextField("ModelProto") {
            switch f.number {
            case 1:
                let id = pieces.count
                var p = try r.message(f, "piece \(id)")
                var text = "", score: Float = 0, type = TokenType.normal
                while let g = try p.nextField("piece \(id)") {
                    switch g.number {
                    case 1: text = try p.string(g, "the text of piece \(id)")
                    case 2: score = try p.float(g, "the score of piece \(id)")
                    case 3:
                        let v = try p.uint64(g, "the type of piece \(id)")
                        guard let t = TokenType(rawValue: Int32(truncatingIfNeeded: v)) else {
                            throw .invalidTokenType(id: id, value: Int(Int32(truncatingIfNeeded: v)))
                        }
                        type = t
                    default: try p.skip(g, "piece \(id)")
                    }
                }
                pieces.append(text)
                scores.append(score)
                types.append(type)
            case 2:
                var t = try r.message(f, "trainer_spec")
                while let g = try t.nextField("trainer_spec") {
                    let what = "trainer_spec field \(g.number)"
                    switch g.number {
                    case 3: modelType = try t.uint64(g, what)
                    case 24: whitespaceAsSuffix = try t.bool(g, what)
                    case 35: byteFallback = try t.bool(g, what)
                    case 44: unknownSurface = try t.string(g, what)
                    case 46: specialPieces["bos"] = try t.string(g, what)
                    case 47: specialPieces["eos"] = try t.string(g, what)
                    case 48: specialPieces["pad"] = try t.string(g, what)
                    default: try t.skip(g, what)
                    }
                }
            case 3, 5:
                let spec = f.number == 3 ? "normalizer_spec" : "denormalizer_spec"
                var n = try r.message(f, spec)
                while let g = try n.nextField(spec) {
                    let what = "\(spec) field \(g.number)"
                    switch (f.number, g.number) {
                    case (3, 1): normalizerName = try n.string(g, what)
                    case (_, 2):
                        let map = try n.bytesField(g, what)
                        if f.number == 5, !map.isEmpty {
                            throw .unsupportedSetting("a denormalizer with precompiled rules")
                        }
                        charsmapSize = map.count
                    case (3, 3): addDummyPrefix = try n.bool(g, what)
                    case (3, 4): removeExtraWhitespaces = try n.bool(g, what)
                    case (3, 5): escapeWhitespaces = try n.bool(g, what)
                    default: try n.skip(g, what)
                    }
                }
            default:
                try r.skip(f, "ModelProto field \(f.number)")
            }
        }

        switch modelType {
        case 2: break
        case 1: throw .unsupportedModelType("unigram")
        case 3: throw .unsupportedModelType("word")
        case 4: throw .unsupportedModelType("char")
        default: throw .unsupportedModelType("unknown (\(modelType))")
        }
        guard charsmapSize == 0 else {
            throw .unsupportedSetting("normalizer '\(normalizerName)' with a precompiled character map "
                                      + "(palr implements identity normalization only)")
        }
        guard escapeWhitespaces else { throw .unsupportedSetting("escape_whitespaces = false") }
        guard !whitespaceAsSuffix else { throw .unsupportedSetting("treat_whitespace_as_suffix = true") }

        // SentencePiece finds the special ids by piece text (bos_id() = PieceToId(bos_piece)
        // when that piece is a control piece).
        func special(_ key: String, _ type: TokenType) -> Int32? {
            guard let text = specialPieces[key] else { return nil }
            for (i, p) in pieces.enumerated() where types[i] == type && p == text { return Int32(i) }
            return nil
        }
        self.init(pieces: pieces, scores: scores, types: types,
                  addDummyPrefix: addDummyPrefix, removeExtraWhitespaces: removeExtraWhitespaces,
                  byteFallback: byteFallback, unknownSurface: unknownSurface,
                  bos: special("bos", .control), eos: special("eos", .control), pad: special("pad", .control),
                  addBOS: true, addEOS: false)
    }
}
