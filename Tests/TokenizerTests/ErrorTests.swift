import Foundation
import GGUF
import Testing
@testable import Tokenizer

/// Bad files and vocabularies give typed errors with clear messages, never a crash.
@Suite struct TokenizerErrorTests {
    static func modelBytes(_ name: String) throws -> [UInt8] {
        let path = try Paths.model(name)
        guard let data = FileManager.default.contents(atPath: path) else { throw TestSetupError("cannot read \(path)") }
        return [UInt8](data)
    }

    static func temporaryFile(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("palr-tok-\(getpid())-\(name)").path
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { throw TestSetupError("cannot write \(path)") }
        return path
    }

    static func writeGGUF(_ name: String, _ metadata: [(String, GGUFValue)]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("palr-tok-\(getpid())-\(name).gguf").path
        let writer = try GGUFWriter(path: path, metadata: metadata, tensors: [])
        try writer.finish()
        return path
    }

    static func loadError(_ bytes: [UInt8]) -> TokenizerError? {
        do {
            _ = try SentencePieceTokenizer(modelData: bytes)
            return nil
        } catch {
            return error
        }
    }

    static func vocabularyError(_ v: Vocabulary) -> TokenizerError? {
        do {
            _ = try SentencePieceTokenizer(vocabulary: v)
            return nil
        } catch {
            return error
        }
    }

    /// Offset of the varint value of field `inner` inside the top-level message field `outer`.
    static func offsetOfField(_ b: [UInt8], outer: Int, inner: Int) -> Int? {
        func varint(_ i: inout Int) -> Int {
            var v = 0, shift = 0
            while i < b.count {
                let c = b[i]
                i += 1
                v |= Int(c & 0x7F) << shift
                shift += 7
                if c < 0x80 { break }
            }
            return v
        }
        func skip(_ wire: Int, _ i: inout Int) {
            switch wire {
            case 0: _ = varint(&i)
            case 1: i += 8
            case 2: i += varint(&i)
            default: i += 4
            }
        }
        var i = 0
        while i < b.count {
            let tag = varint(&i)
            guard tag >> 3 == outer, tag & 7 == 2 else {
                skip(tag & 7, &i)
                continue
            }
            let n = varint(&i)
            var j = i
            while j < i + n {
                let t = varint(&j)
                if t >> 3 == inner && t & 7 == 0 { return j }
                skip(t & 7, &j)
            }
            i += n
        }
        return nil
    }

    @Test func truncatedProtobuf() throws {
        let bytes = try Self.modelBytes("tok512")
        // The first piece's message: tag 0x0a, a one-byte length, then the piece; cut inside it.
        #expect(bytes[0] == 0x0A && bytes[1] < 0x80)
        let error = Self.loadError(Array(bytes[..<(2 + Int(bytes[1]) / 2)]))
        guard case .truncatedProtobuf(let what, let offset)? = error else {
            Issue.record("expected truncatedProtobuf, got \(String(describing: error))")
            return
        }
        #expect(what == "piece 0" && offset == 1)
        print("truncated: \(error.map { "\($0)" } ?? "")")
        #expect("\(error.map { "\($0)" } ?? "")".contains("truncated"))

        // Every cut before the trainer_spec (which says BPE) fails with an error.
        let trainerStart = try #require(Self.offsetOfField(bytes, outer: 2, inner: 3))
        var errors = 0
        for cut in stride(from: 0, to: trainerStart - 8, by: 7) where Self.loadError(Array(bytes[..<cut])) != nil {
            errors += 1
        }
        #expect(errors == (trainerStart - 8 + 6) / 7)
    }

    @Test func unigramModelIsRejected() throws {
        var bytes = try Self.modelBytes("tok512")
        let at = try #require(Self.offsetOfField(bytes, outer: 2, inner: 3))
        #expect(bytes[at] == 2)  // BPE
        bytes[at] = 1  // UNIGRAM
        let error = Self.loadError(bytes)
        #expect(error == .unsupportedModelType("unigram"))
        print("unigram: \(error.map { "\($0)" } ?? "")")
        bytes[at] = 4
        #expect(Self.loadError(bytes) == .unsupportedModelType("char"))
    }

    @Test func malformedProtobufAndSettings() throws {
        let over = Self.loadError([0x0A] + [UInt8](repeating: 0xFF, count: 11) + [0x01])
        guard case .malformedProtobuf(_, 1, let reason)? = over else {
            Issue.record("expected malformedProtobuf, got \(String(describing: over))")
            return
        }
        #expect(reason.contains("64 bits"))
        guard case .malformedProtobuf? = Self.loadError([0x0B, 0x00]) else {  // field 1, wire type 3 (group)
            Issue.record("a group field should be malformed")
            return
        }
        guard case .malformedProtobuf? = Self.loadError([0x0D, 0, 0, 0, 0]) else {  // pieces with wire type 5
            Issue.record("a piece with the wrong wire type should be malformed")
            return
        }
        let tok512 = try Self.modelBytes("tok512")
        // A later normalizer_spec merges into the first: a precompiled character map (NFKC) is not supported.
        guard case .unsupportedSetting(let s)? = Self.loadError(tok512 + [0x1A, 0x03, 0x12, 0x01, 0x41]) else {
            Issue.record("a precompiled charsmap should be unsupported")
            return
        }
        #expect(s.contains("precompiled"))
        // treat_whitespace_as_suffix (trainer field 24) = true.
        #expect(Self.loadError(tok512 + [0x12, 0x03, 0xC0, 0x01, 0x01]) == .unsupportedSetting("treat_whitespace_as_suffix = true"))
        // A model without pieces or trainer spec is a unigram model by the proto's default.
        #expect(Self.loadError([]) == .unsupportedModelType("unigram"))
    }

    /// Random corruption of a real model: each variant loads or throws, and a loaded one encodes.
    @Test func corruptedModelsNeverCrash() throws {
        let original = try Self.modelBytes("tok512")
        var seed: UInt64 = 12345
        func next(_ n: Int) -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((seed >> 33) % UInt64(n))
        }
        var loaded = 0, failed = 0
        for _ in 0..<300 {
            var bytes = original
            for _ in 0..<(1 + next(3)) { bytes[next(bytes.count)] = UInt8(next(256)) }
            if let t = try? SentencePieceTokenizer(modelData: bytes) {
                loaded += 1
                let ids = t.encode("Hello  wörld 🦙 <s>\n", addBOS: true, addEOS: true)
                _ = t.decode(ids + [0, 1, 2, 3, Int32(t.vocabSize), -1])
            } else {
                failed += 1
            }
        }
        print("corrupted tok512 variants: \(loaded) loaded, \(failed) rejected")
        #expect(loaded + failed == 300 && failed > 0)
    }

    @Test func filesThatAreNotTokenizers() throws {
        let text = try Self.temporaryFile("text", Array("hello, world".utf8))
        let empty = try Self.temporaryFile("empty", [])
        defer {
            try? FileManager.default.removeItem(atPath: text)
            try? FileManager.default.removeItem(atPath: empty)
        }
        #expect(throws: TokenizerError.unrecognizedFormat(path: text, firstBytes: Array("hello, w".utf8))) {
            try SentencePieceTokenizer.load(path: text)
        }
        #expect(throws: TokenizerError.unrecognizedFormat(path: empty, firstBytes: [])) {
            try SentencePieceTokenizer.load(path: empty)
        }
        do {
            _ = try SentencePieceTokenizer.load(path: "/nonexistent/tokenizer.model")
            Issue.record("a missing file loaded")
        } catch {
            guard case .gguf(.cannotOpen) = error else {
                Issue.record("expected cannotOpen, got \(error)")
                return
            }
        }
    }

    @Test func ggufWithoutOrWithBadTokenizerKeys() throws {
        let tiny = try Tokenizers.named("tiny")
        let good = tiny.ggufMetadata
        func replacing(_ key: String, _ value: GGUFValue?) -> [(String, GGUFValue)] {
            good.compactMap { $0.0 == key ? value.map { (key, $0) } : $0 }
        }
        let n = good.first { $0.0 == TokenizerKey.tokens }?.1.array?.count ?? 0
        let cases: [(String, [(String, GGUFValue)], TokenizerError)] = [
            ("none", [("general.architecture", .string("llama"))], .noTokenizer(path: "")),
            ("gpt2", replacing(TokenizerKey.model, .string("gpt2")), .unsupportedTokenizerModel("gpt2")),
            ("noscores", replacing(TokenizerKey.scores, nil), .gguf(.missingKey(TokenizerKey.scores))),
            ("shortscores", replacing(TokenizerKey.scores, .array(.float32, [.float32(0)])),
             .lengthMismatch(key: TokenizerKey.scores, count: 1, expected: n)),
            ("badtype", replacing(TokenizerKey.tokenType, .array(.int32, (0..<n).map { .int32($0 == 5 ? 9 : 1) })),
             .invalidTokenType(id: 5, value: 9)),
            ("bos", replacing(TokenizerKey.bos, .uint32(UInt32(n))),
             .specialTokenOutOfRange(key: TokenizerKey.bos, id: n, vocabSize: n)),
            ("unk", replacing(TokenizerKey.unknown, .uint32(7)),
             .inconsistentSpecialToken(key: TokenizerKey.unknown, id: 7,
                                       reason: "token 7 is of type \(tiny.vocabulary.types[7]), not unknown")),
        ]
        for (name, metadata, expected) in cases {
            let path = try Self.writeGGUF(name, metadata)
            defer { try? FileManager.default.removeItem(atPath: path) }
            do {
                _ = try SentencePieceTokenizer.load(path: path)
                Issue.record("\(name): loaded")
            } catch {
                let wanted = name == "none" ? TokenizerError.noTokenizer(path: path) : expected
                #expect(error == wanted, "\(name)")
                print("gguf \(name): \(error)")
            }
        }
        // tokens of the wrong type
        let path = try Self.writeGGUF("inttokens", replacing(TokenizerKey.tokens, .array(.int32, [.int32(1)])))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: TokenizerError.self) { try SentencePieceTokenizer.load(path: path) }
    }

    @Test func invalidVocabularies() throws {
        let bytePieces = (0...255).map { Vocabulary.bytePiece(UInt8($0)) }
        func vocab(_ pieces: [String], _ types: [TokenType], byteFallback: Bool = true) -> Vocabulary {
            Vocabulary(pieces: pieces, scores: pieces.map { _ in 0 }, types: types, byteFallback: byteFallback)
        }
        let base = ["<unk>", "<s>", "</s>"] + bytePieces + ["▁", "a"]
        let baseTypes: [TokenType] = [.unknown, .control, .control] + bytePieces.map { _ in .byte } + [.normal, .normal]
        #expect(Self.vocabularyError(vocab(base, baseTypes)) == nil)
        #expect(Self.vocabularyError(vocab([], [])) == .emptyVocabulary)
        #expect(Self.vocabularyError(vocab(["a"], [.normal], byteFallback: false)) == .missingUnknownPiece)
        #expect(Self.vocabularyError(vocab(["<unk>", "<u2>"], [.unknown, .unknown], byteFallback: false))
                == .multipleUnknownPieces(0, 1))
        #expect(Self.vocabularyError(vocab(Array(base.dropLast(3)), Array(baseTypes.dropLast(3))))
                == .missingBytePieces(count: 1))
        #expect(Self.vocabularyError(vocab(base, baseTypes, byteFallback: false))
                == .unexpectedBytePiece(id: 3, piece: "<0x00>"))
        #expect(Self.vocabularyError(vocab(["<unk>", "<0xZZ>"], [.unknown, .byte])) == .invalidBytePiece(id: 1, piece: "<0xZZ>"))
        #expect(Self.vocabularyError(vocab(base + ["a"], baseTypes + [.normal])) == .duplicatePiece(id: 261, firstID: 260, piece: "a"))
        #expect(Self.vocabularyError(vocab(base + [""], baseTypes + [.normal])) == .emptyPiece(id: 261))
        var v = vocab(base, baseTypes)
        v.eos = 999
        #expect(Self.vocabularyError(v) == .specialTokenOutOfRange(key: "eos", id: 999, vocabSize: 261))
        v.eos = nil
        v.scores.removeLast()
        #expect(Self.vocabularyError(v) == .lengthMismatch(key: "scores", count: 260, expected: 261))

        // A hand-made vocabulary works: "a" merges by score, "b" falls back to bytes.
        let t = try SentencePieceTokenizer(vocabulary: Vocabulary(
            pieces: base + ["▁a", "aa", "▁aa"], scores: baseTypes.map { _ in 0 } + [-1, -2, -3],
            types: baseTypes + [.normal, .normal, .normal]))
        // "▁a" (score -1) first, then "aa" (-2); "▁aa" (-3) is never reached.
        #expect(t.encodeAsPieces("aaa b") == ["▁a", "aa", "▁", "<0x62>"])
        #expect(t.decode(t.encode("aaa b")) == "aaa b")
    }
}
