// A catalog (or model) file changed in place while a running palr has it mapped: what a
// box's scheduler does with `cp new.gguf catalog.gguf` while `palr refresh` runs.
// Truncated: the next touch of a page past the new end raises SIGBUS, which palr now
// reports as one line naming the file, exit 1 (it was a Swift crash report, "Bus
// error"). Rewritten with other bytes at the same size: the neighbour ids checked at
// open are read again from the mapping, and out of range they indexed the retriever's
// scratch arrays unchecked (a segmentation fault, or memory overwritten).
import Foundation
import Testing

@Suite struct MappedInputChangeTests {
    static let catalog = repositoryRoot.appendingPathComponent("models/ml-small-catalog.gguf").path

    /// `palr retrieve` looping over a copy of the bundled catalog (reading the neighbour
    /// rows of three items again and again), started and given time to load: until it has
    /// used a second of CPU time (loading takes about 0.25 s of it in a debug build). A
    /// fixed wall-clock wait was not enough on a loaded machine: at a load average of 7.5
    /// on 2 cores start and load took 0.95 s of the 1.5 s it waited, and a file changed
    /// before it is opened fails its checks instead (a different error, or none).
    private func loopingRetrieve(_ folder: String) throws -> (ChildProcess, String) {
        let copy = folder + "/catalog.gguf"
        try FileManager.default.copyItem(atPath: Self.catalog, toPath: copy)
        let child = try ChildProcess(try palrExecutable(),
                                     ["retrieve", "--catalog", copy, "--items", "1,2,3", "--n", "5", "--repeat", "2000000000"])
        let deadline = Date().addingTimeInterval(120)
        while child.isRunning && (Self.cpuSeconds(child.pid) ?? 0) < 1 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        try #require(child.isRunning, "retrieve ended early: \(child.errorOutput)")
        try #require((Self.cpuSeconds(child.pid) ?? 0) >= 1, "retrieve used less than 1 s of CPU in 120 s")
        return (child, copy)
    }

    /// User and system CPU seconds of a running process (/proc/PID/stat fields 14 and 15).
    static func cpuSeconds(_ pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let name = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: name)...].split(separator: " ")   // fields[0] is field 3
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    private func waitForEnd(_ child: ChildProcess, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while child.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        return !child.isRunning
    }

    @Test func aCatalogTruncatedWhileMappedIsNamedNotACrash() throws {
        try #require(FileManager.default.fileExists(atPath: Self.catalog))
        try withTemporaryDirectory { folder in
            let (child, copy) = try loopingRetrieve(folder)
            #expect(truncate(copy, 64 * 1024) == 0)
            let ended = waitForEnd(child, seconds: 20)
            if !ended { child.kill() }
            child.wait()
            #expect(ended)
            #expect(child.terminationReason == .exit && child.terminationStatus == 1,
                    "\(child.terminationReason) \(child.terminationStatus)")
            let lines = child.errorOutput.split(separator: "\n")
            #expect(lines.count == 1, "\(child.errorOutput)")
            #expect(child.errorOutput.hasPrefix("Error: \(copy) was truncated or could not be read while this process was reading it"),
                    "\(child.errorOutput)")
            #expect(!child.errorOutput.contains("crashed"))
        }
    }

    /// Every byte past the first 4 KiB (the tensors; the metadata was parsed at open)
    /// becomes 0x7F: neighbour ids 0x7F7F7F7F. Retrieval goes on (with nonsense
    /// candidates) instead of indexing 8 GiB past its arrays.
    @Test func aCatalogRewrittenInPlaceWhileMappedDoesNotCrash() throws {
        try #require(FileManager.default.fileExists(atPath: Self.catalog))
        try withTemporaryDirectory { folder in
            let (child, copy) = try loopingRetrieve(folder)
            let fd = open(copy, O_WRONLY)
            try #require(fd >= 0)
            var info = stat()
            #expect(fstat(fd, &info) == 0)
            let junk = [UInt8](repeating: 0x7F, count: Int(info.st_size) - 4096)
            #expect(junk.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 4096) } == junk.count)
            close(fd)
            let ended = waitForEnd(child, seconds: 2)
            child.kill()
            child.wait()
            #expect(!ended, "retrieve died: \(child.terminationReason) \(child.terminationStatus) \(child.errorOutput.prefix(300))")
            #expect(child.terminationReason == .uncaughtSignal && child.terminationStatus == SIGKILL)
        }
    }
}
