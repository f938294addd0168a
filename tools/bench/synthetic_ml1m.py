#!/usr/bin/env python3
"""Writes a synthetic ML-1M-size dataset (ratings.dat + movies.dat formats) for
timing `palr-convert catalog` and `palr eval` at scale. Not for quality figures.

    python3 tools/bench/synthetic_ml1m.py /tmp/synth   # 6,040 users, 4,000 items, 1,000,000 rows

Shape like ML-1M: user lengths heavy-tailed (20 … ~2,300, mean ~166), item
popularity Zipf-like, no repeats within a user, timestamps increasing per user
with many ties (a user rates several items in the same second).
"""
import os, sys
import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/synth-ml1m"
users, items, target = 6040, 4000, 1_000_000
rng = np.random.default_rng(1)
os.makedirs(out, exist_ok=True)

lengths = np.clip(rng.lognormal(mean=4.55, sigma=1.0, size=users), 20, 2300).astype(int)
lengths = np.clip((lengths * target / lengths.sum()).astype(int), 20, 2300)
while lengths.sum() < target:  # top up what rounding and clipping took away
    u = rng.integers(0, users)
    lengths[u] += lengths[u] < 2300
popularity = 1.0 / np.arange(1, items + 1) ** 0.9
popularity /= popularity.sum()

with open(os.path.join(out, "ratings.dat"), "w") as f:
    for u in range(users):
        seq = rng.choice(items, size=lengths[u], replace=False, p=popularity)
        t = 956_703_932 + int(rng.integers(0, 10_000_000))
        lines = []
        for i in seq:
            t += int(rng.integers(0, 3)) * int(rng.integers(1, 60))  # ties are common
            lines.append(f"{u + 1}::{i + 1}::{int(rng.integers(1, 6))}::{t}\n")
        f.writelines(lines)
with open(os.path.join(out, "movies.dat"), "w", encoding="latin-1") as f:
    for i in range(items):
        f.write(f"{i + 1}::Synthetic Movie {i + 1} ({1920 + i % 100})::Drama\n")
print(f"{out}: {int(lengths.sum())} interactions, {users} users, {items} items")
