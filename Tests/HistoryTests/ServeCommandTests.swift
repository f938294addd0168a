// `palr serve`: JSON lines in, JSON lines out, each response written as soon as its
// request is read (a coprocess that waited for the end of input, or for a full buffer,
// would hang its parent), failures answered without ending the session.
import Foundation
import Testing

@testable import History

/// palr serve with pipes on both ends; `request` writes one line and waits (with a
/// deadline, never forever) for one line back.
private final class ServeProcess {
    let process = Process()
    private let input = Pipe(), output = Pipe(), errors = Pipe()
    private var pending: [UInt8] = [], pendingErrors: [UInt8] = []

    /// `initialInput`: lines written before the server starts (waiting when it is ready).
    init(_ arguments: [String], initialInput: [String] = []) throws {
        process.executableURL = URL(fileURLWithPath: try palrExecutable())
        process.arguments = ["serve"] + arguments
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        for line in initialInput { input.fileHandleForWriting.write(Data((line + "\n").utf8)) }
        try process.run()
    }

    func send(_ line: String) {
        input.fileHandleForWriting.write(Data((line + "\n").utf8))
    }

    /// The next response line, or nil when none came within `seconds`.
    func response(within seconds: Double = 60) -> String? {
        Self.line(from: output, &pending, within: seconds)
    }

    /// The next line of standard error that contains `text` (earlier ones are passed over,
    /// and kept in `passed`), or nil when none came within `seconds`.
    func errorLine(containing text: String, within seconds: Double = 60) -> String? {
        let deadline = Date().addingTimeInterval(seconds)
        while let line = Self.line(from: errors, &pendingErrors, within: deadline.timeIntervalSinceNow) {
            if line.contains(text) { return line }
            passed.append(line)
        }
        return nil
    }
    /// Lines of standard error `errorLine` passed over.
    var passed: [String] = []

    /// Shrinks the standard-error pipe to two pages (F_SETPIPE_SZ, Linux), so that about a
    /// hundred unread lines fill it; returns the size set.
    func shrinkErrorPipe() -> Int32 {
        fcntl(errors.fileHandleForReading.fileDescriptor, 1031 /* F_SETPIPE_SZ */, 8192)
    }

    private static func line(from pipe: Pipe, _ pending: inout [UInt8], within seconds: Double) -> String? {
        let fd = pipe.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            if let newline = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeFirst(newline + 1)
                return line
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return nil }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(left * 1000)) > 0 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return nil }   // end of output
            pending += buffer[0..<n]
        }
    }

    /// Closes standard input and waits for the end; returns the status, the rest of
    /// standard output and standard error.
    func finish() -> (status: Int32, rest: String, errors: String) {
        try? input.fileHandleForWriting.close()
        let rest = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: pending + rest, as: UTF8.self),
                String(decoding: pendingErrors + err, as: UTF8.self))
    }
}

private func object(_ line: String?) throws -> [String: Any] {
    let text = try #require(line, "no response within the deadline")
    return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
}

/// A store at `db` whose profiles have these histories (one interaction per item, in
/// order), and `palr serve` on it with the bundled model and catalog.
private func serveBundled(_ db: String, histories: [String: [String]], _ arguments: [String] = [],
                          initialInput: [String] = []) throws -> ServeProcess {
    do {   // closed before the server opens it
        let store = try HistoryStore(path: db)
        try store.record(histories.sorted { $0.key < $1.key }.flatMap { profile, items in
            items.enumerated().map { NewInteraction(profile: profile, item: $1, timestamp: Int64($0)) }
        }, createProfiles: true)
    }
    let models = repositoryRoot.appendingPathComponent("models").path
    return try ServeProcess(["--model", models + "/palr-ml-small-q4_0.gguf", "--catalog", models + "/ml-small-catalog.gguf",
                             "--db", db] + arguments, initialInput: initialInput)
}

/// `palr serve` in generate mode over 100 candidates (a preparation long enough for
/// requests to land inside it), after a record of profile p that queues its preparation.
private func serveRecordingForALongPreparation(_ folder: String) throws -> ServeProcess {
    let serve = try serveBundled(folder + "/h.sqlite", histories: ["p": ["1", "2", "3", "5", "7", "10", "32", "47"]],
                                 ["--mode", "generate", "--candidates", "100"])
    #expect(serve.errorLine(containing: "palr serve: ready") != nil)
    serve.send(#"{"id": 1, "op": "record", "profile": "p", "items": ["50"]}"#)
    #expect(try object(serve.response())["error"] == nil)
    return serve
}

@Suite struct ServeCommandTests {
    @Test func answersEachRequestAsItComesAndKeepsGoingAfterFailures() throws {
        try withTemporaryDirectory { folder in
            let db = folder + "/h.sqlite"
            let history = ["1", "2", "3", "5", "7"]
            let serve = try serveBundled(db, histories: ["p": history])

            // Each response arrives while standard input is still open.
            serve.send(#"{"id": 1, "profile": "p", "k": 3}"#)
            let first = try object(serve.response())
            #expect(first["id"] as? Int == 1 && first["error"] == nil, "\(first)")
            let result = try #require(first["result"] as? [String: Any])
            let items = try #require(result["items"] as? [[String: Any]])
            #expect(items.count == 3 && result["historyLength"] as? Int == 5)
            let recommended = items.compactMap { $0["id"] as? String }
            #expect(recommended.count == 3 && Set(recommended).isDisjoint(with: history), "\(recommended)")

            // Record what was recommended; the next recommendation sees it and leaves it out.
            serve.send(#"{"id": "r", "op": "record", "profile": "p", "items": ["\#(recommended[0])", "\#(recommended[1])"], "kind": "click"}"#)
            let recorded = try object(serve.response())
            #expect(recorded["id"] as? String == "r" && ((recorded["result"] as? [String: Any])?["ids"] as? [Int])?.count == 2,
                    "\(recorded)")
            serve.send(#"{"id": 3, "profile": "p", "k": 3}"#)
            let third = try #require(try object(serve.response())["result"] as? [String: Any])
            #expect(third["historyLength"] as? Int == 7)
            let again = (third["items"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(again.count == 3 && Set(again).isDisjoint(with: history + recommended.prefix(2)), "\(again)")

            // Failures: answered, with the id when there is one; the session goes on.
            let failures: [(String, Any?, String)] = [
                (#"{"id": 4, "profile": "nobody"}"#, 4, "unknown profile"),
                ("not json", nil, "not a valid request"),
                (#"{"id": 6}"#, 6, #""profile" is missing"#),
                (#"{"id": 7, "op": "zap", "profile": "p"}"#, 7, "unknown op"),
                (#"{"id": 28, "op": "profile"}"#, 28, "unknown op \"profile\""),   // a typo of "profiles": not "profile is missing"
                (#"{"id": 16, "op": "forget", "profile": "p", "items": ["a", "b"]}"#, 16, "forget takes \"items\": [one item id]"),
                (#"{"id": 18, "op": "forget", "profile": "p", "items": null}"#, 18, "or \"all\": true for the whole profile"),
                (#"{"id": 19, "op": "forget", "profile": "p"}"#, 19, "or \"all\": true for the whole profile"),
                (#"{"id": 17, "op": "recent", "profile": "p", "limit": 0}"#, 17, "limit must be between 1 and 100000"),
                (#"{"id": 8, "profile": "p", "k": 0}"#, 8, "k must be between 1 and 100"),
                (#"{"id": 9, "op": "record", "profile": "p", "items": []}"#, 9, "non-empty list"),
                (#"{"id": 10, "op": "record", "profile": "p", "items": ["x"], "kind": "BAD KIND"}"#, 10, "may contain only"),
                (#"{"id": 11, "profile": "p", "mode": "shout"}"#, 11, "mode is letters"),
                (#"{"id": 14, "profile": "p", "cadidates": 30}"#, 14, #"unknown key "cadidates""#),
                (#"{"id": 15, "profile": "p", "k": 30, "candidates": 20}"#, 15, "candidates (20) must be at least k (30)"),
                ("{\"id\": 12, \"profile\": \"" + String(repeating: "x", count: 1_200_000) + "\"}", nil, "longer than 1048576 bytes"),
            ]
            for (line, id, message) in failures {
                serve.send(line)
                let answer = try object(serve.response())
                let error = answer["error"] as? String ?? ""
                #expect(error.contains(message) && answer["result"] == nil, "\(line.prefix(60)): \(answer)")
                if let id = id as? Int { #expect(answer["id"] as? Int == id) } else { #expect(answer["id"] is NSNull) }
            }
            // Integer ids come back exactly, beyond 2^53 too.
            serve.send(#"{"id": 9007199254740993, "profile": "p", "k": 1}"#)
            let big = try #require(serve.response())
            #expect(big.hasPrefix(#"{"id":9007199254740993,"result":"#), "\(big.prefix(80))")

            serve.send("")   // a blank line is skipped, not answered
            serve.send(#"{"id": 13, "profile": "p", "k": 2}"#)
            let last = try object(serve.response())
            #expect(last["id"] as? Int == 13 && ((last["result"] as? [String: Any])?["items"] as? [Any])?.count == 2, "\(last)")

            // The history as the UI shows it, and a household's "clear": one item, then the profile.
            serve.send(#"{"id": 20, "op": "recent", "profile": "p", "limit": 3}"#)
            let recent = try #require(try object(serve.response())["result"] as? [String: Any])
            let shown = (recent["interactions"] as? [[String: Any]] ?? []).compactMap { $0["item"] as? String }
            #expect(shown == [history[4], recommended[0], recommended[1]], "\(recent)")
            // With the catalog's titles, the ones the recommendation showed.
            let titles = (recent["interactions"] as? [[String: Any]] ?? []).compactMap { $0["title"] as? String }
            #expect(titles.count == 3 && Array(titles.suffix(2)) == items.prefix(2).compactMap { $0["title"] as? String },
                    "\(recent)")
            serve.send(#"{"id": 24, "op": "record", "profile": "p", "items": ["not-in-the-catalog"]}"#)
            #expect(try object(serve.response())["error"] == nil)
            serve.send(#"{"id": 25, "op": "recent", "profile": "p", "limit": 1}"#)
            let unknown = try #require(((try object(serve.response())["result"] as? [String: Any])?["interactions"] as? [[String: Any]])?.first)
            #expect(unknown["item"] as? String == "not-in-the-catalog" && unknown["title"] == nil, "\(unknown)")
            serve.send(#"{"id": 26, "op": "forget", "profile": "p", "items": ["not-in-the-catalog"]}"#)
            #expect((try object(serve.response())["result"] as? [String: Any])?["removed"] as? Int == 1)
            // Every profile (a UI's "who is watching?"), no "profile" needed.
            serve.send(#"{"id": 27, "op": "profiles"}"#)
            let listed = ((try object(serve.response())["result"] as? [String: Any])?["profiles"] as? [[String: Any]]) ?? []
            #expect(listed.count == 1 && listed.first?["name"] as? String == "p" && listed.first?["interactions"] as? Int == 7,
                    "\(listed)")
            serve.send(#"{"id": 21, "op": "forget", "profile": "p", "items": ["\#(recommended[0])"]}"#)
            #expect((try object(serve.response())["result"] as? [String: Any])?["removed"] as? Int == 1)
            serve.send(#"{"id": 22, "op": "forget", "profile": "p", "all": true}"#)
            #expect((try object(serve.response())["result"] as? [String: Any])?["removed"] as? Int == 6)
            serve.send(#"{"id": 23, "profile": "p"}"#)
            #expect((try object(serve.response())["error"] as? String ?? "").contains("unknown profile"))

            let end = serve.finish()
            #expect(end.status == 0 && end.rest.isEmpty, "status \(end.status), rest \(end.rest.prefix(200)), \(end.errors)")
            #expect(end.errors.contains("palr serve: ready"))
        }
    }

    /// A record queues the profile; while no request waits, the server ranks it, and the
    /// UI's next request is served from the ranking cache. `--no-prepare` turns that off.
    /// (Yielding to a request mid-prompt: `InterruptionTests`.)
    @Test(arguments: [true, false])
    func preparesAProfileWhileIdle(prepare: Bool) throws {
        try withTemporaryDirectory { folder in
            let db = folder + "/h.sqlite"
            let serve = try serveBundled(db, histories: ["p": ["1", "2", "3", "5", "7"]], prepare ? [] : ["--no-prepare"])
            #expect(serve.errorLine(containing: "palr serve: ready") != nil)
            serve.send(#"{"id": 1, "op": "record", "profile": "p", "items": ["10"]}"#)
            #expect(try object(serve.response())["error"] == nil)
            if prepare {
                let note = serve.errorLine(containing: "palr serve: prepared profile p")
                #expect(note?.contains("prompt tokens computed") == true, "\(note ?? "no note")")
            } else {
                // Time it would have had: no preparation in it.
                #expect(serve.errorLine(containing: "prepar", within: 1) == nil)
            }
            serve.send(#"{"id": 2, "profile": "p"}"#)
            let result = try #require(try object(serve.response())["result"] as? [String: Any])
            #expect(result["fromCache"] as? Bool == prepare && result["historyLength"] as? Int == 6, "\(result)")
            #expect((result["items"] as? [Any])?.count == 10)

            // Asked for: queued (the ranking is cached by now), or refused for an unknown profile.
            serve.send(#"{"id": 3, "op": "prepare", "profile": "p"}"#)
            #expect((try object(serve.response())["result"] as? [String: Any])?["queued"] as? Bool == true)
            #expect(serve.errorLine(containing: "palr serve: prepared profile p (already cached)") != nil)
            serve.send(#"{"id": 4, "op": "prepare", "profile": "nobody"}"#)
            #expect((try object(serve.response())["error"] as? String ?? "").contains("unknown profile"))
            let end = serve.finish()
            #expect(end.status == 0 && end.rest.isEmpty, "status \(end.status), rest \(end.rest.prefix(200)), \(end.errors)")
        }
    }

    /// The queue follows the history: a forget of one item queues the profile again; a
    /// forget of the whole profile takes it out (a queued profile comes first: FIFO).
    @Test func forgetsRequeueOrDropTheProfile() throws {
        try withTemporaryDirectory { folder in
            let db = folder + "/h.sqlite"
            let serve = try serveBundled(db, histories: ["p": ["1", "2", "3", "5", "7"], "q": ["1", "2", "3", "5", "7"]])
            serve.send(#"{"id": 1, "op": "record", "profile": "p", "items": ["10"]}"#)
            #expect(try object(serve.response())["error"] == nil)
            #expect(serve.errorLine(containing: "palr serve: prepared profile p (") != nil)
            serve.send(#"{"id": 2, "op": "forget", "profile": "p", "items": ["10"]}"#)
            #expect((try object(serve.response())["result"] as? [String: Any])?["removed"] as? Int == 1)
            let again = serve.errorLine(containing: "palr serve: prepared profile p (")
            #expect(again?.contains("prompt tokens computed") == true, "\(again ?? "no note")")

            // Queued by the record, dropped by the forget (read together: nothing runs between).
            serve.send(#"{"id": 3, "op": "record", "profile": "p", "items": ["10"]}"# + "\n"
                       + #"{"id": 4, "op": "forget", "profile": "p", "all": true}"#)
            #expect(try object(serve.response())["id"] as? Int == 3)
            #expect(try object(serve.response())["id"] as? Int == 4)
            serve.send(#"{"id": 5, "op": "prepare", "profile": "q"}"#)
            #expect(try object(serve.response())["error"] == nil)
            #expect(serve.errorLine(containing: "palr serve: prepared profile q (") != nil)
            #expect(!serve.passed.contains { $0.contains("profile p") }, "\(serve.passed)")
            let end = serve.finish()
            #expect(end.status == 0 && !end.errors.contains("profile p"), "\(end.errors)")
        }
    }

    /// A parent that never reads standard error: the preparations' lines fill the pipe, and
    /// are dropped rather than block the server (a blocking write stopped it after ~95
    /// records on a two-page pipe, ~670 on a default one).
    @Test func anUnreadStandardErrorNeverStopsTheServer() throws {
        try withTemporaryDirectory { folder in
            let db = folder + "/h.sqlite"
            let serve = try serveBundled(db, histories: ["p": ["1"]])
            #expect(serve.shrinkErrorPipe() >= 8192)
            var answered = 0
            for i in 0..<200 {
                serve.send(#"{"id": \#(i), "op": "record", "profile": "p", "items": ["\#(2 + i)"]}"#)
                guard let line = serve.response(within: 20) else { break }
                if line.contains(#""ids""#) { answered += 1 }
                Thread.sleep(forTimeInterval: 0.01)   // idle: a preparation runs and writes its line
            }
            #expect(answered == 200, "the server stopped answering after \(answered) records")
            // A server stuck on its standard error would never end: killed, not waited for.
            serve.process.terminate()
            serve.process.waitUntilExit()
            // The preparations ran (their first lines fill the pipe; under load they may all
            // have yielded to the next record: "preparing profile p yielded …").
            #expect(serve.errorLine(containing: "palr serve: prepar", within: 5) != nil)
        }
    }

    /// "wait": false never waits for the model: without a cached ranking it answers at once
    /// with the retrieval order ("provisional") and prepares the ranking, which the same
    /// request then gets from the cache. With k = candidates = 20 the model ranks exactly
    /// the candidates retrieval offered, so the two lists hold the same items.
    @Test func aRequestThatMustNotWaitGetsTheRetrievalOrderFirst() throws {
        try withTemporaryDirectory { folder in
            let db = folder + "/h.sqlite"
            let history = ["1", "2", "3", "5", "7"]
            let serve = try serveBundled(db, histories: ["p": history], ["--no-prepare"])
            let request = #"{"id": 1, "profile": "p", "k": 20, "candidates": 20, "wait": false}"#
            serve.send(request)
            let first = try #require(try object(serve.response())["result"] as? [String: Any])
            let retrieved = (first["items"] as? [[String: Any]] ?? [])
            let scores = retrieved.compactMap { $0["score"] as? Double }
            #expect(first["provisional"] as? Bool == true && first["fromCache"] as? Bool == false, "\(first)")
            #expect(retrieved.count == 20 && scores.count == 20 && zip(scores, scores.dropFirst()).allSatisfy { $0 >= $1 })
            let ids = retrieved.compactMap { $0["id"] as? String }
            #expect(Set(ids).count == 20 && Set(ids).isDisjoint(with: history))

            // Prepared (even with --no-prepare: the request asked for it), then served.
            #expect(serve.errorLine(containing: "palr serve: prepared profile p (") != nil)
            serve.send(request)
            let second = try #require(try object(serve.response())["result"] as? [String: Any])
            #expect(second["provisional"] == nil && second["fromCache"] as? Bool == true, "\(second)")
            let ranked = (second["items"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(Set(ranked) == Set(ids) && ranked.count == 20)

            // A request that waits (the default) ranks: no provisional answer.
            serve.send(#"{"id": 3, "profile": "p", "k": 5}"#)
            let third = try #require(try object(serve.response())["result"] as? [String: Any])
            #expect(third["provisional"] == nil && (third["items"] as? [Any])?.count == 5)
            serve.send(#"{"id": 4, "profile": "nobody", "wait": false}"#)
            #expect((try object(serve.response())["error"] as? String ?? "").contains("unknown profile"))
            serve.send(#"{"id": 5, "profile": "p", "wait": false, "noCache": true}"#)
            #expect((try object(serve.response())["error"] as? String ?? "").contains("cannot wait for"))

            // After a record: a provisional k = 5 with the server's candidate count, then the
            // default request ({"profile": "p"}, k 10) is served from the cache once prepared.
            serve.send(#"{"id": 6, "op": "record", "profile": "p", "items": ["\#(ids[0])"]}"#)
            #expect(try object(serve.response())["error"] == nil)
            serve.send(#"{"id": 7, "profile": "p", "k": 5, "wait": false}"#)
            let five = try #require(try object(serve.response())["result"] as? [String: Any])
            #expect(five["provisional"] as? Bool == true && (five["items"] as? [Any])?.count == 5)
            #expect(serve.errorLine(containing: "palr serve: prepared profile p (") != nil)
            serve.send(#"{"id": 8, "profile": "p"}"#)
            let ranked10 = try #require(try object(serve.response())["result"] as? [String: Any])
            #expect(ranked10["fromCache"] as? Bool == true && (ranked10["items"] as? [Any])?.count == 10, "\(ranked10)")
            #expect(ranked10["candidates"] as? Int == five["candidates"] as? Int, "\(ranked10) vs \(five)")
            _ = serve.finish()
        }
    }

    /// --prepare-stale: at start, every profile without a fresh ranking is queued (a box
    /// booting after a model update), and served from the cache once prepared.
    @Test(arguments: [true, false])
    func staleProfilesArePreparedAtStart(flag: Bool) throws {
        try withTemporaryDirectory { folder in
            let serve = try serveBundled(folder + "/h.sqlite", histories: ["p": ["1", "2", "3"], "q": ["5", "7"]],
                                         flag ? ["--prepare-stale"] : [])
            if flag {
                #expect(serve.errorLine(containing: "2 profile(s) with a missing or stale ranking queued") != nil)
                #expect(serve.errorLine(containing: "prepared profile p (") != nil)
                #expect(serve.errorLine(containing: "prepared profile q (") != nil)
            } else {
                #expect(serve.errorLine(containing: "prepar", within: 1) == nil)
            }
            for profile in ["p", "q"] {
                serve.send(#"{"profile": "\#(profile)"}"#)
                let result = try #require(try object(serve.response())["result"] as? [String: Any])
                #expect(result["fromCache"] as? Bool == flag, "\(profile): \(result)")
            }
            _ = serve.finish()
        }
    }

    /// A prepared ranking the store does not cache (here: generate mode, whose 1,024-token
    /// context fills after 68 of 100 titles) is served from memory to the "wait": false
    /// request that asked for it, instead of a provisional list and another ranking.
    @Test func anUncachedPreparationIsServedFromMemory() throws {
        try withTemporaryDirectory { folder in
            let serve = try serveBundled(folder + "/h.sqlite", histories: ["p": ["1", "2", "3", "5", "7"]])
            let request = #"{"profile": "p", "mode": "generate", "k": 100, "candidates": 100, "wait": false}"#
            serve.send(request)
            #expect((try object(serve.response())["result"] as? [String: Any])?["provisional"] as? Bool == true)
            let note = serve.errorLine(containing: "palr serve: prepared profile p (")
            #expect(note?.contains("not cached: the model's context filled") == true, "\(note ?? "no note")")
            serve.send(request)
            let kept = try #require(try object(serve.response())["result"] as? [String: Any])
            let items = kept["items"] as? [Any] ?? []
            #expect(kept["provisional"] == nil && kept["fromCache"] as? Bool == false && (1..<100).contains(items.count), "\(kept)")
            _ = serve.finish()
        }
    }

    /// The start-up scan's profiles wait behind a change: a record waiting when the server
    /// is ready puts its profile ahead of the stale ones queued before it.
    @Test func aChangeGoesAheadOfTheStaleScan() throws {
        try withTemporaryDirectory { folder in
            let serve = try serveBundled(folder + "/h.sqlite", histories: ["a": ["1", "2"], "b": ["3", "5"], "c": ["7", "10"]],
                                         ["--prepare-stale"],
                                         initialInput: [#"{"id": 1, "op": "record", "profile": "c", "items": ["32"]}"#])
            #expect(try object(serve.response())["error"] == nil)
            var order: [String] = []
            while order.count < 3, let line = serve.errorLine(containing: "palr serve: prepared profile ") {
                order.append(String(line.dropFirst("palr serve: prepared profile ".count).prefix(1)))
            }
            #expect(order == ["c", "a", "b"], "\(order)")
            _ = serve.finish()
        }
    }

    /// While a recommendation ranks, the requests that arrived and need no model are
    /// answered at the ranker's pause points, ahead of it, unless they depend on something
    /// unanswered: a change to the profile being ranked, a request of a profile with a held
    /// request, a request without an id (its client relies on the order), a forget and a
    /// recommendation the cache cannot serve wait, in order. All lines arrive in one write
    /// before the ranking's first pause point, so the order below is deterministic.
    @Test func requestsThatNeedNoModelAreAnsweredWhileARankingRuns() throws {
        try withTemporaryDirectory { folder in
            let serve = try serveBundled(folder + "/h.sqlite", histories: ["p": ["1", "2", "3", "5", "7"], "q": ["1", "2", "3"],
                                                                            "r": ["10", "32"]],
                                         ["--no-prepare"])
            #expect(serve.errorLine(containing: "palr serve: ready") != nil)
            serve.send([
                #"{"id": 1, "profile": "p", "noCache": true}"#,               // ranks
                #"{"id": 2, "op": "recent", "profile": "q", "limit": 1}"#,   // now
                #"{"id": 3, "op": "record", "profile": "q", "items": ["50"]}"#,   // now: another profile
                #"{"id": 4, "op": "record", "profile": "p", "items": ["50"]}"#,   // held: the history being ranked
                #"{"id": 5, "op": "recent", "profile": "p", "limit": 1}"#,   // held: after 4, must see it
                #"{"id": 6, "profile": "r", "wait": false}"#,               // now: provisional
                #"{"op": "recent", "profile": "r", "limit": 1}"#,           // held: no id
                #"{"id": 7, "op": "forget", "profile": "r", "items": ["10"]}"#,   // held: a forget
                #"{"id": 8, "profile": "q"}"#,                              // held: needs the model
                #"{"id": 9, "op": "recent", "profile": "q", "limit": 1}"#,   // held: after 8, of its profile
            ].joined(separator: "\n"))
            var answers: [[String: Any]] = []
            for _ in 0..<10 { answers.append(try object(serve.response())) }
            let order = answers.map { $0["id"].map { "\($0)" } ?? "nil" }
            #expect(order == ["2", "3", "6", "1", "4", "5", "<null>", "7", "8", "9"], "\(order)")
            func result(_ i: Int) -> [String: Any] { answers[i]["result"] as? [String: Any] ?? [:] }
            func lastItem(_ i: Int) -> String? { (result(i)["interactions"] as? [[String: Any]])?.last?["item"] as? String }
            #expect(lastItem(0) == "3", "q's history before its record: \(answers[0])")
            #expect(result(2)["provisional"] as? Bool == true, "\(answers[2])")
            #expect(result(3)["historyLength"] as? Int == 5 && (result(3)["items"] as? [Any])?.count == 10,
                    "p ranked on its history before the held record: \(answers[3])")
            #expect(lastItem(5) == "50" && lastItem(6) == "32", "\(answers[5]) \(answers[6])")
            #expect(result(7)["removed"] as? Int == 1 && result(8)["historyLength"] as? Int == 4, "\(answers[7]) \(answers[8])")
            #expect(lastItem(9) == "50")
            let end = serve.finish()
            #expect(end.status == 0 && end.rest.isEmpty, "status \(end.status), rest \(end.rest.prefix(200))")
        }
    }

    /// A held `profiles` lists the profiles as they were when it was sent: a record sent
    /// after it (of a new profile here) waits for it, though no request of that profile is
    /// held. All lines arrive in one write before the ranking's first pause point.
    @Test func aHeldProfilesListSeesNoLaterRecord() throws {
        try withTemporaryDirectory { folder in
            let serve = try serveBundled(folder + "/h.sqlite", histories: ["p": ["1", "2", "3", "5", "7"], "q": ["10"]],
                                         ["--no-prepare"])
            #expect(serve.errorLine(containing: "palr serve: ready") != nil)
            serve.send([
                #"{"id": 1, "profile": "p", "noCache": true}"#,
                #"{"id": 2, "op": "record", "profile": "p", "items": ["50"]}"#,
                #"{"id": 3, "op": "profiles"}"#,
                #"{"id": 4, "op": "record", "profile": "n", "items": ["1"], "createProfile": true}"#,
                #"{"id": 5, "op": "recent", "profile": "q", "limit": 1}"#,
            ].joined(separator: "\n"))
            var answers: [[String: Any]] = []
            for _ in 0..<5 { answers.append(try object(serve.response())) }
            #expect(answers.map { "\($0["id"] ?? "nil")" } == ["5", "1", "2", "3", "4"], "\(answers)")
            let listed = ((answers[3]["result"] as? [String: Any])?["profiles"] as? [[String: Any]]) ?? []
            #expect(listed.compactMap { $0["name"] as? String } == ["p", "q"], "\(listed)")
            #expect(listed.first?["interactions"] as? Int == 6, "p with the record sent before the list: \(listed)")
            _ = serve.finish()
        }
    }

    /// Requests held only for the order (a read of the profile behind a recommendation the
    /// preparation serves) do not stop the preparation: it finishes, and both are answered
    /// after it. (When they arrive before it starts, the recommendation ranks itself: no
    /// preparation to stop.) Generate mode over 100 candidates makes the preparation long enough.
    @Test func readsHeldBehindAServedRecommendationDoNotStopAPreparation() throws {
        try withTemporaryDirectory { folder in
            let serve = try serveRecordingForALongPreparation(folder)
            serve.send(#"{"id": 2, "profile": "p"}"# + "\n" + #"{"id": 3, "op": "recent", "profile": "p", "limit": 1}"#)
            // In either order: before the preparation starts, the recommendation ranks itself
            // and the read of its profile is answered during that ranking.
            let two = [try object(serve.response(within: 120)), try object(serve.response())]
            let ranked = try #require(two.first { $0["id"] as? Int == 2 }, "\(two)")
            #expect(two.contains { $0["id"] as? Int == 3 && $0["result"] != nil }, "\(two)")
            #expect(((ranked["result"] as? [String: Any])?["items"] as? [Any])?.count == 10, "\(ranked)")
            let end = serve.finish()
            #expect(!end.errors.contains("yielded"), "\(end.errors.suffix(400))")
        }
    }

    /// A preparation answers the requests that need no model at its pause points and goes
    /// on: it no longer stops (and recomputes the layer it was in) for each of them. Thirty
    /// stale profiles are prepared while `recent` requests arrive every few milliseconds.
    @Test func aPreparationAnswersRequestsThatNeedNoModelWithoutStopping() throws {
        try withTemporaryDirectory { folder in
            let profiles = (0..<30).map { "p\($0)" }
            let histories = Dictionary(uniqueKeysWithValues: profiles.enumerated().map { i, p in
                (p, ["1", "2", "3", "5", "7", "10", "32", "47"].shuffled(seed: i)) })
            let serve = try serveBundled(folder + "/h.sqlite", histories: histories, ["--prepare-stale"])
            #expect(serve.errorLine(containing: "30 profile(s) with a missing or stale ranking queued") != nil)
            var sent = 0, answered = 0, prepared = 0, meanwhile = 0
            let deadline = Date().addingTimeInterval(120)
            while prepared < 30, Date() < deadline {
                serve.send(#"{"id": \#(sent), "op": "recent", "profile": "p\#(sent % 30)", "limit": 2}"#)
                sent += 1
                while let line = serve.response(within: 0.005) {
                    if line.contains(#""interactions""#) { answered += 1 }
                }
                while let note = serve.errorLine(containing: "palr serve: prepar", within: 0.001) {
                    #expect(!note.contains("yielded"), "\(note)")
                    if note.contains("prepared profile") { prepared += 1 }
                    if let range = note.range(of: #"(\d+) requests? answered meanwhile"#, options: .regularExpression) {
                        meanwhile += Int(note[range].prefix { $0.isNumber }) ?? 0
                    }
                }
            }
            while answered < sent, let line = serve.response(within: 10) {
                if line.contains(#""interactions""#) { answered += 1 }
            }
            print("30 preparations: \(sent) recent requests, \(meanwhile) answered during a preparation")
            #expect(prepared == 30 && answered == sent)
            #expect(meanwhile > 0, "no request arrived during a preparation: the test checked nothing")
            let end = serve.finish()
            #expect(end.status == 0 && !end.errors.contains("yielded"), "\(end.errors.suffix(300))")
        }
    }

    /// A `prepare` for another mode and candidate count of the profile being prepared
    /// (answered at a pause point, or before the preparation starts) is not lost when that
    /// preparation ends: the ranking it asked for is prepared too. (It was: the finished
    /// preparation removed the profile's queue entry, which the ask had replaced.) Generate
    /// mode over 100 candidates makes the first preparation long enough to be inside.
    @Test func anAskAnsweredDuringAPreparationIsNotLost() throws {
        try withTemporaryDirectory { folder in
            let serve = try serveRecordingForALongPreparation(folder)
            serve.send(#"{"id": 2, "op": "prepare", "profile": "p", "mode": "letters", "candidates": 20}"#)
            #expect((try object(serve.response())["result"] as? [String: Any])?["queued"] as? Bool == true)
            // Every preparation done: no note for 5 s.
            var notes: [String] = []
            while let note = serve.errorLine(containing: "palr serve: prepar", within: 5) { notes.append(note) }
            serve.send(#"{"id": 3, "profile": "p", "mode": "letters", "candidates": 20, "wait": false}"#)
            let result = try #require(try object(serve.response())["result"] as? [String: Any])
            #expect(result["fromCache"] as? Bool == true && result["provisional"] == nil, "\(result) after \(notes)")
            _ = serve.finish()
        }
    }
}

/// `--prefix-cache MiB`: the memory for prompt states kept across profiles. With the
/// default, a profile ranked again after another one reuses its whole prompt; with 0,
/// only the session's last prompt is reused, so it is computed again (all but the
/// template's first tokens). Out-of-range values are refused before anything loads.
@Suite struct PrefixCacheOptionTests {
    @Test func theBudgetDecidesWhetherAnotherProfilesPromptIsKept() throws {
        try withTemporaryDirectory { folder in
            var computed: [String: [Int]] = [:]
            for budget in ["0", "256"] {
                let serve = try serveBundled(folder + "/h\(budget).sqlite",
                                             histories: ["p": ["1", "2", "3", "5", "7"], "q": ["10", "32", "47"]],
                                             ["--no-prepare", "--prefix-cache", budget])
                for (i, profile) in ["p", "q", "p"].enumerated() {
                    serve.send(#"{"id": \#(i), "profile": "\#(profile)", "noCache": true}"#)
                    let result = try #require(try object(serve.response())["result"] as? [String: Any])
                    let timings = try #require(result["timings"] as? [String: Any])
                    computed[budget, default: []].append(timings["computedPromptTokens"] as? Int ?? -1)
                    if i == 2 { computed[budget]!.append(timings["promptTokens"] as? Int ?? -1) }
                }
                _ = serve.finish()
            }
            print("computed prompt tokens (p, q, p again, p's prompt): \(computed)")
            let kept = try #require(computed["256"]), none = try #require(computed["0"])
            #expect(kept[2] == 1, "p again with the default budget: \(kept)")
            #expect(none[2] > none[3] / 2 && none[2] < none[3], "p again with no budget: \(none)")
        }
    }

    @Test func outOfRangeValuesAreRefused() throws {
        for value in ["-1", "100000000"] {
            let r = try runPalr(["recommend", "--model", "m.gguf", "--catalog", "c.gguf", "--profile", "p", "--prefix-cache", value])
            #expect(r.status == 64 && r.error.contains("--prefix-cache must be between 0 and this machine's memory"),
                    "\(value): \(r.status) \(r.error)")
        }
    }
}

private extension Array {
    /// The same elements in an order fixed by `seed` (a rotation: enough to vary histories).
    func shuffled(seed: Int) -> [Element] { isEmpty ? self : Array(self[(seed % count)...] + self[..<(seed % count)]) }
}
