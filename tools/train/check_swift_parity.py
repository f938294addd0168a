"""Checks that the Swift ranker scores what the recipe trained: for each demo profile,
`palr recommend --json` (letters mode, on the converted Q4_0 GGUF) is compared with this
recipe's prompt builder, retrieval port and PyTorch model with the same quantization
round trip (evaluate.quantized_copy). Same candidates, same order of scores, and scores
equal up to float rounding mean the prompt mirror and the tokenizer agree with Swift.

    python3 check_swift_parity.py --palr .build/release/palr --model M.gguf --catalog C.gguf \\
        --ckpt /tmp/palr-train/ckpt --history models/demo-history.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import tempfile

import numpy as np
import sentencepiece as spm
import torch

import common
from evaluate import load_model, quantized_copy
from retrieval import Pack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--palr", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--history", required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)

    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.ckpt, "tokenizer.model"))
    pb = common.PromptBuilder(sp)
    net = quantized_copy(load_model(args.ckpt))
    pack = Pack(args.catalog)
    profiles: dict[str, list[str]] = {}
    with open(args.history, newline="") as f:
        for r in csv.DictReader(f):
            profiles.setdefault(r["userId"], []).append(r["movieId"])

    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "h.sqlite")
        subprocess.run([args.palr, "history", "--db", db, "import", "--format", "movielens-csv", args.history],
                       check=True, capture_output=True)
        for p, hist in profiles.items():
            out = subprocess.run([args.palr, "recommend", "--model", args.model, "--catalog", args.catalog, "--db", db,
                                  "--profile", p, "--k", "20", "--no-cache", "--json"],
                                 check=True, capture_output=True, text=True).stdout
            swift = {x["id"]: x["score"] for x in json.loads(out)["items"]}
            cands = pack.retrieve(hist, 20)
            assert set(swift) == {pack.ids[i] for i in cands}, f"profile {p}: different candidates"
            ids = pb.ids([pack.titles[pack.index[x]] for x in hist], [pack.titles[i] for i in cands])
            with torch.no_grad():
                logits, _ = net(torch.tensor([ids]), torch.tensor([len(ids)]), torch.tensor(pb.label_ids))
            ours = torch.log_softmax(logits[0, :len(cands)].double(), 0).numpy()
            theirs = np.array([swift[pack.ids[i]] for i in cands])
            d = float(np.abs(ours - theirs).max())
            worst = max(worst, d)
            same_top = [pack.ids[cands[j]] for j in np.argsort(-ours, kind="stable")[:10]] == \
                [x["id"] for x in json.loads(out)["items"][:10]]
            print(f"profile {p}: {len(ids)} prompt tokens, max |score difference| {d:.2e}, same top 10: {same_top}")
    print(f"worst score difference Swift vs PyTorch (same quantization): {worst:.2e}")


if __name__ == "__main__":
    main()
