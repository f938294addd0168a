"""Step 5: held-out quality of retrieval alone and of the full pipeline (retrieval top 20
→ the trained model's letters ranking), on users never trained on.

Protocols (both on the held-out users only; ranking against the full catalog):
  loo      leave-one-out as `palr eval` does it: the last item is the target, the
           history is everything before; neighbours from every user's sequence
           without its last item (`palr-convert catalog --hold-out 1`).
  last10   a lower-variance companion: each of the held-out users' last 10 positions
           is a target (history = everything before it); neighbours from every user's
           sequence without its last 10 items (`--hold-out 10`).
Ties in retrieval scores count against the target (as the Swift evaluator does);
ranks past 20 keep the retrieval order in the pipeline.

`--q4` also scores a copy of the model whose matrices went through the converter's
quantization (Q4_0, the tied embedding/output Q8_0, via gguf-py), i.e. what
models/palr-ml-small-q4_0.gguf computes up to kernel rounding.

    python3 evaluate.py --convert .build/release/palr-convert --ckpt /tmp/palr-train/ckpt [--q4]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import sentencepiece as spm
import torch

import common
import model as M
from retrieval import Pack, build_pack
from train import rank_scores


def load_model(ckpt: str) -> M.TinyLlama:
    from safetensors.torch import load_file

    with open(os.path.join(ckpt, "config.json")) as f:
        c = json.load(f)
    cfg = M.Config(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
                   num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
                   num_key_value_heads=c["num_key_value_heads"], max_position_embeddings=c["max_position_embeddings"],
                   rope_theta=c["rope_theta"], rms_norm_eps=c["rms_norm_eps"])
    net = M.TinyLlama(cfg)
    net.load_state_dict(load_file(os.path.join(ckpt, "model.safetensors")))
    net.eval()
    return net


def quantized_copy(net: M.TinyLlama) -> M.TinyLlama:
    """Round-trips every 2-D weight through ggml's quantizers (gguf-py): Q4_0, and Q8_0
    for the tied token embedding / output, as `palr-convert hf --type q4_0` writes them."""
    import copy

    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize, quantize

    q = copy.deepcopy(net)
    with torch.no_grad():
        for name, p in q.named_parameters():
            if p.dim() != 2:
                continue
            t = Q.Q8_0 if name == "model.embed_tokens.weight" else Q.Q4_0
            w = p.detach().numpy().astype(np.float32)
            p.copy_(torch.from_numpy(dequantize(quantize(w, t), t).reshape(w.shape)))
    return q


def retrieval_rank(items: list[int], scores: list[float], target: int) -> int | None:
    if target not in items:
        return None
    i = items.index(target)
    while i + 1 < len(items) and scores[i + 1] == scores[i]:
        i += 1
    return i + 1


def cases(seqs, pack: Pack, positions: int) -> list[dict]:
    out = []
    for u, s in seqs.items():
        if not common.is_held_out(u) or len(s) < 3:
            continue
        for t in range(max(1, len(s) - positions), len(s)):
            history = [x.item for x in s[:t]]
            items, scores = pack.retrieve_scored(history, 50)
            target = pack.index.get(s[t].item, -1)
            out.append({"user": u, "t": t, "history": history, "items": items, "scores": scores, "target": target})
    return out


def evaluate(cs: list[dict], pack: Pack, pb: common.PromptBuilder, nets: dict) -> dict:
    res = {"cases": len(cs), "retrieval": {}, **{k: {} for k in nets}}
    ranks = {"retrieval": [retrieval_rank(c["items"], c["scores"], c["target"]) for c in cs]}
    # Only prompts whose target is among the 20 candidates can change the metrics @10.
    todo = [i for i, r in enumerate(ranks["retrieval"]) if r is not None and cs[i]["target"] in cs[i]["items"][:20]]
    examples = []
    for i in todo:
        c = cs[i]
        cands = c["items"][:20]
        titles = [pack.titles[pack.index[x]] for x in c["history"] if x in pack.index]
        examples.append({"ids": np.array(pb.ids(titles, [pack.titles[j] for j in cands])), "candidates": cands})
    for name, net in nets.items():
        r = list(ranks["retrieval"])
        scores = rank_scores(net, examples, torch.tensor(pb.label_ids))
        for i, s in zip(todo, scores):
            label = cs[i]["items"].index(cs[i]["target"])
            r[i] = int((s >= s[label]).sum())
        ranks[name] = r
    for name, r in ranks.items():
        n = len(r)
        res[name] = {"HR@10": sum(common.hit_at(x, 10) for x in r) / n,
                     "NDCG@10": sum(common.ndcg_at(x, 10) for x in r) / n,
                     "HR@20": sum(common.hit_at(x, 20) for x in r) / n}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--convert", required=True)
    ap.add_argument("--ckpt", default=os.path.join(common.WORK_DIR, "ckpt"))
    ap.add_argument("--work", default=common.WORK_DIR)
    ap.add_argument("--q4", action="store_true")
    ap.add_argument("--protocols", default="loo,last10")
    args = ap.parse_args()
    torch.set_num_threads(2)

    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.ckpt, "tokenizer.model"))
    pb = common.PromptBuilder(sp)
    net = load_model(args.ckpt)
    nets = {"pipeline": net}
    if args.q4:
        nets["pipeline_q4"] = quantized_copy(net)
    seqs = common.read_sequences()
    ratings = os.path.join(common.DATA_DIR, "ratings.csv")
    report = {}
    for proto in args.protocols.split(","):
        hold = {"loo": 1, "last10": 10}[proto]
        pack_path = os.path.join(args.work, "packs", f"test-holdout{hold}.gguf")
        build_pack(args.convert, ratings, pack_path, hold_out=hold)
        pack = Pack(pack_path)
        res = evaluate(cases(seqs, pack, hold), pack, pb, nets)
        report[proto] = res
        print(f"{proto}: {res['cases']} cases from held-out users")
        for k in ["retrieval", *nets]:
            m = res[k]
            rel = m["NDCG@10"] / res["retrieval"]["NDCG@10"] if res["retrieval"]["NDCG@10"] else float("nan")
            print(f"  {k:12s} HR@10 {m['HR@10']:.4f}  NDCG@10 {m['NDCG@10']:.4f}  HR@20 {m['HR@20']:.4f}"
                  f"  (NDCG@10 ×{rel:.3f} of retrieval)")
    with open(os.path.join(args.ckpt, "heldout.json"), "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
