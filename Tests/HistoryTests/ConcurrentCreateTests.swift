// Several connections creating the same new database at once: each must either
// create the whole schema or wait and see it finished, never a half state
// ("N schema objects but no palr schema version").
import Foundation
import Testing

@testable import History

/// Errors collected from several threads.
private final class ErrorLog: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [String] = []

    func add(_ error: String) {
        lock.lock()
        errors.append(error)
        lock.unlock()
    }

    var all: [String] {
        lock.lock()
        defer { lock.unlock() }
        return errors
    }
}

/// Runs `body(index)` on `count` threads released together; waits for all.
private func together(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let ready = DispatchGroup()
    let done = DispatchGroup()
    let start = DispatchSemaphore(value: 0)
    for index in 0..<count {
        ready.enter()
        done.enter()
        Thread.detachNewThread {
            ready.leave()
            start.wait()
            body(index)
            done.leave()
        }
    }
    ready.wait()
    for _ in 0..<count { start.signal() }
    done.wait()
}

/// The checks every finished database must pass.
private func expectCurrentSchema(_ path: String, round: Int) throws {
    let store = try HistoryStore(path: path)
    defer { store.close() }
    let c = store.connection
    try c.run("test") { () throws in
        #expect(try c.scalar("PRAGMA user_version") == Int64(schemaVersion), "round \(round)")
        #expect(try c.scalar("PRAGMA application_id") == Int64(applicationID), "round \(round)")
        #expect(try c.scalarText("PRAGMA journal_mode") == "wal", "round \(round)")
        #expect(try c.scalar("PRAGMA auto_vacuum") == 2, "round \(round)")  // incremental
    }
    #expect(try store.integrityCheck() == ["ok"], "round \(round)")
    #expect(try store.stats().schemaVersion == schemaVersion, "round \(round)")
}

@Suite struct ConcurrentCreateTests {
    /// 8 connections open the same missing file at once, 100 times over; half
    /// of them also write right away.
    @Test func connectionsCreatingTheSameNewDatabaseAllSucceed() throws {
        try withTemporaryDirectory { folder in
            for round in 0..<100 {
                let path = folder + "/race-\(round).sqlite"
                let log = ErrorLog()
                together(8) { index in
                    do {
                        let store = try HistoryStore(path: path, options: .init(busyTimeout: 10))
                        if index % 2 == 0 { try store.createProfile("p\(index)") }
                        store.close()
                    } catch {
                        log.add("round \(round), connection \(index): \(error)")
                    }
                }
                #expect(log.all.isEmpty, "\(log.all)")
                try expectCurrentSchema(path, round: round)
                let profiles = try HistoryStore(path: path).profiles().map(\.name)
                #expect(profiles == ["p0", "p2", "p4", "p6"], "round \(round)")
            }
        }
    }

    /// The tester's case: three `palr history import` and one `palr history add
    /// --create-profile` started together on a missing file.
    @Test func processesCreatingTheSameNewDatabaseAllSucceed() throws {
        let palr = try palrExecutable()
        try withTemporaryDirectory { folder in
            let csv = try writeFile(folder, "history.csv", "userId,movieId,rating,timestamp\n"
                                    + (1...20).map { "\($0 % 3),\($0),\($0 % 5 + 1),\(1_000_000_000 + $0)" }
                                        .joined(separator: "\n") + "\n")
            for round in 0..<30 {
                let path = folder + "/race-\(round).sqlite"
                let importing = ["history", "--db", path, "import", "--format", "movielens-csv", csv]
                let children = try [
                    ChildProcess(palr, importing), ChildProcess(palr, importing), ChildProcess(palr, importing),
                    ChildProcess(palr, ["history", "--db", path, "add", "--create-profile", "--profile", "zz", "1"]),
                ]
                for (index, child) in children.enumerated() {
                    child.wait()
                    #expect(child.terminationStatus == 0, "round \(round), child \(index): \(child.errorOutput)")
                }
                try expectCurrentSchema(path, round: round)
            }
        }
    }

    /// Opening an up-to-date database reads its version without the write
    /// lock, so it does not wait for another connection's long write.
    @Test func openingAnUpToDateDatabaseDoesNotWaitForAWriter() throws {
        try withTemporaryDirectory { folder in
            let holder = try makeStore(folder)
            try holder.connection.exec("BEGIN IMMEDIATE")
            defer { try? holder.connection.exec("ROLLBACK") }
            let started = Date()
            let store = try makeStore(folder, options: .init(busyTimeout: 5))
            let readOnly = try makeStore(folder, options: .init(busyTimeout: 5, readOnly: true))
            #expect(Date().timeIntervalSince(started) < 2)
            #expect(try store.profiles().isEmpty)
            #expect(try readOnly.profiles().isEmpty)
        }
    }
}
