// What is refused before SQLite opens a file (empty files where a store must
// exist, devices, files this process cannot write, another user's store whose
// -wal/-shm a read would create), the messages that name the file that is not
// writable, schema version 2's summary marker, and the note on upgrading to it.
import Foundation
import Testing

@testable import History

/// The files beside `path` that SQLite's WAL mode would have created.
private func walFiles(_ path: String) -> [String] {
    [path + "-wal", path + "-shm"].filter { FileManager.default.fileExists(atPath: $0) }
}

private func store(_ folder: String, profile: String, items: Int) throws -> HistoryStore {
    let store = try makeStore(folder)
    _ = try store.record((0..<items).map {
        NewInteraction(profile: profile, item: "i\($0)", timestamp: Int64(100 + $0))
    }, createProfiles: true)
    return store
}

/// Makes `path` unwritable even for root (`chattr +i`) or, unless `byModeToo` is
/// false, for another user by its mode; returns the undo, or nil when neither can
/// be done here.
private func makeUnwritable(_ path: String, byModeToo: Bool = true) throws -> (() -> Void)? {
    if geteuid() != 0 && byModeToo {
        guard chmod(path, 0o444) == 0 else { return nil }
        return { _ = chmod(path, 0o644) }
    }
    // Root passes every permission check, but not an immutable file's (EPERM).
    let set = try ChildProcess("/usr/bin/env", ["chattr", "+i", path])
    set.wait()
    guard set.terminationStatus == 0 else { return nil }
    return {
        let undo = try? ChildProcess("/usr/bin/env", ["chattr", "-i", path])
        undo?.wait()
    }
}

@Suite struct OpenCheckTests {
    /// Only `add --create-profile` and `import` may turn an empty file into a store;
    /// every other open refuses it and leaves it empty, with no -wal/-shm beside it.
    @Test func anEmptyFileIsRefusedWhereAStoreMustExist() throws {
        try withTemporaryDirectory { folder in
            let empty = try writeFile(folder, "empty.sqlite", "")
            for options in [HistoryStore.Options(createIfMissing: false),
                            .init(createIfMissing: false, readOnly: true)] {
                do {
                    _ = try HistoryStore(path: empty, options: options)
                    Issue.record("an empty file opened as a store (\(options))")
                } catch let error as HistoryError {
                    guard case .notAHistoryDatabase(let path, let reason) = error else {
                        Issue.record("expected notAHistoryDatabase, got \(error)")
                        continue
                    }
                    #expect(path == empty && reason.hasPrefix("the file is empty (0 bytes)"), "\(error)")
                    #expect(reason.contains("add --create-profile") && reason.contains("import"), "\(error)")
                }
                #expect(fileSize(empty) == 0)
                #expect(walFiles(empty).isEmpty)
            }
            // Creating a store in an empty file is still what createIfMissing is for.
            let created = try HistoryStore(path: empty)
            #expect(try created.stats().schemaVersion == schemaVersion)
        }
    }

    @Test func aPathThatIsNotARegularFileIsRefusedBeforeOpening() throws {
        try withTemporaryDirectory { folder in
            let fifo = folder + "/fifo"
            #expect(mkfifo(fifo, 0o600) == 0)
            // Held open with bytes in it, so that were the FIFO ever opened by SQLite,
            // its reads would get junk and fail instead of blocking the test run.
            let holder = open(fifo, O_RDWR | O_NONBLOCK)
            #expect(holder >= 0)
            defer { close(holder) }
            let junk = [UInt8](repeating: 0x41, count: 16384)
            _ = junk.withUnsafeBytes { write(holder, $0.baseAddress, $0.count) }
            let cases = [("/dev/null", "a character device"), (fifo, "a FIFO"), (folder, "a directory")]
            for (path, kind) in cases {
                for options in [HistoryStore.Options(), .init(createIfMissing: false), .init(readOnly: true)] {
                    #expect(throws: HistoryError.cannotOpen(path: path, reason: "it is \(kind), not a regular file "
                                                            + "(a palr history database is a regular file)")) {
                        try HistoryStore(path: path, options: options)
                    }
                }
            }
            let left = try FileManager.default.contentsOfDirectory(atPath: folder)
            #expect(left == ["fifo"])
        }
    }

    /// Opening for writing a file this process cannot write is refused before
    /// SQLite would fall back to read-only and leave -wal/-shm files owned by this
    /// user beside it. Root needs `chattr +i` for the file to be unwritable.
    @Test func anUnwritableDatabaseIsRefusedBeforeAnythingIsCreated() throws {
        try withTemporaryDirectory { folder in
            let writer = try store(folder, profile: "p", items: 3)
            let path = writer.path
            writer.close()
            #expect(walFiles(path).isEmpty)
            guard let undo = try makeUnwritable(path) else {
                print("skipped: cannot make a file unwritable here (root without chattr +i on this file system)")
                return
            }
            defer { undo() }
            for create in [false, true] {
                do {
                    _ = try HistoryStore(path: path, options: .init(createIfMissing: create))
                    Issue.record("an unwritable file was opened for writing")
                } catch let error as HistoryError {
                    guard case .readOnly(let errorPath, "open", let reason) = error else {
                        Issue.record("expected HistoryError.readOnly, got \(error)")
                        continue
                    }
                    #expect(errorPath == path && reason.hasPrefix("the file \(path) is not writable ("), "\(error)")
                    #expect(reason.hasSuffix("nothing was opened or created"), "\(error)")
                }
                #expect(walFiles(path).isEmpty)
            }
            // Read-only, as `palr history list` opens it, still works.
            let reader = try HistoryStore(path: path, options: .init(createIfMissing: false, readOnly: true))
            #expect(try reader.interactionCount(profile: "p") == 3)
        }
    }

    /// A -wal file this process cannot write (left by another user, say) denies
    /// writes as surely as the database file: the message names it, not the database.
    @Test func aWriteBlockedByTheWALFileNamesIt() throws {
        try withTemporaryDirectory { folder in
            let writer = try store(folder, profile: "p", items: 3)
            let path = writer.path
            writer.close()
            let wal = try writeFile(folder, "history.sqlite-wal", "")
            // Not by its mode: SQLite gives a -wal its owner can change the database's mode
            // on opening it (a foreign one it cannot), so only chattr +i keeps ours unwritable.
            guard let undo = try makeUnwritable(wal, byModeToo: false) else {
                print("skipped: cannot make a file unwritable here (chattr +i needs root and a file system with it)")
                return
            }
            defer { undo() }
            #expect(Connection.unwritableFile(of: path)?.hasPrefix("its file \(wal) is not writable (") == true)
            // Nothing is created by opening, so it is not refused: reads still work ...
            let store = try HistoryStore(path: path, options: .init(createIfMissing: false))
            #expect(try store.recent(profile: "p").count == 3)
            // ... and a write fails naming the -wal file.
            do {
                try store.record(NewInteraction(profile: "p", item: "new", timestamp: 200))
                Issue.record("a write succeeded with an unwritable -wal file")
            } catch let error as HistoryError {
                #expect("\(error)".contains("its file \(wal) is not writable"), "\(error)")
                #expect(!"\(error)".contains("the file \(path) is not writable"), "\(error)")
            }
            store.close()
        }
    }

    /// Another user (root runs `runuser -u nobody`) refused by `recommend`, which
    /// must write the store, leaves no -wal/-shm beside it (they would lock its
    /// owner out); a folder it cannot write is named when those must be created.
    @Test(.enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser")))
    func anotherUsersRefusedCommandCreatesNoFiles() throws {
        let palr = try palrExecutable()
        guard try nobodyCanRun(palr) else { return }
        func asNobody(_ arguments: [String]) throws -> (status: Int32, error: String) {
            let child = try ChildProcess("/usr/sbin/runuser", ["-u", "nobody", "--", palr] + arguments)
            child.wait()
            return (child.terminationStatus, child.errorOutput)
        }
        // The store is checked before the model is loaded, so these need not exist.
        let pipeline = ["--model", "/nonexistent/m.gguf", "--catalog", "/nonexistent/c.gguf", "--profile", "p"]
        try withTemporaryDirectory { folder in
            #expect(chmod(folder, 0o1777) == 0)  // like /tmp: anyone may create files here
            let root = try store(folder, profile: "p", items: 3)
            let path = root.path
            root.close()
            let refused = try asNobody(["recommend", "--db", path] + pipeline)
            #expect(refused.status == 1 && refused.error.contains("the file \(path) is not writable (Permission denied"),
                    "\(refused)")
            let add = try asNobody(["history", "--db", path, "add", "--profile", "p", "x"])
            #expect(add.status == 1 && add.error.contains("the file \(path) is not writable"), "\(add)")
            #expect(walFiles(path).isEmpty)

            // Its own file in a folder it cannot write: refused naming the folder, nothing created.
            let closed = folder + "/closed"
            try FileManager.default.createDirectory(atPath: closed, withIntermediateDirectories: false)
            let own = closed + "/h.sqlite"
            try FileManager.default.copyItem(atPath: path, toPath: own)
            #expect(chown(own, 65534, 65534) == 0)
            let inClosed = try asNobody(["recommend", "--db", own] + pipeline)
            #expect(inClosed.status == 1 && inClosed.error.contains("its folder \(closed) is not writable"),
                    "\(inClosed)")
            #expect(walFiles(own).isEmpty)
        }
    }

    /// A read-only command (`list`, `stats`, `export`) by a user who cannot write the
    /// store must not create its -wal and -shm in a writable folder: SQLite would make
    /// them this user's (even on a read-only connection), the owner's writes would then
    /// fail and, in a sticky folder, the owner could not delete them. Refused, naming
    /// the files, with nothing created; reading proceeds when both files exist (the
    /// owner has the store open), when the folder is closed (nothing can be created)
    /// and when the reader owns the file.
    @Test(.enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser")
                   && getpwnam("daemon") != nil))
    func anotherUsersReadDoesNotCreateTheOwnersWALFiles() throws {
        let palr = try palrExecutable()
        guard try nobodyCanRun(palr) else { return }
        func run(as user: String, _ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
            let child = try ChildProcess("/usr/sbin/runuser", ["-u", user, "--", palr] + arguments)
            child.wait()
            return (child.terminationStatus, child.output, child.errorOutput)
        }
        func owner(_ file: String) -> uid_t? {
            var info = stat()
            return stat(file, &info) == 0 ? info.st_uid : nil
        }
        let daemon = try #require(getpwnam("daemon")).pointee.pw_uid
        try withTemporaryDirectory { scratch in
            // The message names the files beside the resolved path (TMPDIR may be a link).
            let folder = try #require(realpath(scratch, nil).map { resolved in
                defer { free(resolved) }
                return String(cString: resolved)
            })
            #expect(chmod(folder, 0o1777) == 0)  // like /tmp: anyone may create files, only owners delete them
            let root = try store(folder, profile: "p", items: 3)
            let path = root.path
            root.close()
            #expect(chown(path, daemon, daemon) == 0 && chmod(path, 0o644) == 0)
            #expect(walFiles(path).isEmpty)

            for command in [["list"], ["list", "--profile", "p"], ["stats"], ["export"]] {
                let refused = try run(as: "nobody", ["history", "--db", path] + command)
                #expect(refused.status == 1 && refused.output.isEmpty, "\(command): \(refused)")
                #expect(refused.error.contains("cannot open history database \(path): this user (uid 65534) cannot "
                                               + "write it (it belongs to uid \(daemon)), and reading it as this user "
                                               + "would create \(path)-wal and \(path)-shm owned by this user and "
                                               + "lock its owner out"), "\(command): \(refused)")
                #expect(refused.error.contains("run as the owner, or read a copy"), "\(refused)")
                #expect(walFiles(path).isEmpty, "\(command) left \(walFiles(path))")
            }
            // The owner still writes (the lockout this prevents made this fail).
            let add = try run(as: "daemon", ["history", "--db", path, "add", "--profile", "p", "x"])
            #expect(add.status == 0, "\(add)")
            #expect(walFiles(path).isEmpty)

            // Both files exist while the owner has the store open: nothing is created, reading works.
            // (This test runs as root, and SQLite gives files it creates as root the database's owner.)
            let held = try HistoryStore(path: path, options: .init(createIfMissing: false))
            #expect(try held.interactionCount(profile: "p") == 4)
            #expect(walFiles(path).count == 2 && walFiles(path).allSatisfy { owner($0) == daemon }, "\(walFiles(path))")
            let whileOpen = try run(as: "nobody", ["history", "--db", path, "list", "--profile", "p"])
            #expect(whileOpen.status == 0 && whileOpen.output.contains("digest "), "\(whileOpen)")
            held.close()
            #expect(walFiles(path).isEmpty)

            // A folder this user cannot write: nothing can be created, so it is not this
            // refusal (SQLite's own open decides, and it creates nothing).
            let closed = folder + "/closed"
            try FileManager.default.createDirectory(atPath: closed, withIntermediateDirectories: false)
            let inClosed = closed + "/h.sqlite"
            try FileManager.default.copyItem(atPath: path, toPath: inClosed)
            #expect(chown(inClosed, daemon, daemon) == 0)
            let closedRead = try run(as: "nobody", ["history", "--db", inClosed, "stats"])
            #expect(!closedRead.error.contains("lock its owner out"), "\(closedRead)")
            #expect(walFiles(inClosed).isEmpty)

            // The reader's own file, made read-only by its mode: the files are its own, so it reads.
            let own = folder + "/own.sqlite"
            try FileManager.default.copyItem(atPath: path, toPath: own)
            #expect(chown(own, 65534, 65534) == 0 && chmod(own, 0o444) == 0)
            let ownRead = try run(as: "nobody", ["history", "--db", own, "stats"])
            #expect(ownRead.status == 0 && ownRead.output.contains("interactions   4"), "\(ownRead)")
        }
    }

    /// A group-writable store shared by two users of its group: the one who opens it
    /// first makes SQLite create -wal and -shm with *its* primary group, which locked
    /// the other out ("unable to open database file (Permission denied)") while it ran
    /// (and after, if it was killed). The store now gives them its own group. Here
    /// nobody (primary group nogroup) holds the store open writing while daemon
    /// (primary group daemon), both members of `users`, the store's group, adds. (The
    /// writer runs 10 s: with 4, a loaded machine running the whole suite once let it end
    /// before the second user's add, and the test failed for proving nothing.)
    @Test(.enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser")
                   && getpwnam("daemon") != nil && getgrnam("users") != nil && getgrnam("nogroup") != nil))
    func aSecondUserOfTheStoresGroupDoesNotLockTheOtherOut() throws {
        let palr = try palrExecutable()
        guard try nobodyCanRun(palr) else { return }
        let daemon = try #require(getpwnam("daemon")).pointee.pw_uid
        let users = try #require(getgrnam("users")).pointee.gr_gid
        try withTemporaryDirectory { folder in
            #expect(chmod(folder, 0o777) == 0)
            let root = try store(folder, profile: "p", items: 3)
            let path = root.path
            root.close()
            #expect(chown(path, daemon, users) == 0 && chmod(path, 0o660) == 0)
            #expect(walFiles(path).isEmpty)
            let writer = try ChildProcess("/usr/sbin/runuser", ["-u", "nobody", "-g", "nogroup", "-G", "users", "--", palr,
                "history", "--db", path, "stress-writer", "--profile", "w", "--duration", "10"])
            let deadline = Date().addingTimeInterval(30)
            while writer.isRunning && !writer.output.contains("ack ") && Date() < deadline { usleep(2000) }
            var info = stat()
            #expect(stat(path + "-wal", &info) == 0 && info.st_uid == 65534 && info.st_gid == users,
                    "the writer's -wal: uid \(info.st_uid), gid \(info.st_gid)")
            let add = try ChildProcess("/usr/sbin/runuser", ["-u", "daemon", "-g", "daemon", "-G", "users", "--", palr,
                "history", "--db", path, "add", "--profile", "p", "x"])
            add.wait()
            #expect(add.terminationStatus == 0, "\(add.errorOutput)")
            #expect(writer.isRunning, "the writer ended before the second user's write: the test proved nothing")
            writer.wait()
            #expect(writer.terminationStatus == 0, "\(writer.errorOutput)")
        }
    }

    @Test func cliCommandsThatMustNotCreateAStoreRefuseEmptyAndSpecialFiles() throws {
        try withTemporaryDirectory { folder in
            let empty = try writeFile(folder, "empty.sqlite", "")
            let pipeline = ["--model", "/nonexistent/m.gguf", "--catalog", "/nonexistent/c.gguf", "--profile", "p"]
            for command in [["recommend"], ["profile"], ["history", "add", "x"]] {
                let arguments = command + ["--db", empty] + (command[0] == "history" ? ["--profile", "p"] : pipeline)
                let result = try runPalr(arguments)
                #expect(result.status == 1 && result.error.contains("\(empty) is not a palr history database: the "
                                                                    + "file is empty (0 bytes)"), "\(result)")
                #expect(fileSize(empty) == 0 && walFiles(empty).isEmpty)
            }
            let device = try runPalr(["recommend", "--db", "/dev/null"] + pipeline)
            #expect(device.status == 1 && device.error.contains("/dev/null: it is a character device, not a regular file"),
                    "\(device)")
        }
    }
}

/// A schema-version-1 database (as a build before version 2 wrote it) at `path`,
/// with profile `p` and a summary of it.
private func makeVersionOneStore(_ path: String) throws {
    let raw = try Connection(path: path, create: true, busyTimeout: 5)
    try raw.exec("PRAGMA journal_mode = WAL")
    try raw.exec(migrations[0])
    try raw.exec("""
        PRAGMA application_id = \(applicationID); PRAGMA user_version = 1;
        INSERT INTO profiles(id, name, created_at) VALUES (1, 'p', 0);
        INSERT INTO profile_summaries VALUES (1, 'noir', '00000000000000ff', 20, 5);
        """)
    raw.close()
}

@Suite struct SummaryMarkerTests {
    /// Version 1 databases are upgraded in place; their summaries keep no marker.
    @Test func aVersionOneDatabaseIsMigratedAndItsSummaryHasNoMarker() throws {
        try withTemporaryDirectory { folder in
            let path = folder + "/v1.sqlite"
            try makeVersionOneStore(path)
            let store = try HistoryStore(path: path, options: .init(createIfMissing: false))
            #expect(schemaVersion == 2)
            #expect(store.schemaUpgrade == HistoryStore.SchemaUpgrade(from: 1, to: 2))
            #expect(try store.stats().schemaVersion == schemaVersion)
            // Reported once, by the open that upgraded; creating a file is no upgrade.
            #expect(try HistoryStore(path: path, options: .init(createIfMissing: false)).schemaUpgrade == nil)
            #expect(try makeStore(folder, name: "new.sqlite").schemaUpgrade == nil)
            #expect(try store.integrityCheck() == ["ok"])
            let old = try #require(try store.profileSummary(profile: "p"))
            #expect(old.text == "noir" && old.interactionCount == 20 && old.lastInteractionID == nil)
            #expect(old.changedInteractions(in: []) == nil)
            var marked = old
            marked.lastInteractionID = 42
            try store.putProfileSummary(marked)
            #expect(try store.profileSummary(profile: "p") == marked)
            marked.lastInteractionID = 0
            #expect(throws: HistoryError.self) { try store.putProfileSummary(marked) }
        }
    }

    /// A command that only reads (`list`, `stats`, `export`) opens a file it can write
    /// for writing, so it upgrades a version-1 store too, and says so on stderr once.
    @Test func theCommandLineNotesAnUpgradeOnce() throws {
        try withTemporaryDirectory { folder in
            let note = { (path: String) in
                "note: upgraded history store \(path) from schema version 1 to 2 (palr builds that support only "
                    + "versions below 2 cannot open it any more)\n"
            }
            for command in [["stats"], ["list"], ["export"], ["add", "--profile", "p", "x"]] {
                let path = folder + "/v1-\(command[0]).sqlite"
                try makeVersionOneStore(path)
                let first = try runPalr(["history", "--db", path] + command)
                #expect(first.status == 0 && first.error == note(path), "\(command): \(first)")
                let second = try runPalr(["history", "--db", path] + command)
                #expect(second.status == 0 && second.error.isEmpty, "\(command): \(second)")
                #expect(try HistoryStore(path: path, options: .init(readOnly: true)).stats().schemaVersion == 2)
            }
        }
    }

    /// At the retention cap the count stays while the history turns over: every
    /// add also trims one row, and the change is the larger of the two (15 in and 15
    /// out is 15), not their sum, which counted each new interaction twice.
    @Test func changesAtTheRetentionCapCountEachNewInteractionOnce() throws {
        try withTemporaryDirectory { folder in
            let store = try store(folder, profile: "p", items: 40)
            try store.setRetentionCap(20)
            _ = try store.compact()
            let seen = try store.recent(profile: "p", limit: 100)
            #expect(seen.count == 20)
            let summary = ProfileSummary(profile: "p", text: "t", historyDigest: HistoryDigest(of: seen),
                                         interactionCount: seen.count, createdAt: 0,
                                         lastInteractionID: seen.map(\.id).max())
            try store.putProfileSummary(summary)
            #expect(summary.changedInteractions(in: seen) == 0)
            func add(_ items: Range<Int>) throws -> Int? {
                _ = try store.record(items.map { NewInteraction(profile: "p", item: "n\($0)", timestamp: 1000 + Int64($0)) })
                let now = try store.recent(profile: "p", limit: 100)
                #expect(now.count == 20)
                return try store.profileSummary(profile: "p")?.changedInteractions(in: now)
            }
            #expect(try add(0..<5) == 5)      // 5 in, 5 trimmed: below palr.profile_refresh_after's default 10
            #expect(try add(5..<10) == 10)    // 10 in, 10 trimmed: reaches it
            #expect(try add(10..<15) == 15)
        }
    }

    @Test func changesAfterForgettingAndAddingAsMany() {
        func rows(_ ids: [Int64]) -> [Interaction] {
            ids.map { Interaction(id: $0, profile: "p", item: "i\($0)", kind: .view, value: nil, timestamp: $0) }
        }
        let summary = ProfileSummary(profile: "p", text: "t", historyDigest: HistoryDigest(of: rows(Array(1...20))),
                                     interactionCount: 20, createdAt: 0, lastInteractionID: 20)
        #expect(summary.changedInteractions(in: rows(Array(1...20))) == 0)
        // 12 forgotten, 12 added: the count is 20 again, the history changed by 12.
        #expect(summary.changedInteractions(in: rows(Array(1...8) + Array(21...32))) == 12)
        // Unequal: the larger side counts (3 forgotten and 7 added; 9 forgotten and 2 added).
        #expect(summary.changedInteractions(in: rows(Array(4...20) + Array(21...27))) == 7)
        #expect(summary.changedInteractions(in: rows(Array(10...20) + [21, 22])) == 9)
        #expect(summary.changedInteractions(in: rows(Array(1...20) + [21])) == 1)
        #expect(summary.changedInteractions(in: rows(Array(2...20))) == 1)
        let fromNothing = ProfileSummary(profile: "p", text: "", historyDigest: HistoryDigest(of: []),
                                         interactionCount: 0, createdAt: 0)
        #expect(fromNothing.changedInteractions(in: rows([5, 6])) == 2)
    }
}

/// Whether user nobody can run `palr` (a folder on its path may be closed to other
/// users); says so when not, and the test skips.
private func nobodyCanRun(_ palr: String) throws -> Bool {
    let probe = try ChildProcess("/usr/sbin/runuser", ["-u", "nobody", "--", palr, "--help"])
    probe.wait()
    if probe.terminationStatus != 0 {
        print("skipped: user nobody cannot run \(palr) (a folder on its path is closed to other users)")
    }
    return probe.terminationStatus == 0
}
