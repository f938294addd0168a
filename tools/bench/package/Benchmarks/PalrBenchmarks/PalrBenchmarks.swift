// palr's hot paths as package benchmarks (README.md in tools/bench/package).
//
// Names are stable: Thresholds/PalrBenchmarks.<name>.p90.json hold the static thresholds
// that `swift package benchmark thresholds check` compares with. Every benchmark reports
// wall clock, throughput (runs per second), malloc calls and peak RSS; the kernels and the
// forward pass also report a rate of their own (weights MB/s, GEMM MFLOP/s, tokens/s).
// Where palr promises that a hot loop allocates nothing (the decode matvec, the prompt
// GEMM, a decode step, a prefill), the threshold is 0 mallocs at p90, with no tolerance.
import Benchmark
import Foundation

let benchmarks: @Sendable () -> Void = {
    // Before anything loads a model: OpenBLAS's core (re-executes once when it is generic).
    BLASCore.ensureGood()
    FileHandle.standardError.write(Data("palr benchmarks: \(BLASCore.summary), \(defaultThreads) threads\n".utf8))

    Benchmark.defaultConfiguration = .init(
        metrics: PalrMetrics.base,
        timeUnits: .automatic,
        warmupIterations: 3,
        maxDuration: .seconds(2),
        maxIterations: 10_000
    )

    // (1) The decode kernel alone: Q4_0 weights × int8 activations, 4096 × 4096 (9.4 MB of
    // blocks per product), cycled over copies so the weights come from memory.
    Benchmark(
        "matvec-q4_0-int8-4096x4096",
        configuration: .init(metrics: PalrMetrics.base + [PalrMetrics.weightsMBps], thresholds: PalrMetrics.zeroMallocs)
    ) { benchmark, state in
        let seconds = measured(benchmark) { state.step() }
        benchmark.measurement(PalrMetrics.weightsMBps, Int(Double(state.matrixBytes) / seconds / 1e6))
    } setup: {
        MatvecState()
    }

    // (2) The prompt path's GEMM: 64 tokens × the 5632 × 2048 gate matrix of the 1B shape,
    // dequantized in panels and multiplied by OpenBLAS (`LlamaSession.promptProduct`).
    Benchmark(
        "gemm-prompt-64x2048x5632",
        configuration: .init(metrics: PalrMetrics.base + [PalrMetrics.mflops], maxDuration: .seconds(3),
                             thresholds: PalrMetrics.zeroMallocs)
    ) { benchmark, state in
        do {
            let seconds = try measured(benchmark) { try state.step() }
            benchmark.measurement(PalrMetrics.mflops, Int(state.flops / seconds / 1e6))
        } catch { benchmark.error("\(error)") }
    } setup: {
        try GEMMState(modelPath: try Fixtures.random1B(), batch: 64)
    }

    // (3) One decode step and a 64-token prefill of a whole model: the bundled tiny ranker
    // (dim 128, 4 layers) and the random 1B-shape model (622 MiB of weights per step).
    for (label, path, duration) in [("bundled", { Fixtures.bundledModel }, 2), ("random-1b", { try Fixtures.random1B() }, 5)]
        as [(String, () throws -> String, Int)] {
        Benchmark(
            "decode-step-\(label)",
            configuration: .init(metrics: PalrMetrics.base, maxDuration: .seconds(duration), thresholds: PalrMetrics.zeroMallocs)
        ) { benchmark, state in
                do { _ = try measured(benchmark) { try state.decodeStep() } } catch { benchmark.error("\(error)") }
        } setup: {
            try ForwardState(modelPath: try path(), promptTokens: 64)
        }

        Benchmark(
            "prefill-64-\(label)",
            configuration: .init(metrics: PalrMetrics.base + [PalrMetrics.tokensPerSecond], maxDuration: .seconds(duration),
                                 thresholds: PalrMetrics.zeroMallocs)
        ) { benchmark, state in
                do {
                let seconds = try measured(benchmark) { try state.prefill() }
                benchmark.measurement(PalrMetrics.tokensPerSecond, Int(Double(state.prompt.count) / seconds))
            } catch { benchmark.error("\(error)") }
        } setup: {
            try ForwardState(modelPath: try path(), promptTokens: 64)
        }
    }

    // (4) Tokenizing a letters-mode ranking prompt (20 history titles, 20 candidates) with
    // the bundled model's SentencePiece tokenizer. Returns an array: allocates.
    Benchmark("tokenize-ranking-prompt") { benchmark, state in
        let tokenizer = state.recommender.ranker.tokenizer
        var count = 0
        _ = measured(benchmark) { count = tokenizer.encode(state.prompt, addBOS: true).count }
        blackHole(count)
    } setup: {
        try PipelineState()
    } teardown: {
        PipelineState.removeFolder()
    }

    // (5) Retrieval of 20 candidates for a 20-item history from the bundled catalog pack.
    Benchmark("retrieve-20-history-20") { benchmark, state in
        let retriever = state.recommender.retriever
        var count = 0
        _ = measured(benchmark) { count = retriever.retrieve(history: state.historyItems, count: 20).items.count }
        blackHole(count)
    } setup: {
        try PipelineState()
    } teardown: {
        PipelineState.removeFolder()
    }

    // (6) HistoryStore.recent(profile, 50) on a temporary store of 200 synthetic profiles
    // × 250 interactions (50,000 rows), profiles taken in turn.
    Benchmark("history-recent-50") { benchmark, state in
        var count = 0
        do { _ = try measured(benchmark) { count = try state.recent() } } catch { benchmark.error("\(error)") }
        blackHole(count)
    } setup: {
        try HistoryState()
    } teardown: {
        HistoryState.removeFolder()
    }

    // (7) One full recommendation, as `palr demo` / `palr recommend --no-cache` run it:
    // history read, retrieval, prompt, ranking with the bundled model (letters mode).
    // With prefix reuse, the previous run's prompt (same history) is reused from the
    // ranker's session or prefix cache; without, every prompt state kept for reuse is
    // dropped before each run (outside the measured region), so the whole prompt is computed.
    for reuse in [true, false] {
        Benchmark(
            reuse ? "recommend-bundled-prefix-reuse" : "recommend-bundled-no-prefix-reuse",
            configuration: .init(metrics: PalrMetrics.base, maxDuration: .seconds(3))
        ) { benchmark, state in
                if !reuse { state.recommender.ranker.forgetCachedPrompts() }
            do {
                var items = 0
                _ = try measured(benchmark) {
                    items = try state.recommender.recommend(profile: state.profile, k: 10, useCache: false).items.count
                }
                blackHole(items)
            } catch { benchmark.error("\(error)") }
        } setup: {
            try PipelineState()
        } teardown: {
            PipelineState.removeFolder()
        }
    }
}
