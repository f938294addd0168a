"""Checks the Python retrieval port (retrieval.py) against `palr retrieve` on many
histories: the candidate lists must be identical, in order.

    python3 check_retrieval.py --palr .build/release/palr --pack PACK.gguf [--n 300]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess

import common
from retrieval import Pack


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--palr", required=True)
    ap.add_argument("--pack", required=True)
    ap.add_argument("--n", type=int, default=300, help="histories to compare")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    pack = Pack(args.pack)
    seqs = common.read_sequences()
    users = sorted(seqs)
    rng = random.Random(args.seed)
    same = 0
    for c in range(args.n):
        s = seqs[rng.choice(users)]
        t = rng.randrange(0, len(s))      # includes the empty history (cold start)
        hist = [x.item for x in s[:t]]
        if c % 10 == 0:
            hist = hist + ["no-such-item"]   # unknown ids are skipped
        ours = [pack.ids[i] for i in pack.retrieve(hist, 20)]
        out = subprocess.run([args.palr, "retrieve", "--catalog", args.pack, "--items", ",".join(hist), "--json"],
                             check=True, capture_output=True, text=True).stdout
        theirs = [x["id"] for x in json.loads(out)["items"]]
        if ours == theirs:
            same += 1
        else:
            print(f"history of {len(hist)} items differs:\n  python {ours}\n  swift  {theirs}")
    print(f"retrieval port vs palr retrieve: {same}/{args.n} identical candidate lists")
    if same != args.n:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
