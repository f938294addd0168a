import ArgumentParser
import CAllocCounter
import CKernels
import Foundation
import Llama

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure prompt and generation speed, load time, memory and allocations of a model.",
        discussion: """
            Prompt speed (pp) runs -p random token ids from position 0 as one prefill; generation \
            speed (tg) decodes -n tokens one at a time from position 0, as llama-bench does. \
            Figures are medians over --repeat runs, with min and max.
            """)

    @Option(name: .long, help: "A LLaMA GGUF model.")
    var model: String

    @Option(name: .short, parsing: .unconditional, help: "Prompt tokens per prefill run.")
    var p: Int = 512

    @Option(name: .short, parsing: .unconditional, help: "Tokens per generation run.")
    var n: Int = 128

    @Option(name: .short, parsing: .unconditional, help: "Threads (default: physical cores, at most 8).")
    var t: Int?

    @Option(name: .customLong("repeat"), parsing: .unconditional, help: "Runs of each measurement.")
    var repeats: Int = 3

    @Option(name: .long, parsing: .unconditional, help: "Prefill batch (tokens per forward call).")
    var batch: Int = 512

    @Option(name: .long, help: "Decode activations: float32 (exact) or int8 (llama.cpp's Q4_0 x Q8_0).")
    var activations: String = "int8"

    @Option(name: .long, help: "KV cache type: f32 or f16 (the ranker's).")
    var kvCache: String = "f32"

    @Flag(name: .long, inversion: .prefixedNo,
          help: "Measure the fp32 GEMM bound at the prompt batch (a few seconds; --no-gemm-bound skips it).")
    var gemmBound = true

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func validate() throws {
        // Not `p + n > 0`: the sum of two huge values overflows.
        guard p >= 0, n >= 0, p > 0 || n > 0 else { throw ValidationError("-p and -n must be ≥ 0 and not both 0 (got -p \(p), -n \(n))") }
        guard repeats > 0 else { throw ValidationError("--repeat must be at least 1 (got \(repeats))") }
        guard batch > 0 else { throw ValidationError("--batch must be at least 1 (got \(batch))") }
        try validateThreads(t)
        guard DecodeActivations(rawValue: activations) != nil else { throw ValidationError("--activations is float32 or int8") }
        guard KVCacheType(rawValue: kvCache) != nil else { throw ValidationError("--kv-cache is f32 or f16") }
    }

    func run() throws {
        let acts = DecodeActivations(rawValue: activations) ?? .float32
        let kv = KVCacheType(rawValue: kvCache) ?? .f32
        let t0 = Date()
        let m = try loadModel(model)
        m.gguf.file.adviseWillNeed()
        let loadSeconds = Date().timeIntervalSince(t0)
        let c = m.config
        // Both runs start at position 0 (plus the warm-up token): refused now rather than
        // after decoding a context's worth of tokens.
        guard max(p, n) < c.contextLength else {
            throw CLIError(path: model, "-p \(p) / -n \(n) do not fit the model's \(c.contextLength)-token context; "
                           + "use at most \(c.contextLength - 1)")
        }
        let ctx = min(c.contextLength, max(p, n) + 1)
        let session: LlamaSession
        do {
            session = try LlamaSession(model: m, contextLength: ctx, maxBatch: max(1, min(batch, max(p, 1))),
                                       threads: t, activations: acts, kvCache: kv)
        } catch { throw CLIError(path: model, error) }

        var rng = SystemRandomNumberGenerator()
        let prompt = (0..<p).map { _ in Int32.random(in: 0..<Int32(c.vocabSize), using: &rng) }
        var ppRates: [Double] = [], tgRates: [Double] = []
        var ttft: Double = 0
        var allocsPerToken: Double = 0
        do {
            // Warm-up: touch every weight page once.
            try session.decode(1) { _ in () }
            for r in 0..<repeats {
                if p > 0 {
                    try session.rewind(to: 0)
                    let s = Date()
                    try session.prefill(prompt, logits: .last) { _, _ in }
                    let dt = Date().timeIntervalSince(s)
                    ppRates.append(Double(p) / dt)
                    if r == 0 { ttft = loadSeconds + dt }
                }
                if n > 0 {
                    try session.rewind(to: 0)
                    var tok: Int32 = 1
                    let a0 = palr_alloc_count()
                    let s = Date()
                    for _ in 0..<n {
                        tok = try session.decode(tok) { l in Int32(argmaxIndex(l)) }
                    }
                    let dt = Date().timeIntervalSince(s)
                    allocsPerToken = Double(palr_alloc_count() - a0) / Double(n)
                    tgRates.append(Double(n) / dt)
                }
            }
        } catch { throw CLIError(path: model, "\(error)") }

        let rss = peakRSSBytes()   // before the bandwidth probe's buffer and the GEMM matrices
        let bandwidth = measureReadBandwidth(threads: session.threads)
        // Under `ulimit -v` a matrix that does not fit would abort the process: skipped instead.
        let boundFits = BLAS.addressSpaceLimit() == nil
            || BLAS.canReserve(session.promptGEMMBoundBytes(batch: min(p, batch)) + BLAS.bufferMargin)
        let bound = p > 0 && gemmBound && boundFits ? session.promptGEMMBound(batch: min(p, batch)) : nil
        var notes: [String] = []
        if p > 0 && gemmBound && !boundFits {
            notes.append("fp32 GEMM bound: not measured (the address-space limit, ulimit -v, leaves no room for its matrices)")
        }
        if bandwidth.bytes == 0 {
            notes.append("read bandwidth: not measured (the address-space limit, ulimit -v, leaves no room for a 64 MiB buffer)")
        }
        for note in notes { printErr("note: " + note) }
        let pp = Stats(ppRates), tg = Stats(tgRates)
        let bytesPerToken = Double(m.weightBytesPerToken)
        let used = tg.median * bytesPerToken
        if json {
            var o: [String: Any] = [
                "model": model, "file_bytes": m.gguf.file.size, "threads": session.threads,
                "kernels": String(cString: palr_kernels().pointee.name), "activations": acts.rawValue,
                "blas_core": BLAS.coreName, "load_s": loadSeconds, "ttft_s": ttft,
                "peak_rss_bytes": rss, "kv_bytes": session.kvCacheBytes, "kv_cache": session.kvType.rawValue, "scratch_bytes": session.scratchBytes,
                "session_bytes": session.bufferBytes,
                "allocs_per_token": palr_alloc_counter_active() != 0 ? allocsPerToken : -1,
                "read_bandwidth_gb_s": bandwidth.rate / 1e9, "bandwidth_used": bandwidth.rate > 0 ? used / bandwidth.rate : 0,
                "read_bandwidth_buffer_bytes": bandwidth.bytes,
                "p": p, "n": n, "repeat": repeats,
            ]
            // Every run in order, as llama-bench's samples_ts (the first run is not discarded).
            if p > 0 { o["pp_tok_s"] = pp.median; o["pp_min"] = pp.min; o["pp_max"] = pp.max; o["pp_samples"] = ppRates }
            if let bound { o["gemm_gflops"] = bound.gflops; o["gemm_bound_tok_s"] = bound.tokensPerSecond }
            if n > 0 { o["tg_tok_s"] = tg.median; o["tg_min"] = tg.min; o["tg_max"] = tg.max; o["tg_samples"] = tgRates }
            let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("model: \(model) (\(m.gguf.file.size) bytes; dim \(c.dim), \(c.layerCount) layers, vocab \(c.vocabSize))")
            print("threads \(session.threads), kernels \(String(cString: palr_kernels().pointee.name)), decode activations \(acts.rawValue)")
            print("blas: " + blasSummary())
            if p > 0 { print(String(format: "pp%d: %.2f tok/s (min %.2f, max %.2f, %d runs)", p, pp.median, pp.min, pp.max, repeats)) }
            if let bound {
                print(String(format: "fp32 GEMM bound at batch %d: %.1f GFLOP/s = %.2f tok/s (weights converted and cached); pp%d is %.0f%% of it",
                             min(p, batch), bound.gflops, bound.tokensPerSecond, p, 100 * pp.median / bound.tokensPerSecond))
            }
            if n > 0 { print(String(format: "tg%d: %.2f tok/s (min %.2f, max %.2f, %d runs)", n, tg.median, tg.min, tg.max, repeats)) }
            print(String(format: "load %.3f s, time to first token (load + pp%d) %.3f s", loadSeconds, p, ttft))
            print(String(format: "memory: peak RSS %.1f MiB, KV cache (\(session.kvType.rawValue)) %.1f MiB, scratch %.1f MiB, all session buffers %.1f MiB",
                         Double(rss) / 1048576, Double(session.kvCacheBytes) / 1048576,
                         Double(session.scratchBytes) / 1048576, Double(session.bufferBytes) / 1048576))
            print("heap allocations per decoded token: " + (palr_alloc_counter_active() != 0 ? String(format: "%.2f", allocsPerToken) : "unavailable"))
            if bandwidth.rate > 0 {
                print(String(format: "bandwidth: %.2f GB/s of weights (%.0f MB/token) = %.0f%% of measured read bandwidth %.2f GB/s%@",
                             used / 1e9, bytesPerToken / 1e6, 100 * used / bandwidth.rate, bandwidth.rate / 1e9,
                             bandwidth.bytes < 512 << 20 ? " (\(bandwidth.bytes >> 20) MiB buffer: ulimit -v)" : ""))
            } else {
                print(String(format: "bandwidth: %.2f GB/s of weights (%.0f MB/token); read bandwidth not measured", used / 1e9, bytesPerToken / 1e6))
            }
        }
    }
}

struct Stats {
    let median: Double, min: Double, max: Double
    init(_ xs: [Double]) {
        let s = xs.sorted()
        median = s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
        min = s.first ?? 0
        max = s.last ?? 0
    }
}

func argmaxIndex(_ l: UnsafeBufferPointer<Float>) -> Int {
    var best = 0
    for i in 1..<l.count where l[i] > l[best] { best = i }
    return best
}

/// VmHWM from /proc/self/status, in bytes (0 if unavailable).
func peakRSSBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kb * 1024
    }
    return 0
}

/// Bytes per second of a read-sum over a 512 MiB buffer, best of 3, and the buffer's size.
/// The buffer is mapped, not allocated: under an address-space limit (`ulimit -v`) a
/// smaller one is tried (256, 128, 64 MiB, all far beyond any cache), and with no room
/// even for that the result is (0, 0) rather than Swift's abort on a failed allocation.
func measureReadBandwidth(threads: Int) -> (rate: Double, bytes: Int) {
    for bytes in [512 << 20, 256 << 20, 128 << 20, 64 << 20] {
        // Owned here, unmapped before returning.
        guard let buf = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              buf != MAP_FAILED else { continue }
        defer { munmap(buf, bytes) }
        memset(buf, 1, bytes)
        let pool = palr_pool_create(Int32(threads))
        defer { palr_pool_destroy(pool) }
        var best = 0.0
        for _ in 0..<3 {
            let s = Date()
            let sum = palr_read_sum(pool, buf, bytes)
            let dt = Date().timeIntervalSince(s)
            if sum != 0 { best = max(best, Double(bytes) / dt) }
        }
        return (best, bytes)
    }
    return (0, 0)
}
