#!/usr/bin/env python3
"""Command-level fuzzing of palr's GGUF consumers (see README.md in this folder).

Writes structure-aware mutants of the bundled model and catalog pack and runs each
through the palr commands that consume it, under `timeout` and `ulimit -v`; records
every run in OUT/results.jsonl and keeps the mutants that crashed, hung, or were
accepted where they must be refused in OUT/findings/.
"""

import argparse
import collections
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ggufcodec  # noqa: E402
from mutate import mutate, sweep  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SHARED = os.path.join(ROOT, "..", "shared")
if not os.path.isdir(SHARED):
    SHARED = "/tmp/shared"

MODEL_COMMANDS = ["recommend_likelihood", "recommend_generate", "eval", "bench", "logits", "generate", "info",
                  "demo", "profile"]
CATALOG_COMMANDS = ["recommend_likelihood", "demo", "retrieve_params"]


def command(name, palr, work, model, catalog):
    db = os.path.join(work, "h.sqlite")
    rec = [palr, "recommend", "--model", model, "--catalog", catalog, "--db", db, "--profile", "129", "--json",
           "--no-cache", "-t", "1"]
    return {
        "recommend": rec,
        "recommend_likelihood": rec + ["--mode", "likelihood"],
        "recommend_generate": rec + ["--mode", "generate", "--k", "3"],
        "tokenize": [palr, "tokenize", "--model", model, "--pieces", "Toy Story (1995) \u00e9\u6f22 \x01 <s> \u2581"],
        "eval": [palr, "eval", "--items", os.path.join(work, "movies.csv"), "--interactions",
                 os.path.join(work, "r.csv"), "--model", model, "--user-list", os.path.join(work, "users.txt"),
                 "--json", "-t", "1"],
        "bench": [palr, "bench", "--model", model, "-p", "8", "-n", "2", "--repeat", "1", "--no-gemm-bound",
                  "-t", "1", "--json"],
        "logits": [palr, "logits", "--model", model, "--tokens", "1,2,3", "--json"],
        "generate": [palr, "generate", "--model", model, "--prompt", "Toy", "-n", "4", "--temp", "0"],
        "info": [palr, "info", "--model", model, "--tensors"],
        "demo": [palr, "demo", "--models", os.path.join(work, "demo"), "-t", "1", "--k", "3"],
        "profile": [palr, "profile", "--model", model, "--catalog", catalog, "--db", db, "--profile", "129",
                    "--regenerate", "--json", "-t", "1"],
        "retrieve": [palr, "retrieve", "--catalog", catalog, "--items", "1,2,3,5418,54286", "--json"],
        "retrieve_params": [palr, "retrieve", "--catalog", catalog, "--items", "1", "--n", "100", "--json",
                            "--params", "history_length=1000,popularity_weight=1000"],
    }[name]


def nonfinite(x):
    if isinstance(x, float):
        return not math.isfinite(x)
    if isinstance(x, dict):
        return any(nonfinite(v) for v in x.values())
    if isinstance(x, list):
        return any(nonfinite(v) for v in x)
    return False


def judge(name, rc, out, err, expect, maxrss_kb, path, desc=""):
    """A list of problems with one run (empty when the run behaved)."""
    problems = []
    if rc == 124:
        problems.append("timeout")
    elif rc < 0 or rc >= 128:
        problems.append("signal %d" % (rc - 128 if rc >= 128 else -rc))
    elif rc not in (0, 1, 64):
        problems.append("exit %d" % rc)
    if re.search(r"Fatal error|Stack dump|runtime failure|crashed|Illegal instruction|Segmentation|Bus error|Aborted|failed to allocate",
                 err):
        problems.append("crash text on stderr")
    if maxrss_kb > 2_000_000:
        problems.append("peak RSS %d MB" % (maxrss_kb // 1000))
    # What each command reads of a model: logits, bench and info never load the tokenizer or the
    # palr.* settings, generate no palr.* settings, tokenize nothing but the tokenizer.
    reads = {"logits": ("llama.", "general.", "tensor"), "bench": ("llama.", "general.", "tensor"),
             "info": ("general.",), "generate": ("llama.", "general.", "tensor", "tokenizer."),
             "tokenize": ("tokenizer.", "general.alignment")}.get(name)
    untouched = reads is not None and not any(r in desc for r in reads)
    if rc == 0:
        if expect == "refuse" and not untouched and name not in ("info", "tokenize", "retrieve", "retrieve_params"):
            problems.append("accepted a mutant that must be refused")
        if expect == "reader":
            problems.append("accepted a mutant the reader must refuse")
        if out.lstrip().startswith("{"):
            try:
                doc = json.loads(out)
                if nonfinite(doc):
                    problems.append("non-finite number in JSON output")
            except ValueError:
                if name not in ("logits",):
                    problems.append("unparsable JSON output")
        elif re.search(r"\bnan\b|\binf\b", out, re.I) and name not in ("logits", "generate", "info"):
            problems.append("nan/inf in output")
    elif rc == 1 and name not in ("eval", "profile"):
        # The demo reads the mutant under its bundled name.
        names = [path, os.path.basename(path), "palr-ml-small-q4_0.gguf", "ml-small-catalog.gguf"]
        if not any(n in err for n in names[:2] + (names[2:] if name == "demo" else [])):
            problems.append("error does not name the file")
    return problems


def run_with_rss(argv, limit_kb, timeout_s, rss_file):
    """Runs argv under `ulimit -v` and `timeout`; returns (status, stdout, stderr, seconds,
    peak RSS in KB). The peak comes from /usr/bin/time around timeout and palr: the
    rusage of a child of this (large) Python process would count this process's own
    peak, which a vfork'ed child inherits."""
    shell = 'ulimit -v %d; exec /usr/bin/time -f %%M -o "%s" timeout %d "$@"' % (limit_kb, rss_file, timeout_s)
    t0 = time.time()
    with open(os.devnull, "rb") as devnull:
        p = subprocess.run(["sh", "-c", shell, "sh"] + argv, stdin=devnull, capture_output=True)
    try:
        with open(rss_file) as f:
            rss = int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        rss = 0
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), time.time() - t0, rss


class Campaign:
    def __init__(self, args):
        self.args = args
        self.out = args.out
        os.makedirs(os.path.join(self.out, "findings"), exist_ok=True)
        self.lock = threading.Lock()
        self.results = open(os.path.join(self.out, "results.jsonl"), "a")
        self.counts = collections.Counter()
        self.problems = collections.Counter()
        self.model_path = os.path.join(ROOT, "models", "palr-ml-small-q4_0.gguf")
        self.catalog_path = os.path.join(ROOT, "models", "ml-small-catalog.gguf")
        self.bases = {"model": ggufcodec.read(self.model_path), "catalog": ggufcodec.read(self.catalog_path)}
        self.sweep = None
        if args.sweep:
            self.sweep = [("model", d, m) for d, m in sweep(self.bases["model"], False)]
            self.sweep += [("catalog", d, m) for d, m in sweep(self.bases["catalog"], True)]
            args.count = min(args.count, len(self.sweep) - args.start)

    def setup_worker(self, w):
        work = os.path.join(self.out, "work%d" % w)
        os.makedirs(os.path.join(work, "demo"), exist_ok=True)
        db = os.path.join(work, "h.sqlite")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        subprocess.run([self.args.palr, "history", "--db", db, "import", "--format", "movielens-csv",
                        os.path.join(ROOT, "models", "demo-history.csv")], check=True, stdout=subprocess.DEVNULL)
        ratings = os.path.join(SHARED, "data", "ml-latest-small", "ratings.csv")
        with open(ratings) as f, open(os.path.join(work, "r.csv"), "w") as o:
            o.write(f.readline())
            for line in f:
                if int(line.split(",", 1)[0]) <= 40:
                    o.write(line)
        shutil.copy(os.path.join(SHARED, "data", "ml-latest-small", "movies.csv"), os.path.join(work, "movies.csv"))
        with open(os.path.join(work, "users.txt"), "w") as f:
            f.write("1\n2\n3\n")
        shutil.copy(os.path.join(ROOT, "models", "demo-history.csv"), os.path.join(work, "demo"))
        return work

    def one(self, w, work, index):
        rng = random.Random("%d-%d" % (self.args.seed, index))
        if self.sweep is not None:
            kind, desc, make = self.sweep[index]
            mutant, expect = make()
        else:
            kind = "catalog" if (index % 10) < self.args.catalog_share else "model"
            desc, mutant, expect = mutate(self.bases[kind], kind == "catalog", rng)
        path = os.path.join(work, "mutant-%s.gguf" % kind)
        data = mutant if isinstance(mutant, bytes) else ggufcodec.serialize(mutant)[0]
        with open(path, "wb") as f:
            f.write(data)
        # The demo reads fixed names from its folder: the mutant under its name, the other bundled.
        demo = os.path.join(work, "demo")
        for name, src in (("palr-ml-small-q4_0.gguf", self.model_path), ("ml-small-catalog.gguf", self.catalog_path)):
            dst = os.path.join(demo, name)
            if os.path.lexists(dst):
                os.remove(dst)
            os.symlink(path if (kind == "model") == name.startswith("palr") else src, dst)
        if kind == "model":
            model, catalog = path, self.catalog_path
            names = ["tokenize", "recommend"] + ([MODEL_COMMANDS[index % len(MODEL_COMMANDS)]] if self.sweep
                                                 else rng.sample(MODEL_COMMANDS, 2))
            if "profile_template" in desc and "profile" not in names:
                names.append("profile")
        else:
            model, catalog = self.model_path, path
            names = ["retrieve", "recommend"] + ([] if self.sweep else rng.sample(CATALOG_COMMANDS, 1))
        for name in names:
            argv = command(name, self.args.palr, work, model, catalog)
            rc, out, err, secs, rss = run_with_rss(argv, self.args.vmem_kb, self.args.timeout,
                                                   os.path.join(work, "rss.txt"))
            problems = judge(name, rc, out, err, expect, rss, path, desc)
            rec = {"i": index, "kind": kind, "desc": desc, "expect": expect, "cmd": name, "rc": rc,
                   "secs": round(secs, 3), "rss_kb": rss, "err": err.strip()[-400:], "problems": problems}
            with self.lock:
                self.counts[(kind, name)] += 1
                self.counts[(kind, name, "rc%d" % rc)] += 1
                for p in problems:
                    self.problems[(kind, name, p)] += 1
                self.results.write(json.dumps(rec) + "\n")
                if problems:
                    keep = os.path.join(self.out, "findings", "%s-%06d.gguf" % (kind, index))
                    if not os.path.exists(keep) and len(os.listdir(os.path.join(self.out, "findings"))) < 2000:
                        with open(keep, "wb") as f:
                            f.write(data)
                        with open(keep + ".txt", "w") as f:
                            f.write(json.dumps(rec, indent=1) + "\n" + " ".join(argv) + "\n" + out[-2000:])

    def worker(self, w, indices, deadline):
        work = self.setup_worker(w)
        for index in indices:
            if time.time() > deadline:
                break
            try:
                self.one(w, work, index)
            except Exception as e:  # a bug of the fuzzer itself: note it, go on
                with self.lock:
                    self.problems[("fuzzer", "exception", repr(e)[:120])] += 1

    def run(self):
        a = self.args
        deadline = time.time() + a.minutes * 60
        indices = list(range(a.start, a.start + a.count))
        threads = [threading.Thread(target=self.worker, args=(w, indices[w::a.jobs], deadline)) for w in range(a.jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.results.close()
        summary = {"runs": {"/".join(k): v for k, v in sorted(self.counts.items())},
                   "problems": {"/".join(k): v for k, v in sorted(self.problems.items())}}
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print(json.dumps(summary, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--palr", default=os.path.join(ROOT, ".build", "release", "palr"))
    ap.add_argument("--out", default="/tmp/palr-fuzz")
    ap.add_argument("--count", type=int, default=5000, help="mutants to make")
    ap.add_argument("--start", type=int, default=0, help="first mutant index (mutants are seeded by index)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=40, help="stop after this much wall time")
    ap.add_argument("--timeout", type=int, default=20)
    ap.add_argument("--vmem-kb", type=int, default=4000000)
    ap.add_argument("--catalog-share", type=int, default=3, help="tenths of the mutants made from the catalog")
    ap.add_argument("--sweep", action="store_true",
                    help="the systematic sweep (every key x every hostile value, every tensor x every shape and "
                         "type) instead of random mutants; --count and --start index into it")
    ap.add_argument("--replay", help="run one mutant index and print its description and commands")
    a = ap.parse_args()
    a.palr = os.path.abspath(a.palr)
    if a.replay is not None:
        a.start, a.count, a.jobs = int(a.replay), 1, 1
    Campaign(a).run()


if __name__ == "__main__":
    main()
