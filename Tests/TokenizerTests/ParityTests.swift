import Foundation
import Testing
@testable import Tokenizer

// Parity with the Python `sentencepiece` library (fixtures written by
// tools/fixtures/make_tokenizer_fixtures.py) and with llama.cpp's own test vectors.

@Suite struct LlamaCppVectorTests {
    /// The cases of llama.cpp's test-tokenizer-0: `.inp` holds the texts separated by
    /// "\n__ggml_vocab_test__\n" (split as llama.cpp does: a separator at the very end adds
    /// no empty case), `.out` one line of space-separated ids per case, without BOS.
    static func cases() throws -> [(text: String, ids: [Int32])] {
        let base = try Paths.shared(Paths.llamaVocabGGUF)
        guard let inp = FileManager.default.contents(atPath: base + ".inp").flatMap({ String(data: $0, encoding: .utf8) }),
              let out = FileManager.default.contents(atPath: base + ".out").flatMap({ String(data: $0, encoding: .utf8) })
        else { throw TestSetupError("cannot read \(base).inp / .out") }

        var texts: [String] = []
        var rest = Substring(inp)
        let separator = "\n__ggml_vocab_test__\n"
        while !rest.isEmpty {
            guard let r = rest.range(of: separator) else {
                texts.append(String(rest))
                break
            }
            texts.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        var lines = out.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }  // getline: the final newline ends the last line
        guard lines.count == texts.count else {
            throw TestSetupError(".inp has \(texts.count) cases but .out has \(lines.count) lines")
        }
        return try zip(texts, lines).map { text, line in
            let ids = try line.split(separator: " ").map { field -> Int32 in
                guard let v = Int32(field.trimmingCharacters(in: .whitespaces)) else {
                    throw TestSetupError("bad id '\(field)' in .out")
                }
                return v
            }
            return (text, ids)
        }
    }

    @Test("llama.cpp's llama-spm vectors, with the vocabulary from its GGUF and from tokenizer.model",
          arguments: ["gguf", "tokenizer.model"])
    func vectors(source: String) throws {
        let tokenizer = source == "gguf"
            ? try SentencePieceTokenizer.load(path: Paths.shared(Paths.llamaVocabGGUF))
            : try Tokenizers.named("llama2")
        let cases = try Self.cases()
        #expect(cases.count == 46)
        var report = ParityReport("llama.cpp vectors (\(source))")
        for (i, c) in cases.enumerated() {
            report.check("case \(i) \(show(c.text))", expected: c.ids, got: tokenizer.encode(c.text, addBOS: false))
        }
        report.finish()
    }

    @Test func ggufVocabularyEqualsTokenizerModel() throws {
        let gguf = try SentencePieceTokenizer.load(path: Paths.shared(Paths.llamaVocabGGUF))
        let model = try Tokenizers.named("llama2")
        #expect(gguf.vocabulary.pieces == model.vocabulary.pieces)
        #expect(gguf.vocabulary.scores == model.vocabulary.scores)
        #expect(gguf.vocabulary.types == model.vocabulary.types)
        #expect(gguf.bos == 1 && model.bos == 1)
        #expect(gguf.eos == 2 && model.eos == 2)
        #expect(gguf.unk == 0 && model.unk == 0)
        #expect(gguf.pad == nil && model.pad == nil)
        #expect(gguf.vocabulary.addDummyPrefix && model.vocabulary.addDummyPrefix)
        #expect(!gguf.vocabulary.removeExtraWhitespaces && !model.vocabulary.removeExtraWhitespaces)
    }
}

@Suite struct SentencePieceParityTests {
    /// All titles of one MovieLens file against the fixture: ids, the decoded text
    /// (by hash) and decode(encode(x)) == x wherever sentencepiece round-trips.
    @Test("MovieLens titles", arguments: ["llama2", "tok512"], ["u.item", "movies.csv"])
    func titles(model: String, set: String) throws {
        let tokenizer = try Tokenizers.named(model)
        let titles = set == "u.item" ? try MovieLens.uItemTitles() : try MovieLens.moviesCSVTitles()
        let rows = try Fixture("\(model).\(set).json").section("rows")
        let ids = try Fixture.ids(rows)
        let hashes = try Fixture.strings(rows, "decoded_fnv1a64")
        guard let roundTrips = rows["roundtrip"] as? [Bool] else { throw TestSetupError("fixture has no roundtrip") }
        try #require(titles.count == ids.count, "\(set) has \(titles.count) titles, the fixture \(ids.count) rows")
        if set == "u.item" { #expect(titles.count == 1682) }

        var encodeReport = ParityReport("\(model) \(set) encode")
        var decodeReport = ParityReport("\(model) \(set) decode")
        var roundTripReport = ParityReport("\(model) \(set) round trip")
        var representable = 0
        for (i, title) in titles.enumerated() {
            let got = tokenizer.encode(title, addBOS: false)
            encodeReport.check("row \(i) \(show(title))", expected: ids[i], got: got)
            let decoded = tokenizer.decode(got)
            decodeReport.check("row \(i) \(show(title)) → \(show(decoded))", expected: hashes[i], got: fnv1a64(decoded))
            roundTripReport.check("row \(i) \(show(title)) → \(show(decoded))", expected: roundTrips[i], got: decoded == title)
            if roundTrips[i] { representable += 1 }
        }
        encodeReport.finish()
        decodeReport.finish()
        roundTripReport.finish()
        print("\(model) \(set): decode(encode(x)) == x for \(representable) of \(titles.count) titles (as sentencepiece)")
    }

    @Test("hostile strings", arguments: ["llama2", "tok512"])
    func hostile(model: String) throws {
        let tokenizer = try Tokenizers.named(model)
        let texts = try Fixture.strings(Fixture("hostile.json").json, "texts")
        #expect(texts.count >= 40)
        let section = try Fixture("\(model).json").section("hostile")
        try checkTexts(tokenizer, name: "\(model) hostile", texts: texts, section: section)
    }

    @Test("sentencepiece's decode of id sequences, whole and streamed", arguments: ["llama2", "tok512", "tiny"])
    func decode(model: String) throws {
        let tokenizer = try Tokenizers.named(model)
        let section = try Fixture("\(model).json").section("decode")
        let sequences = try Fixture.ids(section)
        let expected = try Fixture.strings(section, "decoded")
        var report = ParityReport("\(model) decode sequences")
        var streamReport = ParityReport("\(model) streaming decode")
        for (ids, text) in zip(sequences, expected) {
            let whole = tokenizer.decode(ids)
            report.check("\(ids)", expected: text, got: whole)
            streamReport.check("\(ids)", expected: whole, got: streamed(tokenizer, ids))
        }
        report.finish()
        streamReport.finish()
    }

    /// A model trained for the test with user-defined and control pieces, UNUSED pieces,
    /// no byte fallback (so runs of unknown characters become one <unk>).
    @Test func userDefinedUnusedAndUnknownPieces() throws {
        let tokenizer = try Tokenizers.named("tiny")
        #expect(tokenizer.vocabulary.types.contains(.userDefined))
        #expect(tokenizer.vocabulary.types.contains(.unused))
        #expect(!tokenizer.vocabulary.byteFallback)
        let section = try Fixture("tiny.json").section("texts")
        try checkTexts(tokenizer, name: "tiny", texts: Fixture.strings(section, "texts"), section: section)
    }

    private func checkTexts(_ tokenizer: SentencePieceTokenizer, name: String, texts: [String], section: [String: Any]) throws {
        let ids = try Fixture.ids(section)
        let decoded = try Fixture.strings(section, "decoded")
        try #require(ids.count == texts.count && decoded.count == texts.count)
        var encodeReport = ParityReport("\(name) encode")
        var decodeReport = ParityReport("\(name) decode")
        var streamReport = ParityReport("\(name) streaming decode")
        for (i, text) in texts.enumerated() {
            let got = tokenizer.encode(text, addBOS: false)
            encodeReport.check("\(i) \(show(text))", expected: ids[i], got: got)
            let whole = tokenizer.decode(got)
            decodeReport.check("\(i) \(show(text))", expected: decoded[i], got: whole)
            streamReport.check("\(i) \(show(text))", expected: whole, got: streamed(tokenizer, got))
        }
        encodeReport.finish()
        decodeReport.finish()
        streamReport.finish()
        let same = zip(texts, decoded).filter { $0 == $1 }.count
        print("\(name): decode(encode(x)) == x for \(same) of \(texts.count) strings (as sentencepiece)")
    }
}

/// The concatenated output of a streaming decoder fed `ids` one at a time.
func streamed(_ tokenizer: SentencePieceTokenizer, _ ids: [Int32]) -> String {
    var decoder = tokenizer.makeStreamingDecoder()
    var text = ""
    for id in ids { text += decoder.append(id) }
    return text + decoder.finish()
}
