// Helpers for the History tests: temporary folders, the shared MovieLens data,
// the built `palr` executable, and child processes.
import Foundation
import Testing

@testable import History

/// Runs `body` with a fresh folder that is removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let folder = FileManager.default.temporaryDirectory
        .appendingPathComponent("palr-history-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    return try body(folder.path)
}

/// Opens a new store in `folder`.
func makeStore(_ folder: String, name: String = "history.sqlite", options: HistoryStore.Options = .init()) throws
    -> HistoryStore {
    try HistoryStore(path: folder + "/" + name, options: options)
}

/// The repository root (two folders above this file's folder).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// ../shared/data/ml-100k/u.data beside the repository (or under $PALR_SHARED),
/// read at run time and never copied into the repository; nil when absent.
let movieLens100K: String? = {
    var candidates = [repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared").path]
    if let shared = ProcessInfo.processInfo.environment["PALR_SHARED"] { candidates.insert(shared, at: 0) }
    return candidates.map { $0 + "/data/ml-100k/u.data" }.first { FileManager.default.fileExists(atPath: $0) }
}()

/// The `palr` executable built next to the test bundle ($PALR_BIN overrides).
func palrExecutable() throws -> String {
    if let path = ProcessInfo.processInfo.environment["PALR_BIN"] { return path }
    let testBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    let candidates = [
        testBinary.deletingLastPathComponent().appendingPathComponent("palr").path,
        repositoryRoot.appendingPathComponent(".build/debug/palr").path,
    ]
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw TestFailure("the palr executable was not found (tried \(candidates.joined(separator: ", "))); "
                          + "build it with `swift build` or set PALR_BIN")
    }
    return found
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A child process whose standard output and error are drained continuously
/// (so it never blocks on a full pipe) and kept.
final class ChildProcess: @unchecked Sendable {
    private let process = Process()
    private let lock = NSLock()
    private var stdoutData = Data()
    private var stderrData = Data()
    private let drained = DispatchGroup()

    /// `environment` adds to (or overrides in) this process's environment.
    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        drain(out.fileHandleForReading, isError: false)
        drain(err.fileHandleForReading, isError: true)
    }

    private func drain(_ handle: FileHandle, isError: Bool) {
        drained.enter()
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.lock()
                if isError { stderrData.append(chunk) } else { stdoutData.append(chunk) }
                lock.unlock()
            }
            drained.leave()
        }
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Sends SIGKILL.
    func kill(_ signal: Int32 = SIGKILL) { _ = Foundation.kill(process.processIdentifier, signal) }

    /// Waits for the process to end and for its output to be read to the end.
    func wait() {
        process.waitUntilExit()
        drained.wait()
    }

    var terminationReason: Process.TerminationReason { process.terminationReason }
    var terminationStatus: Int32 { process.terminationStatus }

    /// Output read so far.
    var output: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: stdoutData, as: UTF8.self)
    }

    var errorOutput: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: stderrData, as: UTF8.self)
    }
}

/// Runs `palr` with `arguments` to the end; returns (status, stdout, stderr).
func runPalr(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
    let child = try ChildProcess(try palrExecutable(), arguments)
    child.wait()
    return (child.terminationStatus, child.output, child.errorOutput)
}

/// The `ack BATCH FIRST LAST` lines of `palr history stress-writer`.
struct Ack {
    var batch: Int
    var ids: ClosedRange<Int64>
}

func parseAcks(_ output: String) -> [Ack] {
    output.split(separator: "\n").compactMap { line in
        let parts = line.split(separator: " ")
        // A line cut by SIGKILL mid-write is not an acknowledgement.
        guard parts.count == 4, parts[0] == "ack", let batch = Int(parts[1]), let first = Int64(parts[2]),
              let last = Int64(parts[3]), first <= last else { return nil }
        return Ack(batch: batch, ids: first...last)
    }
}

/// Writes `text` to `folder/name` and returns the path.
func writeFile(_ folder: String, _ name: String, _ text: String) throws -> String {
    let path = folder + "/" + name
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    return path
}

/// n u.data lines: profile p(k % 37), item k % 101, rating 1...5, time 1e9 + k.
func generatedUData(lines: Int) -> String {
    var text = ""
    for k in 0..<lines {
        text += "\(k % 37)\t\(k % 101)\t\(k % 5 + 1)\t\(1_000_000_000 + k)\n"
    }
    return text
}

/// Whether the store's connection enforces foreign keys (import switches them off for its transaction).
func foreignKeysOn(_ store: HistoryStore) throws -> Bool {
    try store.connection.run("test") { try store.connection.scalar("PRAGMA foreign_keys") } == 1
}
