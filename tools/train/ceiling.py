"""How much can any reranker of the 20 retrieved candidates gain on this data?

Not part of the shipped recipe: a measurement that bounds what the letters-mode model
could reach. It trains a plain supervised reranker, with none of the LLM's handicaps,
on the same cross-fitted training examples (`WORK/examples.pkl`) and scores it as
evaluate.py scores the model:

  score(c | h) = position prior[rank of c in retrieval]        (the retrieval order)
               + item bias[c] + w · log popularity[c]
               + <C[c], attention of C[c] over E[h] + recency>  (learned item embeddings)
               + genres(h)ᵀ W genres(c)                          (--features genres)
               + linear(release years of c vs the history)       (--features years)

Item identity is given directly (an embedding per catalog item) instead of being read
from title tokens, and genres (movies.csv) are given although the prompt does not show
them. The model is trained with the same cross-entropy over the 20 candidates for a
fixed number of epochs, the figures are those after the last epoch (no selection on the
validation or test users), and each configuration runs with several seeds.

    python3 tools/train/ceiling.py [--features ids,genres,years] [--seeds 3]

Needs the outputs of build_examples.py and evaluate.py (`WORK/examples.pkl`,
`WORK/packs/test-holdout{1,10}.gguf`); pass --convert to build missing test packs.
"""

from __future__ import annotations

import argparse
import csv
import os
import re

import numpy as np
import torch

import common
from retrieval import Pack, build_pack

HISTORY = common.MAX_HISTORY
CANDIDATES = common.MAX_CANDIDATES


def release_year(title: str) -> float:
    m = re.search(r"\((\d{4})\)\s*$", title)
    return float(m.group(1)) if m else float("nan")


class Catalog:
    """Per catalog item (index of examples.pkl's item_ids, plus one padding row):
    genre distribution, release year, log popularity among the training users."""

    def __init__(self, item_ids: list[str], titles: list[str], counts: np.ndarray):
        self.index = {x: i for i, x in enumerate(item_ids)}
        self.pad = len(item_ids)
        genres: dict[str, list[str]] = {}
        with open(os.path.join(common.DATA_DIR, "movies.csv"), newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                genres[r["movieId"]] = r["genres"].split("|")
        names = sorted({g for v in genres.values() for g in v})
        col = {g: j for j, g in enumerate(names)}
        g = torch.zeros(self.pad + 1, len(names))
        for i, x in enumerate(item_ids):
            for name in genres.get(x, []):
                g[i, col[name]] = 1
        self.genres = g / g.sum(1, keepdim=True).clamp(min=1)
        y = np.array([release_year(t) for t in titles] + [float("nan")])
        self.year = torch.tensor(np.where(np.isnan(y), np.nanmedian(y), y), dtype=torch.float32)
        self.popularity = torch.tensor(np.append(np.log1p(counts), 0.0), dtype=torch.float32)


class Reranker(torch.nn.Module):
    def __init__(self, cat: Catalog, dim: int, features: set[str]):
        super().__init__()
        n = cat.pad + 1
        self.cat, self.features, self.pad = cat, features, cat.pad
        self.hist = torch.nn.Embedding(n, dim, padding_idx=cat.pad)
        self.cand = torch.nn.Embedding(n, dim)
        for e in (self.hist, self.cand):
            torch.nn.init.normal_(e.weight, 0, 0.01)
        self.recency_embedding = torch.nn.Parameter(torch.zeros(HISTORY, dim))
        self.recency_logit = torch.nn.Parameter(torch.zeros(HISTORY))
        self.query = torch.nn.Linear(dim, dim, bias=False)
        self.bias = torch.nn.Parameter(torch.zeros(n))
        self.w_pop = torch.nn.Parameter(torch.zeros(()))
        self.prior = torch.nn.Parameter(-torch.log1p(torch.arange(float(CANDIDATES))))
        self.genre_w = torch.nn.Parameter(torch.zeros(cat.genres.shape[1], cat.genres.shape[1]))
        self.year_w = torch.nn.Linear(4, 1)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """h: [B, HISTORY] item indices, left-padded; c: [B, CANDIDATES]. Returns [B, CANDIDATES]."""
        pad = h == self.pad
        s = self.prior + self.bias[c] + self.w_pop * self.cat.popularity[c]
        if "ids" in self.features:
            eh = self.hist(h) + self.recency_embedding
            ec = self.cand(c)
            a = torch.einsum("bkd,bhd->bkh", self.query(ec), eh) + self.recency_logit
            a = a.masked_fill(pad[:, None, :], -1e9).softmax(-1)
            s = s + (torch.einsum("bkh,bhd->bkd", a, eh) * ec).sum(-1)
        keep = (~pad).float()
        if "genres" in self.features:
            hg = (self.cat.genres[h] * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)
            s = s + torch.einsum("bg,gk,bck->bc", hg, self.genre_w, self.cat.genres[c])
        if "years" in self.features:
            yc, yl = self.cat.year[c], self.cat.year[h[:, -1]][:, None]
            ym = ((self.cat.year[h] * keep).sum(1) / keep.sum(1).clamp(min=1))[:, None]
            f = torch.stack([(yc - ym).abs(), yc - yl, (yc - yl).abs(), yc - 2000], -1) / 10
            s = s + self.year_w(f).squeeze(-1)
        return s


def tensors(cat: Catalog, rows: list[tuple[list[int], list[int], int]]):
    h = torch.tensor([[cat.pad] * (HISTORY - len(x)) + x[-HISTORY:] for x, _, _ in rows])
    c = torch.tensor([y for _, y, _ in rows])
    return h, c, torch.tensor([z for _, _, z in rows])


def ndcg(net: Reranker, h, c, label) -> float:
    """Mean NDCG@10 over all cases; label −1 (target not among the candidates) counts 0.
    Ties count against the target."""
    with torch.no_grad():
        s = net(h, c)
        rank = (s >= s.gather(1, label.clamp(min=0)[:, None])).sum(1)  # 1-based
    gain = torch.where((label >= 0) & (rank <= 10), 1 / torch.log2(rank.float() + 1), torch.zeros(()))
    return gain.mean().item()


def retrieval_ndcg(label: torch.Tensor) -> float:
    r = label + 1
    return torch.where((label >= 0) & (r <= 10), 1 / torch.log2(r.float() + 1), torch.zeros(())).mean().item()


def heldout_cases(cat: Catalog, seqs, pack: Pack, positions: int):
    """evaluate.py's held-out cases, as (history, candidates, label) in catalog indices;
    every case counts (label −1 when the target is not among the 20 candidates)."""
    rows = []
    for u, s in seqs.items():
        if not common.is_held_out(u) or len(s) < 3:
            continue
        for t in range(max(1, len(s) - positions), len(s)):
            hist = [cat.index[x.item] for x in s[:t] if x.item in cat.index]
            items = pack.retrieve([x.item for x in s[:t]], CANDIDATES)
            cands = [cat.index[pack.ids[i]] for i in items]
            target = cat.index.get(s[t].item, -1)
            rows.append((hist, cands + [cat.pad] * (CANDIDATES - len(cands)),
                         cands.index(target) if target in cands else -1))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=common.WORK_DIR)
    ap.add_argument("--convert", help="palr-convert, to build missing held-out packs")
    ap.add_argument("--features", default="ids,genres,years", help="any of ids, genres, years ('' = biases only)")
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--weight-decay", type=float, default=0.5)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    features = {f for f in args.features.split(",") if f}

    import pickle
    with open(os.path.join(args.work, "examples.pkl"), "rb") as f:
        d = pickle.load(f)
    cat = Catalog(d["item_ids"], d["titles"], d["item_counts"])
    seqs = common.read_sequences()
    train = tensors(cat, [(e["history"], [cat.index[x] for x in e["candidates"]], e["label"]) for e in d["train"]])
    val_rows = []
    for e in d["val"]:
        hist = [cat.index[x.item] for x in seqs[e["user"]][:e["t"]] if x.item in cat.index]
        cands = [cat.index[x] for x in e["candidates"]]
        val_rows.append((hist, cands + [cat.pad] * (CANDIDATES - len(cands)), e["label"]))
    sets = {"validation (976)": tensors(cat, val_rows)}
    for name, hold in (("held-out LOO", 1), ("held-out last 10", 10)):
        path = os.path.join(args.work, "packs", f"test-holdout{hold}.gguf")
        if not os.path.exists(path):
            if not args.convert:
                ap.error(f"{path} is missing: run evaluate.py first or pass --convert")
            build_pack(args.convert, os.path.join(common.DATA_DIR, "ratings.csv"), path, hold_out=hold)
        rows = heldout_cases(cat, seqs, Pack(path), hold)
        sets[f"{name} ({len(rows)})"] = tensors(cat, rows)

    base = {k: retrieval_ndcg(v[2]) for k, v in sets.items()}
    print(f"features: {sorted(features) or 'biases only'}; dim {args.dim}, {args.epochs} epochs, "
          f"weight decay {args.weight_decay}; {len(train[2])} training examples")
    results = {k: [] for k in sets}
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        net = Reranker(cat, args.dim, features)
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=args.weight_decay)
        n = len(train[2])
        for _ in range(args.epochs):
            perm = torch.randperm(n)
            for i in range(0, n, 256):
                j = perm[i:i + 256]
                loss = torch.nn.functional.cross_entropy(net(train[0][j], train[1][j]), train[2][j])
                opt.zero_grad()
                loss.backward()
                opt.step()
        line = []
        for k, (h, c, y) in sets.items():
            r = ndcg(net, h, c, y) / base[k]
            results[k].append(r)
            line.append(f"{k} ×{r:.3f}")
        print(f"  seed {seed}: " + ", ".join(line), flush=True)
    for k, v in results.items():
        v = np.array(v)
        print(f"{k}: retrieval NDCG@10 {base[k]:.4f}; reranker ×{v.mean():.3f} "
              f"(seeds {v.min():.3f}–{v.max():.3f})")


if __name__ == "__main__":
    main()
