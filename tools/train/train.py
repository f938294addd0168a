"""Step 3: trains the letters-mode ranker from scratch on CPU and saves an HF checkpoint.

Loss: cross-entropy over the 20 label logits ("A".."T") at the prompt's last position,
target = the label of the true next item (exactly what the Swift ranker reads), plus an
auxiliary listwise loss (weight --aux, training only): a learned vector scores the
hidden state at the end of each candidate line (output of the second-to-last layer), and
those 20 scores get the same cross-entropy. It gives 20 gradient paths per prompt to
"is this candidate the next item?" and is dropped from the saved model.

Batches group prompts of similar length (right padding; the causal mask makes a
padding tail harmless). Prints the validation NDCG@10 / HR@10 of the model's ranking
and of the retrieval order after every epoch (and every --val-every steps).

Options tried to get the model past the retrieval order (README, "What it reaches"):
a sampled-negative curriculum (--neg-frac, on by default), an ordinal year-piece init
(--year-init, on), language-model pre-training on history windows (--lm-epochs),
distillation from a feature teacher (--distill, teacher.py) and a synthetic pointer
curriculum (--copy-frac).

    python3 train.py [--epochs 2] [--hidden 128] [--layers 4] ... [--out /tmp/palr-train/ckpt]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

import common
import model as M
import teacher


def aux_positions(ids: np.ndarray, line_start: int, newline: int) -> np.ndarray:
    """The last token of each candidate line: before the next "\\n(" piece, and for
    the last candidate before the final newline (the one ahead of "Next: (")."""
    starts = np.flatnonzero(ids == line_start)
    last_nl = np.flatnonzero(ids == newline)[-1]
    return np.concatenate([starts[1:] - 1, [last_nl - 1]])


class NegativeSampler:
    """Sampled-negative versions of training examples (a curriculum, --neg-frac): the
    target among 19 items drawn by their frequency among the training users (not in
    the history, distinct), at a uniformly random label. Easy lists that can only be
    solved by reading the titles against the history: they teach the content circuits
    (which candidate fits this history) that the real retrieval lists, dominated by the
    position prior, teach slowly."""

    def __init__(self, pb: common.PromptBuilder, titles: list[str], counts: np.ndarray, seed: int,
                 line_start: int, newline: int):
        self.pb = pb
        self.titles = titles
        self.p = counts / counts.sum()
        self.rng = np.random.default_rng(seed)
        self.line_start, self.newline = line_start, newline

    def __call__(self, e: dict) -> dict:
        exclude = set(e["history"]) | {e["target"]}
        picks: list[int] = []
        while len(picks) < common.MAX_CANDIDATES - 1:
            for j in self.rng.choice(len(self.p), size=32, p=self.p).tolist():
                if j not in exclude and len(picks) < common.MAX_CANDIDATES - 1:
                    exclude.add(j)
                    picks.append(j)
        label = int(self.rng.integers(common.MAX_CANDIDATES))
        cands = picks[:label] + [e["target"]] + picks[label:]
        ids = np.array(self.pb.ids([self.titles[i] for i in e["history"]], [self.titles[i] for i in cands]),
                       dtype=np.int16)
        return {"ids": ids, "label": label, "candidates": cands,
                "aux": aux_positions(ids, self.line_start, self.newline)}


class CopySampler:
    """Synthetic pointer examples (a curriculum, --copy-frac): a real training prompt
    whose candidate j is replaced by one of the five most recent history titles, and
    the label is j. The answer is certain from the text, so the model quickly forms
    the circuit the real task needs and finds slowly from its weak signal: match each
    candidate line against the recent history, carry the line's label along, and point
    the last position at the best line's label."""

    def __init__(self, pb: common.PromptBuilder, titles: list[str], seed: int, line_start: int, newline: int):
        self.pb = pb
        self.titles = titles
        self.rng = np.random.default_rng(seed + 1)
        self.line_start, self.newline = line_start, newline

    def __call__(self, e: dict) -> dict:
        h = e["history"]
        j = int(self.rng.integers(len(e["candidates"])))
        src = h[-1 - int(self.rng.integers(min(5, len(h))))]
        cand_titles = [self.titles[i] for i in e["cand_idx"]]
        cand_titles[j] = self.titles[src]
        ids = np.array(self.pb.ids([self.titles[i] for i in h], cand_titles), dtype=np.int16)
        return {"ids": ids, "label": j, "candidates": e["candidates"],
                "aux": aux_positions(ids, self.line_start, self.newline)}


def init_year_pieces(net: M.TinyLlama, sp, scale: float = 0.5, seed: int = 0) -> int:
    """Gives the year pieces ("▁(1995)") an ordinal component: a fixed random projection
    of sinusoids of the year (periods 5-160 years) added to their random embedding, so
    that nearby years start out similar. Returns how many pieces it touched."""
    import re

    g = torch.Generator().manual_seed(seed)
    periods = torch.tensor([5.0, 10.0, 20.0, 40.0, 80.0, 160.0])
    proj = torch.randn(2 * len(periods), net.c.hidden_size, generator=g) / np.sqrt(2 * len(periods))
    n = 0
    with torch.no_grad():
        emb = net.model.embed_tokens.weight
        for i in range(sp.get_piece_size()):
            m = re.fullmatch(r"▁?\((\d{4})\)", sp.id_to_piece(i))
            if not m:
                continue
            y = float(m.group(1))
            f = torch.cat([torch.cos(2 * np.pi * y / periods), torch.sin(2 * np.pi * y / periods)])
            v = f @ proj
            emb[i] += scale * emb.norm(dim=1).mean() * v / v.norm()
            n += 1
    return n


def lm_windows(pb: common.PromptBuilder, seqs, titles_by_id: dict[str, str], window: int, stride: int) -> list[np.ndarray]:
    """Phase 1 data: the training users' histories as the prompt writes them
    ("Watched, most recent last:\n- title\n..."), windows of `window` items every
    `stride`, without each user's last two items (the validation targets)."""
    out = []
    for u, s in seqs.items():
        if common.is_held_out(u):
            continue
        items = [titles_by_id[x.item] for x in s[:-2] if x.item in titles_by_id]
        for a in range(0, max(1, len(items) - window + stride), stride):
            w = items[a:a + window]
            if len(w) < 2:
                continue
            text = common.LETTERS_TEMPLATE.split("{history}")[0] + "".join(
                common.HISTORY_ITEM.replace("{title}", pb.cut_title(t)) for t in w)
            out.append(np.array([pb.sp.bos_id()] + pb.sp.encode(text), dtype=np.int16))
    return out


def lm_loss(net, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over right-padded sequences: every token after the first
    is a target, padding is not."""
    target = ids[:, 1:].clone()
    target[torch.arange(ids.shape[1] - 1)[None, :] >= (lengths[:, None] - 1)] = -100
    logits = net.lm_logits(ids[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)


def adamw(net, lr: float, weight_decay: float, extra_decay=(), extra_no_decay=()) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms or biases)."""
    decay = [p for p in net.parameters() if p.dim() >= 2] + list(extra_decay)
    no_decay = [p for p in net.parameters() if p.dim() < 2] + list(extra_no_decay)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-8)


def start_run(args) -> tuple[random.Random, spm.SentencePieceProcessor, str, float]:
    """Threads and seeds from args; the tokenizer in args.work. Returns (rng, sp, tokenizer path, start time)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok_path = os.path.join(args.work, "tokenizer.model")
    return random.Random(args.seed), spm.SentencePieceProcessor(model_file=tok_path), tok_path, time.time()


def epoch_plan(examples: list[dict], epochs: float, max_tokens: int, max_seqs: int, rng: random.Random) -> list[list]:
    """The whole schedule up front, one list of batches per epoch (a fractional last epoch
    is cut), so that it depends only on the seed, not on the machine's load."""
    n_epochs = int(np.ceil(epochs))
    plan = [batches(examples, max_tokens, max_seqs, rng) for _ in range(n_epochs)]
    if epochs < n_epochs:
        plan[-1] = plan[-1][: int(len(plan[-1]) * (epochs - (n_epochs - 1)))]
    return plan


def pretrain_lm(net, windows: list[np.ndarray], epochs: float, lr: float, warmup: int, weight_decay: float,
                max_tokens: int, max_seqs: int, rng: random.Random, t0: float) -> None:
    """Phase 1: next-token prediction on history windows (every title token is a target),
    so that the letters phase starts from title representations that already know
    what is watched with what, and when."""
    exs = [{"ids": w} for w in windows]
    n_epochs = int(np.ceil(epochs))
    plan = [b for _ in range(n_epochs) for b in batches(exs, max_tokens, max_seqs, rng)]
    plan = plan[: int(len(plan) * epochs / n_epochs)]
    opt = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    print(f"phase 1 (language model on {len(windows)} history windows): {len(plan)} steps", flush=True)
    run = 0.0
    for step, b in enumerate(plan, 1):
        ids, lengths, _ = collate(b)
        for g in opt.param_groups:
            g["lr"] = M.cosine_lr(step - 1, len(plan), lr, warmup)
        loss = lm_loss(net, ids, lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        run += loss.item()
        if step % 50 == 0:
            print(f"  lm step {step}/{len(plan)}  loss {run / 50:.4f}  {(time.time() - t0) / 60:.1f} min", flush=True)
            run = 0.0


def batches(examples: list[dict], max_tokens: int, max_seqs: int, rng: random.Random) -> list[list[dict]]:
    """Length-grouped batches in random order: shuffle, sort within chunks of 50
    batches' worth, cut by padded size, shuffle the batches."""
    ex = examples[:]
    rng.shuffle(ex)
    out = []
    chunk = max_seqs * 50
    for c in range(0, len(ex), chunk):
        part = sorted(ex[c:c + chunk], key=lambda e: len(e["ids"]))
        cur: list[dict] = []
        for e in part:
            longest = max([len(e["ids"])] + [len(x["ids"]) for x in cur])
            if cur and (len(cur) + 1 > max_seqs or longest * (len(cur) + 1) > max_tokens):
                out.append(cur)
                cur = []
            cur.append(e)
        if cur:
            out.append(cur)
    rng.shuffle(out)
    return out


def collate(batch: list[dict]):
    L = max(len(e["ids"]) for e in batch)
    ids = torch.zeros(len(batch), L, dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, :len(e["ids"])] = torch.from_numpy(e["ids"].astype(np.int64))
    lengths = torch.tensor([len(e["ids"]) for e in batch])
    labels = torch.tensor([e.get("label", -1) for e in batch])
    return ids, lengths, labels


def rank_scores(net, examples: list[dict], label_ids, batch_size: int = 16) -> list[np.ndarray]:
    """Label logits (n_candidates,) for each example, in order."""
    net.eval()
    out: list[np.ndarray | None] = [None] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["ids"]))
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            ids, lengths, _ = collate([examples[i] for i in idx])
            logits, _ = net(ids, lengths, label_ids)
            for j, i in enumerate(idx):
                out[i] = logits[j, :len(examples[i]["candidates"])].numpy()
    net.train()
    return out  # type: ignore[return-value]


def model_rank(scores: np.ndarray, label: int) -> int:
    """1-based rank of the label; ties count against it (as the evaluator does)."""
    return int((scores >= scores[label]).sum())


def validate(net, val: list[dict], label_ids) -> dict:
    hits = [e for e in val if e["label"] >= 0]
    scores = rank_scores(net, hits, label_ids)
    m = {"model": [0.0, 0.0], "retrieval": [0.0, 0.0]}
    for e, s in zip(hits, scores):
        r = model_rank(s, e["label"])
        m["model"][0] += common.ndcg_at(r)
        m["model"][1] += common.hit_at(r)
        m["retrieval"][0] += common.ndcg_at(e["label"] + 1)
        m["retrieval"][1] += common.hit_at(e["label"] + 1)
    n = len(val)
    return {k: {"NDCG@10": v[0] / n, "HR@10": v[1] / n} for k, v in m.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=common.WORK_DIR)
    ap.add_argument("--out", default=None, help="checkpoint folder (default WORK/ckpt)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=384)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--aux", type=float, default=0.5, help="weight of the auxiliary candidate-line loss")
    ap.add_argument("--max-tokens", type=int, default=6144, help="padded tokens per batch")
    ap.add_argument("--max-seqs", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--distill", type=float, default=0.0,
                    help="weight of the feature teacher's soft targets in the loss (teacher.py; 0: off)")
    ap.add_argument("--lm-epochs", type=float, default=0.0, help="phase 1 epochs over history windows (0: none)")
    ap.add_argument("--lm-window", type=int, default=20)
    ap.add_argument("--lm-stride", type=int, default=10)
    ap.add_argument("--neg-frac", type=float, default=0.5,
                    help="share of sampled-negative examples at the start (decays linearly to 0)")
    ap.add_argument("--neg-until", type=float, default=0.4, help="fraction of the steps after which it is 0")
    ap.add_argument("--copy-frac", type=float, default=0.0,
                    help="share of synthetic pointer examples at the start (decays linearly to 0)")
    ap.add_argument("--copy-until", type=float, default=0.5, help="fraction of the steps after which it is 0")
    ap.add_argument("--year-init", type=float, default=0.5, help="ordinal year-piece init scale (0: off)")
    ap.add_argument("--val-every", type=int, default=250, help="also validate every N steps")
    ap.add_argument("--compile", type=int, default=1, help="torch.compile the model (1) or not (0)")
    args = ap.parse_args()
    out_dir = args.out or os.path.join(args.work, "ckpt")

    rng, sp, tok_path, t0 = start_run(args)
    pb = common.PromptBuilder(sp)
    label_ids = torch.tensor(pb.label_ids)
    line_start, newline = sp.piece_to_id("\n("), sp.piece_to_id("<0x0A>")
    with open(os.path.join(args.work, "examples.pkl"), "rb") as f:
        data = pickle.load(f)
    train, val = data["train"], data["val"]
    for e in train:
        e["aux"] = aux_positions(e["ids"], line_start, newline)
        assert len(e["aux"]) == len(e["candidates"]) == common.MAX_CANDIDATES
    if args.distill > 0:
        feats = teacher.Features(data["titles"], data["item_ids"], data["item_counts"])
        soft, ce_t, ce_p = teacher.soft_targets(train, feats, data["folds"], common.fold_of)
        for e, p in zip(train, soft):
            e["soft"] = p
        print(f"teacher (cross-fitted): cross-entropy {ce_t:.4f} vs the position prior's {ce_p:.4f}")
    print(f"examples: {len(train)} training, {len(val)} validation "
          f"({sum(e['label'] >= 0 for e in val)} with the target among the candidates)")

    cfg = M.Config(vocab_size=sp.get_piece_size(), hidden_size=args.hidden, intermediate_size=args.intermediate,
                   num_hidden_layers=args.layers, num_attention_heads=args.heads)
    net = M.build(cfg, args.seed)
    if args.year_init > 0:
        print(f"year pieces with an ordinal init: {init_year_pieces(net, sp, args.year_init, args.seed)}")
    sampler = NegativeSampler(pb, data["titles"], data["item_counts"], args.seed, line_start, newline)
    copier = CopySampler(pb, data["titles"], args.seed, line_start, newline)
    index = {x: i for i, x in enumerate(data["item_ids"])}
    for e in train:
        e["cand_idx"] = [index[x] for x in e["candidates"]]
    aux_head = torch.nn.Linear(args.hidden, 1)          # training only
    torch.nn.init.zeros_(aux_head.weight)
    print(f"model: {net.num_parameters() / 1e6:.2f}M parameters, config {json.dumps(cfg.hf_dict())}")
    if args.lm_epochs > 0:
        seqs = common.read_sequences()
        titles_by_id = dict(common.read_movies())
        windows = lm_windows(pb, seqs, titles_by_id, args.lm_window, args.lm_stride)
        pretrain_lm(net, windows, args.lm_epochs, args.lr, args.warmup, args.weight_decay,
                    args.max_tokens, args.max_seqs * 2, rng, t0)
    fwd = torch.compile(net, dynamic=True) if args.compile else net

    opt = adamw(net, args.lr, args.weight_decay, [aux_head.weight], [aux_head.bias])
    plan = epoch_plan(train, args.epochs, args.max_tokens, args.max_seqs, rng)
    total = sum(len(p) for p in plan)
    print(f"schedule: {total} steps over {args.epochs} epochs, peak lr {args.lr}, warmup {args.warmup}")

    v = validate(net, val, label_ids)
    print(f"epoch 0: validation NDCG@10 model {v['model']['NDCG@10']:.4f} retrieval {v['retrieval']['NDCG@10']:.4f}; "
          f"HR@10 model {v['model']['HR@10']:.4f} retrieval {v['retrieval']['HR@10']:.4f}", flush=True)
    history = []
    step = 0
    run_loss = run_main = 0.0
    for ep, epoch_batches in enumerate(plan, 1):
        te = time.time()
        for b in epoch_batches:
            p_neg = args.neg_frac * max(0.0, 1.0 - step / max(1.0, args.neg_until * total))
            if p_neg > 0:
                b = [sampler(e) if rng.random() < p_neg else e for e in b]
            p_copy = args.copy_frac * max(0.0, 1.0 - step / max(1.0, args.copy_until * total))
            if p_copy > 0:
                b = [copier(e) if rng.random() < p_copy else e for e in b]
            ids, lengths, labels = collate(b)
            aux_pos = torch.from_numpy(np.stack([e["aux"] for e in b]).astype(np.int64))
            for g in opt.param_groups:
                g["lr"] = M.cosine_lr(step, total, args.lr, args.warmup)
            logits, aux_h = fwd(ids, lengths, label_ids, aux_pos)
            target = labels
            if args.distill > 0:
                hard = F.one_hot(labels, common.MAX_CANDIDATES).float()
                soft = torch.stack([torch.from_numpy(e["soft"]) if "soft" in e else hard[i]
                                    for i, e in enumerate(b)])
                target = (1 - args.distill) * hard + args.distill * soft
            loss_main = F.cross_entropy(logits, target)
            loss = loss_main
            if args.aux > 0:
                aux_logits = aux_head(net.model.norm(aux_h)).squeeze(-1)      # (B, 20)
                loss = loss + args.aux * F.cross_entropy(aux_logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(net.parameters()) + list(aux_head.parameters()), 1.0)
            opt.step()
            step += 1
            run_loss += loss.item()
            run_main += loss_main.item()
            if step % 50 == 0:
                el = time.time() - t0
                print(f"  step {step}/{total}  loss {run_loss / 50:.4f} (main {run_main / 50:.4f})  "
                      f"lr {opt.param_groups[0]['lr']:.2e}  {el / 60:.1f} min, "
                      f"eta {el / step * (total - step) / 60:.1f} min", flush=True)
                run_loss = run_main = 0.0
            if args.val_every and step % args.val_every == 0 and step % len(epoch_batches) != 0:
                v = validate(net, val, label_ids)
                print(f"  step {step}: validation NDCG@10 model {v['model']['NDCG@10']:.4f} retrieval "
                      f"{v['retrieval']['NDCG@10']:.4f}; HR@10 model {v['model']['HR@10']:.4f}", flush=True)
        v = validate(net, val, label_ids)
        v["epoch"] = ep
        v["minutes"] = (time.time() - t0) / 60
        history.append(v)
        print(f"epoch {ep}: validation NDCG@10 model {v['model']['NDCG@10']:.4f} retrieval "
              f"{v['retrieval']['NDCG@10']:.4f}; HR@10 model {v['model']['HR@10']:.4f} retrieval "
              f"{v['retrieval']['HR@10']:.4f}  ({(time.time() - te) / 60:.1f} min this epoch)", flush=True)

    net.save_hf(out_dir, tok_path)
    sample = [e["ids"].astype(np.int64).tolist() for e in val if e["label"] >= 0][:3]
    diff = M.check_against_transformers(net, out_dir, sample, label_ids)
    print(f"saved {out_dir}; transformers' logits differ from ours by at most {diff:.2e}")
    assert diff < 1e-3
    with open(os.path.join(out_dir, "training.json"), "w") as f:
        json.dump({"args": vars(args), "parameters": net.num_parameters(), "steps": total,
                   "minutes": (time.time() - t0) / 60, "validation": history}, f, indent=2)
    print(f"training took {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
