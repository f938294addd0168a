// Hugging Face LlamaForCausalLM tensor names ↔ llama.cpp GGUF names, and the
// q/k row permutation between their RoPE layouts.

/// One GGUF tensor and where it comes from in the checkpoint.
public struct TensorMapping: Sendable, Equatable {
    public let gguf: String
    public let hf: String
    /// PyTorch shape: [out, in] for a matrix, [n] for a norm.
    public let hfShape: [Int]
    /// Heads for the q/k permutation (n_head for q, n_head_kv for k), nil otherwise.
    public let permuteHeads: Int?

    public var isMatrix: Bool { hfShape.count == 2 }
}

public enum LlamaNames {
    /// The Linear modules of a LLaMA block (what PEFT's "all-linear" means here).
    public static let linearModules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    /// Every tensor of the GGUF file, in the order it is written.
    public static func mappings(_ c: HFConfig) -> [TensorMapping] {
        let d = c.hiddenSize
        var m = [TensorMapping(gguf: "token_embd.weight", hf: "model.embed_tokens.weight", hfShape: [c.vocabSize, d], permuteHeads: nil)]
        for l in 0..<c.layerCount {
            let g = "blk.\(l).", h = "model.layers.\(l)."
            m += [
                TensorMapping(gguf: g + "attn_norm.weight", hf: h + "input_layernorm.weight", hfShape: [d], permuteHeads: nil),
                TensorMapping(gguf: g + "attn_q.weight", hf: h + "self_attn.q_proj.weight", hfShape: [c.qDim, d], permuteHeads: c.headCount),
                TensorMapping(gguf: g + "attn_k.weight", hf: h + "self_attn.k_proj.weight", hfShape: [c.kvDim, d], permuteHeads: c.kvHeadCount),
                TensorMapping(gguf: g + "attn_v.weight", hf: h + "self_attn.v_proj.weight", hfShape: [c.kvDim, d], permuteHeads: nil),
                TensorMapping(gguf: g + "attn_output.weight", hf: h + "self_attn.o_proj.weight", hfShape: [d, c.qDim], permuteHeads: nil),
                TensorMapping(gguf: g + "ffn_norm.weight", hf: h + "post_attention_layernorm.weight", hfShape: [d], permuteHeads: nil),
                TensorMapping(gguf: g + "ffn_gate.weight", hf: h + "mlp.gate_proj.weight", hfShape: [c.intermediateSize, d], permuteHeads: nil),
                TensorMapping(gguf: g + "ffn_up.weight", hf: h + "mlp.up_proj.weight", hfShape: [c.intermediateSize, d], permuteHeads: nil),
                TensorMapping(gguf: g + "ffn_down.weight", hf: h + "mlp.down_proj.weight", hfShape: [d, c.intermediateSize], permuteHeads: nil),
            ]
        }
        m.append(TensorMapping(gguf: "output_norm.weight", hf: "model.norm.weight", hfShape: [d], permuteHeads: nil))
        if !c.tiedEmbeddings {
            m.append(TensorMapping(gguf: "output.weight", hf: "lm_head.weight", hfShape: [c.vocabSize, d], permuteHeads: nil))
        }
        return m
    }

    /// Checkpoint tensors that carry nothing the GGUF needs: rotary tables that old
    /// checkpoints saved, and lm_head when the config ties it to embed_tokens.
    public static func isIgnorable(_ hfName: String, _ c: HFConfig) -> Bool {
        hfName.hasSuffix(".self_attn.rotary_emb.inv_freq") || (c.tiedEmbeddings && hfName == "lm_head.weight")
    }

    /// "model.layers.12.mlp.up_proj" → 12.
    public static func layerIndex(_ module: String) -> Int? {
        let parts = module.split(separator: ".")
        guard let i = parts.firstIndex(of: "layers"), i + 1 < parts.count else { return nil }
        return Int(parts[i + 1])
    }

    /// The q/k permutation of llama.cpp's convert_hf_to_gguf.py:
    ///   w.reshape(heads, 2, rows/heads/2, cols).swapaxes(1, 2).reshape(rows, cols)
    /// It takes HF's rotate_half layout (pairs (i, i + head_dim/2)) to the adjacent
    /// pairs (2i, 2i+1) that llama.cpp's RoPE rotates. Returns the HF source row of
    /// GGUF row `row`.
    @inline(__always)
    public static func permutedSourceRow(_ row: Int, rows: Int, heads: Int) -> Int {
        let headDim = rows / heads
        let h = row / headDim, r = row % headDim
        return h * headDim + (r % 2) * (headDim / 2) + r / 2
    }
}
