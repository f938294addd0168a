// `palr serve`: the pipeline kept loaded for a box's UI, which runs palr as a coprocess
// and talks to it in JSON lines: one request per line on standard input, one response
// per line on standard output, each written as soon as it is ready (in order, except that
// requests needing no model are answered while a ranking runs: `Server`). The model
// stays mapped and the ranker's prefix cache warm between requests, so a profile whose
// history grew by one item is re-ranked from its cached prompt (a 7B's 600-token prompt
// is a minute cold, under a second from the cache). No socket, no port: the parent owns
// the process, its pipes are the only way in.
//
// While no request is waiting, the server prepares: a profile whose history a `record` or
// `forget` just changed (or a `prepare` op named) is ranked ahead of time, so the UI's
// next request for it is served from the ranking cache. A box records a film when it
// starts; by the time the viewer asks what to watch next, the answer is ready. Requests
// that need no model (record, recent, …) are answered at the ranker's pause points without
// stopping it; one that needs the model stops it at the next layer (`Ranker.interruption`),
// and the prompt batches it completed are kept for the next prompt that starts the same way.
import ArgumentParser
import Catalog
import FileSafety
import Foundation
import History
import Ranker

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve recommendations to a parent process in JSON lines (stdin → stdout), the model kept loaded.",
        discussion: """
            One request per line on standard input, one response per line on standard output; \
            ends at the end of input (status 0). Responses come in order, except while a \
            ranking runs: a request with an id that needs no model (record, recent, profiles, prepare, \
            "wait": false, a recommendation the cache serves) is answered at once, between two \
            layers, unless it changes the history being ranked or follows a waiting request of \
            its profile (a profiles list waits for any waiting request, a record for a waiting \
            profiles list); the others wait, in order. Requests (`id` is echoed; any JSON \
            string or number): \
            {"id": 1, "profile": "P"} with optional "k" (10), "mode", "candidates", "noCache" \
            (false), "wait" (true) — the same as `palr recommend --json`, whose object is the \
            response's "result"; with "wait": false, the answer needs no model work: the cached \
            ranking; or a prepared one the store could not cache, kept in memory; or else the \
            candidates in retrieval order ("provisional": true), and the ranking is prepared \
            first, to be served to the same request later ("noCache": true cannot go with it); \
            {"id": 2, "op": "record", "profile": "P", "items": ["ID", …]} with optional "kind" \
            (view), "value", "time" (now), "createProfile" (false) — as `palr history add`, \
            "result" is {"ids": […]}; {"op": "recent", "profile": "P"} with optional "limit" (50): \
            the profile's last interactions, oldest first, each with the catalog's "title" when it \
            has the item; {"op": "profiles"}: every profile, with "name", "interactions", "createdAt" \
            and, when it has interactions, "firstTimestamp" and "lastTimestamp"; {"op": "forget", "profile": "P", "items": \
            ["ID"]} forgets one item of the history, {"op": "forget", "profile": "P", "all": true} \
            the whole profile; {"op": "prepare", "profile": "P"} (optional "k", "mode", \
            "candidates") queues P's ranking first, to be computed while no request is waiting \
            ("result" is {"queued": true}). \
            After a record or a forget of one item, the profile is prepared the same way (the \
            recommendation the request {"profile": "P"} would get, with the server's options), \
            unless --no-prepare; with --prepare-stale, every profile whose ranking is missing or \
            stale is queued at start, behind later asks and changes. A preparation answers \
            requests that need no model as above and goes on; one that needs the model (or \
            forgets, or records for the profile prepared) stops it at the next layer (after a \
            preparation that yielded without keeping anything: 64 prompt tokens or more, or the \
            scoring stage, so that it \
            progresses), keeping the prompt batches done; a recommendation the preparation \
            itself will serve lets it finish. \
            A request that fails gets {"id": …, "error": "…"} and the next line is read; a line \
            over 1 MiB, one that is not a JSON object, or an unknown key is such a failure. Blank \
            lines are skipped (no response). Notes, the ready line and one line per preparation \
            go to standard error (a preparation's line is dropped when standard error is a full \
            pipe, rather than stop the server).
            """)

    @OptionGroup var pipeline: PipelineOptions

    @Flag(name: .customLong("prepare"), inversion: .prefixedNo,
          help: "Rank a profile ahead of time, while no request waits, after a record or a forget of one item.")
    var prepareAfterChanges = true

    @Flag(name: .long, help: "At start, queue for preparation every profile whose ranking is missing or stale (a model update makes them all stale).")
    var prepareStale = false

    /// The longest request line (a request is a few hundred bytes; 1 MiB is any sane list of ids).
    static let maxLineBytes = 1 << 20

    func run() throws {
        if StandardStreams.inputWasClosed { throw CLIError("standard input: cannot read: it is closed") }
        let rec = try pipeline.makeRecommender(quiet: true, keepsPrompts: true)
        let server = Server(self, rec)
        if prepareStale {
            // Before the ready line: a parent that waits for it then finds the queue made.
            for name in try rec.store.profiles().map(\.name) {
                let ranking = try defaultRanking(name)
                do {
                    if try rec.isStale(profile: name, k: ranking.k, mode: ranking.mode, candidates: ranking.candidates) {
                        server.queue.add(ranking, background: true)
                    }
                } catch HistoryError.unknownProfile {
                    continue   // forgotten by another process since the listing
                } catch {
                    Self.note("palr serve: profile \(terminalSafe(name)) not queued: \(error)")
                }
            }
            printErr("palr serve: \(server.queue.rankings.count) profile(s) with a missing or stale ranking queued for preparation")
        }
        printErr("palr serve: ready, \(rec.ranker.settings.mode.rawValue) mode; one JSON request per line on standard input")
        try server.run()
    }

    /// `poll`'s answer for `fd` and `events` now, without waiting: nil when nothing is
    /// ready, else the events that are (-1 standing for an error other than EINTR).
    static func ready(_ fd: Int32, _ events: Int32) -> Int16? {
        var p = pollfd(fd: fd, events: Int16(events), revents: 0)
        let n = poll(&p, 1, 0)
        if n > 0 { return p.revents }
        return n < 0 && errno != EINTR ? -1 : nil
    }

    /// Whether standard input has data (or its end, or an error: the read reports it) now.
    static func inputWaiting() -> Bool { ready(STDIN_FILENO, POLLIN) != nil }

    /// A preparation's line on standard error, written only if that cannot block: a parent
    /// that never reads a piped standard error would otherwise stop the server once the
    /// pipe's buffer filled (a line per record). Such a line is dropped instead.
    static func note(_ text: String) {
        guard let events = ready(STDERR_FILENO, POLLOUT), events != -1, events & Int16(POLLOUT) != 0 else { return }
        // At most 512 bytes (cut on a character): POLLOUT promises room for that much on
        // Linux (a page) and on the BSDs (512), so the write does not wait.
        let line = StoredNames.prefix(oneLine(text), maxBytes: 500)
        printErr(line.text + (line.cut ? "…" : ""))
    }

    /// The ranking a request asks for: its k, mode and candidate count, checked as the
    /// options are, the server's options where it gives none.
    func rankingRequest(_ q: ServeRequest) throws -> RankingRequest {
        let k = q.k ?? 10
        // The request's values under the request's names, checked as the options are.
        var options = pipeline
        if let candidates = q.candidates { options.candidates = candidates }
        do {
            try validateK(k)
            try options.validate(k: k)
        } catch let error as ValidationError {
            throw CLIError(error.message.replacingOccurrences(of: "--", with: "")
                           + (q.candidates == nil && options.candidates != nil ? " (candidates: the server's --candidates)" : ""))
        }
        let mode: ScoringMode?
        if let name = q.mode {
            guard let m = ScoringMode(rawValue: name) else { throw CLIError("mode is letters, likelihood or generate") }
            mode = m
        } else {
            mode = try pipeline.scoringMode()
        }
        return RankingRequest(profile: try q.named(), k: k, mode: mode, candidates: options.candidates)
    }

    /// The ranking `{"profile": P}` asks for: the server's options, k 10.
    func defaultRanking(_ profile: String) throws -> RankingRequest {
        RankingRequest(profile: profile, k: 10, mode: try pipeline.scoringMode(), candidates: pipeline.candidates)
    }

    func record(_ q: ServeRequest, _ store: HistoryStore) throws -> [Int64] {
        guard let items = q.items, !items.isEmpty else { throw CLIError("record needs \"items\": a non-empty list of item ids") }
        let kind = InteractionKind(rawValue: q.kind ?? InteractionKind.view.rawValue)
        if let problem = kind.problem { throw CLIError(problem) }
        let time = q.time ?? Int64(Date().timeIntervalSince1970)
        let profile = try q.named()
        let batch = items.map { NewInteraction(profile: profile, item: $0, kind: kind, value: q.value, timestamp: time) }
        return try store.record(batch, createProfiles: q.createProfile ?? false)
    }

    /// A response as one line of JSON (sorted keys). Encoding cannot fail for these
    /// types but a non-finite score; that becomes an error response.
    static func encode<T: Encodable>(_ response: ServeResponse<T>) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if let data = try? encoder.encode(response) { return String(decoding: data, as: UTF8.self) }
        let fallback = ServeResponse<Int>(id: response.id, error: "the response cannot be written as JSON")
        return (try? encoder.encode(fallback)).map { String(decoding: $0, as: UTF8.self) } ?? #"{"error":"internal"}"#
    }

    /// A decoding error as a user can act on it: the key and what was wrong.
    static func describe(_ error: Error) -> String {
        guard let e = error as? DecodingError else { return oneLine("\(error)") }
        func path(_ c: DecodingError.Context) -> String {
            let keys = c.codingPath.map(\.stringValue).joined(separator: ".")
            return keys.isEmpty ? "" : "\"\(keys)\": "
        }
        switch e {
        case .keyNotFound(let key, _): return "\"\(key.stringValue)\" is missing"
        case .typeMismatch(_, let c), .valueNotFound(_, let c): return path(c) + c.debugDescription
        case .dataCorrupted(let c): return path(c) + (c.underlyingError.map { "\($0)" } ?? c.debugDescription)
        @unknown default: return oneLine("\(error)")
        }
    }
}

/// The server's loop and what it keeps between requests. Requests are answered in order,
/// except while a ranking runs (a request's or a preparation's): at each of the ranker's
/// pause points the lines that arrived are read, and those that need no model and depend
/// on nothing still unanswered are answered at once (`answerWhileRanking`); the others are
/// held and answered, in order, after the ranking.
final class Server {
    let command: ServeCommand
    let rec: Recommender
    var reader = LineReader(descriptor: STDIN_FILENO, maxLineBytes: ServeCommand.maxLineBytes)
    var queue = PreparationQueue()
    let uncached = UncachedRankings()
    /// Requests read while a ranking ran that wait for it, in the order they came.
    var held: [Incoming] = []
    /// A failure to read standard input or write standard output met at a pause point,
    /// thrown by the loop once the ranking is over.
    var failure: Error?
    /// Requests answered at pause points since the count was last reset (a preparation's note).
    var answeredMeanwhile = 0
    /// The preparation running, if any, and whether a request held during it `stops` it
    /// (decided once, when the request is held).
    var preparing: RankingRequest?
    var stopRequested = false
    /// Held requests beyond which a pause point reads no more: the rest stays in the pipe,
    /// and a client that pipelines without end is slowed down, not buffered in memory.
    static let maxHeld = 1024
    /// The most a pause point spends answering (less when the ranking ran for less since
    /// the last one, down to `minPauseBudget`): a flood of requests slows a ranking at most
    /// about twice, whatever the model's layer time.
    static let maxPauseBudget = 0.05, minPauseBudget = 0.001
    /// When the last pause point ended (the ranking has worked since).
    var lastPauseEnd = Date.distantPast

    init(_ command: ServeCommand, _ rec: Recommender) {
        self.command = command
        self.rec = rec
    }

    /// A request line as read: a request, or one that cannot be read (its response made).
    enum Incoming {
        case request(ServeRequest)
        case unreadable(id: RequestID?, response: String)

        var id: RequestID? {
            switch self {
            case .request(let q): return q.id
            case .unreadable(let id, _): return id
            }
        }
        var profile: String? {
            if case .request(let q) = self { return q.profile }
            return nil
        }
        var isProfiles: Bool {
            if case .request(let q) = self { return q.op == "profiles" }
            return false
        }
    }

    func run() throws {
        while true {
            // A failure met at a pause point, once what was held is answered (a read failure
            // leaves standard output working; after a write failure those writes fail too).
            if let failure, held.isEmpty { throw failure }
            // Idle: nothing held, no request read and waiting, none arriving. (A file or
            // /dev/null as standard input is always readable: nothing is prepared then.)
            if held.isEmpty, failure == nil, let next = queue.first, !reader.hasLine, !ServeCommand.inputWaiting() {
                // Done with `next`, unless a request answered meanwhile replaced it (another
                // k, mode or candidate count for the profile: still to prepare).
                if prepare(next) { queue.remove(next) }
                continue
            }
            let incoming: Incoming
            if !held.isEmpty {
                incoming = held.removeFirst()
            } else {
                guard let line = try reader.next() else { break }
                guard let parsed = parse(line) else { continue }
                incoming = parsed
            }
            let response = respond(incoming)
            try writeNow(response + "\n")   // even after a read failure at a pause point: it is ready
        }
    }

    /// A line as a request; nil for a blank line (skipped, not answered).
    func parse(_ line: LineReader.Line) -> Incoming? {
        let data: Data
        switch line {
        case .tooLong:
            return .unreadable(id: nil, response: ServeCommand.encode(ServeResponse(
                id: nil, error: "request line longer than \(ServeCommand.maxLineBytes) bytes")))
        case .line(let bytes):
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return nil }
            data = Data(bytes)
        }
        do {
            let request = try JSONDecoder().decode(ServeRequest.self, from: data)
            // A misspelt key ("cadidates") would otherwise be ignored without a word.
            if let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] {
                let unknown = Set(object.keys).subtracting(ServeRequest.keys).sorted()
                if !unknown.isEmpty {
                    return .unreadable(id: request.id, response: ServeCommand.encode(ServeResponse(
                        id: request.id, error: "unknown key\(unknown.count == 1 ? "" : "s") "
                            + unknown.map { String(reflecting: $0) }.joined(separator: ", ")
                            + " (known: \(ServeRequest.keys.sorted().joined(separator: ", ")))")))
                }
            }
            return .request(request)
        } catch {
            let id = (try? JSONDecoder().decode(OnlyID.self, from: data))?.id
            return .unreadable(id: id, response: ServeCommand.encode(ServeResponse(
                id: id, error: "not a valid request: \(ServeCommand.describe(error))")))
        }
    }

    func respond(_ incoming: Incoming) -> String {
        switch incoming {
        case .unreadable(_, let response): return response
        case .request(let q): return handle(q)
        }
    }

    // MARK: answering while a ranking runs

    /// Called at the ranker's pause points while `profile` is ranked (`outstanding`: for a
    /// request, which is then unanswered). Reads what standard input holds, without
    /// waiting, and answers at once each request that needs no model work and depends on
    /// nothing unanswered; holds the rest, in order. Never throws: a failure is kept for
    /// the loop.
    /// At most one read per call, for no longer than the ranking worked since the last call
    /// (within `minPauseBudget`…`maxPauseBudget`), and nothing read once `maxHeld`
    /// requests are held, so a client pipelining without end cannot stall the ranking or
    /// fill memory.
    func answerWhileRanking(_ profile: String, outstanding: Bool) {
        guard failure == nil else { return }
        let now = Date()
        defer { lastPauseEnd = Date() }
        let deadline = now.addingTimeInterval(min(Self.maxPauseBudget,
                                                  max(Self.minPauseBudget, now.timeIntervalSince(lastPauseEnd))))
        var didRead = false
        do {
            while held.count < Self.maxHeld, Date() < deadline {
                if !reader.ready {
                    guard !didRead, !reader.ended, ServeCommand.inputWaiting() else { return }
                    try reader.fill()   // one read: poll said it does not wait
                    didRead = true
                    if !reader.ready { return }   // part of a line; the rest comes later
                }
                guard let line = try reader.next() else { return }   // the end of input
                guard let incoming = parse(line) else { continue }
                if let response = answerNow(incoming, ranking: profile, outstanding: outstanding) {
                    try writeNow(response + "\n")
                    answeredMeanwhile += 1
                } else {
                    held.append(incoming)
                    if let preparing, stops(preparing, incoming) { stopRequested = true }
                }
            }
        } catch {
            failure = error
        }
    }

    /// The response to `incoming` now, while `profile` is ranked, or nil when it must wait:
    /// it needs the model (a recommendation the cache does not serve; a forget, which drops
    /// the ranker's prompt states), or changes the history being ranked, or follows a held
    /// request of its profile (whose effect it must see), or has no id while an earlier
    /// request is unanswered (a client without ids relies on the order).
    func answerNow(_ incoming: Incoming, ranking profile: String, outstanding: Bool) -> String? {
        if incoming.id == nil && (outstanding || !held.isEmpty) { return nil }
        guard case .request(let q) = incoming else { return respond(incoming) }
        // Every profile is listed: after any held change.
        if q.op == "profiles" { return held.isEmpty ? handle(q) : nil }
        guard q.profile != nil, ServeRequest.ops.contains(q.op ?? "recommend") else { return handle(q) }   // its error
        if held.contains(where: { $0.profile == q.profile }) { return nil }
        switch q.op ?? "recommend" {
        case "record":
            // Not a change a held `profiles` must not see, nor one of the history being ranked.
            return q.profile == profile || held.contains(where: \.isProfiles) ? nil : handle(q)
        case "recent", "prepare": return handle(q)
        case "forget": return nil
        case "recommend":
            if q.wait == false { return handle(q) }
            if q.noCache == true { return nil }
            do {
                let ranking = try command.rankingRequest(q)
                // Answered here only from the cache: `handle` could rank (another process
                // may change the store at any moment).
                guard let hit = try rec.cachedRecommendation(profile: ranking.profile, k: ranking.k, mode: ranking.mode,
                                                             candidates: ranking.candidates) else { return nil }
                return ServeCommand.encode(ServeResponse(id: q.id, result: hit))
            } catch {
                return ServeCommand.encode(ServeResponse(id: q.id, error: oneLine("\(error)")))
            }
        default: return handle(q)   // not reached: unknown ops are answered above
        }
    }

    /// Whether a held request stops the preparation `ranking`: it needs the model (a
    /// recommendation the preparation does not serve), or forgets, or changes the history
    /// being prepared. The others (a read, a record of another profile, an error) are held
    /// only for the order and wait for the preparation without stopping it.
    func stops(_ ranking: RankingRequest, _ incoming: Incoming) -> Bool {
        guard case .request(let q) = incoming, q.profile != nil else { return false }
        switch q.op ?? "recommend" {
        case "recommend": return q.wait != false && !serves(ranking, incoming)
        case "forget": return true
        case "record": return q.profile == ranking.profile
        default: return false
        }
    }

    /// Whether the preparation `ranking` answers a held request: a recommendation of the
    /// same profile, mode and candidate count, for at most its k, that may come from the
    /// cache (so the preparation goes on for it rather than stop and start again).
    func serves(_ ranking: RankingRequest, _ incoming: Incoming) -> Bool {
        guard case .request(let q) = incoming, (q.op ?? "recommend") == "recommend", q.noCache != true,
              let asked = try? command.rankingRequest(q), asked.profile == ranking.profile else { return false }
        // As the cache names its entries: the mode the model gets, the candidates retrieved.
        let mode = ranking.mode ?? rec.ranker.settings.mode
        let candidates = rec.candidateCount(k: ranking.k, candidates: ranking.candidates)
        return (asked.mode ?? rec.ranker.settings.mode) == mode
            && rec.candidateCount(k: asked.k, candidates: asked.candidates) == candidates
            && asked.k <= rec.rankedCount(k: ranking.k, mode: mode, candidates: candidates)
    }

    // MARK: preparation

    /// Ranks as `request` asks, answering at its pause points what needs no model, and
    /// stopping for a held request that `stops` it; true when it is done with (ranked, or
    /// failed: a note says why), false when it yielded (it stays queued; the next attempt
    /// continues from the prompt batches already computed).
    func prepare(_ request: RankingRequest) -> Bool {
        (answeredMeanwhile, preparing, stopRequested) = (0, request, false)   // nothing is held: the loop's idle test
        // Answers at every pause point, the stages it must finish included; stops for a
        // request that needs the model, or at the end of input when nothing it serves waits.
        rec.ranker.pausePoint = { [unowned self] in answerWhileRanking(request.profile, outstanding: false) }
        rec.ranker.interruption = { [unowned self] in failure != nil || stopRequested || (reader.ended && held.isEmpty) }
        defer { (rec.ranker.pausePoint, rec.ranker.interruption, preparing) = (nil, nil, nil) }
        let name = terminalSafe(request.profile)
        let meanwhile = { [unowned self] in
            answeredMeanwhile == 0 ? "" : "; \(answeredMeanwhile) request\(answeredMeanwhile == 1 ? "" : "s") answered meanwhile"
        }
        do {
            let r = try rec.recommend(profile: request.profile, k: request.k, mode: request.mode,
                                      candidates: request.candidates, useCache: true)
            var how = r.fromCache ? "already cached" : String(format: "%.2f s, %d of %d prompt tokens computed",
                                                               r.timings.totalSeconds, r.timings.computedPromptTokens,
                                                               r.timings.promptTokens)
            // A ranking the store did not keep (a full disk, a lock held too long, a generate
            // ranking cut short by the context) is kept here for the "wait": false request
            // that asked for it; asking again would only redo it.
            // (Not for a model that writes profile summaries: a new summary changes the
            // ranking's input while the history digest stays.)
            if !r.fromCache, !rec.ranker.settings.writesProfiles,
               try rec.cachedRecommendation(profile: request.profile, k: request.k, mode: request.mode,
                                            candidates: request.candidates) == nil {
                uncached.rankings[request.profile] = (request, r)
                how += "; not cached" + (r.notes.first { $0.hasPrefix("not cached") || $0.hasPrefix("the model's context") }
                    .map { ": " + $0 } ?? "")
            }
            ServeCommand.note("palr serve: prepared profile \(name) (\(how)\(meanwhile()))")
            return true
        } catch RankerError.interrupted(let done, let total) {
            let why = stopRequested || failure != nil ? "yielded to a request" : "stopped at the end of input"
            ServeCommand.note("palr serve: preparing profile \(name) \(why) (\(done) of \(total) prompt tokens computed, kept\(meanwhile()))")
            return false
        } catch {
            ServeCommand.note("palr serve: could not prepare profile \(name): \(oneLine("\(rankingError(error, model: command.pipeline.model))"))")
            return true
        }
    }

    // MARK: requests

    /// One request's response line (never throws: a failure is the response). A change to
    /// a profile's history queues the profile for preparation (`--prepare`); a forgotten
    /// profile leaves the queue.
    func handle(_ request: ServeRequest) -> String {
        do {
            let op = request.op ?? "recommend"
            guard ServeRequest.ops.contains(op) else {
                throw CLIError("unknown op \(String(reflecting: op)) (\(ServeRequest.ops.sorted().joined(separator: ", ")))")
            }
            if op == "profiles" {
                // A UI's "who is watching?": every profile, with its size and last activity.
                return ServeCommand.encode(ServeResponse(id: request.id, result: ["profiles": try rec.store.profiles()]))
            }
            let profile = try request.named()
            switch op {
            case "recommend":
                let ranking = try command.rankingRequest(request)
                if request.wait == false {
                    // A fresh ranking is work to wait for; the cache is what answers at once.
                    if request.noCache == true {
                        throw CLIError("\"noCache\": true asks for a fresh ranking, which \"wait\": false cannot wait for")
                    }
                    // The cached ranking, or the retrieval order now and the ranking when it is ready.
                    if let hit = try rec.cachedRecommendation(profile: ranking.profile, k: ranking.k, mode: ranking.mode,
                                                              candidates: ranking.candidates) {
                        return ServeCommand.encode(ServeResponse(id: request.id, result: hit))
                    }
                    let r = try rec.retrievalOrder(profile: ranking.profile, k: ranking.k, mode: ranking.mode,
                                                   candidates: ranking.candidates)
                    // A preparation of this very input that the store could not keep.
                    if let (asked, ranked) = uncached.rankings[ranking.profile], ranked.historyDigest == r.historyDigest,
                       asked.mode == ranking.mode, ranked.candidates == r.candidates, asked.k >= ranking.k {
                        var kept = ranked
                        kept.items = Array(ranked.items.prefix(ranking.k))
                        return ServeCommand.encode(ServeResponse(id: request.id, result: kept))
                    }
                    queue.add(ranking, first: true)   // what the viewer is looking at
                    return ServeCommand.encode(ServeResponse(id: request.id, result: r))
                }
                // Requests that arrive meanwhile and need no model are answered at the
                // ranker's pause points; the rest wait for this one.
                rec.ranker.pausePoint = { [unowned self] in answerWhileRanking(ranking.profile, outstanding: true) }
                defer { rec.ranker.pausePoint = nil }
                do {
                    let r = try rec.recommend(profile: ranking.profile, k: ranking.k, mode: ranking.mode,
                                              candidates: ranking.candidates, useCache: !(request.noCache ?? false))
                    return ServeCommand.encode(ServeResponse(id: request.id, result: r))
                } catch { throw rankingError(error, model: command.pipeline.model) }
            case "record":
                let ids = try command.record(request, rec.store)
                if command.prepareAfterChanges { queue.add(try command.defaultRanking(profile)) }
                return ServeCommand.encode(ServeResponse(id: request.id, result: ["ids": ids]))
            case "prepare":
                let ranking = try command.rankingRequest(request)
                // Checked now, so that a misspelt profile is an answer, not a note later.
                _ = try rec.store.recent(profile: profile, limit: 1)
                queue.add(ranking, first: true)
                return ServeCommand.encode(ServeResponse(id: request.id, result: ["queued": true]))
            case "recent":
                let limit = request.limit ?? 50
                guard (1...100_000).contains(limit) else { throw CLIError("limit must be between 1 and 100000 (got \(limit))") }
                // With each item's title, when the catalog has it: what a UI shows.
                let interactions = try rec.store.recent(profile: profile, limit: limit).map {
                    TitledInteraction(interaction: $0, title: rec.catalog.index(of: $0.item).map { rec.catalog.titles[Int($0)] })
                }
                return ServeCommand.encode(ServeResponse(id: request.id, result: ["interactions": interactions]))
            case "forget":
                // One item of a profile's history, or (only when asked for by "all": true) the
                // whole profile: a household's "clear my history". A missing or null "items"
                // alone is an error, never the whole profile.
                let removed: Int
                switch (request.items, request.all ?? false) {
                case (let items?, false) where items.count == 1:
                    removed = try rec.store.forget(item: items[0], profile: profile)
                    if command.prepareAfterChanges && removed > 0 { queue.add(try command.defaultRanking(profile)) }
                    uncached.rankings[profile] = nil
                case (nil, true):
                    removed = try rec.store.forget(profile: profile)
                    queue.remove(profile)
                    uncached.rankings[profile] = nil
                default:
                    throw CLIError("forget takes \"items\": [one item id], or \"all\": true for the whole profile")
                }
                // Nothing of a forgotten history is kept for later prompts (the ranker's prompt states).
                rec.ranker.forgetCachedPrompts()
                return ServeCommand.encode(ServeResponse(id: request.id, result: ["removed": removed]))
            default:
                throw CLIError("op \(String(reflecting: op)) is not handled")   // ServeRequest.ops lists only handled ops
            }
        } catch {
            return ServeCommand.encode(ServeResponse(id: request.id, error: oneLine("\(error)")))
        }
    }
}

/// A ranking to compute: whose, and with which k, mode and candidate count (these name
/// the cached entry a later request is served from).
struct RankingRequest: Equatable {
    var profile: String
    var k: Int
    var mode: ScoringMode?
    var candidates: Int?
}

/// The last preparation of each profile that the store did not cache, with what it was
/// asked for (served to a "wait": false request for the same history, k, mode and
/// candidate count; replaced by the next one).
final class UncachedRankings {
    var rankings: [String: (RankingRequest, Recommendation)] = [:]
}

/// Rankings to compute ahead of time, one per profile, in order: a UI's explicit asks
/// (`first`) ahead of the rest, then those a change of history queued, oldest first, then
/// those the start-up scan for stale rankings queued (`background`). A later ask for a
/// queued profile replaces it (a ranking caches every candidate it scores, so a smaller
/// k is served from a larger one's entry of the same candidate count).
struct PreparationQueue {
    private(set) var rankings: [RankingRequest] = []
    private var background: Set<String> = []
    var first: RankingRequest? { rankings.first }
    mutating func add(_ ranking: RankingRequest, first: Bool = false, background inBackground: Bool = false) {
        if let i = rankings.firstIndex(where: { $0.profile == ranking.profile }) {
            if !first && !inBackground && !background.contains(ranking.profile) { rankings[i] = ranking; return }
            rankings.remove(at: i)
        }
        if inBackground { background.insert(ranking.profile) } else { background.remove(ranking.profile) }
        if first {
            rankings.insert(ranking, at: 0)
        } else if inBackground {
            rankings.append(ranking)
        } else {
            rankings.insert(ranking, at: rankings.firstIndex { background.contains($0.profile) } ?? rankings.count)
        }
    }
    mutating func remove(_ profile: String) {
        rankings.removeAll { $0.profile == profile }
        background.remove(profile)
    }
    /// Removes `ranking` if it is still queued as it is (not replaced by another ask).
    mutating func remove(_ ranking: RankingRequest) {
        if rankings.contains(ranking) { remove(ranking.profile) }
    }
}

/// A request id as the client sent it: a string or a number, echoed unchanged (an
/// integer exactly, beyond 2^53 too).
enum RequestID: Codable, Sendable {
    case string(String)
    case integer(Int64)
    case unsigned(UInt64)
    case number(Double)

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .string(s); return }
        if let i = try? c.decode(Int64.self) { self = .integer(i); return }
        if let u = try? c.decode(UInt64.self) { self = .unsigned(u); return }
        self = .number(try c.decode(Double.self))
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .integer(let i): try c.encode(i)
        case .unsigned(let u): try c.encode(u)
        case .number(let n): try c.encode(n)
        }
    }
}

struct ServeRequest: Decodable {
    /// Every key a request may have.
    static let keys: Set<String> = ["id", "op", "profile", "k", "mode", "candidates", "noCache", "wait",
                                    "items", "kind", "value", "time", "createProfile", "limit", "all"]
    /// Every op (a request without one recommends).
    static let ops: Set<String> = ["recommend", "record", "recent", "forget", "prepare", "profiles"]

    var id: RequestID?
    var op: String?
    /// Every op but "profiles" needs one (`named()`).
    var profile: String?
    // recommend
    var k: Int?
    var mode: String?
    var candidates: Int?
    var noCache: Bool?
    /// false: answer at once, with the retrieval order when no cached ranking serves.
    var wait: Bool?
    // record
    var items: [String]?
    var kind: String?
    var value: Double?
    var time: Int64?
    var createProfile: Bool?
    // recent
    var limit: Int?
    // forget
    var all: Bool?
}

extension ServeRequest {
    /// The profile the request names, or the error that it names none.
    func named() throws -> String {
        guard let profile else { throw CLIError("\"profile\" is missing") }
        return profile
    }
}

/// An interaction as `recent` answers it: the store's fields and the item's title (absent
/// when the catalog does not have the item).
struct TitledInteraction: Encodable {
    var interaction: Interaction
    var title: String?

    private enum Key: String, CodingKey { case title }

    func encode(to encoder: any Encoder) throws {
        try interaction.encode(to: encoder)
        var c = encoder.container(keyedBy: Key.self)
        try c.encodeIfPresent(title, forKey: .title)
    }
}

/// Just the id of a request that failed to decode, to echo it with the error.
private struct OnlyID: Decodable { var id: RequestID? }

struct ServeResponse<Result: Encodable>: Encodable {
    var id: RequestID?
    var result: Result?
    var error: String?

    init(id: RequestID?, result: Result) { (self.id, self.result, self.error) = (id, result, nil) }
    init(id: RequestID?, error: String) where Result == Int { (self.id, self.result, self.error) = (id, nil, error) }

    enum CodingKeys: String, CodingKey { case id, result, error }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        // "id": null when the request had none or could not be read: the client can tell.
        if let id { try c.encode(id, forKey: .id) } else { try c.encodeNil(forKey: .id) }
        try c.encodeIfPresent(result, forKey: .result)
        try c.encodeIfPresent(error, forKey: .error)
    }
}

/// Lines of a descriptor as they arrive (a line is handed over as soon as its newline
/// is read, not when a buffer fills), each at most `maxLineBytes`; a longer one is
/// reported once as `.tooLong` and skipped to its end. A final line without a newline
/// counts. Owns its buffers: `chunk` (one read) and `buffer` (at most `maxLineBytes`
/// plus one read).
struct LineReader {
    enum Line { case line([UInt8]), tooLong }

    let descriptor: Int32
    let maxLineBytes: Int
    private var buffer: [UInt8] = []
    /// One read's worth, reused.
    private var chunk = [UInt8](repeating: 0, count: 64 << 10)
    private var start = 0
    private var skipping = false
    private var inputEnded = false

    init(descriptor: Int32, maxLineBytes: Int) {
        self.descriptor = descriptor
        self.maxLineBytes = maxLineBytes
    }

    /// Whether `next()` can answer without reading: a whole line is buffered (beyond the
    /// end of a too-long line being skipped), or the input ended.
    var hasLine: Bool {
        if inputEnded { return true }
        guard let newline = buffer[start...].firstIndex(of: 0x0A) else { return false }
        return !skipping || buffer[(newline + 1)...].contains(0x0A)
    }

    /// Whether `next()` answers without reading: `hasLine`, or the start of a line already
    /// too long (reported as `.tooLong`).
    var ready: Bool { hasLine || (!skipping && buffer.count - start > maxLineBytes) }

    /// Whether the input has ended (lines may still be buffered).
    var ended: Bool { inputEnded }

    /// One read of what the descriptor holds, appended (call it when `poll` says the
    /// descriptor is readable: it then does not wait). The buffer stays bounded as `next`
    /// keeps it: a line being skipped is dropped as it comes.
    mutating func fill() throws {
        guard !inputEnded else { return }
        if skipping {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                // The skipped line's end: what follows is a new line, bounded as any.
                start = newline + 1
                skipping = false
            } else {
                buffer.removeAll(keepingCapacity: true)
                start = 0
            }
        }
        if start > 0 {
            buffer.removeFirst(start)
            start = 0
        }
        try readOnce()
    }

    private mutating func readOnce() throws {
        while true {
            let n = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError("standard input: cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { inputEnded = true } else { buffer.append(contentsOf: chunk[0..<n]) }
            return
        }
    }

    /// The next line, or nil at the end of input. A read error throws, naming standard input.
    mutating func next() throws -> Line? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                if skipping { skipping = false; continue }
                return line.count > maxLineBytes ? .tooLong : .line(line)
            }
            if buffer.count - start > maxLineBytes {
                // Too long already: drop what is held and skip to the next newline.
                buffer.removeAll(keepingCapacity: true)
                start = 0
                if !skipping { skipping = true; return .tooLong }
            }
            if inputEnded {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                buffer.removeAll()
                start = 0
                if skipping { return nil }
                return .line(line)
            }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            try readOnce()
        }
    }
}
