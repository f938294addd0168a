import ArgumentParser
import Catalog
import Foundation
import History
import Llama
import Ranker
import Tokenizer

/// `palr demo`: the bundled tiny ranker and catalog on a few sample profiles, in a
/// temporary history store. Works offline on a fresh clone, right after the build.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Recommend for the bundled sample profiles with the bundled model and catalog.",
        discussion: """
            Uses --models or $PALR_MODELS when given (an error if the bundled files are not \
            there); otherwise looks for models/ in the current directory, then next to the build \
            folder of this executable. Nothing is downloaded and nothing outside a temporary \
            folder is written.
            """)

    @Option(name: .long, help: "Folder with the bundled files (default: found automatically).")
    var models: String?

    @Option(name: .long, parsing: .unconditional, help: "Items per profile.")
    var k: Int = 10

    @Option(name: .long, help: "Scoring mode (default: the model's).")
    var mode: String?

    @Option(name: .short, parsing: .unconditional, help: "Threads (default: physical cores, at most 8).")
    var t: Int?

    func validate() throws {
        // The bounds `recommend` has, checked before the demo prints anything.
        try validateK(k)
        _ = try parseScoringMode(mode)
        try validateThreads(t)
    }

    static let modelFile = "palr-ml-small-q4_0.gguf"
    static let catalogFile = "ml-small-catalog.gguf"
    static let historyFile = "demo-history.csv"

    func findModels() throws -> String {
        // A folder the user names is the one to use: falling back would hide a typo.
        let named = models.map { ("--models", $0) }
            ?? ProcessInfo.processInfo.environment["PALR_MODELS"].map { ("PALR_MODELS", $0) }
        if let (source, d) = named {
            let missing = [Self.modelFile, Self.catalogFile, Self.historyFile]
                .filter { !FileManager.default.fileExists(atPath: d + "/" + $0) }
            guard missing.isEmpty else {
                throw CLIError("\(source) \(d): \(missing.joined(separator: ", ")) not found there (the bundled files are in the repository's models/)")
            }
            return d
        }
        var dirs: [String] = []
        dirs.append(FileManager.default.currentDirectoryPath + "/models")
        var exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            dirs.append(exe.appendingPathComponent("models").path)
            exe = exe.deletingLastPathComponent()
        }
        for d in dirs where FileManager.default.fileExists(atPath: d + "/" + Self.modelFile) { return d }
        throw CLIError("the bundled model \(Self.modelFile) was not found in: \(dirs.joined(separator: ", ")); pass --models DIR")
    }

    func run() throws {
        let dir = try findModels()
        // Removed at the end, and on SIGINT/SIGTERM/SIGHUP/SIGPIPE.
        let scratch = try ScratchStoreFolder(prefix: "palr-demo-")
        defer { scratch.remove() }
        let db = scratch.store
        let store = try HistoryStore(path: db)
        // Either MovieLens ratings.csv columns or profile,item,timestamp.
        let path = dir + "/" + Self.historyFile
        // readFile refuses a FIFO or device (never blocks) and names the file and the problem.
        let header = String(decoding: try readFile(path), as: UTF8.self).prefix { $0 != "\n" }
        let format: ImportFormat = header.hasPrefix("userId")
            ? .movieLensCSV
            : .csv(CSVMapping(profileColumn: "profile", itemColumn: "item", timeColumn: "timestamp"))
        // Import errors name the file and line.
        _ = try store.importFile(path, options: ImportOptions(format: format))

        var options = try PipelineOptions.parse(["--model", dir + "/" + Self.modelFile, "--catalog", dir + "/" + Self.catalogFile, "--db", db])
        options.mode = mode
        options.t = t
        let t0 = Date()
        let rec = try options.makeRecommender(quiet: true, keepsPrompts: false)
        print(String(format: "palr demo: model %@ (%.1f MB), catalog %@ (%d items), loaded in %.2f s",
                     Self.modelFile, Double(rec.ranker.model.gguf.file.size) / 1e6, Self.catalogFile,
                     rec.catalog.count, Date().timeIntervalSince(t0)))
        for p in try store.profiles() {
            let history = try store.recent(profile: p.name, limit: 100_000)
            print("\nprofile \(terminalSafe(p.name)): \(history.count) interactions; most recent:")
            for it in history.suffix(5) {
                let title = rec.catalog.index(of: it.item).map { rec.catalog.titles[Int($0)] } ?? it.item
                print("    \(terminalSafe(title))")
            }
            let r: Recommendation
            do { r = try rec.recommend(profile: p.name, k: k, mode: try options.scoringMode()) } catch {
                throw rankingError(error, model: options.model)
            }
            try printRecommendation(r, json: false)
        }
    }
}
