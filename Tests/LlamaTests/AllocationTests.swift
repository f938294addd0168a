import CAllocCounter
import Testing
@testable import Llama

#if canImport(Glibc)
import Glibc
#endif

/// After a session exists, decode and prefill allocate nothing on the heap.
@Suite struct AllocationTests {
    /// The counter is on in a normal build (a sanitizer's allocator turns it off; then
    /// the zero-allocation test below cannot run and is skipped, by design).
    @Test(.enabled(if: !sanitized))
    func theCounterIsActiveAndCounts() {
        #expect(palr_alloc_counter_active() != 0)
        let before = palr_alloc_count_thread()
        let p = malloc(64)
        free(p)
        #expect(palr_alloc_count_thread() - before >= 1, "a malloc was not counted: the counter does not interpose")
        // Every allocating entry point of glibc's replaceable set counts once.
        // Looked up first: dlsym itself allocates.
        let memalignC = cFunction("memalign", (@convention(c) (Int, Int) -> UnsafeMutableRawPointer?).self)
        let pvallocC = cFunction("pvalloc", (@convention(c) (Int) -> UnsafeMutableRawPointer?).self)
        let entries: [(String, () -> UnsafeMutableRawPointer?)] = [
            ("malloc", { malloc(32) }), ("calloc", { calloc(4, 8) }), ("realloc", { realloc(nil, 32) }),
            ("memalign", { memalignC?(64, 32) }),
            ("aligned_alloc", { aligned_alloc(64, 64) }),
            ("posix_memalign", { var p: UnsafeMutableRawPointer?; return posix_memalign(&p, 64, 32) == 0 ? p : nil }),
            ("valloc", { valloc(32) }),
            ("pvalloc", { pvallocC?(32) }),
        ]
        for (name, allocate) in entries {
            let start = palr_alloc_count_thread()
            let p = allocate()
            let counted = palr_alloc_count_thread() - start
            free(p)
            #expect(p != nil && counted == 1, "\(name): counted \(counted) times")
        }
    }

    @Test(.enabled(if: palr_alloc_counter_active() != 0), arguments: ["f32", "q4_0"], DecodeActivations.allCases)
    func decodeAndPrefillDoNotAllocate(type: String, activations: DecodeActivations) throws {
        let model = try LlamaModel(path: modelPath("gqa_tied", type))
        let s = try LlamaSession(model: model, contextLength: 48, maxBatch: 8, threads: 2, activations: activations)
        let prompt: [Int32] = [1, 5, 9, 14, 3, 7, 22, 40, 11, 2, 8, 19]
        try s.prefill(prompt)                 // warm-up: lazy runtime state, kernel table
        try s.decode(4) { _ in () }
        try s.rewind(to: 0)

        var sink: Float = 0
        let next: [Int32] = [3, 17, 29, 31, 2, 6, 9, 12]
        let before = palr_alloc_count_thread()
        try s.prefill(prompt, logits: .last) { _, l in sink += l[0] }
        let afterPrefill = palr_alloc_count_thread()
        for i in 0..<next.count {
            sink += try s.decode(next[i]) { $0[i] }
        }
        let afterDecode = palr_alloc_count_thread()
        print("\(type) \(activations): prefill allocations \(afterPrefill - before), decode allocations \(afterDecode - afterPrefill) (8 tokens)")
        #expect(afterPrefill - before == 0)
        #expect(afterDecode - afterPrefill == 0)
        #expect(sink.isFinite)
    }

    @Test func int8ActivationsStayCloseToExact() throws {
        // llama.cpp's scheme quantizes decode inputs to int8: not exact, but close.
        for name in fixtureNames { for type in ["q4_0", "q8_0"] {
            let ref = try Reference.load(name)
            let model = try LlamaModel(path: modelPath(name, type))
            let exact = try prefillLogits(model, ref.tokens)
            let s = try LlamaSession(model: model, contextLength: ref.tokens.count, activations: .int8)
            let approx = try ref.tokens.map { t in try s.decode(t) { Array($0) } }
            let worst = maxAbsDiff(exact, approx)
            let scale = exact.flatMap { $0 }.map { abs($0) }.max() ?? 1
            let e: [Float] = exact.flatMap { $0 }, a: [Float] = approx.flatMap { $0 }
            var total: Float = 0
            for i in e.indices { total += abs(e[i] - a[i]) }
            let meanAbs = total / Float(e.count)
            let agree = zip(exact, approx).filter { argmax($0) == argmax($1) }.count
            print("\(name) \(type): int8-activation decode vs exact prefill: max |Δ| = \(worst), mean |Δ| = \(meanAbs), logit scale \(scale), argmax agrees at \(agree)/\(exact.count)")
            // Not exact (int8 inputs), but the ranking of logits must survive.
            #expect(agree == exact.count)
            #expect(meanAbs <= 0.03 * scale)
        } }
    }
}

/// Whether this test process runs under a sanitizer: its runtime exports __asan_init or
/// __tsan_init (looked up in the global scope, RTLD_DEFAULT).
let sanitized: Bool = dlsym(nil, "__asan_init") != nil || dlsym(nil, "__tsan_init") != nil

/// A C function by name, as the process links it (memalign and pvalloc are in glibc's
/// malloc.h, which Swift's Glibc module does not import).
private func cFunction<F>(_ name: String, _ type: F.Type) -> F? {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
    return unsafeBitCast(symbol, to: type)
}
