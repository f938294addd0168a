// What the subcommands share: flag parsing for types, numeric option checks,
// errors, the progress display, and the output file's preparation: refusing a
// destination that is not a regular file, removing temporaries of killed runs, and
// removal of this run's temporary file on SIGINT/SIGTERM/SIGHUP.

import ArgumentParser
import Convert
import FileSafety
import Foundation
import GGUF

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A weight type on the command line. (ArgumentParser shows a CaseIterable
/// RawRepresentable default by its raw value, GGMLType's numeric id; this enum's raw
/// values are the names.)
enum TypeArgument: String, CaseIterable, ExpressibleByArgument {
    case q4_0, q8_0, f16, bf16, f32

    var ggml: GGMLType {
        switch self {
        case .q4_0: .q4_0
        case .q8_0: .q8_0
        case .f16: .f16
        case .bf16: .bf16
        case .f32: .f32
        }
    }
}

/// An error printed as one line.
struct ToolError: Error, CustomStringConvertible {
    let description: String
    init(_ e: CustomStringConvertible) { description = e.description }
}

/// One line to stderr, through `oneLine` as errors are: notes and progress name paths.
func printErr(_ s: String) { writeErr(oneLine(s) + "\n") }

/// Text to stderr; a failed write is ignored (a message must never kill the process).
func writeErr(_ s: String) {
    var s = s
    s.withUTF8 { _ = writeFully(STDERR_FILENO, UnsafeRawBufferPointer($0)) }
}

// MARK: numeric options

/// An empty -o would only fail after the whole run, at the final rename.
func checkOutputOption(_ output: String?) throws {
    if let output, output.isEmpty { throw ValidationError("-o/--output must name a file (got an empty path)") }
}

/// Throws "--NAME must be at least LOW (got V)" style errors for an integer option.
func check(_ option: String, _ value: Int?, atLeast low: Int, atMost high: Int? = nil) throws {
    guard let value else { return }
    if let high, !(low...high).contains(value) {
        throw ValidationError("\(option) must be between \(low) and \(high) (got \(value))")
    }
    if value < low { throw ValidationError("\(option) must be at least \(low) (got \(value))") }
}

/// The same for a floating-point option, which must also be finite.
func check(_ option: String, _ value: Double?, in range: ClosedRange<Double>) throws {
    guard let value else { return }
    guard value.isFinite, range.contains(value) else {
        throw ValidationError("\(option) must be a number between \(range.lowerBound.formatted) and \(range.upperBound.formatted) (got \(value))")
    }
}

private extension Double {
    /// 0 rather than 0.0, 1000 rather than 1000.0.
    var formatted: String { self == rounded() && abs(self) < 1e15 ? String(Int(self)) : String(self) }
}

func defaultThreads() -> Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

/// Peak resident set size of this process so far, in bytes.
func peakRSS() -> Int {
    var u = rusage()
    getrusage(0, &u)  // RUSAGE_SELF
    return Int(u.ru_maxrss) * 1024
}

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

// MARK: the output file

/// Refuses a destination that exists and is not a regular file (a rename would replace
/// it, device or not) and resolves a symbolic link to the file it points to (that file
/// is then written atomically; the link stays). Returns the file that will be written.
/// Commands call it before any work.
@discardableResult
func checkDestination(_ output: String) throws -> String {
    do { return try GGUFWriter.target(of: output) } catch {
        switch error {
        case .notRegularFile(let p, let kind):
            throw ToolError("\(p) is not a regular file (it is \(kind)); palr-convert writes files atomically and will not replace it")
        case .unresolvableLink(let p, let reason):
            throw ToolError("\(p) is a symbolic link that cannot be followed (\(reason)); give the file's own path")
        }
    }
}

/// Prepares `output`: `checkDestination`, then refuses an `output` that is one of
/// `inputs` (the files this run reads, by name or as the same file), then removes
/// temporaries `OUT.tmp-PID` left by killed runs (one line each on stderr). This run's
/// temporary is removed on SIGINT, SIGTERM and SIGHUP once the writer has locked it
/// (main.swift installs SignalCleanup's handlers). `removeStale` false (a dry run) only checks.
///
/// `inputs` are files, exactly those the run reads: not whole folders, since a folder
/// may hold earlier outputs (converting into the checkpoint folder twice replaces the
/// first run's file, as it should) while a file the run does read may have any name
/// (a shard called shard2.gguf).
func prepareOutput(_ output: String, removeStale: Bool = true, inputs: [String] = []) throws {
    let target = try checkDestination(output)
    if let hit = Destination.overwrittenInput(target: target, inputs: inputs) {
        throw ToolError("\(output) is \(hit == output ? "an input of this run" : "the same file as the input \(hit)"); palr-convert will not replace what it reads, give another -o")
    }
    guard removeStale else { return }
    for t in GGUFWriter.removeStaleTemporaries(for: output) {
        printErr("removed stale temporary \(t.path) (\(formatBytes(t.bytes))) left by a killed run")
    }
}

// MARK: progress

/// A progress bar on a terminal (tensor i/n, bytes, rate, ETA), plain lines otherwise.
struct ProgressDisplay {
    let tty = isatty(STDERR_FILENO) != 0
    let start = now()
    var lastDraw = 0.0

    mutating func update(index: Int, count: Int, done: Int, total: Int, line: String) {
        let elapsed = max(now() - start, 1e-6)
        let rate = Double(done) / elapsed
        let eta = rate > 0 ? Double(total - done) / rate : 0
        // Without a known total (random models), only what is done and the rate.
        let stats = total > 0
            ? "\(formatBytes(done))/\(formatBytes(total)) \(formatBytes(Int(rate)))/s ETA \(clock(eta))"
            : "\(formatBytes(done)) \(formatBytes(Int(rate)))/s"
        if tty {
            let t = now()
            guard index + 1 == count || t - lastDraw > 0.1 else { return }
            lastDraw = t
            let width = 24
            let filled = total > 0 ? min(width, width * done / total) : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            var s = "\r[\(index + 1)/\(count)] \(bar) \(stats)  \(oneLine(line))\u{1B}[K"
            if index + 1 == count { s += "\n" }
            writeErr(s)
        } else {
            printErr("[\(index + 1)/\(count)] \(line) (\(stats))")
        }
    }

    func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(t / 60 % 60)m" : "\(t / 60):" + (t % 60 < 10 ? "0" : "") + "\(t % 60)"
    }
}
