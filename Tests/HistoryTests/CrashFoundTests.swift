// Windows the crash-injection campaign (`tools/fuzz/crash`) found, each made
// deterministic: palr runs with a preloaded shim that SIGKILLs the process the moment
// it prepares a chosen SQL statement, i.e. at one exact point inside a command.
import Foundation
import Testing

import FileSafety
@testable import History

/// Builds the shim: `sqlite3_prepare_v3` that raises SIGKILL when the statement contains
/// `$PALR_TEST_KILL_AT_SQL`, and `unlink` that raises it right after removing a path
/// that ends with `$PALR_TEST_KILL_AFTER_UNLINK`; otherwise the real calls. Returns its path.
private func buildKillShim(in folder: String) throws -> String {
    let source = folder + "/killat.c", shim = folder + "/killat.so"
    try """
        #define _GNU_SOURCE
        #include <dlfcn.h>
        #include <signal.h>
        #include <stdlib.h>
        #include <string.h>
        typedef int (*prepare_fn)(void *, const char *, int, unsigned int, void **, const char **);
        int sqlite3_prepare_v3(void *db, const char *sql, int n, unsigned int flags, void **stmt, const char **tail) {
            const char *at = getenv("PALR_TEST_KILL_AT_SQL");
            if (at && *at && sql && strstr(sql, at)) raise(SIGKILL);
            prepare_fn real = (prepare_fn)dlsym(RTLD_NEXT, "sqlite3_prepare_v3");
            return real(db, sql, n, flags, stmt, tail);
        }
        int unlink(const char *path) {
            int (*real)(const char *) = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
            int result = real(path);
            const char *at = getenv("PALR_TEST_KILL_AFTER_UNLINK");
            if (at && *at && path) {
                size_t a = strlen(path), b = strlen(at);
                if (a >= b && strcmp(path + a - b, at) == 0) raise(SIGKILL);
            }
            return result;
        }
        """.write(toFile: source, atomically: false, encoding: .utf8)
    let compile = try ChildProcess(try #require(cCompiler), ["-shared", "-fPIC", "-o", shim, source, "-ldl"])
    compile.wait()
    try #require(compile.terminationStatus == 0, "\(compile.errorOutput)")
    return shim
}

@Suite(.enabled(if: cCompiler != nil, "needs a C compiler (cc, clang or gcc) to build the kill shim"))
struct CrashFoundTests {
    /// `history compact --retention-cap N` set the cap in one transaction and trimmed in
    /// another: killed in the trim, the store kept the new cap over the untrimmed history
    /// (neither the state before the command nor after it; the campaign's kills hit this
    /// in about a third of the runs). Now the cap is stored in the trim's transaction.
    @Test func compactWithANewCapKilledInTheTrimLeavesTheOldCapOrTheNewOne() throws {
        try withTemporaryDirectory { folder in
            let shim = try buildKillShim(in: folder)
            let path = folder + "/history.sqlite"
            do {
                let store = try HistoryStore(path: path)
                try store.record((0..<30).map { NewInteraction(profile: "p", item: "m\($0)", timestamp: Int64($0)) },
                                 createProfiles: true)
                #expect(try store.retentionCap() == HistoryStore.defaultRetentionCap)
            }
            for arguments in [["--retention-cap", "10"], ["--retention-cap", "10", "--no-vacuum"]] {
                let child = try ChildProcess(try palrExecutable(), ["history", "--db", path, "compact"] + arguments,
                                             environment: ["LD_PRELOAD": shim,
                                                           "PALR_TEST_KILL_AT_SQL": "DELETE FROM interactions WHERE profile"])
                child.wait()
                // The shim fired: the command died in the trim.
                #expect(child.terminationReason == .uncaughtSignal && child.terminationStatus == SIGKILL,
                        "\(arguments): \(child.terminationStatus) \(child.errorOutput)")
                let store = try HistoryStore(path: path)
                #expect(try store.integrityCheck() == ["ok"])
                // Before the command (the kill came before its commit): the old cap, all 30.
                let cap = try store.retentionCap(), count = try store.interactionCount(profile: "p")
                #expect(cap == HistoryStore.defaultRetentionCap && count == 30,
                        "\(arguments): cap \(cap.map(String.init) ?? "unlimited") over \(count) interactions")
            }
            // Without the shim the same command sets the cap and trims.
            let done = try runPalr(["history", "--db", path, "compact", "--retention-cap", "10"])
            #expect(done.status == 0, "\(done.error)")
            let store = try HistoryStore(path: path)
            #expect(try store.retentionCap() == 10 && store.interactionCount(profile: "p") == 10)
        }
    }

    /// A killed creation leaves its temporary store with SQLite's `-wal`, `-shm` or
    /// `-journal` beside it; the next writable open removes them. It removed the temporary
    /// first, so a kill right after that left the companions under names no cleaner looks
    /// for, for good. Now they go first: a kill after any one removal leaves what the
    /// next run removes.
    @Test func aKillWhileRemovingAKilledCreationsLeftoversLeavesNothingForGood() throws {
        try withTemporaryDirectory { folder in
            let shim = try buildKillShim(in: folder)
            let gone = try ChildProcess("/bin/true", [])
            gone.wait()
            for (round, suffix) in ["", "-wal", "-shm", "-journal"].enumerated() {
                let disk = folder + "/disk\(round)"
                try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: false)
                let name = ".history.sqlite.tmp-\(gone.pid)-5eed"
                for companion in ["", "-wal", "-shm", "-journal"] {
                    try "left by a killed creation".write(toFile: disk + "/" + name + companion, atomically: false,
                                                          encoding: .utf8)
                }
                let arguments = ["history", "--db", disk + "/history.sqlite", "add", "--create-profile", "--profile",
                                 "p", "m1"]
                let killed = try ChildProcess(try palrExecutable(), arguments,
                                              environment: ["LD_PRELOAD": shim, "PALR_TEST_KILL_AFTER_UNLINK": "/" + name + suffix])
                killed.wait()
                #expect(killed.terminationReason == .uncaughtSignal && killed.terminationStatus == SIGKILL,
                        "killed after removing \(name + suffix): \(killed.terminationStatus) \(killed.errorOutput)")
                let next = try runPalr(arguments)
                #expect(next.status == 0, "\(next.error)")
                let names = try FileManager.default.contentsOfDirectory(atPath: disk).sorted()
                #expect(names == ["history.sqlite", "history.sqlite-reserve"],
                        "killed after removing \(name + suffix), then a normal run: \(names)")
            }
        }
    }

    /// `add --create-profile` and `import` into a missing store created it empty and then
    /// wrote: a kill between left an empty store where there was none (51 of 150 such
    /// campaign trials). Now the first write goes into the store while it is still being
    /// built under its temporary name: killed in the write, or after it but before the
    /// store gets its name, the command leaves no store; the next run cleans up and works.
    @Test(arguments: ["INSERT INTO interactions", "wal_checkpoint(TRUNCATE)"])
    func aKilledFirstWriteIntoAMissingStoreLeavesNoStore(killAt sql: String) throws {
        try withTemporaryDirectory { folder in
            let shim = try buildKillShim(in: folder)
            let ratings = folder + "/ratings.csv"
            try "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,11,3.5,200\n2,10,5.0,300\n"
                .write(toFile: ratings, atomically: false, encoding: .utf8)
            let commands: [(name: String, arguments: [String], profile: String, count: Int)] = [
                ("add", ["add", "--create-profile", "--profile", "p", "m1", "m2"], "p", 2),
                ("import", ["import", ratings, "--format", "movielens-csv"], "1", 2),
            ]
            for command in commands {
                let disk = folder + "/" + command.name
                try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: false)
                let path = disk + "/history.sqlite"
                let arguments = ["history", "--db", path] + command.arguments
                let killed = try ChildProcess(try palrExecutable(), arguments,
                                              environment: ["LD_PRELOAD": shim, "PALR_TEST_KILL_AT_SQL": sql])
                killed.wait()
                #expect(killed.terminationReason == .uncaughtSignal && killed.terminationStatus == SIGKILL,
                        "\(command.name) killed at \(sql): \(killed.terminationStatus) \(killed.errorOutput)")
                // No store (only the killed creation's temporary, which no reader takes for one).
                #expect(!FileManager.default.fileExists(atPath: path), "\(command.name) killed at \(sql)")
                let list = try runPalr(["history", "--db", path, "list"])
                #expect(list.status != 0 && list.error.contains("no such file"), "\(list.status) \(list.error)")
                // The next run cleans up and creates the store with the write in it.
                let next = try runPalr(arguments)
                #expect(next.status == 0, "\(next.error)")
                let names = try FileManager.default.contentsOfDirectory(atPath: disk).sorted()
                #expect(names == ["history.sqlite", "history.sqlite-reserve"], "\(command.name): \(names)")
                let store = try HistoryStore(path: path, options: .init(createIfMissing: false))
                #expect(try store.integrityCheck() == ["ok"])
                #expect(try store.interactionCount(profile: command.profile) == command.count)
            }
        }
    }

    /// The library call behind it: the first write's result is returned, the store appears
    /// only with it, a failing first write leaves nothing, and a store that another process
    /// created meanwhile gets the write instead (the temporary's copy is dropped).
    @Test func theFirstWriteOfANewStoreIsInItWhenItAppears() throws {
        try withTemporaryDirectory { folder in
            let path = folder + "/history.sqlite"
            struct Refused: Error {}
            #expect(throws: Refused.self) {
                _ = try HistoryStore.open(path: path) { store in
                    _ = try store.record(NewInteraction(profile: "p", item: "m1", timestamp: 1), createProfile: true)
                    // Written, but not yet under the store's name; its messages name the store.
                    #expect(!FileManager.default.fileExists(atPath: path))
                    #expect(store.path == path)
                    throw Refused()
                }
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == [])

            // While the first write runs, the temporary is flock-locked (here, on a local file
            // system): another process's cleanup, which may not see this pid (another PID
            // namespace), leaves it alone. (A second open file description conflicts.)
            _ = try HistoryStore.open(path: folder + "/locked.sqlite") { store in
                let temporary = try #require(try FileManager.default.contentsOfDirectory(atPath: folder)
                    .first { $0.hasPrefix(".locked.sqlite.tmp-") && !$0.contains("-wal") && !$0.contains("-shm") })
                let fd = Glibc.open(folder + "/" + temporary, O_RDONLY | O_CLOEXEC)
                defer { Glibc.close(fd) }
                if !Destination.flockMayConflictWithSQLite(folder) {   // (released on NFS, SMB, FUSE)
                    #expect(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK)
                }
                return try store.record(NewInteraction(profile: "p", item: "m1", timestamp: 1), createProfile: true)
            }

            let (store, ids) = try HistoryStore.open(path: path) {
                try $0.record([NewInteraction(profile: "p", item: "m1", timestamp: 1),
                               NewInteraction(profile: "p", item: "m2", timestamp: 2)], createProfiles: true)
            }
            #expect(ids.count == 2)
            #expect(try store.recent(profile: "p").map(\.item) == ["m1", "m2"])
            #expect(FileManager.default.fileExists(atPath: store.reservePath))
            store.close()

            // Another process creates the store while this one builds its own: the name is
            // taken, so the write runs again, on that store.
            let raced = folder + "/raced.sqlite"
            var runs = 0
            let (other, result) = try HistoryStore.open(path: raced) { store -> Int in
                runs += 1
                if runs == 1 {
                    let first = try HistoryStore(path: raced)
                    _ = try first.record(NewInteraction(profile: "q", item: "x", timestamp: 1), createProfile: true)
                    first.close()
                }
                return try store.record([NewInteraction(profile: "q", item: "y", timestamp: 2)],
                                        createProfiles: true).count
            }
            #expect(runs == 2 && result == 1)
            #expect(try other.recent(profile: "q").map(\.item) == ["x", "y"])
            let names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
            #expect(!names.contains { $0.contains(".tmp-") }, "\(names)")
        }
    }

    /// The library call: a new cap and the trim commit together; a bad cap changes nothing.
    @Test func compactWithARetentionCapSetsItAndTrims() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.record((0..<30).map { NewInteraction(profile: "p", item: "m\($0)", timestamp: Int64($0)) },
                             createProfiles: true)
            #expect(throws: HistoryError.self) { try store.compact(retentionCap: 0) }
            #expect(try store.retentionCap() == HistoryStore.defaultRetentionCap)
            #expect(try store.compact(retentionCap: 5).trimmedInteractions == 25)
            #expect(try store.retentionCap() == 5 && store.interactionCount(profile: "p") == 5)
            #expect(try store.compact(retentionCap: nil, vacuum: false).trimmedInteractions == 0)
            #expect(try store.retentionCap() == nil)
        }
    }
}
