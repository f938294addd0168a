// What the benchmarks run on: the bundled files, a random-weight model of the 1B shape
// generated once into the temporary folder, OpenBLAS's core, and the shared metrics.
// Everything here goes through palr's own library APIs (the ones `palr bench`, `palr demo`
// and `palr history bench` call); nothing of the runtime is re-implemented.
import Benchmark
import CKernels
import Convert
import Foundation
import Llama

#if canImport(Glibc)
import Glibc
#endif

/// An error of the benchmark setup, with what to do about it.
struct SetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum Fixtures {
    /// The repository's models/ folder: $PALR_MODELS when set, else found from this file's
    /// place in the repository (tools/bench/package/Benchmarks/PalrBenchmarks/).
    static var modelsFolder: String {
        if let named = ProcessInfo.processInfo.environment["PALR_MODELS"] { return named }
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<6 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("models").path
    }

    static var bundledModel: String { modelsFolder + "/palr-ml-small-q4_0.gguf" }
    static var bundledCatalog: String { modelsFolder + "/ml-small-catalog.gguf" }
    static var demoHistory: String { modelsFolder + "/demo-history.csv" }

    /// A random-weight Q4_0 model of the TinyLlama-1.1B shape (dim 2048, ffn 5632, 22
    /// layers; 622 MiB), written by palr-convert's `RandomModel` the first time a benchmark
    /// needs it and kept in the temporary folder for the next runs (never committed).
    /// $PALR_BENCH_1B names another file of that shape.
    static func random1B() throws -> String {
        if let named = ProcessInfo.processInfo.environment["PALR_BENCH_1B"] { return named }
        let folder = NSTemporaryDirectory() + "palr-bench"
        let path = folder + "/random-1b-q4_0-seed1.gguf"
        // A file a killed run left half-written does not load, and is written again.
        if FileManager.default.fileExists(atPath: path), (try? LlamaModel(path: path)) != nil { return path }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let partial = path + ".\(getpid()).partial"
        var options = ConvertOptions()
        options.type = .q4_0
        options.threads = max(1, Int(palr_physical_cores()))
        FileHandle.standardError.write(Data("palr benchmarks: writing the random 1B-shape model to \(path) (once)\n".utf8))
        do {
            try RandomModel.write(shape: .b1, options: options, seed: 1, to: partial)
        } catch {
            unlink(partial)
            throw SetupError("writing \(partial): \(error)")
        }
        guard rename(partial, path) == 0 else {
            unlink(partial)
            throw SetupError("renaming \(partial) to \(path): \(String(cString: strerror(errno)))")
        }
        return path
    }

    /// Prompt token ids, deterministic, all below `vocabulary` (as `palr bench`'s random prompt).
    static func promptTokens(_ count: Int, vocabulary: Int) -> [Int32] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int32(truncatingIfNeeded: (state >> 33) % UInt64(max(vocabulary, 1)))
        }
    }
}

// MARK: - OpenBLAS's core

enum BLASCore {
    /// OpenBLAS picks its kernels when the library loads, and Debian 12's 0.3.21 takes this
    /// CPU for a "Prescott" (about 5× slower sgemm). As `palr` does at start-up: when
    /// `BLAS.recommendedCoreType()` names a better core and the user set none, set
    /// OPENBLAS_CORETYPE and re-execute this process once (the benchmark tool's pipe
    /// descriptors and arguments survive the exec; nothing has been read from them yet).
    /// A value the user set always wins; PALR_BLAS_REEXEC stops any loop.
    static func ensureGood() {
        if getenv("OPENBLAS_CORETYPE") == nil, getenv("PALR_BLAS_REEXEC") == nil, let core = BLAS.recommendedCoreType() {
            setenv("OPENBLAS_CORETYPE", core, 1)
            setenv("PALR_BLAS_REEXEC", BLAS.coreName, 1)   // what OpenBLAS had chosen itself
            execv("/proc/self/exe", CommandLine.unsafeArgv)
            // exec failed (no /proc?): carry on with the core that loaded, and say so below.
            unsetenv("OPENBLAS_CORETYPE")
            unsetenv("PALR_BLAS_REEXEC")
        }
        if let better = BLAS.recommendedCoreType() {
            warn("OpenBLAS runs its generic \(BLAS.coreName) kernels on this CPU (about 5× slower sgemm); "
                 + "run with OPENBLAS_CORETYPE=\(better) for the prompt figures to mean anything")
        }
    }

    /// One line naming the core in use (and what OpenBLAS had chosen, when it was changed).
    static var summary: String {
        let chosen = getenv("PALR_BLAS_REEXEC").map { " (OpenBLAS had chosen \(String(cString: $0)); OPENBLAS_CORETYPE set)" } ?? ""
        return "OpenBLAS core \(BLAS.coreName)\(chosen), palr kernels \(String(cString: palr_kernels().pointee.name))"
    }
}

func warn(_ message: String) {
    FileHandle.standardError.write(Data("palr benchmarks: warning: \(message)\n".utf8))
}

// MARK: - Metrics and thresholds

enum PalrMetrics {
    /// Bytes of quantized weights streamed per second, in MB/s (10⁶ bytes).
    static let weightsMBps = BenchmarkMetric.custom("Weights read (MB/s)", polarity: .prefersLarger, useScalingFactor: false)
    /// fp32 GEMM work per second (2·m·n·k per product), in MFLOP/s.
    static let mflops = BenchmarkMetric.custom("GEMM (MFLOP/s)", polarity: .prefersLarger, useScalingFactor: false)
    /// Prompt tokens per second.
    static let tokensPerSecond = BenchmarkMetric.custom("Tokens (tok/s)", polarity: .prefersLarger, useScalingFactor: false)

    /// No peakMemoryResident: the tool samples it from a thread of its own every 5 ms, and
    /// that thread's mallocs (counted process-wide) would hide the measured code's zero.
    static let base: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]

    /// "Hot loops allocate nothing": any malloc at p90 fails `benchmark thresholds check`
    /// against the committed Thresholds/*.p90.json (mallocCountTotal: 0), with no tolerance.
    static var zeroMallocs: [BenchmarkMetric: BenchmarkThresholds] { [
        .mallocCountTotal: BenchmarkThresholds(relative: [.p90: 0], absolute: [.p90: 0]),
    ] }
}

/// Runs `body` once between start and stop of the measured region and returns its seconds.
@inline(__always)
func measured(_ benchmark: Benchmark, _ body: () throws -> Void) rethrows -> Double {
    let clock = ContinuousClock()
    benchmark.startMeasurement()
    let start = clock.now
    try body()
    let elapsed = clock.now - start
    benchmark.stopMeasurement()
    let (s, atto) = elapsed.components
    return Double(s) + Double(atto) * 1e-18
}
