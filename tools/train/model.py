"""A LLaMA in plain PyTorch, parameter for parameter the transformers
LlamaForCausalLM (same names, same math), made cheap for letters-mode training:

  - one causal pass over right-padded prompts (no attention mask: a padded tail
    cannot reach earlier positions);
  - the last layer runs its attention query and its MLP only at each prompt's last
    position, the only one whose output is read;
  - the output projection is evaluated only for the 20 label pieces "A".."T".

`save_hf` writes config.json + model.safetensors that transformers loads as a
LlamaForCausalLM; `check_against_transformers` proves the logits agree.
"""

from __future__ import annotations

import json
import math
import os

import torch
import torch.nn.functional as F
from torch import nn


class Config:
    def __init__(self, vocab_size: int, hidden_size: int = 256, intermediate_size: int = 768,
                 num_hidden_layers: int = 4, num_attention_heads: int = 8, num_key_value_heads: int | None = None,
                 max_position_embeddings: int = 1024, rope_theta: float = 10000.0, rms_norm_eps: float = 1e-5):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        assert hidden_size % 32 == 0 and intermediate_size % 32 == 0, "Q4_0 needs rows that are multiples of 32"
        assert hidden_size % num_attention_heads == 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def hf_dict(self, bos: int = 1, eos: int = 2) -> dict:
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim, "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta, "rms_norm_eps": self.rms_norm_eps, "hidden_act": "silu",
            "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False,
            "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": "float32",
        }


class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Attention(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        hd = c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * hd, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=False)
        self.o_proj = nn.Linear(c.num_attention_heads * hd, c.hidden_size, bias=False)


class MLP(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        gu = F.linear(x, torch.cat([self.gate_proj.weight, self.up_proj.weight]))   # (…, 2·inter)
        g, u = gu.split(self.gate_proj.out_features, dim=-1)
        return self.down_proj(F.silu(g) * u)


class Layer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class TinyLlama(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.model.layers = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])
        self.model.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        inv = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.int64).float() / c.head_dim))
        pos = torch.arange(c.max_position_embeddings).float()
        emb = torch.cat([torch.outer(pos, inv)] * 2, dim=-1)    # (max_pos, head_dim), HF layout
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def _qkv(self, layer: Layer, h):
        a = layer.self_attn
        w = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
        return F.linear(h, w).split([a.q_proj.out_features, a.k_proj.out_features, a.v_proj.out_features], dim=-1)

    def _heads(self, x, n):       # (B, T, n·hd) → (B, n, T, hd)
        B, T, _ = x.shape
        return x.view(B, T, n, self.c.head_dim).transpose(1, 2)

    def _block(self, layer: Layer, x, cos, sin):
        """One decoder layer over every position (causal): h = x + attn(norm(x)); h + mlp(norm(h))."""
        B, T, _ = x.shape
        nh, nkv, hd = self.c.num_attention_heads, self.c.num_key_value_heads, self.c.head_dim
        q, k, v = self._qkv(layer, layer.input_layernorm(x))
        q, k, v = self._heads(q, nh), self._heads(k, nkv), self._heads(v, nkv)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=nkv != nh)
        x = x + layer.self_attn.o_proj(o.transpose(1, 2).reshape(B, T, nh * hd))
        return x + layer.mlp(layer.post_attention_layernorm(x))

    def lm_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits at every position (B, T, vocab): the plain causal LM."""
        T = ids.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = self._block(layer, x, cos, sin)
        return self.model.norm(x) @ self.model.embed_tokens.weight.T

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, label_ids: torch.Tensor,
                aux_positions: torch.Tensor | None = None):
        """ids (B, T) right-padded; lengths (B,). Returns the label logits (B, n_labels)
        at each prompt's last position, and, when aux_positions (B, P) is given, the
        final-norm hidden states there (B, P, hidden) from the second-to-last layer's
        output (for an auxiliary loss)."""
        c = self.c
        B, T = ids.shape
        nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        cos, sin = self.cos[:T], self.sin[:T]                      # (T, hd)
        x = self.model.embed_tokens(ids)                           # (B, T, hidden)
        layers = self.model.layers
        for layer in layers[:-1]:
            x = self._block(layer, x, cos, sin)
        aux = None
        if aux_positions is not None:
            aux = x.gather(1, aux_positions[..., None].expand(-1, -1, x.shape[-1]))
        # Last layer: keys/values everywhere, query and MLP at the last position only.
        layer = layers[-1]
        last = lengths - 1                                         # (B,)
        h = layer.input_layernorm(x)
        a = layer.self_attn
        kv = F.linear(h, torch.cat([a.k_proj.weight, a.v_proj.weight]))
        k, v = kv.split([a.k_proj.out_features, a.v_proj.out_features], dim=-1)
        k, v = self._heads(k, nkv), self._heads(v, nkv)
        k = k * cos + rotate_half(k) * sin
        rows = torch.arange(B)
        x_last = x[rows, last]                                     # (B, hidden)
        q = a.q_proj(h[rows, last]).view(B, nh, 1, hd)
        q = q * cos[last][:, None, None] + rotate_half(q) * sin[last][:, None, None]
        mask = (torch.arange(T)[None, :] <= last[:, None])[:, None, None, :]   # (B, 1, 1, T)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=nkv != nh)  # (B, nh, 1, hd)
        x_last = x_last + a.o_proj(o.reshape(B, nh * hd))
        x_last = x_last + layer.mlp(layer.post_attention_layernorm(x_last))
        hidden = self.model.norm(x_last)
        logits = hidden @ self.model.embed_tokens.weight[label_ids].T   # tied output, label rows only
        return logits, aux

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_hf(self, directory: str, tokenizer_model: str) -> None:
        """config.json, model.safetensors (HF names, lm_head tied) and tokenizer.model."""
        import shutil

        from safetensors.torch import save_file

        os.makedirs(directory, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(self.c.hf_dict(), f, indent=2)
        shutil.copyfile(tokenizer_model, os.path.join(directory, "tokenizer.model"))


def check_against_transformers(model: TinyLlama, directory: str, prompts: list[list[int]], label_ids) -> float:
    """Loads the saved checkpoint with transformers and returns the largest difference
    between its last-position label logits and ours."""
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(directory, torch_dtype=torch.float32)
    hf.eval()
    model.eval()
    worst = 0.0
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([p])
            ref = hf(input_ids=ids).logits[0, -1, label_ids]
            ours, _ = model(ids, torch.tensor([len(p)]), label_ids)
            worst = max(worst, (ref - ours[0]).abs().max().item())
    return worst


def build(c: Config, seed: int) -> TinyLlama:
    torch.manual_seed(seed)
    return TinyLlama(c)


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))
