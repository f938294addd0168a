"""Trains a likelihood-mode ranker: a small LLaMA that is a language model of viewing
histories written as titles, so that a candidate's score is the log-probability of
its title (plus the line's newline) after the likelihood prompt.

Prompt (mirror of Ranker.prompt(mode: .likelihood) with PALRSettings' defaults):
    "Watched, most recent last:\n- t1\n...- t20\nNext:"   + continuation " {title}\n"
The continuation is encoded on its own (SentencePiece's leading space, no BOS) and
followed by the newline piece, exactly as Ranker.continuation(_:) does.

Training text: for windows of a training user's history (every `--stride`-th target
position; the last two items are validation and never trained on), the prompt with
up to 20 history titles, then the target's continuation. Every token after BOS is a
next-token target, so every history line is itself a "what comes next" example (with a
shorter context) and the Next line teaches the scoring slot.

Validation: the 976 validation cases of examples.pkl (the last two items of every
training user, candidates from the cross-fitted packs). Reports NDCG@10 / HR@10 of
the retrieval order, of the likelihood order, and of the likelihood fused with the
retrieval position prior (score + w · log(1 / (1 + position))) for a few w.

    python3 train_lm.py [--epochs 3] [--hidden 192] [--layers 4] ... [--out WORK/ckpt-lm]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

import common
import model as M
from train import adamw, collate, epoch_plan, lm_loss, start_run

LIKELIHOOD_TEMPLATE = "Watched, most recent last:\n{history}{profile}Next:"
FUSION_WEIGHTS = [0.0, 1.0, 2.0, 3.0, 5.0, 8.0]
PMI_WEIGHTS = [0.25, 0.5]   # also scored: log p(title | history) − λ·log p(title | no history), fused


class LikelihoodPrompts:
    def __init__(self, pb: common.PromptBuilder):
        self.pb = pb
        sp = pb.sp
        nl = sp.encode("\n")
        self.newline = [i for i in nl if sp.id_to_piece(i) != "\u2581"]
        self._cont: dict[str, list[int]] = {}

    def prompt_ids(self, history: list[str]) -> list[int]:
        hist = "".join(common.HISTORY_ITEM.replace("{title}", self.pb.cut_title(t)) for t in common.shown_history(history))
        text = common._fill(LIKELIHOOD_TEMPLATE, {"history": hist, "profile": ""})
        return [self.pb.sp.bos_id()] + self.pb.sp.encode(text)

    def continuation(self, title: str) -> list[int]:
        c = self._cont.get(title)
        if c is None:
            c = self.pb.sp.encode(self.pb.cut_title(title)) + self.newline
            self._cont[title] = c
        return c


def training_windows(lp: LikelihoodPrompts, seqs, titles_by_id: dict[str, str], stride: int, seed: int) -> list[dict]:
    """One sequence per (training user, target position t ≡ offset mod stride), t < n-2."""
    rng = random.Random(seed)
    out = []
    for u, s in seqs.items():
        if common.is_held_out(u):
            continue
        items = [titles_by_id[x.item] for x in s[:-2] if x.item in titles_by_id]
        off = rng.randrange(stride)
        for t in range(1 + off, len(items), stride):
            ids = lp.prompt_ids(items[:t]) + lp.continuation(items[t])   # the prompt shows its window
            out.append({"ids": np.array(ids, dtype=np.int16)})
    return out


def continuation_logprobs(net, prompt: list[int], conts: list[list[int]]) -> np.ndarray:
    """Sum of log-probabilities of each continuation after the prompt (one batch)."""
    L = max(len(prompt) + len(c) for c in conts)
    ids = torch.zeros(len(conts), L, dtype=torch.long)
    for i, c in enumerate(conts):
        ids[i, :len(prompt) + len(c)] = torch.tensor(prompt + c)
    logp = F.log_softmax(net.lm_logits(ids), dim=-1)
    out = np.zeros(len(conts))
    for i, c in enumerate(conts):
        pos = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(c))
        out[i] = logp[i, pos, torch.tensor(c)].sum().item()
    return out


def validate(net, lp: LikelihoodPrompts, cases: list[dict], pmi: bool = False) -> dict:
    """cases: {"history": [titles], "candidates": [titles], "label": index or -1}."""
    net.eval()
    variants = [(f"w{w:g}", w, 0.0) for w in FUSION_WEIGHTS]
    if pmi:
        variants += [(f"pmi{l:g}w{w:g}", w, l) for l in PMI_WEIGHTS for w in FUSION_WEIGHTS[1:]]
    sums = {"retrieval": [0.0, 0.0], **{name: [0.0, 0.0] for name, _, _ in variants}}
    prior = -np.log1p(np.arange(common.MAX_CANDIDATES))
    unconditional: dict[str, float] = {}
    with torch.no_grad():
        for c in cases:
            if c["label"] < 0:
                continue
            sums["retrieval"][0] += common.ndcg_at(c["label"] + 1)
            sums["retrieval"][1] += common.hit_at(c["label"] + 1)
            lps = continuation_logprobs(net, lp.prompt_ids(c["history"]), [lp.continuation(t) for t in c["candidates"]])
            if pmi:
                todo = [t for t in c["candidates"] if t not in unconditional]
                if todo:
                    for t, v in zip(todo, continuation_logprobs(net, lp.prompt_ids([]), [lp.continuation(t) for t in todo])):
                        unconditional[t] = v
                base = np.array([unconditional[t] for t in c["candidates"]])
            for name, w, lam in variants:
                s = lps - lam * base if lam else lps
                s = s + w * prior[:len(lps)]
                r = int((s >= s[c["label"]]).sum())
                sums[name][0] += common.ndcg_at(r)
                sums[name][1] += common.hit_at(r)
    net.train()
    n = len(cases)
    return {k: {"NDCG@10": v[0] / n, "HR@10": v[1] / n} for k, v in sums.items()}


def show(v: dict) -> str:
    base = v["retrieval"]["NDCG@10"]
    return "  ".join(f"{k} {m['NDCG@10']:.4f} (×{m['NDCG@10'] / base:.3f})" for k, m in v.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=common.WORK_DIR)
    ap.add_argument("--out", default=None, help="checkpoint folder (default WORK/ckpt-lm)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--stride", type=int, default=4, help="a training window every N target positions")
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--max-tokens", type=int, default=8192, help="padded tokens per batch")
    ap.add_argument("--max-seqs", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--val-cases", type=int, default=0, help="validate on the first N cases (0: all)")
    ap.add_argument("--eval-only", default=None, metavar="CKPT",
                    help="no training: validate this checkpoint, with the PMI variants too")
    args = ap.parse_args()
    out_dir = args.out or os.path.join(args.work, "ckpt-lm")

    rng, sp, tok_path, t0 = start_run(args)
    lp = LikelihoodPrompts(common.PromptBuilder(sp))
    seqs = common.read_sequences()
    titles_by_id = dict(common.read_movies())
    with open(os.path.join(args.work, "examples.pkl"), "rb") as f:
        data = pickle.load(f)
    cases = []
    for e in data["val"]:
        s = seqs[e["user"]]
        hist = [titles_by_id[x.item] for x in s[:e["t"]] if x.item in titles_by_id]
        cases.append({"history": hist, "candidates": [titles_by_id[x] for x in e["candidates"]], "label": e["label"]})
    if args.val_cases:
        cases = cases[:args.val_cases]
    if args.eval_only:
        from evaluate import load_model
        print(f"validation NDCG@10 {show(validate(load_model(args.eval_only), lp, cases, pmi=True))}")
        return
    train = training_windows(lp, seqs, titles_by_id, args.stride, args.seed)
    ntok = sum(len(e["ids"]) for e in train)
    print(f"{len(train)} training windows ({ntok / 1e6:.2f}M tokens), {len(cases)} validation cases")

    cfg = M.Config(vocab_size=sp.get_piece_size(), hidden_size=args.hidden, intermediate_size=args.intermediate,
                   num_hidden_layers=args.layers, num_attention_heads=args.heads)
    net = M.build(cfg, args.seed)
    print(f"model: {net.num_parameters() / 1e6:.2f}M parameters, config {json.dumps(cfg.hf_dict())}")
    opt = adamw(net, args.lr, args.weight_decay)
    plan = epoch_plan(train, args.epochs, args.max_tokens, args.max_seqs, rng)
    total = sum(len(p) for p in plan)
    print(f"schedule: {total} steps over {args.epochs} epochs, peak lr {args.lr}", flush=True)
    history = []
    step = 0
    run = 0.0
    for ep, epoch_batches in enumerate(plan, 1):
        for b in epoch_batches:
            ids, lengths, _ = collate(b)
            for g in opt.param_groups:
                g["lr"] = M.cosine_lr(step, total, args.lr, args.warmup)
            loss = lm_loss(net, ids, lengths)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
            run += loss.item()
            if step % 50 == 0:
                el = time.time() - t0
                print(f"  step {step}/{total}  loss {run / 50:.4f}  {el / 60:.1f} min, "
                      f"eta {el / step * (total - step) / 60:.1f} min", flush=True)
                run = 0.0
            if args.val_every and step % args.val_every == 0 and step != total:
                print(f"  step {step}: validation NDCG@10 {show(validate(net, lp, cases))}", flush=True)
        v = validate(net, lp, cases)
        v["epoch"] = ep
        history.append(v)
        print(f"epoch {ep}: validation NDCG@10 {show({k: x for k, x in v.items() if k != 'epoch'})}", flush=True)
    net.save_hf(out_dir, tok_path)
    with open(os.path.join(out_dir, "training.json"), "w") as f:
        json.dump({"args": vars(args), "parameters": net.num_parameters(), "steps": total,
                   "minutes": (time.time() - t0) / 60, "validation": history}, f, indent=2)
    print(f"saved {out_dir}; training took {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
