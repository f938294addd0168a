import Foundation
import Testing
@testable import Convert

#if canImport(Glibc)
import Glibc
#endif

/// palr-convert's handling of its inputs and outputs: -o onto a shard whatever its name,
/// an empty -o, a closed stderr, and catalog inputs that match nothing.
@Suite struct CommandLineInputTests {
    /// A shard the index names shard2.gguf is an input like any other: -o cannot replace
    /// it. Other .gguf files in the folder (earlier outputs) may still be replaced.
    @Test func anOutputOntoAShardNamedGGUFIsRefused() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        try d.copy(from: fixture("tiny-sharded"))
        try FileManager.default.moveItem(atPath: d.file("model-00002-of-00002.safetensors"), toPath: d.file("shard2.gguf"))
        let index = d.file("model.safetensors.index.json")
        let text = try String(contentsOfFile: index, encoding: .utf8)
        try text.replacingOccurrences(of: "model-00002-of-00002.safetensors", with: "shard2.gguf")
            .write(toFile: index, atomically: false, encoding: .utf8)
        let shard = try Data(contentsOf: URL(fileURLWithPath: d.file("shard2.gguf")))

        guard let r = try runPalrConvert(["hf", d.path, "--type", "f32", "-o", d.file("shard2.gguf")]) else { return }
        #expect(r.status == 1 && r.err.contains("\(d.file("shard2.gguf")) is an input of this run"), "\(r.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: d.file("shard2.gguf"))) == shard)
        #expect(!d.contents.contains { $0.contains(".tmp-") })

        for _ in 0..<2 {
            guard let r = try runPalrConvert(["hf", d.path, "--type", "f32", "-o", d.file("model.gguf")]) else { return }
            #expect(r.status == 0, "\(r.err)")
        }
    }

    /// An empty -o is a usage error before any work (it used to fail at the final rename).
    @Test func anEmptyOutputIsRefusedInValidation() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let items = d.file("items.csv"), ratings = d.file("ratings.csv")
        #expect(FileManager.default.createFile(atPath: items, contents: Data("movieId,title,genres\n1,A (1999),x\n".utf8)))
        #expect(FileManager.default.createFile(atPath: ratings, contents: Data("userId,movieId,rating,timestamp\n1,1,5,10\n".utf8)))
        for args in [["hf", fixture("tiny-f32")], ["random", "--shape", "tiny"], ["catalog", "--items", items, "--interactions", ratings]] {
            guard let r = try runPalrConvert(args + ["-o", ""]) else { return }
            #expect(r.status == 64 && r.err.contains("-o/--output must name a file (got an empty path)"), "\(args): \(r.status) \(r.err)")
        }
    }

    /// stderr is a pipe nobody reads (its reading end closed before the start, as when
    /// `| head -1` has exited): every progress line fails with EPIPE, and the conversion
    /// still finishes instead of dying of SIGPIPE and leaving its temporary.
    @Test func aClosedStderrDoesNotKillAConversion() throws {
        guard let exe = palrConvertExecutable() else { Issue.record("the palr-convert executable was not built"); return }
        let d = try TempDir()
        defer { d.cleanUp() }
        let pipe = Pipe()
        try pipe.fileHandleForReading.close()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["random", "--shape", "tiny", "--threads", "1", "-o", d.file("m.gguf")]
        p.standardError = pipe
        p.standardOutput = pipe
        try p.run()
        try pipe.fileHandleForWriting.close()
        p.waitUntilExit()
        #expect(p.terminationReason == .exit && p.terminationStatus == 0, "\(p.terminationReason) \(p.terminationStatus)")
        #expect(d.contents == ["m.gguf"])
    }

    func writeCatalogInputs(_ d: TempDir, items: String, ratings: String) {
        #expect(FileManager.default.createFile(atPath: d.file("items.csv"), contents: Data(items.utf8)))
        #expect(FileManager.default.createFile(atPath: d.file("ratings.csv"), contents: Data(ratings.utf8)))
    }

    /// No interaction names a known item: an error (a pack without popularity or
    /// neighbours is useless). More than half unknown: a warning, and the pack.
    @Test func interactionsOfAnotherDataSetAreCaught() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let items = "movieId,title,genres\n1,A (1999),x\n2,B (2000),y\n3,C (2001),z\n"
        writeCatalogInputs(d, items: items, ratings: "userId,movieId,rating,timestamp\n1,7,5,10\n1,8,4,11\n2,9,3,12\n")
        let args = ["catalog", "--items", d.file("items.csv"), "--interactions", d.file("ratings.csv"), "-o", d.file("c.gguf")]
        guard let r = try runPalrConvert(args) else { return }
        #expect(r.status == 1, "\(r.err)")
        #expect(r.err.contains("no interaction in \(d.file("ratings.csv")) names an item of \(d.file("items.csv")) "
                               + "(all 3 skipped, 3 distinct item ids unknown): ids from a different data set?"), "\(r.err)")
        #expect(!d.contents.contains { $0.hasPrefix("c.gguf") })

        writeCatalogInputs(d, items: items, ratings: "userId,movieId,rating,timestamp\n1,1,5,10\n1,2,4,11\n1,8,4,12\n2,9,3,13\n2,7,3,14\n")
        guard let w = try runPalrConvert(args) else { return }
        #expect(w.status == 0, "\(w.err)")
        #expect(w.err.contains("warning: 3 of 5 interactions in \(d.file("ratings.csv")) (60.0%) name items not in \(d.file("items.csv")) "
                               + "and were skipped: ids from a different data set?"), "\(w.err)")

        writeCatalogInputs(d, items: items, ratings: "userId,movieId,rating,timestamp\n1,1,5,10\n1,2,4,11\n1,8,4,12\n")
        guard let ok = try runPalrConvert(args) else { return }
        #expect(ok.status == 0 && !ok.err.contains("warning"), "\(ok.err)")
    }

    /// An item file without item rows is named at once, with lone CR line ends pointed out.
    @Test func anItemFileWithoutRowsIsNamed() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let ratings = "userId,movieId,rating,timestamp\n1,1,5,10\n"
        let args = ["catalog", "--items", d.file("items.csv"), "--interactions", d.file("ratings.csv"), "-o", d.file("c.gguf")]
        writeCatalogInputs(d, items: "movieId,title,genres\n", ratings: ratings)
        guard let r = try runPalrConvert(args) else { return }
        #expect(r.status == 1 && r.err.contains("\(d.file("items.csv")) holds no item rows") && !r.err.contains("lone CR"), "\(r.err)")

        writeCatalogInputs(d, items: "movieId,title,genres\r1,A (1999),x\r2,B (2000),y\r", ratings: ratings)
        guard let cr = try runPalrConvert(args) else { return }
        #expect(cr.status == 1 && cr.err.contains("\(d.file("items.csv")) holds no item rows (its lines end with lone CRs"), "\(cr.err)")
        #expect(!d.contents.contains { $0.hasPrefix("c.gguf") })
    }
}
