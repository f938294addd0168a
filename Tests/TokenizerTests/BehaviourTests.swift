import Foundation
import GGUF
import Testing
@testable import Tokenizer

@Suite struct EncodingBehaviourTests {
    @Test func specialTokensAndFlags() throws {
        let t = try Tokenizers.named("llama2")
        #expect(t.vocabSize == 32000)
        #expect(t.encode("Hello") == [1, 15043])
        #expect(t.encode("Hello", addBOS: false) == [15043])
        #expect(t.encode("Hello", addBOS: true, addEOS: true) == [1, 15043, 2])
        #expect(t.encode("", addBOS: true, addEOS: true) == [1, 2])
        // Control-token text is plain text, as in sentencepiece.
        #expect(t.encode("<s>", addBOS: false) == [529, 29879, 29958])
        #expect(!t.encode("<s></s><unk>", addBOS: false).contains { t.controlTokens.contains($0) || $0 == t.unk })
        #expect(t.controlTokens == [1, 2])
        #expect(t.piece(1) == "<s>" && t.piece(3) == "<0x00>" && t.piece(-1) == nil && t.piece(32000) == nil)
        #expect(t.tokenType(0) == .unknown && t.tokenType(1) == .control && t.tokenType(3) == .byte)
        #expect(t.id(ofPiece: "▁Hello") == 15043 && t.id(ofPiece: "no such piece") == nil)
        #expect(t.encodeAsPieces("Hello world") == ["▁Hello", "▁world"])
        // BOS and EOS decode to nothing; out-of-range ids to the unknown surface.
        #expect(t.decode([1, 15043, 2]) == "Hello")
        #expect(t.decode([15043, 99999, -5]) == "Hello ⁇  ⁇ ")
    }

    /// A character spelled by byte pieces comes out of the streaming decoder when its last byte arrives.
    @Test func streamingDecodeHoldsIncompleteCharacters() throws {
        let t = try Tokenizers.named("llama2")
        let ids = t.encode("🦙!", addBOS: true)
        #expect(ids == [1, 29871, 243, 162, 169, 156, 29991])
        var d = t.makeStreamingDecoder()
        let parts = ids.map { d.append($0) } + [d.finish()]
        #expect(parts == ["", "", "", "", "", "🦙", "!", ""])
        // A cut-off character: each byte becomes U+FFFD, at the end or before the next piece.
        var e = t.makeStreamingDecoder()
        #expect(e.append(243) == "" && e.append(162) == "" && e.finish() == "\u{FFFD}\u{FFFD}")
        #expect(t.decode([243, 162, 15043]) == "\u{FFFD}\u{FFFD} Hello")
        // An invalid byte is replaced at once; the character after it still waits for its end.
        var f = t.makeStreamingDecoder()
        #expect(f.append(131) == "\u{FFFD}" && f.append(243) == "" && f.append(162) == "")
        #expect(f.append(169) == "" && f.append(156) == "🦙")
    }

    /// The fast paths (merging word by word, merges looked up by id pairs) give what
    /// SentencePiece's way (whole text, byte lookups) gives.
    @Test("fast paths equal SentencePiece's plain algorithm", arguments: ["llama2", "tok512", "tiny"])
    func fastPathsAreExact(model: String) throws {
        let fast = try Tokenizers.named(model)
        #expect(fast.mergesStopAtSpaces && fast.merges != nil)
        let whole = try SentencePieceTokenizer(vocabulary: fast.vocabulary, fastPaths: false)
        #expect(!whole.mergesStopAtSpaces && whole.merges == nil)
        var texts = try Fixture.strings(Fixture("hostile.json").json, "texts")
        texts += try MovieLens.uItemTitles()
        var report = ParityReport("\(model) fast paths vs plain")
        for text in texts {
            report.check(show(text), expected: whole.encode(text), got: fast.encode(text))
        }
        report.finish()
    }

    /// The merge table is built with each split's suffix hashed from the piece's and the
    /// prefix's hashes (a file of nested pieces, a, aa, aaa, …, loaded slowly when each
    /// suffix was hashed anew). On nested pieces, one- and two-byte characters and
    /// alternations, encoding with that table equals the plain algorithm (byte lookups).
    @Test func mergesOfNestedPiecesEqualThePlainAlgorithm() throws {
        var pieces = ["<unk>", "<s>", "</s>"], scores: [Float] = [0, 0, 0]
        var types: [TokenType] = [.unknown, .control, .control]
        func add(_ piece: String, _ score: Float) {
            pieces.append(piece); scores.append(score); types.append(.normal)
        }
        for k in 1...300 { add(String(repeating: "a", count: k), -Float(k)) }
        for k in 1...120 { add(String(repeating: "é", count: k), -Float(k) - 0.25) }
        for k in 1...60 { add(String(repeating: "ab", count: k), -Float(k) - 0.5) }
        add("b", -1.5)
        let vocabulary = Vocabulary(pieces: pieces, scores: scores, types: types, addDummyPrefix: false,
                                    byteFallback: false, bos: 1, eos: 2)
        let fast = try SentencePieceTokenizer(vocabulary: vocabulary)
        #expect(fast.merges != nil)
        let whole = try SentencePieceTokenizer(vocabulary: vocabulary, fastPaths: false)
        var texts: [String] = []
        for n in 1...320 { texts.append(String(repeating: "a", count: n)) }
        for n in 1...130 { texts.append(String(repeating: "é", count: n) + "a") }
        for n in 1...70 { texts.append(String(repeating: "ab", count: n) + String(repeating: "a", count: n % 7)) }
        texts += ["aébab", "baaab", "ééaéé", String(repeating: "aab", count: 40)]
        var report = ParityReport("nested pieces, fast vs plain")
        for text in texts {
            report.check(show(text), expected: whole.encode(text, addBOS: false), got: fast.encode(text, addBOS: false))
        }
        report.finish()
        // Not one piece per character: the merges were found.
        #expect(fast.encode(String(repeating: "a", count: 300), addBOS: false).count == 1)
    }

    /// 100 KB inputs (long words, space runs, one huge prompt) take milliseconds: no quadratic rescans.
    @Test("long inputs stay fast", arguments: ["llama2", "tok512"])
    func longInputs(model: String) throws {
        let t = try Tokenizers.named(model)
        let titles = try MovieLens.moviesCSVTitles()
        var prompt = ""
        for title in titles where prompt.utf8.count < 100_000 { prompt += title + ", " }
        let inputs = [
            ("titles as one prompt", prompt),
            ("one 100 KB word", String(repeating: "a", count: 100_000)),
            ("100 KB of spaces", String(repeating: " ", count: 100_000)),
            ("100 KB of emoji", String(repeating: "🎬", count: 25_000)),
            ("100 KB of digits", String(repeating: "1234567890", count: 10_000)),
        ]
        for (name, text) in inputs {
            let clock = ContinuousClock()
            var ids: [Int32] = []
            let elapsed = clock.measure { ids = t.encode(text, addBOS: false) }
            print("\(model) \(name): \(text.utf8.count) bytes → \(ids.count) tokens in \(elapsed)")
            // Debug builds are ~10× slower than release; a quadratic encoder would take minutes.
            #expect(elapsed < .seconds(5), "\(model) \(name) took \(elapsed)")
            if !t.vocabulary.removeExtraWhitespaces {
                #expect(t.decode(ids) == text, "\(model) \(name): decode(encode(x)) != x")
            }
        }
    }

    /// tokenizer.model → GGUF keys → GGUF file → tokenizer: the same vocabulary and ids.
    @Test("GGUF keys written for a tokenizer.model load back", arguments: ["llama2", "tok512", "tiny"])
    func ggufRoundTrip(model: String) throws {
        let original = try Tokenizers.named(model)
        let metadata = original.ggufMetadata
        #expect(metadata.first?.0 == "tokenizer.ggml.model" && metadata.first?.1 == .string("llama"))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("palr-tok-\(model)-\(getpid()).gguf").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let writer = try GGUFWriter(path: path, metadata: [("general.architecture", .string("llama"))] + metadata, tensors: [])
        try writer.finish()

        let loaded = try SentencePieceTokenizer.load(path: path)
        var expected = original.vocabulary
        expected.unknownSurface = Vocabulary.defaultUnknownSurface  // GGUF has no key for it
        #expect(loaded.vocabulary == expected)
        #expect(loaded.unk == original.unk)
        let texts = try Fixture.strings(Fixture("hostile.json").json, "texts")
        var report = ParityReport("\(model) via GGUF")
        for text in texts { report.check(show(text), expected: original.encode(text), got: loaded.encode(text)) }
        report.finish()
    }

    @Test func tok512Settings() throws {
        let t = try Tokenizers.named("tok512")
        #expect(t.vocabSize == 512)
        #expect(t.vocabulary.removeExtraWhitespaces && t.vocabulary.addDummyPrefix && t.vocabulary.byteFallback)
        #expect(t.bos == 1 && t.eos == 2 && t.unk == 0 && t.pad == nil)
        // Its trainer wrote unk_surface with octal escapes spelled out; SentencePiece decodes it as is.
        #expect(t.vocabulary.unknownSurface == " \\342\\201\\207 ")
        #expect(t.encode("  Hello  world ", addBOS: false) == t.encode("Hello world", addBOS: false))
    }
}

@Suite struct MovieLensExtractionTests {
    @Test func csvParsing() {
        let csv = "a,b,c\r\n1,\"x, \"\"y\"\"\",z\r\n2,,\n\n3,\"multi\nline\",q"
        #expect(MovieLens.parseCSV(csv) == [["a", "b", "c"], ["1", "x, \"y\"", "z"], ["2", "", ""], ["3", "multi\nline", "q"]])
    }

    @Test func titleCounts() throws {
        let uItem = try MovieLens.uItemTitles()
        let movies = try MovieLens.moviesCSVTitles()
        #expect(uItem.count == 1682)
        #expect(movies.count == 9742)
        #expect(uItem.contains { $0.unicodeScalars.contains { $0.value > 127 } })  // ISO-8859-1 accents
        #expect(movies.contains { $0.contains(",") && $0.contains("\"") == false })  // quoted commas
    }
}
