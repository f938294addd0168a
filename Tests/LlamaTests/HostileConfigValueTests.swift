import Testing
@testable import Llama

/// Config values a valid GGUF can hold that no model can run with.
@Suite struct HostileConfigValueTests {
    func config(rope: LlamaConfig.RopeScaling) -> LlamaConfig {
        LlamaConfig(contextLength: 64, dim: 64, layerCount: 1, ffnDim: 128, headCount: 4, kvHeadCount: 2, headDim: 16,
                    ropeDim: 16, ropeFreqBase: 10000, ropeScaling: rope, rmsEpsilon: 1e-5, vocabSize: 32)
    }

    /// rope.scaling.factor = +∞ (a float32 key can hold it) was accepted: positions / ∞ = 0,
    /// every token at position 0, a silently different model.
    @Test(arguments: [Double.infinity, .nan, 0, -2])
    func aNonFiniteOrNonPositiveRopeFactorIsRefused(factor: Double) {
        let error = #expect(throws: LlamaError.self) { try config(rope: .linear(factor: factor)).validate() }
        #expect(error?.description.contains("rope.scaling.factor") == true, "\(String(describing: error))")
    }

    @Test func aFiniteRopeFactorIsFine() throws {
        try config(rope: .linear(factor: 4)).validate()
        try config(rope: .none).validate()
    }
}
