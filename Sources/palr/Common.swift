import ArgumentParser
import FileSafety
import Foundation
import GGUF
import History
import Llama
import Ranker

#if canImport(Glibc)
import Glibc
#endif

/// An error the CLI reports as one line, naming the file it concerns.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
    init(path: String, _ error: CustomStringConvertible) { description = "\(path): \(error.description)" }
}

/// An error of a ranking run: one the model file caused (non-finite logits, a missing
/// label piece, settings whose prompt does not fit its context) names the file, as a
/// load error does; others (an unknown profile, no candidates) are shown as they are.
func rankingError(_ error: Error, model: String) -> CLIError {
    if let e = error as? RankerError, e != .noCandidates { return CLIError(path: model, e) }
    return CLIError("\(error)")
}

func loadModel(_ path: String) throws -> LlamaModel {
    do {
        return try LlamaModel(path: path)
    } catch {
        throw CLIError(path: path, error)
    }
}

/// Parses "1,2,3" (spaces around commas allowed) or "1 2 3". An empty item ("1,,2") is an error.
func parseTokenList(_ s: String) throws -> [Int32] {
    let parts: [Substring] = s.contains(",")
        ? s.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces)[...] }
        : s.split(whereSeparator: { $0 == " " })
    var out: [Int32] = []
    for (i, p) in parts.enumerated() {
        guard !p.isEmpty else { throw ValidationError("token list item \(i + 1) is empty in '\(s)'") }
        guard let v = Int32(p) else { throw ValidationError("'\(p)' is not a token id") }
        out.append(v)
    }
    guard !out.isEmpty else { throw ValidationError("no token ids given") }
    return out
}

/// Thread counts: at least 1; above 256 is surely a typo (palr caps its pool at the cores anyway).
let threadLimit = 1...256

func validateThreads(_ t: Int?, option: String = "-t") throws {
    guard let t else { return }
    if !threadLimit.contains(t) {
        throw ValidationError("\(option) must be between \(threadLimit.lowerBound) and \(threadLimit.upperBound) (got \(t))")
    }
}

/// The bytes of a regular file (at most `limit`), or an error naming the path and why
/// it cannot be read. A device, FIFO or folder is refused by kind, before any read
/// (opened without blocking, so a FIFO with no writer does not hang).
func readFile(_ path: String, limit: Int = 1 << 30) throws -> Data {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { throw CLIError(path: path, "cannot read: \(Destination.describe(errno))") }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw CLIError(path: path, "cannot read: \(Destination.describe(errno))") }
    guard info.st_mode & S_IFMT == S_IFREG else {
        throw CLIError(path: path, "cannot read: it is \(Destination.kindName(info.st_mode)), not a regular file")
    }
    do { return Data(try readFully(fd, limit: limit)) } catch {
        throw CLIError(path: path, "cannot read: \(error.reason)")
    }
}

/// A private folder (mkdtemp: a fresh name, mode 0700, under $TMPDIR or /tmp) holding a
/// scratch history store, for `demo` and `history bench`. The store's files and then the
/// folder are registered with `SignalCleanup`, so SIGINT, SIGTERM, SIGHUP and SIGPIPE
/// remove them as `remove()` does at a normal end (SIGKILL leaves them, as it leaves any
/// temporary). The folder owns nothing else.
struct ScratchStoreFolder {
    let path: String
    /// `path`/history.sqlite; its companion files (`HistoryStore.companionSuffixes`) are
    /// registered too.
    var store: String { path + "/history.sqlite" }
    private var registrations: [Int?] = []

    init(prefix: String) throws {
        var base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        if base.isEmpty { base = "/tmp" }
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        var template = Array((base + "/" + prefix + "XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw CLIError(path: base, "cannot create a temporary folder: \(Destination.describe(errno))")
        }
        path = String(cString: made)
        let store = path + "/history.sqlite"
        registrations = ([store] + HistoryStore.companionSuffixes.map { store + $0 } + [path])
            .map { SignalCleanup.register($0) }
    }

    /// Removes the folder and everything in it, then forgets the registrations.
    func remove() {
        try? FileManager.default.removeItem(atPath: path)
        for r in registrations { SignalCleanup.unregister(r) }
    }
}

/// Writes to standard output at once (after anything `print` buffered), for text a
/// reader sees as it comes. A closed or full standard output is an error naming it
/// (FileHandle's write would trap).
func writeNow(_ text: String) throws {
    fflush(nil)   // every output stream: `print` goes through stdio
    var bytes = text
    if let code = bytes.withUTF8({ writeFully(STDOUT_FILENO, UnsafeRawBufferPointer($0)) }) {
        let reason = StandardStreams.closedAtStart & 2 != 0 ? "it is closed" : Destination.describe(code)
        throw CLIError("cannot write standard output: \(reason)")
    }
}

/// All of standard input (at most `limit` bytes: /dev/zero is an error, not an exhausted
/// memory); a closed standard input or a folder is an error naming it.
func readStandardInput(limit: Int = 1 << 30) throws -> [UInt8] {
    if StandardStreams.inputWasClosed { throw CLIError("standard input: cannot read: it is closed") }
    do { return try readFully(STDIN_FILENO, limit: limit) } catch {
        throw CLIError("standard input: cannot read: \(error.reason)")
    }
}

/// Text for a terminal line: control and format characters (NUL, escape sequences,
/// bidirectional overrides) become U+FFFD, so a catalog title cannot garble the output.
func terminalSafe(_ s: String) -> String {
    var out = String.UnicodeScalarView()
    for u in s.unicodeScalars {
        // Keep the joiner that emoji sequences need (U+FE0F, a mark, is not a control).
        out.append(actsOnTerminal(u) && u != "\u{200D}" ? "\u{FFFD}" : u)
    }
    return String(out)
}

/// One line to stderr. A failed write (stderr closed, full, over `ulimit -f`) is
/// ignored: a message must never be what kills the process.
/// Through `oneLine`, as errors are: notes name paths and quote values.
func printErr(_ s: String) {
    var line = oneLine(s) + "\n"
    line.withUTF8 { _ = writeFully(STDERR_FILENO, UnsafeRawBufferPointer($0)) }
}

/// The BLAS line shared by `info` and `bench`.
func blasSummary() -> String {
    var s = "OpenBLAS core \(BLAS.coreName), called single-threaded from palr's own threads"
    let environment = ProcessInfo.processInfo.environment
    let requested = environment["OPENBLAS_CORETYPE"]
    if let first = environment["PALR_BLAS_REEXEC"], requested != nil {
        // Both are set by palr's re-exec (main.swift); environment text, so made safe.
        s += " (OpenBLAS chose \(terminalSafe(first)); palr set OPENBLAS_CORETYPE)"
    } else if let wanted = BLAS.recommendedCoreType() {
        s += " (WARNING: generic kernels; set OPENBLAS_CORETYPE=\(wanted) for ~5× faster prompts)"
    }
    if let requested, requested.lowercased() != BLAS.coreName.lowercased() {
        s += "; note: OPENBLAS_CORETYPE=\(terminalSafe(requested)) is not the core that loaded"
    }
    return s
}
