import Foundation
import GGUF
import Testing
@testable import Llama

/// Strict weight binding: a missing, extra or mis-shaped tensor is an error naming it.
@Suite struct BindingTests {
    /// Copies a fixture into a temp file, letting `edit` change tensors and metadata.
    func rewrite(_ src: String, edit: (inout [(String, GGUFValue)], inout [(GGUFTensorPlan, [UInt8])]) -> Void) throws -> String {
        let f = try GGUFFile(path: src)
        var meta = f.metadata.map { ($0.key, $0.value) }
        var tensors: [(GGUFTensorPlan, [UInt8])] = f.tensors.map { t in
            (GGUFTensorPlan(name: t.name, dims: t.dims, type: t.type!), Array(f.data(of: t)))
        }
        edit(&meta, &tensors)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("palr-bind-\(UUID().uuidString).gguf").path
        let w = try GGUFWriter(path: out, metadata: meta, tensors: tensors.map(\.0))
        for (p, b) in tensors { try w.write(tensor: p.name, bytes: b) }
        try w.finish()
        return out
    }

    let src = modelPath("mha_untied", "f32")

    @Test func missingTensorIsNamed() throws {
        let p = try rewrite(src) { _, t in t.removeAll { $0.0.name == "blk.1.ffn_up.weight" } }
        defer { try? FileManager.default.removeItem(atPath: p) }
        #expect(throws: LlamaError.missingTensor("blk.1.ffn_up.weight")) { try LlamaModel(path: p) }
    }

    @Test func extraTensorIsNamed() throws {
        let p = try rewrite(src) { _, t in
            t.append((GGUFTensorPlan(name: "rope_freqs.weight", dims: [4], type: .f32), [UInt8](repeating: 0, count: 16)))
        }
        defer { try? FileManager.default.removeItem(atPath: p) }
        #expect(throws: LlamaError.unexpectedTensor("rope_freqs.weight")) { try LlamaModel(path: p) }
    }

    @Test func wrongShapeIsNamed() throws {
        let p = try rewrite(src) { _, t in
            let i = t.firstIndex { $0.0.name == "blk.0.ffn_gate.weight" }!
            let (plan, bytes) = t[i]
            t[i] = (GGUFTensorPlan(name: plan.name, dims: [plan.dims[1], plan.dims[0]], type: plan.type), bytes)
        }
        defer { try? FileManager.default.removeItem(atPath: p) }
        #expect(throws: LlamaError.wrongShape(tensor: "blk.0.ffn_gate.weight", expected: [64, 96], found: [96, 64])) {
            try LlamaModel(path: p)
        }
    }

    @Test func unsupportedRopeScalingIsAnError() throws {
        let p = try rewrite(src) { m, _ in m.append(("llama.rope.scaling.type", .string("yarn"))) }
        defer { try? FileManager.default.removeItem(atPath: p) }
        #expect(throws: LlamaError.unsupported("rope scaling type 'yarn' (palr supports none and linear)")) { try LlamaModel(path: p) }
    }

    /// A RoPE base must be finite and above 1 (at 1 or below every frequency is ≥ 1).
    @Test func nonFiniteRopeBaseOrEpsilonIsAnError() throws {
        for (key, value) in [("llama.rope.freq_base", Float.infinity), ("llama.rope.freq_base", .nan),
                             ("llama.rope.freq_base", 1), ("llama.rope.freq_base", 1e-30),
                             ("llama.attention.layer_norm_rms_epsilon", .infinity)] {
            let p = try rewrite(src) { m, _ in
                m.removeAll { $0.0 == key }
                m.append((key, .float32(value)))
            }
            defer { try? FileManager.default.removeItem(atPath: p) }
            #expect(throws: LlamaError.self, "\(key) = \(value)") { try LlamaModel(path: p) }
        }
    }

    @Test func missingConfigKeyIsNamed() throws {
        let p = try rewrite(src) { m, _ in m.removeAll { $0.0 == "llama.block_count" } }
        defer { try? FileManager.default.removeItem(atPath: p) }
        #expect(throws: LlamaError.gguf(.missingKey("llama.block_count"))) { try LlamaModel(path: p) }
    }

    @Test func blasCoreRecommendation() {
        // A generic core on an AVX-512 CPU gets SkylakeX, on AVX2 Haswell; a good core is left alone.
        #if arch(x86_64)
        let avx512: UInt32 = 0b11_1011  // avx2, fma, avx512f, avx512bw, avx512vl
        #expect(BLAS.recommendedCoreType(features: avx512, loaded: "Prescott") == "SkylakeX")
        #expect(BLAS.recommendedCoreType(features: 0b11, loaded: "Prescott") == "Haswell")
        #expect(BLAS.recommendedCoreType(features: avx512, loaded: "SkylakeX") == nil)
        #expect(BLAS.recommendedCoreType(features: 0, loaded: "Prescott") == nil)
        #endif
    }
}
