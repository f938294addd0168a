"""Step 2: PALR letters-mode examples from the training users.

Cross-fitting: the training users are split into F folds (by a hash of the user id),
and the examples of a fold's users get their candidates from a catalog pack built by
`palr-convert catalog` from the OTHER folds' interactions. So no example's candidates
were computed from the user's own interactions (its own target included), as at test
time, where the held-out item never reaches the neighbour lists. Held-out users are
in no pack.

Per training user with n items (sorted by time, ties by file order):
  training examples   targets at positions t = 1 .. n-3, history = items before t;
  validation examples targets at positions n-2 and n-1 (never trained on).
Candidates: the pack's top 20 for the history, in retrieval order. A training
example is kept only when its target is among them; validation keeps every example
(a miss counts 0 for retrieval and model alike).

    python3 build_examples.py --convert .build/release/palr-convert [--folds 5]
writes WORK/examples.pkl and WORK/packs/fold*.gguf.
"""

from __future__ import annotations

import argparse
import os
import pickle
import time

import numpy as np
import sentencepiece as spm

import common
from retrieval import Pack, build_pack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--convert", required=True, help="the palr-convert executable")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--work", default=common.WORK_DIR)
    args = ap.parse_args()
    t0 = time.time()

    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.work, "tokenizer.model"))
    pb = common.PromptBuilder(sp)
    seqs = common.read_sequences()
    train_users = [u for u in seqs if not common.is_held_out(u)]
    print(f"users: {len(seqs)}, training {len(train_users)}, held out {len(seqs) - len(train_users)}")

    train, val = [], []
    kept = total = 0
    for f in range(args.folds):
        others = {u: seqs[u] for u in train_users if common.fold_of(u, args.folds) != f}
        mine = [u for u in train_users if common.fold_of(u, args.folds) == f]
        csv_path = os.path.join(args.work, "packs", f"fold{f}-ratings.csv")
        pack_path = os.path.join(args.work, "packs", f"fold{f}.gguf")
        common.write_ratings(others, csv_path)
        build_pack(args.convert, csv_path, pack_path)
        os.remove(csv_path)
        pack = Pack(pack_path)
        for u in mine:
            s = seqs[u]
            n = len(s)
            for t in range(1, n):
                history = [x.item for x in s[:t]]
                cands = pack.retrieve(history, common.MAX_CANDIDATES)
                target = pack.index.get(s[t].item, -1)
                label = cands.index(target) if target in cands else -1
                is_val = t >= n - 2
                if not is_val:
                    total += 1
                    if label < 0:
                        continue
                    kept += 1
                ex = {"user": u, "t": t, "label": label,
                      "candidates": [pack.ids[i] for i in cands]}
                if label >= 0:
                    titles = [pack.titles[pack.index[x]] for x in history if x in pack.index]
                    ex["ids"] = np.array(pb.ids(titles, [pack.titles[i] for i in cands]), dtype=np.int16)
                    ex["history"] = common.shown_history([pack.index[x] for x in history if x in pack.index])
                    ex["target"] = target
                (val if is_val else train).append(ex)
        print(f"fold {f}: pack from {len(others)} users, {len(mine)} users' examples "
              f"({time.time() - t0:.0f} s)")

    lens = np.array([len(e["ids"]) for e in train])
    labels = np.array([e["label"] for e in train])
    vhits = sum(e["label"] >= 0 for e in val)
    print(f"training positions {total}, kept {kept} ({kept / total:.1%}) with the target among the 20 candidates")
    print(f"prompt tokens: mean {lens.mean():.0f}, max {lens.max()}; label histogram "
          f"{np.bincount(labels, minlength=20).tolist()}")
    print(f"validation examples {len(val)}, {vhits} with the target among the candidates")
    # For sampled negatives (train.py --neg-frac): titles, and how often each item
    # occurs among the training users.
    counts = np.zeros(len(pack.ids), dtype=np.int64)
    for u in train_users:
        for x in seqs[u]:
            if x.item in pack.index:
                counts[pack.index[x.item]] += 1
    with open(os.path.join(args.work, "examples.pkl"), "wb") as fo:
        pickle.dump({"train": train, "val": val, "folds": args.folds, "titles": pack.titles, "item_ids": pack.ids,
                     "item_counts": counts}, fo)
    print(f"wrote {os.path.join(args.work, 'examples.pkl')} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
