import ArgumentParser
import Foundation
import Tokenizer

#if canImport(Glibc)
import Glibc
#endif

/// `palr tokenize`: token ids of a text, for model engineers and batch checks.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids (and pieces) of a text.",
        discussion: """
            --model takes a GGUF model (its tokenizer.ggml.* keys) or a SentencePiece \
            tokenizer.model; the two are told apart by their first bytes. Without TEXT, \
            the text is all of standard input, as is. With --jsonl, each standard-input \
            line is one JSON-encoded string and each output line the JSON array of its ids \
            (of its pieces with --pieces). --bench times encoding about 1 MB of \
            title-and-prompt text (build with -c release for meaningful figures).
            """
    )

    @Option(help: "A GGUF model or a SentencePiece tokenizer.model.")
    var model: String

    @Flag(name: .customLong("no-bos"), help: "Do not prepend the BOS token.")
    var noBOS = false

    @Flag(help: "Print each token as 'id<TAB>piece'.")
    var pieces = false

    @Flag(help: "Read one JSON string per stdin line; write one JSON array per line.")
    var jsonl = false

    @Flag(help: "Benchmark encoding ~1 MB of titles and prompts; print MB/s and tokens/s.")
    var bench = false

    @Option(name: .customLong("bench-file"), help: "With --bench: build the text from this file's lines.")
    var benchFile: String?

    @Argument(help: "The text to tokenize (default: standard input).")
    var text: String?

    func validate() throws {
        if benchFile != nil && !bench { throw ValidationError("--bench-file needs --bench") }
        if jsonl && bench { throw ValidationError("--jsonl and --bench do not go together") }
        if text != nil && (jsonl || bench) {
            throw ValidationError("give TEXT or \(jsonl ? "--jsonl (text on standard input)" : "--bench"), not both")
        }
    }

    func run() throws {
        let tokenizer: SentencePieceTokenizer
        do {
            tokenizer = try .load(path: model)
        } catch {
            let message = "\(error)"
            throw CLIError(message.contains(model) ? message : "\(model): \(message)")
        }
        if bench { return try runBenchmark(tokenizer) }
        if jsonl { return try runJSONLines(tokenizer) }

        let input: String
        if let text {
            input = text
        } else {
            let data = try readStandardInput()
            guard let s = String(validating: data, as: UTF8.self) else { throw CLIError("standard input is not valid UTF-8") }
            input = s
        }
        let ids = tokenizer.encode(input, addBOS: !noBOS)
        if pieces {
            for id in ids { print("\(id)\t\(tokenizer.piece(id) ?? "?")") }
        } else {
            print(ids.map(String.init).joined(separator: " "))
        }
    }

    private func runJSONLines(_ tokenizer: SentencePieceTokenizer) throws {
        // Raw bytes per line: readLine would repair invalid UTF-8 with U+FFFD silently.
        let input = Data(try readStandardInput())
        var lines = input.split(separator: 0x0A, omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        // JSONDecoder, not JSONSerialization: the latter drops a U+FEFF that opens a
        // string's text ("\u{FEFF}x" read as "x").
        let decoder = JSONDecoder()
        for (i, raw) in lines.enumerated() {
            let lineNumber = i + 1
            var bytes = Data(raw)
            if bytes.last == 0x0D { bytes.removeLast() }
            guard String(data: bytes, encoding: .utf8) != nil else {
                throw CLIError("stdin line \(lineNumber) is not valid UTF-8")
            }
            guard let s = try? decoder.decode(String.self, from: bytes)
            else { throw CLIError("stdin line \(lineNumber) is not one JSON string") }
            let ids = tokenizer.encode(s, addBOS: !noBOS)
            if pieces {
                let out = try JSONSerialization.data(withJSONObject: ids.map { tokenizer.piece($0) ?? "" },
                                                     options: [.withoutEscapingSlashes])
                print(String(decoding: out, as: UTF8.self))
            } else {
                print("[" + ids.map(String.init).joined(separator: ",") + "]")
            }
        }
    }

    // MARK: benchmark

    private func runBenchmark(_ tokenizer: SentencePieceTokenizer) throws {
        let titles = try benchFile.map(Self.lines(ofFile:)) ?? Self.syntheticTitles(count: 2_000)
        guard !titles.isEmpty else { throw CLIError("\(benchFile ?? "") has no lines") }
        let strings = Self.benchmarkStrings(titles: titles, targetBytes: 1 << 20)
        let bytes = strings.reduce(0) { $0 + $1.utf8.count }
        let source = benchFile ?? "built-in synthetic titles"
        print("tokenize --bench: \(strings.count) titles and prompts, \(bytes) bytes (\(source)), model \(model)")

        // Each string on its own, as the ranker encodes; best of several passes. CPU time
        // is reported too: on a shared machine the wall clock also counts time waiting for a core.
        var best = (wall: Double.infinity, cpu: Double.infinity)
        var tokens = 0
        let deadline = Date().addingTimeInterval(3)
        var passes = 0
        repeat {
            let (n, wall, cpu) = Self.timed { strings.reduce(0) { $0 + tokenizer.encode($1, addBOS: false).count } }
            best = (min(best.wall, wall), min(best.cpu, cpu))
            tokens = n
            passes += 1
        } while passes < 3 || (Date() < deadline && passes < 20)
        let mb = Double(bytes) / 1e6
        print(String(format: "per string:      %.1f MB/s, %.0f tokens/s; per CPU second %.1f MB/s (%d tokens, best of %d passes)",
                     mb / best.wall, Double(tokens) / best.wall, mb / best.cpu, tokens, passes))

        // The same text as one string: the merge queue must stay O(n log n).
        let whole = strings.joined(separator: "\n")
        let (n, wall, cpu) = Self.timed { tokenizer.encode(whole, addBOS: false).count }
        let wholeMB = Double(whole.utf8.count) / 1e6
        print(String(format: "one 1 MB string: %.1f MB/s, %.0f tokens/s; per CPU second %.1f MB/s (%d tokens)",
                     wholeMB / wall, Double(n) / wall, wholeMB / cpu, n))
    }

    /// The result of `body`, its wall-clock time and this thread's CPU time, in seconds.
    private static func timed<T>(_ body: () -> T) -> (T, Double, Double) {
        func cpuNow() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }
        let w0 = DispatchTime.now().uptimeNanoseconds, c0 = cpuNow()
        let result = body()
        let cpu = cpuNow() - c0
        return (result, Double(DispatchTime.now().uptimeNanoseconds - w0) / 1e9, cpu)
    }

    /// The non-empty lines of a file, read as UTF-8 or else ISO-8859-1.
    private static func lines(ofFile path: String) throws -> [String] {
        let data = try readFile(path)
        let text = String(data: data, encoding: .utf8) ?? String(data.map { Character(UnicodeScalar($0)) })
        return text.split(whereSeparator: \.isNewline).map(String.init)
    }

    /// Title-like strings from a fixed seed: words, accents, digits, punctuation, years.
    static func syntheticTitles(count: Int) -> [String] {
        let words = ["The", "Night", "of", "the", "Long", "Return", "Café", "Amélie", "Señor", "Garçon", "Mädchen",
                     "Star", "Wars:", "Episode", "IV", "Lost", "in", "Translation", "Crouching", "Tiger,", "Hidden",
                     "Dragon", "Wo", "hu", "cang", "long", "L'Âge", "d'or", "Schindler's", "List", "Ran", "Seven",
                     "Samurai", "(Shichinin", "no", "samurai)", "Naïve", "Über", "Ça", "ira", "O", "Brother,", "Where",
                     "Art", "Thou?", "2001:", "A", "Space", "Odyssey", "Dr.", "Strangelove", "8½", "Zoë", "Ærø",
                     "東京物語", "Crème", "brûlée", "½", "Fast", "&", "Furious", "\"Quoted\"", "Part", "II", "III"]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(n))
        }
        return (0..<count).map { _ in
            let k = 1 + next(6)
            let title = (0..<k).map { _ in words[next(words.count)] }.joined(separator: " ")
            return title + " (\(1920 + next(100)))"
        }
    }

    /// Titles on their own and PALR-style prompts built from them, about `targetBytes` in all.
    static func benchmarkStrings(titles: [String], targetBytes: Int) -> [String] {
        var out: [String] = []
        var bytes = 0
        var i = 0
        while bytes < targetBytes {
            let t = titles[i % titles.count]
            out.append(t)
            bytes += t.utf8.count
            if i % 20 == 19 {
                let history = (0..<10).map { titles[(i + $0 * 7) % titles.count] }.joined(separator: ", ")
                let candidates = (0..<20).map { "(\(Character(UnicodeScalar(UInt8(65 + $0))))) \(titles[(i * 3 + $0 * 11) % titles.count])" }
                let prompt = "The user has watched the following movies in this order: \(history).\n"
                    + "Candidates:\n" + candidates.joined(separator: "\n")
                    + "\nWhich candidate will the user watch next? Answer with the letter.\n"
                out.append(prompt)
                bytes += prompt.utf8.count
            }
            i += 1
        }
        return out
    }
}
