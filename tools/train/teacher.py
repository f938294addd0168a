"""A small feature teacher for distillation (train.py --distill).

The one-hot target of a letters example is a very noisy signal: which of 20 related
candidates a user watched next is mostly chance, and the retrieval order already
explains most of what can be explained (the label prior). What the model can add
is small and hard to find from one label per 300-token prompt. A conditional-logit
model over a few hand-made features gives, for every training prompt, a full
distribution over its 20 candidates, and the ranker is trained toward it as well
(soft targets), which carries far more signal per prompt.

Features of candidate c for history h (training side only; the ranker sees titles):
  position one-hot (the retrieval order), log popularity among the training users,
  release years (from the title) against the last item and the last five,
  a shared title word with the last five items, and MovieLens id distance to the
  last two items (ties in a rating session are in id order, and ids follow the time
  a film entered the catalogue, which its title only hints at).

The teacher of a fold's examples is fitted on the other folds' examples.
"""

from __future__ import annotations

import re

import numpy as np
import torch

N_FEATURES = 20 + 10


def _year(t: str) -> float:
    m = re.search(r"\((\d{4})\)\s*$", t)
    return float(m.group(1)) if m else float("nan")


def _words(t: str) -> frozenset:
    return frozenset(w for w in re.findall(r"[a-z]+", re.sub(r"\(\d{4}\)", "", t.lower())) if len(w) > 3)


class Features:
    def __init__(self, titles: list[str], item_ids: list[str], counts: np.ndarray):
        y = np.array([_year(t) for t in titles], dtype=np.float64)
        self.year = np.where(np.isnan(y), np.nanmedian(y), y)
        self.pop = np.log1p(counts.astype(np.float64))
        self.mid = np.array([float(x) if x.isdigit() else 0.0 for x in item_ids])
        self.words = [_words(t) for t in titles]
        self.index = {x: i for i, x in enumerate(item_ids)}

    def __call__(self, e: dict) -> np.ndarray:
        h = e["history"]
        c = np.array([self.index[x] for x in e["candidates"]])
        Y = self.year
        last, recent = Y[h[-1]], Y[h[-5:]].mean()
        F = np.zeros((len(c), N_FEATURES), dtype=np.float32)
        F[np.arange(len(c)), np.arange(len(c))] = 1
        F[:, 20] = self.pop[c]
        F[:, 21] = np.abs(Y[c] - recent) / 10
        F[:, 22] = (Y[c] - last) / 10
        F[:, 23] = np.abs(Y[c] - last) / 10
        F[:, 24] = Y[c] > Y[h].max()
        F[:, 25] = Y[c] == last
        hw = frozenset().union(*[self.words[i] for i in h[-5:]])
        F[:, 26] = [bool(self.words[j] & hw) for j in c]
        F[:, 27] = self.mid[c] > self.mid[h[-1]]
        F[:, 28] = np.log1p(np.abs(self.mid[c] - self.mid[h[-1]]))
        F[:, 29] = np.log1p(np.abs(self.mid[c] - self.mid[h[-2]])) if len(h) > 1 else 0
        return F


def fit(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    w = torch.zeros(X.shape[-1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=300, line_search_fn="strong_wolfe")
    X = X.double()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(X @ w, y) + 1e-4 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def soft_targets(train: list[dict], feats: Features, folds: int, fold_of) -> tuple[np.ndarray, float, float]:
    """(n, 20) teacher distributions, cross-fitted by fold; also the teacher's held-out
    cross-entropy and that of the position prior alone, for the log."""
    X = torch.tensor(np.stack([feats(e) for e in train]))
    y = torch.tensor([e["label"] for e in train])
    f = np.array([fold_of(e["user"], folds) for e in train])
    probs = np.zeros((len(train), X.shape[1]), dtype=np.float32)
    ce = ce_prior = 0.0
    for k in range(folds):
        te = torch.from_numpy(f == k)
        w = fit(X[~te], y[~te])
        wp = fit(X[~te][..., :20], y[~te])
        logits = X[te].double() @ w
        probs[te.numpy()] = torch.softmax(logits, -1).float().numpy()
        ce += torch.nn.functional.cross_entropy(logits, y[te], reduction="sum").item()
        ce_prior += torch.nn.functional.cross_entropy(X[te][..., :20].double() @ wp, y[te], reduction="sum").item()
    return probs, ce / len(train), ce_prior / len(train)


TEXT_ONLY = list(range(20)) + [21, 22, 23, 24, 25, 26]   # position + what the titles show
ALL = list(range(N_FEATURES))


def _ndcg10(scores: torch.Tensor, y: torch.Tensor) -> float:
    r = (scores >= scores.gather(1, y[:, None])).sum(1)
    return torch.where(r <= 10, 1 / torch.log2(r.double() + 1), torch.zeros((), dtype=torch.float64)).mean().item()


def main() -> None:
    """How much a ranker could add over the retrieval order with these features: the
    cross-fitted NDCG@10 of conditional-logit rankers on the training examples (all of
    which have the target among the 20 candidates), relative to the retrieval order."""
    import os
    import pickle

    import common

    with open(os.path.join(common.WORK_DIR, "examples.pkl"), "rb") as f:
        data = pickle.load(f)
    train = data["train"]
    feats = Features(data["titles"], data["item_ids"], data["item_counts"])
    X = torch.tensor(np.stack([feats(e) for e in train]))
    y = torch.tensor([e["label"] for e in train])
    fold = np.array([common.fold_of(e["user"], data["folds"]) for e in train])
    base = _ndcg10(-torch.arange(20.0).expand(len(train), 20).double(), y)
    print(f"{len(train)} training prompts; retrieval order NDCG@10 {base:.4f} (target always among the 20)")
    for name, cols in [("position only", list(range(20))), ("position + title features", TEXT_ONLY),
                       ("position + title + popularity + id features", ALL)]:
        scores = torch.zeros(len(train), 20, dtype=torch.float64)
        for k in range(data["folds"]):
            te = torch.from_numpy(fold == k)
            w = fit(X[~te][..., cols], y[~te])
            scores[te] = X[te][..., cols].double() @ w
        n = _ndcg10(scores, y)
        print(f"  {name:45s} NDCG@10 {n:.4f}  (×{n / base:.3f} of the retrieval order)")


if __name__ == "__main__":
    main()
