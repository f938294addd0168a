#!/usr/bin/env python3
"""Randomized crash injection for palr's writers.

Every writer (history add/import/forget/compact/export, recommend/refresh/profile,
palr-convert hf/catalog/random, eval --tune-report) is run on a fresh copy of its
inputs and sent a signal (SIGKILL to the process or its group, SIGTERM, SIGINT) after a
random delay: uniform over its measured duration, with some very early and very late
points. After each kill the campaign checks the project's rule "writes are atomic: a
killed process leaves the store and any output file either complete or untouched":

- the store passes PRAGMA integrity_check (Python's sqlite3, on a copy of the files);
- its logical content (profiles, interactions, items, kinds, meta, cached rankings and
  summaries, schema version; not created_at times) equals the state before the command
  or the state a run without a kill leaves (refresh --all-stale: per profile, each
  profile's cached ranking is its before or its after);
- the reserve (`DB-reserve`) is absent or a valid reserve (marker, 1..16 MiB, regular);
- an output file is its old bytes or the reference run's bytes; absent when it was;
- after SIGTERM/SIGINT no temporary file is left; after SIGKILL only the documented
  temporaries, and the next normal command (`history stats`, or the writer run again
  for output files) removes them, succeeds, and leaves a valid reserve.

python3 tools/fuzz/crash/crash.py --bin .build/release --work /tmp/palr-crash --minutes N --seed S
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SHARED = "/work/shared"
ML_SMALL = SHARED + "/data/ml-latest-small"
UDATA = SHARED + "/data/ml-100k/u.data"
STORIES = SHARED + "/models/stories260K-hf"
MODEL = REPO + "/models/palr-ml-small-q4_0.gguf"
CATALOG = REPO + "/models/ml-small-catalog.gguf"
DEMO_CSV = REPO + "/models/demo-history.csv"
RESERVE_MAGIC = b"palr history reserve 1\n"
MIB = 1 << 20


def reserve_bytes(store_bytes):
    """HistoryStore.reserveBytes(forStoreOf:)."""
    needed = min(max(0, store_bytes), 16 * MIB) // 128 * 129 + (64 << 10)
    return min(16 * MIB, max(MIB, (needed + MIB - 1) // MIB * MIB))


# ---------------------------------------------------------------- store snapshots

def snapshot(db, scratch):
    """(integrity, logical state) of the store at `db`, read from a copy of the
    database and its WAL (the files under test are never touched). None: no store."""
    if not os.path.exists(db):
        return "absent", None
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    copy = os.path.join(scratch, "h.sqlite")
    shutil.copyfile(db, copy)
    if os.path.exists(db + "-wal"):
        shutil.copyfile(db + "-wal", copy + "-wal")
    con = sqlite3.connect(copy)
    try:
        integrity = ";".join(r[0] for r in con.execute("PRAGMA integrity_check"))
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        if "profiles" not in tables:
            return integrity, ("empty-file", con.execute("PRAGMA user_version").fetchone()[0])
        state = {}
        state["version"] = con.execute("PRAGMA user_version").fetchone()[0]
        state["meta"] = sorted(con.execute("SELECT key, value FROM meta"))
        state["kinds"] = sorted(con.execute("SELECT id, name FROM kinds"))
        state["items"] = hashlib.sha256(repr(sorted(con.execute(
            "SELECT id, external_id FROM items"))).encode()).hexdigest()
        profiles = dict(con.execute("SELECT id, name FROM profiles"))
        state["profiles"] = sorted(profiles.values())
        per = {}
        for p, ts, seq, item, kind, value in con.execute(
                "SELECT profile, ts, seq, item, kind, value FROM interactions ORDER BY profile, ts, seq"):
            per.setdefault(profiles[p], hashlib.sha256()).update(repr((ts, seq, item, kind, value)).encode())
        state["interactions"] = {k: v.hexdigest() for k, v in per.items()}
        cached = {}
        for p, model, catalog, digest, items in con.execute(
                "SELECT profile, model_id, catalog_id, history_digest, items FROM cached_recommendations"):
            # The items JSON's key order is not fixed (Swift dictionaries): compared parsed.
            try:
                items = json.dumps(json.loads(items), sort_keys=True)
            except ValueError:
                items = "unparsable: " + items
            cached.setdefault(profiles[p], []).append((model, catalog, digest, items))
        state["cached"] = {k: sorted(v) for k, v in cached.items()}
        summaries = {}
        for row in con.execute("SELECT * FROM profile_summaries"):
            names = [d[0] for d in con.execute("SELECT * FROM profile_summaries LIMIT 0").description]
            record = dict(zip(names, row))
            record.pop("created_at", None)
            summaries[profiles[record.pop("profile")]] = sorted(record.items())
        state["summaries"] = summaries
        return integrity, state
    finally:
        con.close()


def state_digest(state):
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


def same_or_per_profile(state, before, after, per_profile):
    """Whether `state` is `before` or `after`; with per_profile (refresh --all-stale,
    which commits each profile's ranking on its own) each profile's cached ranking may
    be either, everything else must be one of the two."""
    if state == before or state == after:
        return True
    if not per_profile or not isinstance(state, dict) or not isinstance(before, dict):
        return False
    rest = {k: v for k, v in state.items() if k != "cached"}
    if rest != {k: v for k, v in before.items() if k != "cached"} and \
       rest != {k: v for k, v in after.items() if k != "cached"}:
        return False
    for name in set(state["cached"]) | set(before["cached"]) | set(after["cached"]):
        got = state["cached"].get(name)
        if got != before["cached"].get(name) and got != after["cached"].get(name):
            return False
    return True


def describe_difference(state, before, after):
    if not isinstance(state, dict):
        return f"state {state!r}"
    parts = []
    for key in sorted(state):
        b = before.get(key) if isinstance(before, dict) else None
        a = after.get(key) if isinstance(after, dict) else None
        v = state[key]
        if v != b and v != a:
            if key == "interactions":
                diff_b = sum(1 for k in set(v) | set(b or {}) if v.get(k) != (b or {}).get(k))
                diff_a = sum(1 for k in set(v) | set(a or {}) if v.get(k) != (a or {}).get(k))
                parts.append(f"interactions: {diff_b} profiles differ from before, {diff_a} from after")
            elif key == "meta":
                parts.append(f"meta {v} (before {b}, after {a})")
            else:
                parts.append(f"{key} differs from both")
        elif v == b and v != a:
            parts.append(f"{key}=before")
        elif v == a and v != b:
            parts.append(f"{key}=after")
    return "; ".join(parts)


# ---------------------------------------------------------------- file checks

def reserve_problem(db):
    path = db + "-reserve"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    import stat as S
    if not S.S_ISREG(st.st_mode):
        return "reserve is not a regular file"
    if not (MIB <= st.st_size <= 16 * MIB):
        return f"reserve has size {st.st_size}"
    with open(path, "rb") as f:
        head = f.read(len(RESERVE_MAGIC))
    if head != RESERVE_MAGIC:
        return f"reserve has no marker (starts {head[:24]!r}, size {st.st_size})"
    return None


def temporaries(folder, keep):
    """Files in `folder` that are not the expected ones (`keep`) nor SQLite's own."""
    out = []
    for name in sorted(os.listdir(folder)):
        if name in keep or name.startswith("snap"):
            continue
        if any(name == k + s for k in keep for s in ("-wal", "-shm", "-journal", "-reserve")):
            continue
        out.append(name)
    return out


def file_sha(path):
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- writers

class Writer:
    """One command under test. kind: 'store' (a history store is the output),
    'file' (an output file), 'both'."""

    def __init__(self, name, argv, store=None, output=None, setup=None, per_profile=False,
                 followup=None, old_output=None, expect_fail=False, exe="palr"):
        self.name, self.argv, self.store, self.output = name, argv, store, output
        self.setup, self.per_profile, self.followup = setup, per_profile, followup
        self.old_output, self.expect_fail, self.exe = old_output, expect_fail, exe
        self.duration = None
        self.before = self.after = None
        self.out_before = self.out_after = None


class Campaign:
    def __init__(self, args):
        self.bin = os.path.abspath(args.bin)
        self.work = os.path.abspath(args.work)
        self.rng = random.Random(args.seed)
        self.args = args
        self.counts = {}
        self.findings = []
        self.log = open(os.path.join(self.work, "campaign.log"), "a", buffering=1)

    def exe(self, name):
        return os.path.join(self.bin, name)

    def run(self, argv, cwd, exe="palr", timeout=600):
        return subprocess.run([self.exe(exe)] + argv, cwd=cwd, capture_output=True, timeout=timeout)

    # --- base fixtures, made once
    def fixtures(self):
        base = os.path.join(self.work, "base")
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        big = os.path.join(base, "big.sqlite")
        self.must(["history", "--db", big, "import", "--format", "movielens-csv", ML_SMALL + "/ratings.csv"], base)
        self.must(["history", "--db", big, "import", "--format", "udata", "--profile-prefix", "u", UDATA], base)
        # Cached rankings for a few profiles, so forgets drop derived rows too.
        for p in ["1", "414", "599"]:
            self.must(["refresh", "--model", MODEL, "--catalog", CATALOG, "--db", big, "--profile", p, "-t", "1"], base)
        demo = os.path.join(base, "demo.sqlite")
        self.must(["history", "--db", demo, "import", "--format", "movielens-csv", DEMO_CSV], base)
        with open(os.path.join(base, "ids.txt"), "w") as f:
            for k in range(20000):
                f.write(f"crash-item-{k}\n")
        old = os.path.join(base, "old.csv")
        with open(old, "w") as f:
            f.write("id,profile,item,kind,value,timestamp\n1,old,old,view,,1\n")
        self.must(["hf", STORIES, "-o", os.path.join(base, "old-q8.gguf"), "--type", "q8_0"], base, exe="palr-convert")
        self.base = base

    def must(self, argv, cwd, exe="palr"):
        r = self.run(argv, cwd, exe)
        if r.returncode != 0:
            sys.exit(f"fixture command failed: {exe} {' '.join(argv)}\n{r.stderr.decode(errors='replace')}")

    def writers(self):
        b = self.base
        rec = ["--model", MODEL, "--catalog", CATALOG, "--db", "h.sqlite", "-t", "1"]
        big = lambda d: self.copy_store(os.path.join(b, "big.sqlite"), d)
        demo = lambda d: self.copy_store(os.path.join(b, "demo.sqlite"), d)
        none = lambda d: None
        ws = [
            Writer("add", ["history", "--db", "h.sqlite", "add", "--profile", "1", "--time", "1700000000",
                           "--items-from", b + "/ids.txt"], store="h.sqlite", setup=big),
            Writer("add-create", ["history", "--db", "h.sqlite", "add", "--profile", "new", "--create-profile",
                                  "--time", "5", "--items-from", b + "/ids.txt"], store="h.sqlite", setup=none),
            Writer("import-udata", ["history", "--db", "h.sqlite", "import", "--format", "udata", UDATA],
                   store="h.sqlite", setup=big),
            Writer("import-csv-new", ["history", "--db", "h.sqlite", "import", "--format", "movielens-csv",
                                      ML_SMALL + "/ratings.csv"], store="h.sqlite", setup=none),
            Writer("forget-item-all", ["history", "--db", "h.sqlite", "forget", "--item", "356", "--all-profiles"],
                   store="h.sqlite", setup=big),
            Writer("forget-profile", ["history", "--db", "h.sqlite", "forget", "--profile", "414"],
                   store="h.sqlite", setup=big),
            Writer("forget-item-profile", ["history", "--db", "h.sqlite", "forget", "--profile", "1", "--item", "1"],
                   store="h.sqlite", setup=big),
            Writer("compact-cap", ["history", "--db", "h.sqlite", "compact", "--retention-cap", "20"],
                   store="h.sqlite", setup=big),
            Writer("compact", ["history", "--db", "h.sqlite", "compact"], store="h.sqlite", setup=big),
            Writer("compact-unlimited", ["history", "--db", "h.sqlite", "compact", "--unlimited", "--no-vacuum"],
                   store="h.sqlite", setup=big),
            Writer("export-csv", ["history", "--db", "h.sqlite", "export", "-o", "out.csv"], store="h.sqlite",
                   output="out.csv", old_output=b + "/old.csv", setup=big),
            Writer("export-jsonl-new", ["history", "--db", "h.sqlite", "export", "--format", "jsonl", "-o", "out.jsonl"],
                   store="h.sqlite", output="out.jsonl", setup=big),
            Writer("recommend", ["recommend"] + rec + ["--profile", "2", "--no-cache"], store="h.sqlite", setup=big),
            Writer("refresh", ["refresh"] + rec + ["--profile", "3"], store="h.sqlite", setup=big),
            Writer("refresh-all-stale", ["refresh"] + rec + ["--all-stale"], store="h.sqlite", setup=demo,
                   per_profile=True),
            Writer("profile", ["profile"] + rec + ["--profile", "1", "--regenerate"], store="h.sqlite", setup=big,
                   expect_fail=True),
            Writer("convert-hf", ["hf", STORIES, "-o", "out.gguf"], output="out.gguf", old_output=b + "/old-q8.gguf",
                   setup=none, exe="palr-convert"),
            Writer("convert-catalog", ["catalog", "--items", ML_SMALL + "/movies.csv", "--interactions",
                                       ML_SMALL + "/ratings.csv", "-o", "pack.gguf"], output="pack.gguf",
                   old_output=CATALOG, setup=none, exe="palr-convert"),
            Writer("convert-random", ["random", "--shape", "tiny", "-o", "r.gguf", "--threads", "1"], output="r.gguf",
                   setup=none, exe="palr-convert"),
            Writer("eval-tune-report", ["eval", "--items", ML_SMALL + "/movies.csv", "--interactions",
                                        ML_SMALL + "/ratings.csv", "--users", "40", "--grid", "window=5/10",
                                        "--tune-report", "report.tsv", "--threads", "1"], output="report.tsv",
                   old_output=b + "/old.csv", setup=none),
        ]
        if self.args.only:
            ws = [w for w in ws if w.name in self.args.only.split(",")]
        return ws

    def copy_store(self, src, folder):
        shutil.copyfile(src, os.path.join(folder, "h.sqlite"))
        # Half the trials start with the store's reserve in place (resized by the
        # writer), half without (made by the writer).
        if self.rng.random() < 0.5 and os.path.exists(src + "-reserve"):
            shutil.copyfile(src + "-reserve", os.path.join(folder, "h.sqlite-reserve"))
            os.chmod(os.path.join(folder, "h.sqlite-reserve"), 0o600)

    def prepare(self, w, folder):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        w.setup(folder)
        if w.output and w.old_output:
            shutil.copyfile(w.old_output, os.path.join(folder, w.output))

    def state(self, w, folder):
        if not w.store:
            return None
        return snapshot(os.path.join(folder, w.store), os.path.join(folder, "snap"))

    # --- reference runs: duration, before and after
    def reference(self, w):
        folder = os.path.join(self.work, "ref-" + w.name)
        durations = []
        afters = []
        for _ in range(2):
            self.prepare(w, folder)
            before = self.state(w, folder)
            out_before = file_sha(os.path.join(folder, w.output)) if w.output else None
            t0 = time.monotonic()
            r = self.run(w.argv, folder, w.exe)
            durations.append(time.monotonic() - t0)
            if (r.returncode != 0) != w.expect_fail:
                sys.exit(f"reference run of {w.name} exited {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
            after = self.state(w, folder)
            out_after = file_sha(os.path.join(folder, w.output)) if w.output else None
            afters.append((after, out_after))
        if afters[0] != afters[1]:
            sys.exit(f"{w.name}: two reference runs differ; the writer is not deterministic here")
        w.duration = max(durations)
        w.before = before[1] if before else None
        w.after = afters[0][0][1] if afters[0][0] else None
        w.out_before, w.out_after = out_before, afters[0][1]
        print(f"{w.name:20} {w.duration * 1000:7.0f} ms; before {state_digest(w.before)} after {state_digest(w.after)}",
              flush=True)

    # --- one trial
    def trial(self, w, how):
        folder = os.path.join(self.work, "trial")
        self.prepare(w, folder)
        u = self.rng.random()
        if u < 0.1:
            delay = self.rng.uniform(0, 0.005)
        elif u < 0.2:
            delay = w.duration * self.rng.uniform(0.9, 1.05)
        else:
            delay = self.rng.uniform(0, w.duration)
        sig = {"kill": signal.SIGKILL, "killpg": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}[how]
        p = subprocess.Popen([self.exe(w.exe)] + w.argv, cwd=folder, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)
        # Wait for the moment, noticing an early end (its time keeps the duration
        # estimate current: the host's load changes it several-fold).
        start = time.monotonic()
        while p.poll() is None and time.monotonic() - start < delay:
            time.sleep(min(0.002, max(0.0, delay - (time.monotonic() - start))))
        finished_first = p.poll() is not None
        if finished_first:
            w.duration = 0.8 * w.duration + 0.2 * (time.monotonic() - start)
        elif delay > 0.8 * w.duration:
            w.duration *= 1.05   # still running near its estimated end: a slower spell
        if not finished_first:
            try:
                if how == "killpg":
                    os.killpg(p.pid, sig)
                else:
                    os.kill(p.pid, sig)
            except ProcessLookupError:
                finished_first = True
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            _, err = p.communicate()
            self.finding(w, how, delay, "did not end within 120 s of the signal", folder)
            return
        rc = p.returncode
        key = (w.name, how)
        c = self.counts.setdefault(key, {"trials": 0, "signalled": 0, "before": 0, "after": 0, "mixed": 0,
                                         "empty-store": 0})
        c["trials"] += 1
        if rc < 0:
            c["signalled"] += 1
        problems = []

        # What the kill left, before any other command runs.
        expected = [w.store, w.output] if w.store else [w.output]
        keep = [x for x in expected if x]
        left = temporaries(folder, keep)
        if how in ("term", "int") and left:
            problems.append(f"temporaries left after {how}: {left}")
        if w.store:
            db = os.path.join(folder, w.store)
            rp = reserve_problem(db)
            if rp:
                problems.append(rp + " (right after the signal)")
            integrity, state = self.state(w, folder)
            if integrity not in ("ok", "absent"):
                problems.append(f"integrity_check: {integrity[:200]}")
            if state == w.before:
                c["before"] += 1
            elif state == w.after:
                c["after"] += 1
            elif w.before is None and isinstance(state, dict) and not state["profiles"]:
                # Created, nothing written yet: allowed before session 13 (README of the campaign).
                c["empty-store"] += 1
                problems.append("an empty store where there was none (created, its first write not in it)")
            elif same_or_per_profile(state, w.before, w.after, w.per_profile):
                c["mixed"] += 1
            else:
                problems.append("store is neither before nor after: " + describe_difference(state, w.before, w.after))
        if w.output:
            out = file_sha(os.path.join(folder, w.output))
            if out not in (w.out_before, w.out_after):
                size = os.path.getsize(os.path.join(folder, w.output))
                problems.append(f"output {w.output} is neither old nor new ({size} bytes)")
            if not w.store:
                c["before" if out == w.out_before else "after"] += 1

        # The next normal commands. Where the kill left no store, the next creation of it
        # (the writer run again) is what the README says removes a killed creation's
        # temporaries; it must succeed.
        if w.store and not os.path.exists(os.path.join(folder, w.store)):
            r = self.run(w.argv, folder, w.exe)
            if (r.returncode != 0) != w.expect_fail:
                problems.append(f"re-run exited {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}")
        if w.store and os.path.exists(os.path.join(folder, w.store)):
            for argv in (["history", "--db", w.store, "stats"], ["history", "--db", w.store, "list"]):
                r = self.run(argv, folder)
                if r.returncode != 0:
                    problems.append(f"{' '.join(argv[3:])} exited {r.returncode}: "
                                    f"{r.stderr.decode(errors='replace').strip()[:300]}")
            rp = reserve_problem(os.path.join(folder, w.store))
            if rp:
                problems.append(rp + " (after the next command)")
            elif not os.path.exists(os.path.join(folder, w.store + "-reserve")):
                problems.append("no reserve after the next command")
        if w.output:
            # The writer again, to the end: it must succeed and clean up.
            r = self.run(w.argv, folder, w.exe)
            if (r.returncode != 0) != w.expect_fail:
                problems.append(f"re-run exited {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}")
        left_after = temporaries(folder, keep)
        if left_after:
            problems.append(f"temporaries still there after the next command: {left_after}")
        if problems:
            self.finding(w, how, delay, " | ".join(problems), folder, rc, err)
        self.log.write(json.dumps({"writer": w.name, "signal": how, "delay_ms": round(delay * 1000, 2), "rc": rc,
                                   "finished_first": finished_first, "problems": problems}) + "\n")

    def chain(self, w, kills=5):
        """Kills in a row on one folder (each run starts on what the last kill left, so
        the start-up cleanups are themselves interrupted), then one run to the end: it
        must succeed, pass integrity_check, leave a valid reserve, the output file the
        reference's, and no temporaries. The content is not compared (a kill after a
        commit makes the next run append again)."""
        folder = os.path.join(self.work, "chain")
        self.prepare(w, folder)
        how = "chain"
        for _ in range(kills):
            delay = self.rng.uniform(0, w.duration)
            p = subprocess.Popen([self.exe(w.exe)] + w.argv, cwd=folder, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(delay)
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        c = self.counts.setdefault((w.name, how), {"trials": 0, "signalled": 0, "before": 0, "after": 0, "mixed": 0,
                                                    "empty-store": 0})
        c["trials"] += 1
        c["signalled"] += kills
        problems = []
        # The final run: the writer (it must finish), except on a store that exists, where
        # a kill after the commit may have made it fail by design (a forgotten profile is
        # unknown the next time): there `history stats` is the next command.
        if w.store and os.path.exists(os.path.join(folder, w.store)) and not w.output:
            argv, exe, fail = ["history", "--db", w.store, "stats"], "palr", False
        else:
            argv, exe, fail = w.argv, w.exe, w.expect_fail
        r = self.run(argv, folder, exe)
        if (r.returncode != 0) != fail:
            problems.append(f"final run exited {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}")
        keep = [x for x in (w.store, w.output) if x]
        if w.store and os.path.exists(os.path.join(folder, w.store)):
            integrity, _ = self.state(w, folder)
            if integrity != "ok":
                problems.append(f"integrity_check: {integrity[:200]}")
            rp = reserve_problem(os.path.join(folder, w.store))
            if rp:
                problems.append(rp)
        if w.output and file_sha(os.path.join(folder, w.output)) != w.out_after:
            problems.append(f"output {w.output} is not the reference's after the final run")
        left = temporaries(folder, keep)
        if left:
            problems.append(f"temporaries after the final run: {left}")
        if problems:
            self.finding(w, how, 0, " | ".join(problems), folder)
        self.log.write(json.dumps({"writer": w.name, "signal": how, "kills": kills, "problems": problems}) + "\n")

    def finding(self, w, how, delay, text, folder, rc=None, err=b""):
        n = len(self.findings)
        self.findings.append((w.name, how, delay, text))
        keep = os.path.join(self.work, f"finding-{n:03d}-{w.name}-{how}")
        if n < 40:
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(folder, keep, symlinks=True)
        print(f"FINDING {w.name} {how} at {delay * 1000:.1f} ms (rc {rc}): {text}"
              f"{' stderr: ' + err.decode(errors='replace').strip()[:200] if err else ''}", flush=True)

    def main(self):
        self.fixtures()
        ws = self.writers()
        for w in ws:
            self.reference(w)
        signals = ["kill"] * 5 + ["killpg"] * 2 + ["term"] * 2 + ["int"]
        end = time.monotonic() + self.args.minutes * 60
        n = 0
        while time.monotonic() < end and (not self.args.trials or n < self.args.trials):
            w = ws[n % len(ws)]
            if self.rng.random() < self.args.chain:
                self.chain(w)
            else:
                self.trial(w, self.rng.choice(signals))
            n += 1
        self.report()

    def report(self):
        print("\nwriter               signal  trials signalled before after mixed empty-store")
        totals = {}
        for (name, how), c in sorted(self.counts.items()):
            print(f"{name:20} {how:7} {c['trials']:6} {c['signalled']:9} {c['before']:6} {c['after']:5} "
                  f"{c['mixed']:5} {c['empty-store']:11}")
            totals[how] = totals.get(how, 0) + c["trials"]
        print("per signal:", totals, "total", sum(totals.values()))
        print(f"findings: {len(self.findings)}")
        kinds = {}
        for name, how, _, text in self.findings:
            kinds.setdefault((name, text.split(":")[0]), 0)
            kinds[(name, text.split(":")[0])] += 1
        for (name, what), count in sorted(kinds.items()):
            print(f"  {count:4} × {name}: {what}")
        with open(os.path.join(self.work, "summary.json"), "w") as f:
            json.dump({"counts": {f"{k[0]}/{k[1]}": v for k, v in self.counts.items()},
                       "findings": self.findings}, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="folder with palr and palr-convert (.build/release)")
    ap.add_argument("--work", required=True, help="scratch folder (everything is made under it)")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--trials", type=int, default=0, help="stop after this many trials (0: only --minutes)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="comma-separated writer names")
    ap.add_argument("--chain", type=float, default=0.1,
                    help="share of trials that are chains of 5 SIGKILLs on one folder, then a full run")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    # Started in the background by a shell (`&`, nohup), this process has SIGINT ignored,
    # and the writers would inherit that: SIGINT trials would test nothing.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    Campaign(args).main()


if __name__ == "__main__":
    main()
