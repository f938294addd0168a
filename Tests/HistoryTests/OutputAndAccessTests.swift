// Export to files (atomic, special files refused), read-only databases, and the
// CLI's errors: exit codes, missing databases never created, numeric options.
import Foundation
import Testing

@testable import History

#if canImport(Glibc)
import Glibc
#endif

/// Names in `folder` that look like an export's temporary file.
private func temporaryFiles(_ folder: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".tmp-") }
}

/// The file type bits of `path` (lstat), or nil when it does not exist.
private func fileType(_ path: String) -> mode_t? {
    var info = stat()
    return lstat(path, &info) == 0 ? info.st_mode & S_IFMT : nil
}

/// A store with `lines` generated u.data rows.
private func filledStore(_ folder: String, lines: Int) throws -> (HistoryStore, String) {
    let store = try makeStore(folder)
    _ = try store.importFile(try writeFile(folder, "u.data", generatedUData(lines: lines)),
                             options: ImportOptions(format: .movieLensUData))
    return (store, store.path)
}

/// Runs `palr` with standard output going to `outputPath`; returns (status, stderr).
private func runPalr(_ arguments: [String], stdoutTo outputPath: String) throws -> (status: Int32, error: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try palrExecutable())
    process.arguments = arguments
    guard let output = FileHandle(forWritingAtPath: outputPath) else { throw TestFailure("cannot open \(outputPath)") }
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let text = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: text, as: UTF8.self))
}

private let bundledModel = repositoryRoot.appendingPathComponent("models/palr-ml-small-q4_0.gguf").path
private let bundledCatalog = repositoryRoot.appendingPathComponent("models/ml-small-catalog.gguf").path

@Suite struct ExportFileTests {
    @Test func exportReplacesTheFileAtomicallyAndKeepsItsMode() throws {
        try withTemporaryDirectory { folder in
            let (store, _) = try filledStore(folder, lines: 500)
            let out = try writeFile(folder, "out.csv", "old\n")
            #expect(chmod(out, 0o640) == 0)
            #expect(try store.export(format: .csv, toFile: out) == 500)
            var expected = ""
            try store.export(format: .csv) { expected += $0 }
            #expect(try String(contentsOfFile: out, encoding: .utf8) == expected)
            var info = stat()
            #expect(stat(out, &info) == 0 && info.st_mode & 0o777 == 0o640)
            #expect(try temporaryFiles(folder).isEmpty)

            // A failed export (unknown profile) leaves the previous file and no temporary file.
            #expect(throws: HistoryError.unknownProfile("nobody")) {
                try store.export(format: .jsonl, profile: "nobody", toFile: out)
            }
            #expect(try String(contentsOfFile: out, encoding: .utf8) == expected)
            #expect(try temporaryFiles(folder).isEmpty)

            // A symlink is followed: its target is replaced, the link stays a link.
            let target = try writeFile(folder, "target.jsonl", "old\n")
            let link = folder + "/link.jsonl"
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
            try store.export(format: .jsonl, profile: "3", toFile: link)
            #expect(fileType(link) == S_IFLNK)
            #expect(try String(contentsOfFile: target, encoding: .utf8).hasPrefix("{\"id\":"))
        }
    }

    /// The database's WAL, shared-memory and journal files are protected too, whether
    /// or not they exist now, also when --db is a symbolic link (SQLite keeps them
    /// beside the real file) and through a hard link.
    @Test func theDatabasesCompanionFilesAreRefusedThroughLinks() throws {
        try withTemporaryDirectory { folder in
            let (store, real) = try filledStore(folder, lines: 100)
            store.close()
            let link = folder + "/link.sqlite"
            #expect(symlink(real, link) == 0)
            let viaLink = try HistoryStore(path: link)
            #expect(Glibc.link(real, folder + "/hard.sqlite") == 0)
            for target in [real + "-wal", real + "-shm", real + "-journal", real + "-reserve", link + "-wal", folder + "/hard.sqlite",
                           folder + "/./" + (real as NSString).lastPathComponent + "-wal"] {
                do {
                    try viaLink.export(format: .csv, toFile: target)
                    Issue.record("exported onto \(target)")
                } catch let error as HistoryError {
                    #expect("\(error)".contains("refusing to export onto the history database's own file"), "\(target): \(error)")
                }
            }
            // Opened through a hard link, the real name's WAL is still the database's.
            let viaHardLink = try HistoryStore(path: folder + "/hard.sqlite")
            for target in [real + "-wal", real + "-shm"] {
                #expect(throws: HistoryError.self, "\(target)") { try viaHardLink.export(format: .csv, toFile: target) }
            }
            viaHardLink.close()
            #expect(try viaLink.integrityCheck() == ["ok"] && viaLink.stats().interactions == 100)
            #expect(try temporaryFiles(folder).isEmpty)
        }
    }

    @Test func devicesFoldersFIFOsAndTheDatabaseAreRefused() throws {
        try withTemporaryDirectory { folder in
            let (store, path) = try filledStore(folder, lines: 100)
            #expect(throws: HistoryError.notARegularFile(path: "/dev/null", kind: "a character device")) {
                try store.export(format: .csv, toFile: "/dev/null")
            }
            #expect(fileType("/dev/null") == S_IFCHR)
            #expect(throws: HistoryError.notARegularFile(path: folder, kind: "a directory")) {
                try store.export(format: .csv, toFile: folder)
            }
            let fifo = folder + "/fifo"
            #expect(mkfifo(fifo, 0o600) == 0)
            #expect(throws: HistoryError.notARegularFile(path: fifo, kind: "a FIFO")) {
                try store.export(format: .csv, toFile: fifo)  // (opening it would block)
            }
            #expect(fileType(fifo) == S_IFIFO)
            #expect(throws: HistoryError.invalidArgument("refusing to export onto the history database's own file \(path) (\(path))")) {
                try store.export(format: .csv, toFile: path)
            }
            #expect(try store.integrityCheck() == ["ok"] && store.stats().interactions == 100)

            let missing = folder + "/no/such/folder/out.csv"
            do {
                try store.export(format: .csv, toFile: missing)
                Issue.record("exporting into a missing folder succeeded")
            } catch let error as HistoryError {
                #expect("\(error)".hasPrefix("cannot write \(missing): ") && "\(error)".contains("No such file"),
                        "\(error)")
            }
            #expect(try temporaryFiles(folder).isEmpty)
        }
    }
}

@Suite struct ReadOnlyTests {
    @Test func aReadOnlyStoreReadsEverythingAndWritesNothing() throws {
        try withTemporaryDirectory { folder in
            let (writer, path) = try filledStore(folder, lines: 300)
            #expect(!writer.isReadOnly)
            var expected = ""
            try writer.export(format: .csv) { expected += $0 }
            writer.close()
            let before = try Data(contentsOf: URL(fileURLWithPath: path))

            let store = try HistoryStore(path: path, options: .init(readOnly: true))
            #expect(store.isReadOnly)
            #expect(try store.profiles().count == 37)
            #expect(try store.recent(profile: "5", limit: 3).count == 3)
            #expect(try store.stats().interactions == 300)
            var csv = ""
            try store.export(format: .csv) { csv += $0 }
            #expect(csv == expected)
            for write in [{ try store.record(NewInteraction(profile: "5", item: "new", timestamp: 1)) },
                          { try store.forget(profile: "5") }, { try store.setRetentionCap(5) }] as [() throws -> Any] {
                do {
                    _ = try write()
                    Issue.record("a write on a read-only store succeeded")
                } catch let error as HistoryError {
                    guard case let .readOnly(errorPath, _, reason) = error else {
                        Issue.record("expected HistoryError.readOnly, got \(error)")
                        continue
                    }
                    #expect(errorPath == path && reason == "it was opened read-only")
                    #expect("\(error)".contains("\(path) is read-only"), "\(error)")
                }
            }
            #expect(try store.stats().interactions == 300)
            store.close()
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        }
    }

    @Test func readOnlyAndNoCreateNeverMakeAFile() throws {
        try withTemporaryDirectory { folder in
            let missing = folder + "/missing.sqlite"
            for options in [HistoryStore.Options(readOnly: true), .init(createIfMissing: false),
                            .init(createIfMissing: true, readOnly: true)] {
                do {
                    _ = try HistoryStore(path: missing, options: options)
                    Issue.record("opening a missing file succeeded")
                } catch let error as HistoryError {
                    #expect("\(error)".contains("no such file"), "\(error)")
                }
                #expect(!FileManager.default.fileExists(atPath: missing))
            }
            // An empty file would get the schema; read-only, that is a clear error and the file stays empty.
            let empty = try writeFile(folder, "empty.sqlite", "")
            #expect(throws: HistoryError.readOnly(path: empty, operation: "open", reason: "the file is empty (no "
                                                  + "palr schema yet), and creating the schema needs write access")) {
                try HistoryStore(path: empty, options: .init(readOnly: true))
            }
            #expect(fileSize(empty) == 0)
        }
    }

    /// File permissions only bind an unprivileged user (tests usually run as root).
    @Test(.enabled(if: geteuid() != 0)) func aFileWithoutWritePermissionIsReadOnly() throws {
        try withTemporaryDirectory { folder in
            let (writer, path) = try filledStore(folder, lines: 10)
            writer.close()
            #expect(chmod(path, 0o444) == 0)
            // Opened for writing, it is refused before SQLite could leave -wal/-shm files behind.
            #expect(throws: HistoryError.self) { try HistoryStore(path: path, options: .init(createIfMissing: false)) }
            let store = try HistoryStore(path: path, options: .init(readOnly: true))
            #expect(store.isReadOnly)
            #expect(try store.stats().interactions == 10)
            #expect(throws: HistoryError.self) { try store.forget(profile: "1") }
        }
    }
}

@Suite struct CommandLineErrorTests {
    @Test func exportOntoSpecialFilesAndFailedWritesExitOne() throws {
        try withTemporaryDirectory { folder in
            let (_, db) = try filledStore(folder, lines: 50)
            var result = try runPalr(["history", "--db", db, "export", "-o", "/dev/full"])
            #expect(result.status == 1 && result.error.contains("/dev/full is not a regular file"), "\(result)")
            #expect(fileType("/dev/full") == S_IFCHR)
            result = try runPalr(["history", "--db", db, "export", "-o", folder])
            #expect(result.status == 1 && result.error.contains("\(folder) is not a regular file (it is a directory)"),
                    "\(result)")
            if FileManager.default.fileExists(atPath: "/proc/self") {
                result = try runPalr(["history", "--db", db, "export", "-o", "/proc/x"])
                #expect(result.status == 1 && result.error.contains("cannot write /proc/x: ")
                        && result.error.contains("No such file or directory"), "\(result)")
            }
            // Standard output on a full device: the failed write is an error.
            let full = try runPalr(["history", "--db", db, "export"], stdoutTo: "/dev/full")
            #expect(full.status == 1 && full.error.contains("cannot write standard output: No space left on device"),
                    "\(full)")
        }
    }

    /// `add --items-from FILE|-` (repeatable): ids from files or standard input after
    /// the ones on the command line, in that order, each exactly as it would be given
    /// as an argument (only a CRLF's CR and empty lines go); a bad id is named by file
    /// and line; nothing is recorded, and no database created, when a list fails.
    @Test func addReadsIdsFromFilesOrStandardInput() throws {
        func writeBytes(_ path: String, _ bytes: [UInt8]) throws -> String {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            return path
        }
        try withTemporaryDirectory { folder in
            let db = folder + "/h.sqlite"
            let first = try writeFile(folder, "ids.txt", "\u{FEFF}tt1\r\n  tt2  \n\ntt3")
            let second = try writeFile(folder, "more.txt", "tt3b\n")
            let missing = folder + "/missing.txt"
            let noDatabase = try runPalr(["history", "--db", db, "add", "--create-profile", "--profile", "p",
                                          "--items-from", first, "--items-from", missing])
            #expect(noDatabase.status == 1 && noDatabase.error.contains("missing.txt: cannot read: No such file"),
                    "\(noDatabase)")
            #expect(!FileManager.default.fileExists(atPath: db))
            let added = try runPalr(["history", "--db", db, "add", "--create-profile", "--profile", "p", "--time", "100",
                                     "--items-from", first, "--items-from", second, "tt0"])
            #expect(added.status == 0 && added.output == "1\n2\n3\n4\n5\n", "\(added)")
            let piped = try runPalrShell("printf 'tt4\\ntt5\\n' | \"$0\" history --db \"$1\" add --profile p --time 101 --items-from -",
                                         [try palrExecutable(), db])
            #expect(piped.status == 0 && piped.output == "6\n7\n", "\(piped)")
            let store = try HistoryStore(path: db)
            #expect(try store.recent(profile: "p").map(\.item) == ["tt0", "tt1", "  tt2  ", "tt3", "tt3b", "tt4", "tt5"])
            store.close()
            let failures: [([String], Int32, String)] = [
                (["--items-from", try writeFile(folder, "blank.txt", "\n\r\n")], 1, "blank.txt: no item ids in it"),
                (["--items-from", try writeFile(folder, "tab.txt", "ok\nbad\tid\n")], 1, "tab.txt:2: item id 'bad\\tid' contains a control character"),
                (["--items-from", try writeBytes(folder + "/utf.txt", [0x6f, 0x6b, 0x0a, 0xff])], 1, "utf.txt:2: not valid UTF-8"),
                (["--items-from", folder], 1, "cannot read: it is a folder"),
                (["--items-from", "-", "--items-from", "-"], 64, "--items-from - (standard input) can be given once"),
                ([], 64, "give item ids, or --items-from FILE"),
            ]
            for (arguments, status, message) in failures {
                let result = try runPalr(["history", "--db", db, "add", "--profile", "p"] + arguments)
                #expect(result.status == status && result.error.contains(message), "\(arguments): \(result)")
            }
            // Standard input that is a folder, or endless: an error, not a crash.
            let folderInput = try runPalrShell("\"$0\" history --db \"$1\" add --profile p --items-from - < \"$2\"",
                                               [try palrExecutable(), db, folder])
            #expect(folderInput.status == 1 && folderInput.error.contains("standard input: cannot read: it is a folder"),
                    "\(folderInput)")
            let endless = try runPalrShell("\"$0\" history --db \"$1\" add --profile p --items-from - < /dev/zero",
                                           [try palrExecutable(), db])
            #expect(endless.status == 1 && endless.error.contains("holds more than 64 MiB"), "\(endless)")
            #expect(try HistoryStore(path: db).interactionCount(profile: "p") == 7)
        }
    }

    /// `palr eval --tune-report` never replaces one of the run's inputs.
    @Test func aTuneReportOntoAnInputIsRefused() throws {
        try withTemporaryDirectory { folder in
            let items = try writeFile(folder, "movies.csv", "movieId,title,genres\n1,A (1999),x\n2,B (2000),y\n")
            let text = "userId,movieId,rating,timestamp\n1,1,5,10\n1,2,4,11\n"
            let ratings = try writeFile(folder, "ratings.csv", text)
            let result = try runPalr(["eval", "--items", items, "--interactions", ratings, "--grid", "window=5",
                                      "--tune-report", ratings])
            #expect(result.status == 1 && result.error.contains("it is the input \(ratings) of this run"), "\(result)")
            #expect(try String(contentsOfFile: ratings, encoding: .utf8) == text)
            let model = try writeFile(folder, "model.gguf", "not really a model")
            let ontoModel = try runPalr(["eval", "--items", items, "--interactions", ratings, "--model", model,
                                         "--grid", "window=5", "--tune-report", model])
            #expect(ontoModel.status == 1 && ontoModel.error.contains("it is the input \(model) of this run"), "\(ontoModel)")
            #expect(try String(contentsOfFile: model, encoding: .utf8) == "not really a model")
        }
    }

    /// `import -` starts where standard input stands; a malformed file creates no
    /// database; a long header is cut in the message; a message to a full stderr does
    /// not crash palr.
    @Test func importEdgesOfStandardInputAndErrors() throws {
        try withTemporaryDirectory { folder in
            let db = folder + "/h.sqlite"
            let data = try writeFile(folder, "two.data", "1\t10\t5\t100\n2\t11\t4\t101\n")
            let consumed = try runPalrShell("{ read first; exec \"$0\" history --db \"$1\" import --format udata -; } < \"$2\"",
                                            [try palrExecutable(), db, data])
            #expect(consumed.status == 0 && consumed.output.contains("imported 1 interactions"), "\(consumed)")
            // ... and leaves it at its end, as reading it would.
            let after = try runPalrShell("{ \"$0\" history --db \"$1\" import --format udata - >/dev/null; echo \"rest:$(cat)\"; } < \"$2\"",
                                         [try palrExecutable(), folder + "/h2.sqlite", data])
            #expect(after.status == 0 && after.output == "rest:\n", "\(after)")
            let fresh = folder + "/fresh.sqlite"
            let bad = try runPalr(["history", "--db", fresh, "import", "--format", "udata",
                                   try writeFile(folder, "bad.data", "1\t10\t5\t100\nnot a line\n")])
            #expect(bad.status == 1 && bad.error.contains("bad.data:2:"), "\(bad)")
            #expect(!FileManager.default.fileExists(atPath: fresh))
            let header = (0..<400).map { "column\($0)" }.joined(separator: ",")
            let wide = try runPalr(["history", "--db", db, "import", "--format", "csv", "--profile-column", "who",
                                    "--item-column", "what", "--time-column", "when",
                                    try writeFile(folder, "wide.csv", header + "\n")])
            #expect(wide.status == 1 && wide.error.contains("no column named 'who'") && wide.error.utf8.count < 600,
                    "\(wide.error.utf8.count) bytes")
            let full = try runPalrShell("exec \"$0\" history --db \"$1\" list 2>/dev/full", [try palrExecutable(), folder + "/none.sqlite"])
            #expect(full.status == 1, "\(full)")
        }
    }

    /// `palr history import FIFO`: the command opens the pipe once (an earlier check
    /// opened it twice and then waited for a writer that had gone).
    @Test func importReadsANamedPipe() throws {
        try withTemporaryDirectory { folder in
            let fifo = folder + "/ratings.fifo"
            #expect(mkfifo(fifo, 0o600) == 0)
            let result = try runPalrShell(
                "printf '1\\t10\\t5\\t100\\n2\\t11\\t4\\t101\\n' > \"$2\" & timeout 20 \"$0\" history --db \"$1\" import --format udata \"$2\"",
                [try palrExecutable(), folder + "/h.sqlite", fifo])
            #expect(result.status == 0 && result.output.contains("imported 2 interactions"), "\(result)")
            // "-" is standard input.
            let piped = try runPalrShell("printf '3\\t12\\t5\\t102\\n' | \"$0\" history --db \"$1\" import --format udata -",
                                         [try palrExecutable(), folder + "/h.sqlite"])
            #expect(piped.status == 0 && piped.output.contains("imported 1 interactions"), "\(piped)")
            let bad = try runPalrShell("printf 'x\\n' | \"$0\" history --db \"$1\" import --format udata -",
                                       [try palrExecutable(), folder + "/h.sqlite"])
            #expect(bad.status == 1 && bad.error.contains("standard input:1: expected 4 fields"), "\(bad)")
        }
    }

    /// (Off under ThreadSanitizer, whose runtime dies of SIGBUS at start-up under `ulimit -f`.)
    @Test(.enabled(if: dlsym(nil, "__tsan_init") == nil, "ThreadSanitizer's runtime cannot start under ulimit -f"))
    func exportOverTheFileSizeLimitKeepsThePreviousFile() throws {
        try withTemporaryDirectory { folder in
            let (_, db) = try filledStore(folder, lines: 8000)  // about 200 KB of CSV
            let out = try writeFile(folder, "out.csv", "previous\n")
            let palr = try palrExecutable()
            // ulimit -f counts 512-byte blocks in dash, 1024-byte ones in bash: 48 or 96 KB.
            let result = try runPalrShell("ulimit -f 96 && exec \"$0\" history --db \"$1\" export -o \"$2\"",
                                          [palr, db, out])
            #expect(result.status == 1 && result.error.contains("cannot write \(out): File too large"), "\(result)")
            #expect(try String(contentsOfFile: out, encoding: .utf8) == "previous\n")
            #expect(try temporaryFiles(folder).isEmpty)
        }
    }

    /// SIGKILL in the middle of an export: the old file, or the complete new one, never a
    /// part. SIGTERM and SIGINT: the same, and the temporary file is removed too.
    @Test(arguments: [SIGKILL, SIGTERM, SIGINT])
    func aKilledExportLeavesThePreviousFile(signal: Int32) throws {
        try withTemporaryDirectory { folder in
            let (store, db) = try filledStore(folder, lines: 60_000)
            var expected = ""
            try store.export(format: .csv) { expected += $0 }
            store.close()
            let out = try writeFile(folder, "out.csv", "previous\n")
            let child = try ChildProcess(try palrExecutable(), ["history", "--db", db, "export", "-o", out])
            // Kill as soon as output is being written: a temporary file with data, or out.csv changed.
            let deadline = Date().addingTimeInterval(30)
            while child.isRunning && Date() < deadline {
                let started = try temporaryFiles(folder).contains { fileSize(folder + "/" + $0) > 0 }
                if started || fileSize(out) != 9 { break }
                usleep(200)
            }
            child.kill(signal)
            child.wait()
            let text = try String(contentsOfFile: out, encoding: .utf8)
            #expect(text == "previous\n" || text == expected, "out.csv has \(text.utf8.count) bytes")
            if signal != SIGKILL {
                let left = try temporaryFiles(folder)
                #expect(left.isEmpty, "left: \(left)")
            }
        }
    }

    /// `palr demo` keeps its scratch store in a private folder under $TMPDIR. SIGTERM or
    /// SIGINT while that store is in use removes the folder, as a normal end does. Runs
    /// until a child has really died of the signal (not finished first), at most 10 times.
    @Test(arguments: [SIGTERM, SIGINT])
    func aSignalledDemoRemovesItsScratchFolder(signal: Int32) throws {
        try withTemporaryDirectory { folder in
            var signalled = 0
            for _ in 0..<10 where signalled == 0 {
                let child = try ChildProcess(try palrExecutable(), ["demo"], environment: ["TMPDIR": folder])
                let deadline = Date().addingTimeInterval(30)
                while child.isRunning && Date() < deadline {
                    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
                    if names.contains(where: { FileManager.default.fileExists(atPath: folder + "/" + $0 + "/history.sqlite") }) {
                        break
                    }
                    usleep(100)
                }
                child.kill(signal)
                child.wait()
                if child.terminationReason == .uncaughtSignal {
                    signalled += 1
                    #expect(child.terminationStatus == signal)
                } else {
                    #expect(child.terminationStatus == 0, "\(child.errorOutput)")
                }
                let left = try FileManager.default.contentsOfDirectory(atPath: folder)
                #expect(left.isEmpty, "left in TMPDIR: \(left)")
            }
            #expect(signalled == 1, "every demo run finished before the signal")
        }
    }

    /// `--kind= m1 m2` used to record m2 with kind "m1": an option written with `=` and
    /// no value is a usage error, before anything is opened.
    @Test func anOptionWithAnEmptyInlineValueIsRefused() throws {
        try withTemporaryDirectory { folder in
            let db = folder + "/e.sqlite"
            for option in ["--kind=", "--time="] {
                let result = try runPalr(["history", "--db", db, "add", "--profile", "2", "--create-profile", option, "m1", "m2"])
                #expect(result.status == 64 && result.error.contains("Error: \(option) has an empty value"), "\(result)")
            }
            #expect(!FileManager.default.fileExists(atPath: db))
        }
    }

    /// Closed, full or unreadable standard streams: one error line and status 1, never a
    /// trap (FileHandle's non-throwing read and write trapped) nor output lost with status 0.
    @Test func closedOrFullStandardStreamsAreErrors() throws {
        let model = repositoryRoot.appendingPathComponent("models/palr-ml-small-q4_0.gguf").path
        let palr = try palrExecutable()
        let cases: [(String, String)] = [
            ("exec \"$0\" info --model \"$1\" >/dev/full", "Error: cannot write standard output: No space left on device"),
            ("exec \"$0\" info --model \"$1\" >&-", "Error: cannot write standard output: it is closed"),
            ("exec \"$0\" generate --model \"$1\" --prompt hi -n 3 >/dev/full",
             "Error: cannot write standard output: No space left on device"),
            ("exec \"$0\" generate --model \"$1\" --prompt hi -n 3 >&-", "Error: cannot write standard output: it is closed"),
            ("exec \"$0\" tokenize --model \"$1\" <&-", "Error: standard input: cannot read: it is closed"),
            ("exec \"$0\" tokenize --model \"$1\" --jsonl <&-", "Error: standard input: cannot read: it is closed"),
            ("exec \"$0\" tokenize --model \"$1\" </", "Error: standard input: cannot read: Is a directory"),
        ]
        for (script, expected) in cases {
            let child = try ChildProcess("/bin/sh", ["-c", script, palr, model])
            child.wait()
            #expect(child.terminationReason == .exit && child.terminationStatus == 1,
                    "\(script): \(child.terminationReason) \(child.terminationStatus) \(child.errorOutput)")
            #expect(child.errorOutput.contains(expected) && !child.errorOutput.contains("Fatal error"),
                    "\(script): \(child.errorOutput)")
        }
    }

    /// With one descriptor free, `eval --model` (its work pool) trapped in libdispatch
    /// (SIGILL, no message) and `demo` could not open its store. A low soft limit is now
    /// raised towards the hard one; a hard limit too low is one error line before any work.
    @Test func fewFileDescriptorsAreRaisedOrRefusedNotACrash() throws {
        let model = repositoryRoot.appendingPathComponent("models/palr-ml-small-q4_0.gguf").path
        let palr = try palrExecutable()
        // (script, what its output shows when it ran); $1 is ML-latest-small's folder.
        var commands = [("exec \"$0\" demo", "  1. ")]
        let data = movieLens100K.map { URL(fileURLWithPath: $0).deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("ml-latest-small").path }
        if data != nil {
            commands.append(("exec \"$0\" eval --items \"$1/movies.csv\" --interactions \"$1/ratings.csv\" --users 5 --model \"$2\"",
                             "pipeline "))
        }
        for (command, shown) in commands {
            let soft = try ChildProcess("/bin/sh", ["-c", "ulimit -Sn 4 && " + command, palr, data ?? "/nonexistent", model])
            soft.wait()
            #expect(soft.terminationReason == .exit && soft.terminationStatus == 0,
                    "\(command): \(soft.terminationReason) \(soft.terminationStatus) \(soft.errorOutput)")
            #expect(soft.output.contains(shown), "\(command): \(soft.output)")
        }
        for command in commands.map(\.0) + ["exec \"$0\" --help"] {
            let hard = try ChildProcess("/bin/sh", ["-c", "ulimit -n 4 && " + command, palr, "/nonexistent", model])
            hard.wait()
            #expect(hard.terminationReason == .exit && hard.terminationStatus == 1, "\(command): \(hard.terminationReason) \(hard.terminationStatus)")
            #expect(hard.errorOutput == "Error: only 1 file descriptor is free (ulimit -n: 4); palr needs at least 16: raise the limit\n",
                    "\(command): \(hard.errorOutput)")
            #expect(hard.output.isEmpty)
        }
    }

    /// Where /dev/null cannot be opened (a chroot or container without it), the start-up
    /// descriptor count probed with it, counted 0 free and refused every command: "only 0
    /// file descriptors are free (ulimit -n: 20000)". A failure that is not the limit is not
    /// a shortage; a real shortage there is still refused.
    @Test(.enabled(if: canMountScratchDisk, "needs `unshare -m` and `mount -t tmpfs`"))
    func aMissingDevNullIsNoShortageOfDescriptors() throws {
        let palr = try palrExecutable()
        let script = "mount -t tmpfs tmpfs /dev || exit 99\n[ ! -e /dev/null ] || exit 98\n"
        let plenty = try ChildProcess("/usr/bin/unshare", ["-m", "/bin/sh", "-c", script + "exec \"$0\" --help", palr])
        plenty.wait()
        #expect(plenty.terminationReason == .exit && plenty.terminationStatus == 0,
                "\(plenty.terminationReason) \(plenty.terminationStatus) \(plenty.errorOutput)")
        #expect(plenty.output.contains("USAGE"), "\(plenty.output)")
        let few = try ChildProcess("/usr/bin/unshare", ["-m", "/bin/sh", "-c", script + "ulimit -n 4 && exec \"$0\" --help", palr])
        few.wait()
        #expect(few.terminationStatus == 1 && few.errorOutput.hasPrefix("Error: only 1 file descriptor is free (ulimit -n: 4)"),
                "\(few.terminationStatus) \(few.errorOutput)")
    }

    /// The default database from the environment: a non-UTF-8 $PALR_DB is refused (it
    /// would become another path), a bare file name is in the current folder, and a
    /// file where a folder must be created is named.
    @Test func theDefaultDatabaseFromAnOddEnvironment() throws {
        try withTemporaryDirectory { folder in
            let palr = try palrExecutable()
            let file = try writeFile(folder, "file", "x")
            func run(_ script: String) throws -> (status: Int32, error: String) {
                let child = try ChildProcess("/bin/sh", ["-c", "cd \"$1\" && " + script, palr, folder])
                child.wait()
                return (child.terminationStatus, child.errorOutput)
            }
            let add = "history add --profile a --create-profile x"
            let bad = try run("PALR_DB=\"$1/$(printf '\\377').sqlite\" exec \"$0\" " + add)
            #expect(bad.status == 64 && bad.error.contains("$PALR_DB is not valid UTF-8"), "\(bad)")
            let relative = try run("PALR_DB=rel.sqlite exec \"$0\" " + add)
            #expect(relative.status == 0 && FileManager.default.fileExists(atPath: folder + "/rel.sqlite"), "\(relative)")
            let blocked = try run("HOME=\(file) exec env -u PALR_DB -u XDG_DATA_HOME \"$0\" " + add)
            #expect(blocked.status == 1 && blocked.error.contains("\(file) is not a folder"), "\(blocked)")
            let names = try FileManager.default.contentsOfDirectory(atPath: folder)
            #expect(!names.contains { $0.contains("\u{FFFD}") }, "\(names)")
        }
    }

    @Test func usageErrorsExit64WithTheSubcommandsUsage() throws {
        try withTemporaryDirectory { folder in
            let (_, db) = try filledStore(folder, lines: 10)
            let cases: [([String], String, String)] = [
                (["export", "--format", "xml"], "'xml' is invalid for '--format", "Usage: palr history export"),
                (["list", "--limit", "-1"], "--limit must be at least 0 (got -1)", "Usage: palr history list"),
                (["import", "--format", "csv", folder + "/u.data"], "--format csv needs --profile-column",
                 "Usage: palr history import"),
                (["compact", "--retention-cap", "0"], "--retention-cap must be at least 1 (got 0)",
                 "Usage: palr history compact"),
                (["add", "--profile", "1", "--time", "-5", "x"], "--time must be Unix seconds", "Usage: palr history add"),
                (["add", "--profile", "1", "--value", "nan", "x"],
                 "--value must be a finite number in decimal notation (got \"nan\")", "Usage: palr history add"),
            ]
            for (arguments, message, usage) in cases {
                let result = try runPalr(["history", "--db", db] + arguments)
                #expect(result.status == 64 && result.error.contains(message) && result.error.contains(usage),
                        "\(arguments): \(result)")
            }
        }
    }

    @Test func onlyAddAndImportCreateADatabase() throws {
        try withTemporaryDirectory { folder in
            let missing = folder + "/missing.sqlite"
            let pipeline = ["--model", bundledModel, "--catalog", bundledCatalog, "--db", missing]
            for arguments in [["recommend"] + pipeline + ["--profile", "1"], ["refresh"] + pipeline + ["--all-stale"],
                              ["profile"] + pipeline + ["--profile", "1"],
                              ["history", "--db", missing, "list"], ["history", "--db", missing, "export"],
                              ["history", "--db", missing, "add", "--profile", "p", "i1"]] {
                let result = try runPalr(arguments)
                #expect(result.status == 1 && (result.error.contains("\(missing) does not exist")
                                               || result.error.contains("no such file")), "\(arguments): \(result)")
                #expect(!FileManager.default.fileExists(atPath: missing), "\(arguments) created \(missing)")
            }
            let result = try runPalr(["history", "--db", missing, "import", "--format", "udata", folder + "/none.data"])
            #expect(result.status == 1 && result.error.contains("none.data: cannot read the file: No such file"),
                    "\(result)")
            #expect(!FileManager.default.fileExists(atPath: missing))
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: bundledModel)))
    func refreshExitsOneWhenAProfileFails() throws {
        try withTemporaryDirectory { folder in
            let (_, db) = try filledStore(folder, lines: 10)
            let result = try runPalr(["refresh", "--model", bundledModel, "--catalog", bundledCatalog, "--db", db,
                                      "--profile", "nobody"])
            #expect(result.status == 1 && result.error.contains("nobody: ")
                    && result.error.contains("1 of 1 profile(s) failed"), "\(result)")
        }
    }

    @Test func numericOptionsAreRangeChecked() throws {
        let pipeline = ["--model", bundledModel, "--catalog", bundledCatalog, "--db", "/nonexistent/h.sqlite"]
        let cases: [([String], String)] = [
            (["recommend", "--profile", "1", "--k", "0"], "--k must be between 1 and 100 (got 0)"),
            (["recommend", "--profile", "1", "--k", "-1"], "--k must be between 1 and 100 (got -1)"),
            (["refresh", "--all-stale", "--k", "0"], "--k must be between 1 and 100 (got 0)"),
            (["recommend", "--profile", "1", "--candidates", "0"], "--candidates must be between 1 and 100 (got 0)"),
            (["recommend", "--profile", "1", "--candidates", "1"], "--candidates (1) must be at least --k (10)"),
            (["recommend", "--profile", "1", "-t", "0"], "-t must be between 1 and 256 (got 0)"),
            (["recommend", "--profile", "1", "-t", "1000"], "-t must be between 1 and 256 (got 1000)"),
            (["profile", "--profile", "1", "-t", "-2"], "-t must be between 1 and 256 (got -2)"),
            (["recommend", "--profile", "1", "--repeat", "0"], "--repeat must be at least 1 (got 0)"),
        ]
        for (arguments, message) in cases {
            let result = try runPalr([arguments[0]] + pipeline + arguments.dropFirst())
            #expect(result.status == 64 && result.error.contains(message), "\(arguments): \(result)")
        }
    }
}

/// Runs `/bin/sh -c script palr args…`; returns (status, stdout, stderr).
private func runPalrShell(_ script: String, _ arguments: [String]) throws
    -> (status: Int32, output: String, error: String) {
    let child = try ChildProcess("/bin/sh", ["-c", script] + arguments)
    child.wait()
    return (child.terminationStatus, child.output, child.errorOutput)
}

/// Swift would decode invalid UTF-8 arguments with U+FFFD, merging different byte
/// strings into one profile or item id: palr refuses them before doing anything.
@Suite struct RawArgumentTests {
    @Test func invalidUTF8ArgumentsAreRefusedAndCreateNothing() throws {
        try withTemporaryDirectory { folder in
            let exe = try palrExecutable()
            let db = folder + "/u.sqlite"
            let args: [[UInt8]] = [Array(exe.utf8), Array("history".utf8), Array("--db".utf8), Array(db.utf8),
                                   Array("add".utf8), Array("--create-profile".utf8), Array("--profile".utf8),
                                   Array("q".utf8), [0xFF, 0xFE, 0x62, 0x61, 0x64]]
            var argv: [UnsafeMutablePointer<CChar>?] = args.map { bytes in
                let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
                for (i, b) in bytes.enumerated() { p[i] = CChar(bitPattern: b) }
                p[bytes.count] = 0
                return p
            }
            argv.append(nil)
            defer { for p in argv { p?.deallocate() } }
            var pid: pid_t = 0
            #expect(posix_spawn(&pid, exe, nil, nil, argv, environ) == 0)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
            #expect((status >> 8) & 0xFF == 64, "exit status \((status >> 8) & 0xFF)")
            #expect(!FileManager.default.fileExists(atPath: db))
        }
    }
}
