import Foundation
import GGUF
import Testing
@testable import Convert

#if canImport(Glibc)
import Glibc
#endif

/// The `palr-convert` executable the test build produced, beside the test bundle.
func palrConvertExecutable() -> String? {
    let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    return [bundleDir.appendingPathComponent("palr-convert").path, repoRoot.appendingPathComponent(".build/debug/palr-convert").path]
        .first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// Starts `palr-convert random --shape 1b -o out` (through `/bin/sh -c SCRIPT` when
/// `shell` is given: the script gets the executable as $0 and `out` as $1 and must
/// exec it) and waits until its temporary `out.tmp-PID` exists; nil if it never did.
func startLongConversion(out: String, shell: String? = nil) throws -> (process: Process, temporary: String)? {
    guard let exe = palrConvertExecutable() else { Issue.record("the palr-convert executable was not built"); return nil }
    let p = Process()
    let arguments = ["random", "--shape", "1b", "--threads", "1", "-o", out]
    if let shell {
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", shell, exe, out]
    } else {
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = arguments
    }
    p.standardError = FileHandle.nullDevice
    try p.run()
    let temp = out + ".tmp-\(p.processIdentifier)"   // exec keeps the shell's pid
    var waited = 0
    while fileType(temp) == nil && waited < 60_000 { usleep(10_000); waited += 10 }
    guard fileType(temp) == S_IFREG else {
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        Issue.record("no temporary appeared")
        return nil
    }
    return (p, temp)
}

/// Whether this test process (and so the executables built with it) runs under
/// ThreadSanitizer, whose runtime dies of SIGBUS at start-up under `ulimit -f`.
let underThreadSanitizer = dlsym(nil, "__tsan_init") != nil

/// Runs palr-convert; returns (exit status, stdout, stderr).
func runPalrConvert(_ args: [String], in dir: String? = nil) throws -> (status: Int32, out: String, err: String)? {
    guard let exe = palrConvertExecutable() else {
        Issue.record("the palr-convert executable was not built")
        return nil
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    if let dir { p.currentDirectoryURL = URL(fileURLWithPath: dir) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read both pipes before waiting, so a full pipe cannot block the child.
    // The reader's write happens before `read.wait()` returns (the semaphore orders them;
    // polling `Thread.isFinished` did not, as ThreadSanitizer reported).
    nonisolated(unsafe) var errData = Data()
    let read = DispatchSemaphore(value: 0)
    Thread {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        read.signal()
    }.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    read.wait()
    return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// Runs `/bin/sh -c script palr-convert args…` (stdout to /dev/null); returns how it
/// ended and its stderr, or nil when the executable was not built.
func runPalrConvertShell(_ script: String, _ arguments: [String]) throws
    -> (reason: Process.TerminationReason, status: Int32, err: String)? {
    guard let exe = palrConvertExecutable() else { Issue.record("the palr-convert executable was not built"); return nil }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", script, exe] + arguments
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return (p.terminationReason, p.terminationStatus, text)
}

/// A two-item movies.csv and a two-rating ratings.csv in `d`; returns their paths.
func writeTinyCatalogInputs(_ d: TempDir) -> (items: String, ratings: String) {
    let items = d.file("items.csv"), ratings = d.file("ratings.csv")
    #expect(FileManager.default.createFile(atPath: items, contents: Data("movieId,title,genres\n1,A (1999),x\n2,B (2000),y\n".utf8)))
    #expect(FileManager.default.createFile(atPath: ratings, contents: Data("userId,movieId,rating,timestamp\n1,1,5,10\n1,2,4,11\n".utf8)))
    return (items, ratings)
}

func fileType(_ path: String) -> mode_t? {
    var st = stat()
    return lstat(path, &st) == 0 ? st.st_mode & S_IFMT : nil
}

/// palr-convert's own checks: destinations, stale temporaries, numeric options, help.
/// Special files are made in a temp folder (mkfifo, a folder), never /dev/null or /dev/full.
@Suite(.serialized) struct ConvertCommandLineTests {
    @Test func libraryWritersRefuseAFIFOOrFolderAndLeaveThem() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let fifo = d.file("fifo.gguf"), folder = d.file("folder.gguf")
        #expect(mkfifo(fifo, 0o644) == 0)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        for out in [fifo, folder] {
            #expect(throws: ConvertError.self) { try convert(fixture("tiny-f32"), to: out) }
            #expect(throws: ConvertError.self) {
                var o = ConvertOptions()
                o.type = .f32
                try RandomModel.write(shape: .tiny, options: o, seed: 1, to: out)
            }
        }
        #expect(fileType(fifo) == S_IFIFO)
        #expect(fileType(folder) == S_IFDIR)
        #expect(Set(d.contents) == ["fifo.gguf", "folder.gguf"])
    }

    @Test func aFileForTheCheckpointFolderIsNamedAsSuch() throws {
        let config = fixture("tiny-f32") + "/config.json"
        #expect(throws: ConvertError.notAFolder(path: config, expected: "the Hugging Face checkpoint folder (the one holding config.json)")) {
            try ConversionPlan(directory: config, options: ConvertOptions())
        }
        #expect(ConvertError.notAFolder(path: config, expected: "the Hugging Face checkpoint folder (the one holding config.json)").description
                == "\(config) is a file, not a folder: pass the Hugging Face checkpoint folder (the one holding config.json)")
        // A missing folder is still "missing"; a LoRA adapter given as its config file is "a file".
        #expect(throws: ConvertError.missingFile(path: config + "-nope", what: "the Hugging Face checkpoint folder")) {
            try ConversionPlan(directory: config + "-nope", options: ConvertOptions())
        }
        let adapterConfig = fixture("lora-basic") + "/adapter_config.json"
        var o = ConvertOptions()
        o.loraDirectories = [adapterConfig]
        #expect(throws: ConvertError.notAFolder(path: adapterConfig, expected: "the PEFT LoRA adapter folder (the one holding adapter_config.json)")) {
            try ConversionPlan(directory: fixture("tiny-f32"), options: o)
        }
        guard let r = try runPalrConvert(["hf", config, "-o", "/tmp/palr-never-written-\(UUID().uuidString).gguf"]) else { return }
        #expect(r.status != 0)
        #expect(r.err.contains("\(config) is a file, not a folder: pass the Hugging Face checkpoint folder (the one holding config.json)"), "\(r.err)")
    }

    @Test func everySubcommandRefusesASpecialDestinationBeforeWork() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        #expect(mkfifo(d.file("fifo"), 0o644) == 0)
        try FileManager.default.createDirectory(atPath: d.file("folder"), withIntermediateDirectories: false)
        #expect(symlink("fifo", d.file("link-to-fifo")) == 0)
        let commands: [[String]] = [
            ["random", "--shape", "tiny"],
            ["hf", fixture("tiny-f32"), "--type", "f32"],
            // The item file does not exist: the destination is checked before anything is read.
            ["catalog", "--items", d.file("no-such-items.csv"), "--interactions", d.file("no-such-ratings.csv")],
        ]
        for args in commands {
            for (out, kind) in [("fifo", "a FIFO"), ("folder", "a directory"), ("link-to-fifo", "a symbolic link to \(d.path)/fifo, a FIFO")] {
                guard let r = try runPalrConvert(args + ["-o", d.file(out)]) else { return }
                #expect(r.status != 0, "\(args) -o \(out)")
                #expect(r.err.contains("\(d.file(out)) is not a regular file (it is \(kind)); palr-convert writes files atomically and will not replace it"),
                        "\(args): \(r.err)")
                #expect(!r.err.contains("wrote"))
            }
        }
        #expect(fileType(d.file("fifo")) == S_IFIFO)
        #expect(fileType(d.file("folder")) == S_IFDIR)
        #expect(fileType(d.file("link-to-fifo")) == S_IFLNK)
        #expect(Set(d.contents) == ["fifo", "folder", "link-to-fifo"])
    }

    @Test func aLinkedDestinationIsWrittenThroughAndStaysALink() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        #expect(FileManager.default.createFile(atPath: d.file("real.gguf"), contents: Data("old".utf8)))
        #expect(symlink("real.gguf", d.file("link.gguf")) == 0)
        guard let r = try runPalrConvert(["random", "--shape", "tiny", "--type", "f32", "-o", d.file("link.gguf")]) else { return }
        #expect(r.status == 0, "\(r.err)")
        #expect(fileType(d.file("link.gguf")) == S_IFLNK)
        #expect(try GGUFFile(path: d.file("real.gguf")).tensor(named: "output_norm.weight") != nil)
        #expect(Set(d.contents) == ["real.gguf", "link.gguf"])
    }

    @Test func staleTemporariesOfKilledRunsAreRemovedAndReported() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        // A run killed with SIGKILL mid-write leaves OUT.tmp-PID: make one for real.
        let out = d.file("m.gguf")
        guard let (p, temp) = try startLongConversion(out: out) else { return }
        let pid = p.processIdentifier
        usleep(100_000)
        kill(pid, SIGKILL)
        p.waitUntilExit()
        try #require(fileType(temp) == S_IFREG, "the killed run left no temporary")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: temp)[.size] as? Int)
        // Files that are not this OUT's temporaries of dead processes stay.
        let keep = ["m.gguf.tmp-1", "m.gguf.tmp-\(pid)x", "other.gguf.tmp-\(pid)"]
        for k in keep { #expect(FileManager.default.createFile(atPath: d.file(k), contents: Data())) }

        guard let r = try runPalrConvert(["random", "--shape", "tiny", "--type", "f32", "-o", out]) else { return }
        #expect(r.status == 0, "\(r.err)")
        #expect(r.err.contains("removed stale temporary \(temp) (\(formatBytes(size))) left by a killed run"), "\(r.err)")
        #expect(Set(d.contents) == Set(keep + ["m.gguf"]))
    }

    /// SIGTERM, SIGINT or SIGHUP mid-write: the temporary the writer locked is removed
    /// (FileSafety's handlers) and the previous file stays. (The child is spawned from a
    /// test thread that blocks these signals: palr-convert unblocks them itself.)
    @Test(arguments: [SIGTERM, SIGINT, SIGHUP])
    func aSignalledRunRemovesItsTemporary(signal: Int32) throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let out = d.file("m.gguf")
        #expect(FileManager.default.createFile(atPath: out, contents: Data("previous".utf8)))
        guard let (p, _) = try startLongConversion(out: out) else { return }
        usleep(100_000)
        kill(p.processIdentifier, signal)
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal && p.terminationStatus == signal)
        #expect(Set(d.contents) == ["m.gguf"])
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "previous")
    }

    /// A signal the parent set to be ignored (`nohup`, `cmd &` in a script) stays
    /// ignored; the others get the cleanup handler.
    @Test func inheritedIgnoredSignalsStayIgnored() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let out = d.file("m.gguf")
        guard let (p, _) = try startLongConversion(out: out, shell: "trap '' HUP; exec \"$0\" random --shape 1b --threads 1 -o \"$1\"")
        else { return }
        defer { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        let status = try String(contentsOfFile: "/proc/\(p.processIdentifier)/status", encoding: .utf8)
        func mask(_ field: String) -> UInt64 {
            let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
            return UInt64(line.split(separator: "\t").last ?? "", radix: 16) ?? 0
        }
        let bit = { (s: Int32) -> UInt64 in 1 << UInt64(s - 1) }
        #expect(mask("SigIgn") & bit(SIGHUP) != 0, "\(status)")
        #expect(mask("SigCgt") & bit(SIGHUP) == 0)
        #expect(mask("SigCgt") & bit(SIGTERM) != 0 && mask("SigCgt") & bit(SIGINT) != 0)
    }

    /// -o never replaces a file the run reads: a checkpoint file, a catalog input (also
    /// through a hard link), a tokenizer; nothing is written. And a write over the
    /// file-size limit is reported, not a silent SIGXFSZ death.
    @Test func anOutputOntoAnInputIsRefusedAndAFileSizeLimitReported() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        try d.copy(from: fixture("tiny-f32"))
        let (items, ratings) = writeTinyCatalogInputs(d)
        #expect(link(ratings, d.file("hard.csv")) == 0)
        let before = Dictionary(uniqueKeysWithValues: d.contents.map { ($0, FileManager.default.contents(atPath: d.file($0))) })
        let weights = d.contents.first { $0.hasSuffix(".safetensors") } ?? "model.safetensors"
        let cases: [([String], String)] = [
            (["hf", d.path, "-o", d.file(weights)], "is an input of this run"),
            (["hf", d.path, "-o", d.file("config.json")], "is an input of this run"),
            (["catalog", "--items", items, "--interactions", ratings, "-o", ratings], "is an input of this run"),
            (["catalog", "--items", items, "--interactions", ratings, "-o", d.file("hard.csv")],
             "is the same file as the input \(ratings)"),
            (["random", "--shape", "tiny", "--tokenizer", d.file("tokenizer.model"), "-o", d.file("tokenizer.model")],
             "is an input of this run"),
        ]
        for (arguments, message) in cases {
            guard let r = try runPalrConvert(arguments) else { return }
            #expect(r.status == 1 && r.err.contains(message), "\(arguments): \(r.err)")
        }
        let after = Dictionary(uniqueKeysWithValues: d.contents.map { ($0, FileManager.default.contents(atPath: d.file($0))) })
        #expect(after == before)
        // An earlier GGUF output in the checkpoint folder is not an input: converting twice works.
        for _ in 0..<2 {
            guard let r = try runPalrConvert(["hf", d.path, "-o", d.file("model.gguf")]) else { return }
            #expect(r.status == 0, "\(r.err)")
        }

        // ThreadSanitizer's runtime dies of SIGBUS at start-up under a file-size limit.
        guard !underThreadSanitizer else { return }
        guard let big = try runPalrConvertShell("ulimit -f 100; exec \"$0\" random --shape tiny -o \"$1\"", [d.file("big.gguf")])
        else { return }
        #expect(big.reason == .exit && big.status == 1, "\(big.reason) \(big.status)")
        #expect(big.err.contains("cannot write \(d.file("big.gguf")): File too large"), "\(big.err)")
        #expect(!d.contents.contains { $0.hasPrefix("big.gguf") })
    }

    /// Swift would decode `$'\xff.gguf'` as "\u{FFFD}.gguf" and write that file instead:
    /// an argument that is not UTF-8 is refused (usage error, 64) before anything runs.
    @Test func anArgumentThatIsNotUTF8IsRefused() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        guard let r = try runPalrConvertShell(#"exec "$0" random --shape tiny -o "$1/$(printf '\377').gguf""#, [d.path]) else { return }
        #expect(r.status == 64, "\(r.err)")
        #expect(r.err.contains("Error: argument 5 is not valid UTF-8 (bytes 2f") && r.err.contains("palr-convert takes"), "\(r.err)")
        #expect(d.contents.isEmpty, "written: \(d.contents)")
    }

    /// With almost no file descriptors left, libdispatch trapped (SIGILL, no message) when
    /// the conversion spread its work over threads. Now a low soft limit is raised towards
    /// the hard one, and a hard limit too low for that is one error line before any work.
    @Test func fewFileDescriptorsAreRaisedOrRefusedNotACrash() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let (items, ratings) = writeTinyCatalogInputs(d)
        func run(_ limit: String, _ out: String) throws -> (reason: Process.TerminationReason, status: Int32, err: String)? {
            try runPalrConvertShell("ulimit \(limit) 4 && exec \"$0\" catalog --items \"$1\" --interactions \"$2\" -o \"$3\"",
                                    [items, ratings, d.file(out)])
        }
        // Soft limit 4, hard limit as inherited: raised, the conversion runs.
        guard let soft = try run("-Sn", "soft.gguf") else { return }
        #expect(soft.reason == .exit && soft.status == 0, "\(soft)")
        #expect(d.contents.contains("soft.gguf"))
        // Hard limit 4 (one descriptor free after 0–2): refused, nothing written.
        guard let hard = try run("-n", "hard.gguf") else { return }
        #expect(hard.reason == .exit && hard.status == 1, "\(hard)")
        #expect(hard.err == "Error: only 1 file descriptor is free (ulimit -n: 4); palr-convert needs at least 16: raise the limit\n", "\(hard.err)")
        #expect(!d.contents.contains { $0.hasPrefix("hard.gguf") }, "\(d.contents)")
    }

    /// Every numeric option: negative numbers reach validation (no "Missing value"),
    /// and out-of-range or non-finite values are errors naming the option.
    @Test func numericOptionsAreCheckedAlike() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let out = d.file("never.gguf")
        let hf = ["hf", fixture("tiny-f32"), "-o", out]
        let random = ["random", "--shape", "tiny", "-o", out]
        let catalog = ["catalog", "--items", d.file("items.csv"), "--interactions", d.file("ratings.csv"), "-o", out]
        let cases: [([String], String)] = [
            (hf + ["--threads", "0"], "--threads must be at least 1 (got 0)"),
            (hf + ["--threads", "-2"], "--threads must be at least 1 (got -2)"),
            (random + ["--threads", "0"], "--threads must be at least 1 (got 0)"),
            (random + ["--threads", "-1"], "--threads must be at least 1 (got -1)"),
            (catalog + ["--threads", "0"], "--threads must be at least 1 (got 0)"),
            (catalog + ["--threads", "-1"], "--threads must be at least 1 (got -1)"),
            (hf + ["--max-history", "-1"], "--max-history must be between 1 and 65536 (got -1)"),
            (hf + ["--max-history", "0"], "--max-history must be between 1 and 65536 (got 0)"),
            (hf + ["--max-candidates", "70000"], "--max-candidates must be between 1 and 65536 (got 70000)"),
            (hf + ["--title-token-limit", "-5"], "--title-token-limit must be between 1 and 65536 (got -5)"),
            (hf + ["--retrieval-prior", "-0.5"], "--retrieval-prior must be a number between 0 and 1000 (got -0.5)"),
            (hf + ["--retrieval-prior", "nan"], "--retrieval-prior must be a number between 0 and 1000 (got nan)"),
            (hf + ["--retrieval-prior", "inf"], "--retrieval-prior must be a number between 0 and 1000 (got inf)"),
            (hf + ["--retrieval-prior", "1001"], "--retrieval-prior must be a number between 0 and 1000 (got 1001.0)"),
            (random + ["--seed", "-1"], "'--seed <seed>'"),
            (catalog + ["--k", "-1"], "--k must be between 1 and 10000 (got -1)"),
            (catalog + ["--k", "0"], "--k must be between 1 and 10000 (got 0)"),
            (catalog + ["--hold-out", "-1"], "--hold-out must be at least 0 (got -1)"),
            (catalog + ["--version", "-1"], "--version must be between 0 and 4294967295 (got -1)"),
            (catalog + ["--version", "4294967296"], "--version must be between 0 and 4294967295 (got 4294967296)"),
            // K given twice, differently: the later one won silently.
            (catalog + ["--k", "5", "--params", "k=7"], "--k 5 and --params k=7 disagree: give K once"),
        ]
        for (args, message) in cases {
            guard let r = try runPalrConvert(args) else { return }
            #expect(r.status != 0, "\(args)")
            #expect(r.err.contains(message), "\(args): \(r.err)")
            #expect(!r.err.contains("Missing value"), "\(args): \(r.err)")
        }
        #expect(d.contents.isEmpty)
    }

    @Test func hfHelpListsEveryPalrConfigKey() throws {
        guard let r = try runPalrConvert(["hf", "--help"]) else { return }
        #expect(r.status == 0)
        let help = r.out.replacingOccurrences(of: "\n", with: " ")
        for key in PalrSettings.jsonKeys { #expect(help.contains("\"\(key)\""), "hf --help does not list \(key)") }
        #expect(PalrSettings.jsonKeys.contains("retrieval_prior"))
        #expect(help.contains("retrieval prior 0 (off)"))
        // Every key the help lists is one the file reader accepts.
        let d = try TempDir()
        defer { d.cleanUp() }
        let json = #"{"prompt_template": "T {history}", "scoring_mode": "likelihood", "max_history": 5, "max_candidates": 30, "title_token_limit": 8, "retrieval_prior": 0.5}"#
        try json.write(toFile: d.file("palr.json"), atomically: true, encoding: .utf8)
        let s = try PalrSettings(jsonFile: d.file("palr.json"))
        #expect(s.retrievalPrior == 0.5 && s.maxCandidates == 30 && s.scoringMode == .likelihood)
    }
}

/// `palr.history_step` from the command line: `hf --history-step`, and `random
/// --palr-config`, whose settings are checked as `hf`'s are.
@Suite struct HistoryStepCommandTests {
    @Test func hfAndRandomWriteTheStepAndRefuseABadOne() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        guard let hf = try runPalrConvert(["hf", fixture("tiny-f32"), "--max-history", "10", "--history-step", "5",
                                           "-o", d.file("hf.gguf")]) else { return }
        #expect(hf.status == 0, "\(hf.err)")
        #expect(try GGUFFile(path: d.file("hf.gguf")).optionalInt("palr.history_step") == 5)
        let over = try runPalrConvert(["hf", fixture("tiny-f32"), "--history-step", "21", "-o", d.file("bad.gguf")])
        #expect(over?.status != 0 && over?.err.contains("palr.history_step") == true, "\(over?.err ?? "")")
        let zero = try runPalrConvert(["hf", fixture("tiny-f32"), "--history-step", "0", "-o", d.file("bad.gguf")])
        #expect(zero?.status != 0 && zero?.err.contains("--history-step") == true, "\(zero?.err ?? "")")
        #expect(!FileManager.default.fileExists(atPath: d.file("bad.gguf")))

        try #"{"history_step": 4}"#.write(toFile: d.file("step.json"), atomically: true, encoding: .utf8)
        guard let random = try runPalrConvert(["random", "--shape", "tiny", "--palr-config", d.file("step.json"),
                                               "-o", d.file("r.gguf")]) else { return }
        #expect(random.status == 0, "\(random.err)")
        let g = try GGUFFile(path: d.file("r.gguf"))
        #expect(try g.optionalInt("palr.history_step") == 4 && g.optionalInt("palr.max_history") == 20)
        try #"{"history_step": 40}"#.write(toFile: d.file("over.json"), atomically: true, encoding: .utf8)
        let bad = try runPalrConvert(["random", "--shape", "tiny", "--palr-config", d.file("over.json"), "-o", d.file("r2.gguf")])
        #expect(bad?.status != 0 && bad?.err.contains("palr.history_step") == true, "\(bad?.err ?? "")")
        #expect(!FileManager.default.fileExists(atPath: d.file("r2.gguf")))
    }
}
