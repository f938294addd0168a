#!/usr/bin/env python3
"""Hostile values in a structurally valid history store.

Builds a normal store with the palr CLI, plants hostile values in copies of it with
SQL (Python's sqlite3 module), runs every command that reads the store on each copy
and flags signal deaths, Swift traps, hangs, exit statuses other than 0/1/64 and
multi-line errors. Exit-0 runs are kept in results.jsonl for review (a hostile value
that a command reports nothing about may be silent damage).

    swift build -c release
    python3 tools/fuzz/history/fuzz.py --out /tmp/palr-hfuzz [--only NAME-SUBSTRING] [--jobs 4]
"""
import argparse, concurrent.futures, json, os, shutil, sqlite3, subprocess, sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PALR = os.path.join(ROOT, ".build", "release", "palr")
MODEL = ["--model", os.path.join(ROOT, "models", "palr-ml-small-q4_0.gguf"),
         "--catalog", os.path.join(ROOT, "models", "ml-small-catalog.gguf")]
P = "129"          # the profile the commands name (id 1 in the base store)
ITEM = "31658"     # an item of P's history

I64MAX, I64MIN = 2**63 - 1, -2**63

# (label, SQL literal) planted into columns.
VALUES = [
    ("null", "NULL"), ("zero", "0"), ("minus1", "-1"), ("i64max", str(I64MAX)), ("i64min", str(I64MIN)),
    ("text", "'abc'"), ("numtext", "'12'"), ("emptytext", "''"), ("blob", "x'00ff10'"),
    ("badutf8", "CAST(x'c328ff41' AS TEXT)"), ("inf", "9e999"), ("neginf", "-9e999"), ("half", "0.5"),
    ("bigreal", "1e300"), ("ctrl", "CAST(x'1b5b33316d0a41' AS TEXT)"), ("longtext", "printf('%.*c', 200000, 'x')"),
]

COLUMNS = {
    # table: (row filter, [columns])
    "profiles": ("id = 1", ["id", "name", "created_at"]),
    "items": ("id = (SELECT item FROM interactions WHERE profile = 1 ORDER BY ts DESC, seq DESC LIMIT 1)",
              ["id", "external_id"]),
    "kinds": ("id = 4", ["id", "name"]),
    "interactions": ("profile = 1 AND seq = (SELECT max(seq) FROM interactions WHERE profile = 1)",
                     ["profile", "ts", "seq", "item", "kind", "value"]),
    "cached_recommendations": ("profile = 1", ["profile", "model_id", "catalog_id", "history_digest",
                                               "created_at", "items"]),
    "profile_summaries": ("profile = 1", ["profile", "text", "history_digest", "interaction_count",
                                          "created_at", "last_interaction_id"]),
}
META_KEYS = ["next_interaction_id", "retention_cap", "forget_count"]


def drop_not_null(table):
    """Makes NULL storable in `table` (as another tool editing the schema could)."""
    return [f"PRAGMA writable_schema = ON",
            f"UPDATE sqlite_schema SET sql = replace(sql, 'NOT NULL', '') WHERE name = '{table}'",
            "PRAGMA writable_schema = RESET"]


def cache_json(items_sql):
    return [f"UPDATE cached_recommendations SET items = {items_sql} WHERE profile = 1"]


def mutants():
    out = []
    for table, (where, cols) in COLUMNS.items():
        for col in cols:
            for label, lit in VALUES:
                sql = [f"UPDATE {table} SET {col} = {lit} WHERE {where}"]
                if label == "null":
                    sql = drop_not_null(table) + sql
                out.append((f"{table}.{col}={label}", sql))
    for key in META_KEYS:
        for label, lit in VALUES:
            sql = [f"INSERT OR REPLACE INTO meta(key, value) VALUES ('{key}', {lit})"]
            if label == "null":
                sql = drop_not_null("meta") + sql
            out.append((f"meta.{key}={label}", sql))
        out.append((f"meta.{key}=missing", [f"DELETE FROM meta WHERE key = '{key}'"]))
    out.append(("meta.unknown-key", ["INSERT INTO meta VALUES ('zzz', x'ff')"]))
    for v in [0, 1, 3, 99, -1, 2**31 - 1, -2**31]:
        out.append((f"user_version={v}", [f"PRAGMA user_version = {v}"]))
    for v in [0, 1, -1]:
        out.append((f"application_id={v}", [f"PRAGMA application_id = {v}"]))
    # cached_recommendations.items JSON
    js = {
        "malformed": "'[{\"item\":'", "empty-array": "'[]'", "object": "'{}'", "number": "'1'",
        "nested": "printf('%.*c', 100000, '[') || printf('%.*c', 100000, ']')",
        "nested-obj": "replace(printf('%.*c', 50000, 'x'), 'x', '{\"a\":') || '1' || printf('%.*c', 50000, '}')",
        "huge": "'[' || (SELECT group_concat('{\"item\":\"5418\",\"score\":1}', ',') FROM "
                "(WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 200000) SELECT n FROM c)) || ']'",
        "wrong-types": "'[{\"item\":5418,\"score\":\"x\"}]'",
        "score-nan": "'[{\"item\":\"5418\",\"score\":NaN}]'",
        "score-1e400": "replace(items, '\"score\":-1.94', '\"score\":-1e400')",
        "score-null": "replace(items, '\"score\":-1.94', '\"score\":null')",
        "unknown-item": "replace(items, '\"5418\"', '\"no-such-item\"')",
        "item-empty": "replace(items, '\"5418\"', '\"\"')",
        "item-ctrl": "replace(items, '\"5418\"', '\"\\u001b[31m\\n\"')",
        "item-badutf8": "replace(items, '\"5418\"', CAST(x'22ff22' AS TEXT))",
        "item-surrogate": "replace(items, '\"5418\"', '\"\\ud800\"')",
        "dup-items": "'[' || (SELECT group_concat('{\"item\":\"5418\",\"score\":1}', ',') FROM "
                     "(WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 10) SELECT n FROM c)) || ']'",
        "history-item": "replace(items, '\"5418\"', '\"31658\"')",
        "extra-keys": "replace(items, '\"score\"', '\"x\":[1,2,{}],\"score\"')",
        "trailing": "items || 'garbage'",
        "bom": "CAST(x'efbbbf' AS TEXT) || items",
        "blob": "CAST(items AS BLOB)",
        "nul": "CAST(x'00' AS TEXT) || items",
        "short": "'[{\"item\":\"5418\",\"score\":1}]'",
    }
    for label, lit in js.items():
        out.append((f"cache.items={label}", cache_json(lit)))
    # structural oddities the schema accepts
    out += [
        ("interactions.dangling-item", ["UPDATE interactions SET item = 999999 WHERE profile = 1 AND seq = "
                                        "(SELECT min(seq) FROM interactions WHERE profile = 1)"]),
        ("interactions.dangling-kind", ["UPDATE interactions SET kind = 77 WHERE profile = 1"]),
        ("interactions.dangling-profile", ["UPDATE interactions SET profile = 4242 WHERE profile = 2"]),
        ("interactions.dup-seq-other-profile", ["INSERT INTO interactions SELECT 2, ts, seq, item, kind, value "
                                                "FROM interactions WHERE profile = 1"]),
        ("interactions.seq-above-next", ["UPDATE meta SET value = 5 WHERE key = 'next_interaction_id'"]),
        ("interactions.all-ts-i64max", ["UPDATE interactions SET ts = %d WHERE profile = 1" % I64MAX]),
        ("interactions.all-ts-i64min", ["UPDATE interactions SET ts = %d WHERE profile = 1" % I64MIN]),
        ("interactions.all-value-inf", ["UPDATE interactions SET value = 9e999 WHERE profile = 1"]),
        ("interactions.all-seq-i64max", ["UPDATE interactions SET seq = %d - ts WHERE profile = 1" % I64MAX]),
        ("interactions.many", ["WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 20000) "
                               "INSERT INTO interactions SELECT 1, n, 100000 + n, 1, 4, 3 FROM c",
                               "UPDATE meta SET value = 200000 WHERE key = 'next_interaction_id'"]),
        ("kinds.invalid-name", ["UPDATE kinds SET name = 'Bad Kind!' WHERE id = 4"]),
        ("kinds.empty-name", ["UPDATE kinds SET name = '' WHERE id = 4"]),
        ("kinds.dup-name-case", ["UPDATE kinds SET name = 'RATING' WHERE id = 4"]),
        ("kinds.deleted", ["DELETE FROM kinds"]),
        ("items.deleted", ["DELETE FROM items"]),
        ("profiles.deleted-keep-rows", ["DELETE FROM profiles WHERE id = 2"]),
        ("profiles.name-bidi", ["UPDATE profiles SET name = '129' || char(0x202e) WHERE id = 2"]),
        ("profiles.name-nul", ["UPDATE profiles SET name = CAST(x'31320033' AS TEXT) WHERE id = 2"]),
        ("profiles.name-same-after-repair", ["UPDATE profiles SET name = CAST(x'3132ff' AS TEXT) WHERE id = 2",
                                             "UPDATE profiles SET name = CAST(x'3132fe' AS TEXT) WHERE id = 3"]),
        ("items.extid-same-after-repair", ["UPDATE items SET external_id = CAST(x'3132ff' AS TEXT) WHERE id = 1",
                                           "UPDATE items SET external_id = CAST(x'3132fe' AS TEXT) WHERE id = 2"]),
        ("summary.dangling", ["INSERT INTO profile_summaries VALUES (777, 't', '0123456789abcdef', 1, 1, 1)"]),
        ("cache.dangling", ["INSERT INTO cached_recommendations SELECT 777, model_id, catalog_id, history_digest, "
                            "created_at, items FROM cached_recommendations WHERE profile = 1"]),
        ("cache.digest-current-dup", ["UPDATE cached_recommendations SET items = '[' || (SELECT group_concat("
                                      "'{\"item\":\"5418\",\"score\":1}', ',') FROM (WITH RECURSIVE c(n) AS "
                                      "(SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 10) SELECT n FROM c)) || ']' "
                                      "WHERE profile = 1"]),
        ("meta.retention_cap=1", ["UPDATE meta SET value = 1 WHERE key = 'retention_cap'"]),
        ("meta.next_id=i64max-1", ["UPDATE meta SET value = %d WHERE key = 'next_interaction_id'" % (I64MAX - 1)]),
        ("meta.forget_count=i64max-real", ["INSERT OR REPLACE INTO meta VALUES ('forget_count', 9.3e18)"]),
        ("meta.next_id=real-half", ["UPDATE meta SET value = 100.5 WHERE key = 'next_interaction_id'"]),
        ("schema.drop-meta", ["DROP TABLE meta"]),
        ("schema.drop-kinds", ["DROP TABLE kinds"]),
        ("schema.drop-cache", ["DROP TABLE cached_recommendations"]),
        ("schema.drop-summaries", ["DROP TABLE profile_summaries"]),
        ("schema.drop-column", ["ALTER TABLE profile_summaries DROP COLUMN last_interaction_id"]),
        ("schema.extra-table", ["CREATE TABLE extra(x)"]),
        ("schema.trigger-raise", ["CREATE TRIGGER t BEFORE INSERT ON interactions BEGIN SELECT RAISE(ABORT, 'no'); END"]),
        ("schema.view-shadow", ["DROP TABLE kinds",
                                "CREATE VIEW kinds AS SELECT 4 AS id, 'rating' AS name"]),
    ]
    return out


COMMANDS = [
    ("stats", ["history", "stats"]),
    ("stats-json", ["history", "stats", "--json"]),
    ("list", ["history", "list"]),
    ("list-P", ["history", "list", "--profile", P]),
    ("list-P-json", ["history", "list", "--profile", P, "--json"]),
    ("export", ["history", "export"]),
    ("export-jsonl", ["history", "export", "--format", "jsonl"]),
    ("add", ["history", "add", "--profile", P, "--kind", "view", "318"]),
    ("forget-P", ["history", "forget", "--profile", P]),
    ("forget-item", ["history", "forget", "--profile", P, "--item", ITEM]),
    ("forget-item-all", ["history", "forget", "--item", ITEM, "--all-profiles"]),
    ("compact", ["history", "compact"]),
    ("recommend", ["recommend"] + MODEL + ["--profile", P, "-t", "1"]),
    ("recommend-json", ["recommend"] + MODEL + ["--profile", P, "-t", "1", "--json"]),
    ("recommend-nocache", ["recommend"] + MODEL + ["--profile", P, "-t", "1", "--no-cache"]),
    ("refresh", ["refresh"] + MODEL + ["--all-stale", "-t", "1"]),
    ("profile", ["profile"] + MODEL + ["--profile", P, "-t", "1"]),
]


def make_base(work):
    base = os.path.join(work, "base.sqlite")
    if os.path.exists(base):
        return base
    udata = os.path.join(work, "u.data")
    with open(os.path.join(ROOT, "models", "demo-history.csv")) as f, open(udata, "w") as o:
        next(f)
        for line in f:
            u, i, r, t = line.strip().split(",")
            o.write(f"{u}\t{i}\t{int(float(r))}\t{t}\n")
    run = lambda *a: subprocess.run([PALR, *a], check=True, capture_output=True)
    run("history", "--db", base, "import", "--format", "udata", udata)
    run("history", "--db", base, "add", "--profile", "alice", "--create-profile", "--kind", "view", "1", "2", "296")
    run("history", "--db", base, "add", "--profile", P, "--kind", "click", "--value", "2.5", "--time", "1167378200", "318")
    run("recommend", *MODEL, "--db", base, "--profile", P, "-t", "1")
    run("recommend", *MODEL, "--db", base, "--profile", "alice", "-t", "1")
    run("history", "--db", base, "forget", "--profile", "455", "--item", "1907")
    db = sqlite3.connect(base)
    db.execute("INSERT INTO profile_summaries VALUES (1, 'likes thrillers', '0123456789abcdef', 21, 1700000000, 85)")
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return base


def plant(base, path, sql):
    shutil.copy(base, path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for s in sql:
            db.execute(s)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    for ext in ("-wal", "-shm"):
        if os.path.exists(path + ext):
            os.remove(path + ext)


def run_one(args):
    mdir, name, cname, cargs = args
    src = os.path.join(mdir, "mutant.sqlite")
    db = os.path.join(mdir, f"{cname}.sqlite")
    shutil.copy(src, db)
    argv = [PALR] + cargs[:1] + ["--db", db] + cargs[1:] if cargs[0] != "history" else \
        [PALR, "history", "--db", db] + cargs[1:]
    try:
        p = subprocess.run(argv, capture_output=True, timeout=20)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", e.stdout or b"", e.stderr or b""
    err_s = err.decode("utf-8", "replace")
    problems = []
    if rc == "timeout":
        problems.append("hang")
    elif rc < 0:
        problems.append(f"signal {-rc}")
    elif rc not in (0, 1, 64):
        problems.append(f"exit {rc}")
    if "Fatal error" in err_s or "fatal error" in err_s.lower():
        problems.append("swift trap")
    lines = [l for l in err_s.splitlines() if l.strip()]
    if rc == 1 and len([l for l in lines if l.startswith("Error")]) != 1:
        problems.append("not one error line")
    for f in os.listdir(mdir):
        if f.startswith(cname + ".sqlite"):
            os.remove(os.path.join(mdir, f))
    return {"mutant": name, "command": cname, "rc": rc, "problems": problems,
            "stderr": err_s[:600], "stdout": out.decode("utf-8", "replace")[:600]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default=None)
    ap.add_argument("--commands", default=None, help="comma-separated command labels")
    ap.add_argument("--jobs", type=int, default=4)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    base = make_base(a.out)
    ms = [m for m in mutants() if a.only is None or a.only in m[0]]
    cmds = [c for c in COMMANDS if a.commands is None or c[0] in a.commands.split(",")]
    jobs, planted, rejected = [], 0, []
    for n, (name, sql) in enumerate(ms):
        mdir = os.path.join(a.out, "m%04d" % n)
        os.makedirs(mdir, exist_ok=True)
        with open(os.path.join(mdir, "mutation.sql"), "w") as f:
            f.write(name + "\n" + ";\n".join(sql) + ";\n")
        try:
            plant(base, os.path.join(mdir, "mutant.sqlite"), sql)
        except sqlite3.Error as e:
            rejected.append((name, str(e)))
            continue
        planted += 1
        jobs += [(mdir, name, c, args) for c, args in cmds]
    results = []
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as ex, open(os.path.join(a.out, "results.jsonl"), "w") as log:
        for r in ex.map(run_one, jobs):
            results.append(r)
            log.write(json.dumps(r) + "\n")
    print(f"{planted} mutants planted ({len(rejected)} rejected by SQLite), {len(results)} runs")
    for name, e in rejected:
        print(f"  rejected {name}: {e}")
    per = {}
    for r in results:
        s = per.setdefault(r["command"], {"runs": 0, "0": 0, "1": 0, "64": 0, "bad": 0})
        s["runs"] += 1
        k = str(r["rc"]) if str(r["rc"]) in s else "bad"
        s[k] += 1
    for c, s in per.items():
        print(f"  {c:18} {s}")
    bad = [r for r in results if r["problems"]]
    print(f"{len(bad)} flagged runs")
    for r in bad:
        print(f"  {r['mutant']:40} {r['command']:18} {r['problems']} {r['stderr'][:200]!r}")


if __name__ == "__main__":
    main()
