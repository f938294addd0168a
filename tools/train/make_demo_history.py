"""Writes models/demo-history.csv: a few demo profiles for `palr demo`, each the most
recent interactions of a real held-out user of ML-latest-small (users the ranker never
trained on), in MovieLens ratings.csv format:

    palr history --db DB import --format movielens-csv models/demo-history.csv

Profiles are picked deterministically so that their tastes differ: for each of a few
genres, the held-out user whose last N items lean most to it.

    python3 make_demo_history.py [--out models/demo-history.csv] [--items 20]

It also writes the held-out user ids, one per line (`--heldout-out`, default
models/heldout-users.txt), for `palr eval --user-list`.
"""

from __future__ import annotations

import argparse
import csv
import os

import common

GENRES = ["Animation", "Horror", "Sci-Fi", "Romance", "Documentary"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/demo-history.csv")
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--profiles", type=int, default=4)
    ap.add_argument("--heldout-out", default="models/heldout-users.txt")
    args = ap.parse_args()

    with open(os.path.join(common.DATA_DIR, "movies.csv"), newline="", encoding="utf-8") as f:
        genres = {r["movieId"]: set(r["genres"].split("|")) for r in csv.DictReader(f)}
    ratings = {}
    with open(os.path.join(common.DATA_DIR, "ratings.csv"), newline="", encoding="utf-8") as f:
        for row, r in enumerate(csv.DictReader(f)):
            ratings[(r["userId"], r["movieId"])] = r["rating"]
    seqs = common.read_sequences()
    held = [u for u in seqs if common.is_held_out(u)]
    chosen: list[tuple[str, str]] = []
    for g in GENRES:
        if len(chosen) >= args.profiles:
            break
        best = max((u for u in held if u not in {c for c, _ in chosen}),
                   key=lambda u: (sum(g in genres[x.item] for x in seqs[u][-args.items:]), -int(u)))
        chosen.append((best, g))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for u, g in chosen:
            for x in seqs[u][-args.items:]:
                w.writerow([u, x.item, ratings[(u, x.item)], x.timestamp])
    for u, g in chosen:
        print(f"profile {u}: last {args.items} items, leaning {g}")
    print(f"wrote {args.out}")
    with open(args.heldout_out, "w", encoding="utf-8") as f:
        f.writelines(u + "\n" for u in held)
    print(f"wrote {args.heldout_out}: {len(held)} held-out users")


if __name__ == "__main__":
    main()
