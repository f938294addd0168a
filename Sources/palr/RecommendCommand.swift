import ArgumentParser
import Catalog
import Foundation
import GGUF
import History
import Llama
import Ranker
import Tokenizer

/// Options shared by the commands that run the full pipeline.
struct PipelineOptions: ParsableArguments {
    @Option(name: .long, help: "The ranker model (GGUF with tokenizer and palr.* keys).")
    var model: String

    @Option(name: .long, help: "The catalog pack (palr-convert catalog).")
    var catalog: String

    @Option(name: .long, help: "The history database (default: $PALR_DB, else $XDG_DATA_HOME/palr/history.sqlite).")
    var db: String?

    @Option(name: .long, help: "Scoring mode: letters, likelihood or generate (default: the model's palr.scoring_mode).")
    var mode: String?

    @Option(name: .long, parsing: .unconditional,
            help: "Candidates retrieved for the ranker, 1...100, at least --k (default: the model's palr.max_candidates, raised to --k when smaller).")
    var candidates: Int?

    @Option(name: .short, parsing: .unconditional, help: "Threads, 1...256 (default: physical cores, at most 8).")
    var t: Int?

    @Option(name: .customLong("prefix-cache"), parsing: .unconditional,
            help: "MiB of memory for prompt states kept for reuse by later prompts that start the same way (default 256 for serve and recommend --repeat, else 0; 0: none); a prompt over it keeps its longest prefix that fits. A prompt needs its tokens × layers × KV width × 4 bytes: a 7B's 640-token prompt 320 MiB, a 1B's 14 MiB.")
    var prefixCacheMiB: Int?

    /// The default prefix-cache budget: a few prompts of a 1B model, none of a 7B's whole prompt.
    static let defaultPrefixCacheMiB = 256

    func validate() throws {
        _ = try scoringMode()
        if let candidates, !(1...Retriever.maxCount).contains(candidates) {
            throw ValidationError("--candidates must be between 1 and \(Retriever.maxCount) (got \(candidates))")
        }
        try validateThreads(t)
        if let mib = prefixCacheMiB {
            // Kept snapshots are ordinary memory: more than the machine has would end in the
            // kernel's out-of-memory killer, not in an error.
            let physical = (Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))) >> 20
            guard mib >= 0, physical <= 0 || mib <= physical else {
                throw ValidationError("--prefix-cache must be between 0 and this machine's memory, \(physical) MiB (got \(mib))")
            }
        }
    }

    /// Checks --k (of recommend and refresh) and that --candidates is not below it.
    func validate(k: Int) throws {
        try validateK(k)
        if let candidates, candidates < k {
            throw ValidationError("--candidates (\(candidates)) must be at least --k (\(k)): the ranker picks "
                                  + "the k items from the candidates")
        }
    }

    func scoringMode() throws -> ScoringMode? { try parseScoringMode(mode) }

    /// Loads model, tokenizer, settings, catalog and store; prints the defaults applied.
    /// `keepsPrompts`: the command may rank the same prompt start twice in this process
    /// (serve, recommend --repeat), so the prefix cache gets its default budget; otherwise
    /// none unless --prefix-cache asks (a copy nothing uses costs time and memory: on a 7B,
    /// the 256 MiB the default holds).
    func makeRecommender(quiet: Bool, keepsPrompts: Bool) throws -> Recommender {
        // The store first: a mistyped --db fails before a model is loaded.
        let store = try openStore(db)
        let (m, tok, settings) = try loadRankerModel(model, quiet: quiet)
        let cat: ItemCatalog
        do { cat = try CatalogPack.open(path: catalog) } catch { throw CLIError(path: catalog, error) }
        let ranker = try makeRanker(model, m, tok, settings, threads: t,
                                    prefixCacheBytes: (prefixCacheMiB ?? (keepsPrompts ? Self.defaultPrefixCacheMiB : 0)) << 20)
        let name = (model as NSString).lastPathComponent
        do {
            // The fingerprint changes with any setting, the tokenizer or the weights, so a
            // re-converted model never serves the rankings cached for its predecessor.
            return try Recommender(ranker: ranker, catalog: cat, store: store,
                                   modelID: "\(name.prefix(200))#\(m.gguf.fingerprint)")
        } catch { throw CLIError("\(catalog) with \(model): \(error)") }
    }
}

/// A ranker model with its tokenizer and `palr.*` settings; notes the defaults applied.
func loadRankerModel(_ path: String, quiet: Bool) throws -> (LlamaModel, SentencePieceTokenizer, PALRSettings) {
    let m = try loadModel(path)
    let tok: SentencePieceTokenizer
    do { tok = try SentencePieceTokenizer(gguf: m.gguf) } catch { throw CLIError(path: path, error) }
    var defaulted: [String] = []
    let settings: PALRSettings
    do { settings = try PALRSettings(gguf: m.gguf, defaulted: &defaulted) } catch { throw CLIError(path: path, error) }
    if !defaulted.isEmpty && !quiet {
        printErr("note: \(path) has no \(defaulted.joined(separator: ", ")); palr's defaults apply (see README, Ranking)")
    }
    return (m, tok, settings)
}

/// A ranker over a loaded model; a model the ranker cannot run (its tokenizer does not
/// fit its weights) is an error naming the file.
func makeRanker(_ path: String, _ m: LlamaModel, _ tok: SentencePieceTokenizer, _ settings: PALRSettings,
                threads: Int?, prefixCacheBytes: Int = PipelineOptions.defaultPrefixCacheMiB << 20) throws -> Ranker {
    do {
        return try Ranker(model: m, tokenizer: tok, settings: settings, threads: threads, prefixCacheBytes: prefixCacheBytes)
    } catch let error as RankerError {
        throw CLIError(path: path, error)
    }
}

/// Opens the existing history store at `path` or the default location, for
/// writing (rankings and profile summaries are cached in it). Never creates
/// one: only `palr history add` and `import` do.
func openStore(_ path: String?) throws -> HistoryStore {
    let p: String
    do { p = try DatabaseOptions.resolve(path) } catch let error as ValidationError {
        throw CLIError("no usable history database: \(error.message)")
    }
    guard FileManager.default.fileExists(atPath: p) else {
        throw CLIError("history database \(p) does not exist; create it with `palr history --db \(p) import …` "
                       + "or `palr history --db \(p) add --create-profile …`")
    }
    let store: HistoryStore
    do { store = noteOpen(try HistoryStore(path: p, options: .init(createIfMissing: false))) } catch { throw CLIError("\(error)") }
    // Caught here rather than after a ranking has been computed: its cache write would fail.
    if store.isReadOnly {
        throw CLIError("history database \(p) is read-only (the file is not writable): recommend, refresh and "
                       + "profile store their results in it; make it writable")
    }
    return store
}

struct RecommendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recommend",
        abstract: "Recommend items for a profile: retrieval, then LLM ranking (cached per history).")

    @OptionGroup var pipeline: PipelineOptions

    @Option(name: .long, help: "The profile to recommend for.")
    var profile: String

    @Option(name: .long, parsing: .unconditional, help: "How many items to return.")
    var k: Int = 10

    @Flag(name: .long, help: "Ignore a cached result and recompute.")
    var noCache = false

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    @Option(name: .customLong("repeat"), parsing: .unconditional, help: "Run the recommendation N times in this process (measures prefix reuse; implies --no-cache after the first).")
    var repeats: Int = 1

    func validate() throws {
        try pipeline.validate(k: k)
        guard repeats >= 1 else { throw ValidationError("--repeat must be at least 1 (got \(repeats))") }
    }

    func run() throws {
        let rec = try pipeline.makeRecommender(quiet: json, keepsPrompts: repeats > 1)
        for i in 0..<repeats {
            let r: Recommendation
            do {
                r = try rec.recommend(profile: profile, k: k, mode: try pipeline.scoringMode(),
                                      candidates: pipeline.candidates, useCache: !noCache && i == 0)
            } catch { throw rankingError(error, model: pipeline.model) }
            try printRecommendation(r, json: json)
        }
    }
}

func printRecommendation(_ r: Recommendation, json: Bool) throws {
    if json {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        // A value JSON cannot hold is an error, never an empty output with status 0.
        let d: Data
        do { d = try enc.encode(r) } catch { throw CLIError("cannot write the recommendation as JSON: \(error)") }
        print(String(decoding: d, as: UTF8.self))
        return
    }
    for n in r.notes { printErr("note: \(n)") }
    print("profile \(terminalSafe(r.profile)): \(r.items.count) items, mode \(r.mode.rawValue)\(r.fromCache ? " (cached)" : ""), \(r.candidates) candidates, history \(r.historyLength)")
    let titles = r.items.map { terminalSafe($0.title) }
    let width = min(60, titles.map(\.count).max() ?? 0)
    for (it, shown) in zip(r.items, titles) {
        // Cut and padded by characters (NSString's padding counts UTF-16 units and split emoji).
        let title = shown.count > width ? String(shown.prefix(width - 1)) + "…"
            : shown + String(repeating: " ", count: width - shown.count)
        print(String(format: "%3d. ", it.rank) + title + String(format: " %9.4f  [", it.score) + terminalSafe(it.id) + "]")
    }
    let t = r.timings
    print(String(format: "time: retrieval %.1f ms, prefill %.1f ms (%d of %d prompt tokens computed), scoring %.1f ms, total %.1f ms",
                 t.retrievalSeconds * 1e3, t.prefillSeconds * 1e3, t.computedPromptTokens, t.promptTokens,
                 t.scoringSeconds * 1e3, t.totalSeconds * 1e3))
}

struct RefreshCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "refresh",
        abstract: "Recompute stale cached recommendations (for a box's background scheduler).")

    @OptionGroup var pipeline: PipelineOptions

    @Option(name: .long, help: "Refresh this profile (even when fresh).")
    var profile: String?

    @Flag(name: .long, help: "Refresh every profile whose cached result is missing or stale.")
    var allStale = false

    @Option(name: .long, parsing: .unconditional, help: "Items kept per profile.")
    var k: Int = 10

    func validate() throws {
        guard (profile != nil) != allStale else { throw ValidationError("give either --profile P or --all-stale") }
        try pipeline.validate(k: k)
    }

    func run() throws {
        let rec = try pipeline.makeRecommender(quiet: false, keepsPrompts: false)   // each profile once
        let mode = try pipeline.scoringMode()
        // Summaries only for a model that writes them (palr.profile_template set) and a prompt that shows them.
        let usesProfile = rec.ranker.settings.writesProfiles
            && rec.ranker.settings.template(for: mode ?? rec.ranker.settings.mode).contains("{profile}")
        let names: [String]
        if let profile {
            names = [profile]
        } else {
            // Stale: the cached ranking, or the summary (a `recommend` after each change
            // keeps the ranking fresh, and the summary would never be rebuilt otherwise).
            names = try rec.store.profiles().map(\.name).filter { p in
                do {
                    return try rec.isStale(profile: p, k: k, mode: mode, candidates: pipeline.candidates)
                        || (usesProfile && rec.isSummaryDue(profile: p))
                } catch HistoryError.unknownProfile {
                    return false   // forgotten while the profiles were being looked at
                }
            }
        }
        print("refreshing \(names.count) profile(s)")
        var failed = 0
        for p in names {
            do {
                // Keyword summaries first (when the template shows them), then the ranking,
                // which goes ahead (with the stored summary) when a forget refused the new one.
                if usesProfile {
                    do {
                        if let g = try rec.refreshProfile(p).generated {
                            print(String(format: "%@: profile summary regenerated in %.2f s", terminalSafe(p),
                                         g.promptSeconds + g.decodeSeconds))
                        }
                    } catch RecommenderError.historyChangedDuringGeneration {
                        print("\(terminalSafe(p)): summary not stored, a forget ran during its generation (the next run redoes it)")
                    }
                }
                let r = try rec.recommend(profile: p, k: k, mode: mode, candidates: pipeline.candidates, useCache: false)
                // Caching is what refresh is for: a ranking it could not store is a failure
                // (a full disk, a lock held too long); one whose history changed meanwhile
                // is redone by the next run, like a refused summary.
                if let failure = r.cacheFailure {
                    printErr("\(terminalSafe(p)): ranked but not cached: \(failure)")
                    failed += 1
                    continue
                }
                print(String(format: "%@: %d items in %.2f s", terminalSafe(p), r.items.count, r.timings.totalSeconds))
                for note in r.notes where note.hasPrefix("not cached") || note.hasPrefix("the model's context filled") {
                    print("\(terminalSafe(p)): \(note)")
                }
            } catch RecommenderError.nothingToRecommend {
                // Not a failure a scheduler should retry: the profile has seen every item.
                print("\(terminalSafe(p)): skipped, it has seen every catalog item")
            } catch HistoryError.unknownProfile where allStale {
                // Listed at the start, forgotten while the run went on: nothing left to
                // refresh. (A profile named with --profile that does not exist is an error.)
                print("\(terminalSafe(p)): skipped, the profile was forgotten during the run")
            } catch {
                printErr("\(terminalSafe(p)): \(rankingError(error, model: pipeline.model))")
                failed += 1
            }
        }
        if failed > 0 { throw CLIError("\(failed) of \(names.count) profile(s) failed to refresh (see above)") }
    }
}

/// --k of every command that recommends (recommend, refresh, demo): 1…Retriever.maxCount.
func validateK(_ k: Int) throws {
    guard (1...Retriever.maxCount).contains(k) else {
        throw ValidationError("--k must be between 1 and \(Retriever.maxCount) (got \(k))")
    }
}

/// --mode of every command that ranks (recommend, refresh, profile, demo, eval); nil: the model's.
func parseScoringMode(_ mode: String?) throws -> ScoringMode? {
    guard let mode else { return nil }
    guard let m = ScoringMode(rawValue: mode) else { throw ValidationError("--mode is letters, likelihood or generate") }
    return m
}
