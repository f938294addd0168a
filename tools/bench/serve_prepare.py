#!/usr/bin/env python3
"""Times `palr serve` answers around a record, to measure ranking ahead of time.

A UI's pattern: record a film, wait, ask for the next recommendation. With `serve`'s
preparation (the default) the ranking is computed while the server is idle; a request
that arrives during the preparation interrupts it. This script makes a store with one
20-item profile (bob), starts `palr serve` under /usr/bin/time, and prints each answer's
latency and where the ranking came from:

  [--provisional: recommend with "wait": false (the retrieval order at once), wait --settle s, again]
  record A, wait --settle s, recent, recommend   (the preparation finished: from the cache)
  record B, wait --early s,  recent, recommend   (the preparation interrupted)

With --during-request instead: a recommendation for bob that must rank (`noCache`) is
sent, and --early s later a record for another profile and a `recent` for bob, without
waiting for the recommendation: those two are answered while it ranks.

Run from the repository root after `swift build -c release`, e.g.
  python3 tools/bench/serve_prepare.py --model /tmp/7b.gguf --settle 75 --early 8
(the model: `palr-convert random --shape 7b --type q4_0 --tokenizer
../shared/models/llama2-tokenizer/tokenizer.model -o /tmp/7b.gguf`). Extra arguments
after `--` go to `palr serve` (e.g. `-- --no-prepare`).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HISTORY = "1 2 3 5 7 10 32 47 50 110 150 260 296 318 356 480 527 589 593 608".split()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="ranker GGUF")
    ap.add_argument("--catalog", default="models/ml-small-catalog.gguf", help="catalog pack (default: the bundled one)")
    ap.add_argument("--palr", default=".build/release/palr", help="palr executable")
    ap.add_argument("--settle", type=float, default=15, help="seconds between the first record and its requests")
    ap.add_argument("--early", type=float, default=3, help="seconds between the second record and its requests")
    ap.add_argument("--provisional", action="store_true",
                    help='start with {"profile": "bob", "wait": false} (answered at once with the retrieval order), '
                         'then wait --settle s and ask again')
    ap.add_argument("--during-request", action="store_true",
                    help="send a record and a recent --early s into a recommendation that ranks, and time all three")
    ap.add_argument("serve_args", nargs="*", help="more arguments for palr serve (after --)")
    a = ap.parse_args()
    for path in (a.model, a.catalog, a.palr):
        if not os.path.exists(path):
            sys.exit(f"serve_prepare: {path}: no such file")

    with tempfile.TemporaryDirectory() as folder:
        db = os.path.join(folder, "h.sqlite")
        subprocess.run([a.palr, "history", "--db", db, "add", "--create-profile", "--profile", "bob"] + HISTORY,
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run([a.palr, "history", "--db", db, "add", "--create-profile", "--profile", "ann", "1"],
                       check=True, stdout=subprocess.DEVNULL)
        # Peak RSS through GNU time when it is installed (Debian: the `time` package).
        timer = ["/usr/bin/time", "-f", "serve: %e s, peak RSS %M KB"] if os.path.exists("/usr/bin/time") else []
        serve = subprocess.Popen(timer + [a.palr, "serve",
                                  "--model", a.model, "--catalog", a.catalog, "--db", db] + a.serve_args,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, bufsize=1)

        def report(request, elapsed, answer):
            result = answer.get("result") if isinstance(answer.get("result"), dict) else {}
            timings = result.get("timings", {})
            where = ""
            if result.get("provisional"):
                where = "provisional (retrieval order) "
            if "fromCache" in result:
                where += (f"fromCache={result['fromCache']} computed "
                          f"{timings.get('computedPromptTokens')}/{timings.get('promptTokens')} prompt tokens")
            print(f"{request.get('op', 'recommend'):9s} {elapsed:8.3f} s  {where}{answer.get('error', '')}", flush=True)

        if a.during_request:
            # Requests sent without waiting; answers matched by id, each timed from its send.
            time.sleep(2)
            requests = [({"id": 1, "profile": "bob", "noCache": True}, 0),
                        ({"id": 2, "op": "record", "profile": "ann", "items": ["1200"]}, a.early),
                        ({"id": 3, "op": "recent", "profile": "bob", "limit": 3}, 0)]
            sent = {}
            for request, pause in requests:
                time.sleep(pause)
                sent[request["id"]] = (request, time.time())
                serve.stdin.write(json.dumps(request) + "\n")
                serve.stdin.flush()
            for _ in requests:
                line = serve.stdout.readline()
                if not line:
                    sys.exit("serve_prepare: palr serve ended early")
                answer = json.loads(line)
                request, start = sent[answer.get("id")]
                report(request, time.time() - start, answer)
            serve.stdin.close()
            serve.wait()
            return

        def ask(request):
            start = time.time()
            serve.stdin.write(json.dumps(request) + "\n")
            serve.stdin.flush()
            line = serve.stdout.readline()
            if not line:
                sys.exit("serve_prepare: palr serve ended early")
            report(request, time.time() - start, json.loads(line))

        time.sleep(2)   # the model loaded (the ready line)
        if a.provisional:
            ask({"profile": "bob", "wait": False})
            time.sleep(a.settle)
            ask({"profile": "bob", "wait": False})
        for item, wait in (("1200", a.settle), ("1210", a.early)):
            ask({"op": "record", "profile": "bob", "items": [item]})
            time.sleep(wait)
            ask({"op": "recent", "profile": "bob", "limit": 3})
            ask({"profile": "bob"})
        serve.stdin.close()
        serve.wait()


if __name__ == "__main__":
    main()
