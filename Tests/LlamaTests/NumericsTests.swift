import Foundation
import Testing
@testable import Llama

/// Subnormal floats make x86 GEMMs take microcode assists (measured: sgemm 512×2048×2048
/// fell from ~160 to 1.5 GFLOP/s with a third of its inputs subnormal), so the attention
/// probabilities that feed the P·V GEMM must never be subnormal.
@Suite struct NumericsTests {
    @Test func softmaxFlushesWhatWouldBeSubnormal() {
        // Differences from the maximum of 0 … -120: expf gives subnormals from about -87.3 on.
        var x: [Float] = (0...120).map { -Float($0) }
        x.withUnsafeMutableBufferPointer { softmax($0.baseAddress!, $0.count) }
        let subnormal = x.filter { $0 != 0 && !$0.isNormal }
        #expect(subnormal.isEmpty, "subnormal probabilities: \(subnormal.count)")
        // What is kept is the exact softmax of the kept entries (the flushed mass is < 1e-34).
        var ref = (0...80).map { expf(-Float($0)) }
        let s = ref.reduce(0, +)
        ref = ref.map { $0 / s }
        let worst = zip(x, ref).map { abs($0 - $1) }.max() ?? 0
        print("softmax: worst difference to the exact kept-entries softmax \(worst)")
        #expect(worst <= 1e-7)
        #expect(x[81...].allSatisfy { $0 == 0 })
    }
}
