#!/usr/bin/env python3
"""Structure-aware mutation fuzzer for palr-convert's inputs.

Starting from a real Hugging Face checkpoint (stories260K-hf) and small catalog
files, it writes mutants of one input kind at a time, runs the matching
palr-convert subcommand on each (timeout, address-space cap, fresh output
folder) and records what the standard forbids: a death by signal, a Swift
"Fatal error", a hang (and a run over 10 s), a huge peak RSS, files left in the
output folder, and an exit 0 for an input that must be refused (whose output is
then loaded by palr).

    python3 tools/fuzz/convert/fuzz.py --bin .build/release --work /tmp/fz --minutes 40

Findings go to WORK/findings.jsonl (one JSON object a finding, with the mutant
kept in WORK/keep/) and a summary to stdout. Needs numpy only.
"""
import argparse
import json
import math
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np

SHARED_MODEL = "/work/shared/models/stories260K-hf"
SHARED_DATA = "/work/shared/data/ml-latest-small"
MEM_LIMIT = 4_000_000 * 1024          # ulimit -v 4000000 (KB)
TIMEOUT = 30
RSS_LIMIT_KB = 1_000_000              # a tiny input must not take 1 GB
SLOW = 10                             # seconds: worth a look on inputs this small (a loaded host is slower)

# ---------------------------------------------------------------- safetensors


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    return header, raw[8 + n:]


def st_bytes(header, data, length=None, header_bytes=None):
    """A safetensors file from a header (dict or raw bytes) and a data section."""
    if header_bytes is None:
        header_bytes = json.dumps(header, allow_nan=True).encode()
    pad = (-len(header_bytes)) % 8
    header_bytes += b" " * pad
    n = len(header_bytes) if length is None else length
    return struct.pack("<Q", n & (2**64 - 1)) + header_bytes + data


def tensors_of(header, data):
    """{name: (dtype, shape, bytes)} in header order."""
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = (v["dtype"], v["shape"], data[b:e])
    return out


def pack_tensors(tensors, metadata=None):
    header, chunks, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for k, (dt, shape, b) in tensors.items():
        header[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    return header, b"".join(chunks)


# ---------------------------------------------------------------- protobuf


def varint(v):
    v &= 2**64 - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    tag = varint(num << 3 | wire)
    if wire == 2:
        return tag + varint(len(payload)) + payload
    return tag + payload


def read_varint(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        if x < 0x80:
            return r, i
        s += 7


def parse_fields(b):
    """Top-level fields as (number, wire, payload bytes)."""
    out, i = [], 0
    while i < len(b):
        tag, i = read_varint(b, i)
        num, wire = tag >> 3, tag & 7
        if wire == 0:
            v, j = read_varint(b, i)
            out.append((num, wire, b[i:j]))
            i = j
        elif wire == 2:
            n, i = read_varint(b, i)
            out.append((num, wire, b[i:i + n]))
            i += n
        elif wire == 5:
            out.append((num, wire, b[i:i + 4]))
            i += 4
        elif wire == 1:
            out.append((num, wire, b[i:i + 8]))
            i += 8
        else:
            raise ValueError("wire %d" % wire)
    return out


def join_fields(fields):
    return b"".join(field(n, w, p) if w == 2 else varint(n << 3 | w) + p for n, w, p in fields)


def piece(text, score=0.0, ptype=None, raw_score=None):
    p = field(1, 2, text if isinstance(text, bytes) else text.encode())
    p += field(2, 5, raw_score if raw_score is not None else struct.pack("<f", score))
    if ptype is not None:
        p += field(3, 0, varint(ptype))
    return field(1, 2, p)


# ---------------------------------------------------------------- runner


class Runner:
    def __init__(self, args):
        self.bin = os.path.abspath(args.bin)
        self.work = os.path.abspath(args.work)
        self.counts = {}
        self.findings = []
        self.seen = set()
        self.log = open(os.path.join(self.work, "findings.jsonl"), "a")
        self.n = 0

    def _limits(self):
        resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()

    def exec(self, cmd, cwd, timeout=TIMEOUT):
        """(returncode or None on timeout, stderr text, peak RSS KB, seconds)."""
        t0 = time.time()
        errf = open(os.path.join(self.work, "stderr.txt"), "w+b")
        p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errf, stdin=subprocess.DEVNULL,
                             preexec_fn=self._limits)
        rc, rss = None, 0
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(status)
                rss = ru.ru_maxrss
                break
            if time.time() - t0 > timeout:
                os.killpg(p.pid, signal.SIGKILL)
                os.wait4(p.pid, 0)
                break
            time.sleep(0.005)
        p.returncode = rc if rc is not None else -9
        errf.seek(0)
        err = errf.read().decode("utf-8", "replace")
        errf.close()
        return rc, err, rss, time.time() - t0

    def run(self, kind, name, mdir, cmd_args, expect, out_name="out.gguf", keep=None):
        """Runs palr-convert on a mutant. expect: "fail", "ok" or "any"."""
        self.n += 1
        self.counts[kind] = self.counts.get(kind, 0) + 1
        outdir = os.path.join(self.work, "out")
        shutil.rmtree(outdir, ignore_errors=True)
        os.makedirs(outdir)
        out = os.path.join(outdir, out_name)
        cmd = [os.path.join(self.bin, "palr-convert")] + [a.replace("{OUT}", out) for a in cmd_args]
        rc, err, rss, secs = self.exec(cmd, mdir)
        problems = []
        if rc is None:
            problems.append("hang (killed after %d s)" % TIMEOUT)
        elif rc < 0:
            problems.append("signal %s" % signal.Signals(-rc).name)
        elif rc >= 128:
            problems.append("exit %d (signal-like)" % rc)
        if "Fatal error" in err or "Illegal instruction" in err or "Segmentation" in err:
            problems.append("Swift fatal error")
        elif secs > SLOW:
            problems.append("slow (%.0f s)" % secs)
        if rss > RSS_LIMIT_KB:
            problems.append("peak RSS %d MB" % (rss // 1024))
        left = sorted(os.listdir(outdir))
        if rc == 0:
            extra = [f for f in left if f != out_name]
            if extra:
                problems.append("leftover files %s" % extra)
            if expect == "fail":
                problems.append("exit 0 for an input that must be refused")
            if out_name.endswith(".gguf") and os.path.exists(out) and cmd_args[0] == "hf":
                problems += self.check_model(out)
        elif rc is not None and left:
            problems.append("leftover files after failure %s" % left)
        if rc not in (0, None) and rc < 128 and not err.strip():
            problems.append("non-zero exit without a message")
        if rc == 1 and expect == "ok":
            problems.append("refused a valid input: " + err.strip().splitlines()[-1][:200] if err.strip() else "refused a valid input")
        if problems:
            self.record(kind, name, mdir, cmd, rc, err, problems, keep)
        return rc, err

    def check_model(self, path):
        """Loads a written model with palr: tokenize and a one-token bench."""
        probs = []
        palr = os.path.join(self.bin, "palr")
        for cmd in ([palr, "tokenize", "--model", path, "hello world"],
                    [palr, "bench", "--model", path, "-p", "4", "-n", "1", "--repeat", "1"]):
            rc, err, rss, _ = self.exec(cmd, self.work, timeout=60)
            if rc is None or rc < 0 or rc >= 128 or "Fatal error" in err:
                probs.append("palr %s on the output: rc=%s %s" % (cmd[1], rc, err.strip()[-300:]))
            elif rc != 0 and cmd[1] == "tokenize" and "tokenizer" not in err:
                probs.append("palr %s refused the output: %s" % (cmd[1], err.strip()[-300:]))
        return probs

    def record(self, kind, name, mdir, cmd, rc, err, problems, keep):
        last = err.strip().splitlines()[-1][:300] if err.strip() else ""
        key = (kind, tuple(sorted(p.split(" ")[0] for p in problems)), name.split(":")[0])
        dest = None
        if key not in self.seen:
            self.seen.add(key)
            dest = os.path.join(self.work, "keep", "%s-%05d" % (kind, self.n))
            shutil.copytree(mdir, dest, symlinks=True)
            if keep:
                keep(dest)
        f = {"kind": kind, "mutant": name, "rc": rc, "problems": problems, "stderr": last,
             "cmd": " ".join(cmd), "kept": dest}
        self.findings.append(f)
        self.log.write(json.dumps(f) + "\n")
        self.log.flush()
        print("FINDING", json.dumps(f), flush=True)


# ---------------------------------------------------------------- base inputs


class Base:
    def __init__(self, work):
        self.dir = os.path.join(work, "base")
        if not os.path.isdir(self.dir):
            shutil.copytree(SHARED_MODEL, self.dir)
            for f in os.listdir(self.dir):
                os.chmod(os.path.join(self.dir, f), 0o644)
            os.chmod(self.dir, 0o755)
        self.config = json.load(open(os.path.join(self.dir, "config.json")))
        self.header, self.data = read_safetensors(os.path.join(self.dir, "model.safetensors"))
        self.tensors = tensors_of(self.header, self.data)
        self.tok = open(os.path.join(self.dir, "tokenizer.model"), "rb").read()
        self.tok_fields = parse_fields(self.tok)


def fresh(work, base, skip=()):
    """A mutant folder holding the base checkpoint (hard links; mutated files are rewritten)."""
    d = os.path.join(work, "m")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for f in ["config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"]:
        if f not in skip:
            os.link(os.path.join(base.dir, f), os.path.join(d, f))
    return d


def write(path, data):
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


HF = ["hf", ".", "-o", "{OUT}", "--threads", "1"]

# ---------------------------------------------------------------- mutators

HUGE = [0, -1, 1, 2**31, 2**32, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64, 2**64 + 7, 10**30, 1e308,
        "1e400", 1.5, -0.0, "\"8\"", "null", "true", "[]", "{}", "NaN", "Infinity", "-Infinity", "1e-400"]


def jnum(v):
    """A JSON literal (strings are already literals)."""
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return repr(v)
    return str(v)


def mut_header(rng, base):
    """A mutated safetensors header: (name, file bytes, expect)."""
    names = list(base.tensors)
    h = json.loads(json.dumps(base.header))
    t = rng.choice(names)
    data = base.data
    k = rng.randrange(24)
    if k == 0:
        dt = rng.choice(["F64", "I32", "I64", "U8", "BOOL", "F8_E4M3", "f32", "", "F32 ", "Q4_0", 5, None, ["F32"]])
        h[t]["dtype"] = dt
        return "dtype:%s=%r" % (t, dt), st_bytes(h, data), "fail"
    if k == 1:
        shape = rng.choice([[2**32, 2**32], [2**62, 4], [2**63 - 1], [-1, 64], [64.5], ["64"], [None], [[64]], [],
                            [0], [0, 2**62, 2**62], [2**64], [1e300], [3e9, 3e9, 3e9], [64, 64, 0, 2**63 - 1]])
        h[t]["shape"] = shape
        return "shape:%s=%s" % (t, shape), st_bytes(h, data), "fail"
    if k == 2:
        b, e = h[t]["data_offsets"]
        offs = rng.choice([[e, b], [b, e + 4], [b - 4, e - 4] if b >= 4 else [0, e - b + 4], [b, 2**63 - 1],
                           [2**63 - 8, 2**63 - 8 + (e - b)], [2**64 - 8, 2**64 - 8 + e - b], [-(e - b), 0],
                           [len(data), len(data) + e - b], [b, e, e], [b], [float(b), float(e)], [1e300, 1e300],
                           [b + 1, e + 1], [str(b), str(e)]])
        h[t]["data_offsets"] = offs
        return "offsets:%s=%s" % (t, offs), st_bytes(h, data), "fail"
    if k == 3:
        hb = json.dumps(h).encode()
        hb += b" " * ((-len(hb)) % 8)
        n = rng.choice([2**64 - 1, 2**63, 100 << 20, (100 << 20) + 1, 0, 1, 2, 7, len(hb) - 1, len(hb) + 1,
                        len(hb) + len(data), len(hb) + len(data) + 1])
        return "hlen:%d" % n, struct.pack("<Q", n & (2**64 - 1)) + hb + data, "fail"
    if k == 4:
        # duplicate tensor name: the same key twice in the raw JSON
        hb = json.dumps(h).encode()
        entry = json.dumps({t: h[t]})[1:-1].encode()
        hb = hb[:-1] + b", " + entry + b"}"
        return "dupname:%s" % t, st_bytes(None, data, header_bytes=hb), "fail"
    if k == 5:
        hb = json.dumps(h).encode()
        bad = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\x00", b"\x01", b"\x7f", b"\xf4\x90\x80\x80"])
        i = hb.index(t.encode())
        hb = hb[:i] + bad + hb[i:]
        return "nonutf8:%s:%r" % (t, bad), st_bytes(None, data, header_bytes=hb), "fail"
    if k == 6:
        depth = rng.choice([63, 64, 65, 1000, 100000])
        nest = "[" * depth + "]" * depth
        where = rng.choice(["meta", "tensor", "top"])
        if where == "meta":
            hb = b'{"__metadata__": {"x": ' + nest.encode() + b"}, " + json.dumps(h).encode()[1:]
        elif where == "tensor":
            hb = json.dumps(h).encode()[:-1] + b', "x": ' + nest.encode() + b"}"
        else:
            hb = nest.encode()
        return "nested:%s:%d" % (where, depth), st_bytes(None, data, header_bytes=hb), "fail"
    if k == 7:
        lit = rng.choice(["1" * 400, "1e999999", "-1e999999", "123456789012345678901234567890", "0.0000000001e-999999",
                          "-0", "1E5", "9007199254740993", "1" + "0" * 5000])
        fld = rng.choice(["shape", "data_offsets"])
        hb = json.dumps(h).encode()
        v = h[t][fld]
        old = json.dumps({fld: v})[1:-1]
        new = old.replace(json.dumps(v), "[" + ", ".join([lit] + [str(x) for x in v[1:]]) + "]")
        hb = hb.replace(old.encode(), new.encode(), 1)
        return "hugenum:%s.%s=%s" % (t, fld, lit[:30]), st_bytes(None, data, header_bytes=hb), "fail"
    if k == 8:
        meta = rng.choice([[], "x", 1, None, {"a": 1}, {"a": None}, {"a": {"b": "c"}}, {"format": "pt", "x": "y" * 100000},
                           {"": ""}, {"a\u0000b": "c"}])
        h2 = dict(h)
        h2["__metadata__"] = meta
        ok = isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
        return "meta:%s" % json.dumps(meta)[:40], st_bytes(h2, data), "ok" if ok else "fail"
    if k == 9:
        # NaN / inf in tensor data
        dt, shape, b = base.tensors[t]
        arr = np.frombuffer(b, dtype=np.float32).copy()
        v = rng.choice([np.nan, np.inf, -np.inf, np.float32(3.4e38)])
        i = rng.randrange(len(arr))
        arr[i] = v
        tens = dict(base.tensors)
        tens[t] = (dt, shape, arr.tobytes())
        hh, dd = pack_tensors(tens)
        # 3.4e38 is finite: refused only where a type cannot hold it (an fp16 block scale, F16)
        return "data:%s[%d]=%s" % (t, i, v), st_bytes(hh, dd), "fail" if not np.isfinite(v) else "any"
    if k == 10:
        # random byte flips in the header
        hb = bytearray(json.dumps(h).encode())
        for _ in range(rng.randrange(1, 4)):
            hb[rng.randrange(len(hb))] = rng.randrange(256)
        return "flip", st_bytes(None, data, header_bytes=bytes(hb)), "any"
    if k == 11:
        whole = st_bytes(h, data)
        cut = rng.randrange(0, len(whole))
        return "truncate:%d" % cut, whole[:cut], "fail"
    if k == 12:
        # convert to F16/BF16 (valid) or mislabel without converting
        tens = dict(base.tensors)
        dt = rng.choice(["F16", "BF16"])
        for n in rng.sample(names, rng.randrange(1, len(names))):
            arr = np.frombuffer(tens[n][2], dtype=np.float32)
            if dt == "F16":
                b = arr.astype(np.float16).tobytes()
            else:
                b = (arr.view(np.uint32) >> 16).astype(np.uint16).tobytes()
            tens[n] = (dt, tens[n][1], b)
        hh, dd = pack_tensors(tens)
        return "valid-%s" % dt, st_bytes(hh, dd), "ok"
    if k == 13:
        pad = rng.choice([b"\x00" * 8, b"\t\n\r ", b" " * 8, b"\n", b"garbage!"])
        hb = json.dumps(h).encode() + pad
        ok = pad.strip(b" \t\n\r") == b""
        return "pad:%r" % pad[:4], st_bytes(None, data, header_bytes=hb), "ok" if ok else "fail"
    if k == 14:
        # an extra zero-size or unknown tensor
        extra = rng.choice([("extra.weight", "F32", [0]), ("model.layers.99.mlp.up_proj.weight", "F32", [0, 64]),
                            ("model.rotary_emb.inv_freq", "F32", [4]), ("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", [4]),
                            ("lm_head.weight", "F32", [512, 64]), ("", "F32", [1]), ("model.layers.-1.x", "F32", [1]),
                            ("model.layers.99999999999999999999.x", "F32", [1])])
        nm, dt, shape = extra
        tens = dict(base.tensors)
        tens[nm] = (dt, shape, b"\x00" * (4 * int(np.prod(shape))))
        hh, dd = pack_tensors(tens)
        expect = "any" if "inv_freq" in nm or nm == "lm_head.weight" else "fail"
        return "extra:%s%s" % (nm, shape), st_bytes(hh, dd), expect
    if k == 15:
        # two tensors share bytes (overlap), or a zero-size tensor inside another
        t2 = rng.choice([n for n in names if n != t])
        h[t2]["data_offsets"] = list(h[t]["data_offsets"]) if h[t2]["shape"] == h[t]["shape"] else h[t2]["data_offsets"]
        if h[t2]["data_offsets"] != h[t]["data_offsets"]:
            b0 = h[t]["data_offsets"][0]
            sz = h[t2]["data_offsets"][1] - h[t2]["data_offsets"][0]
            if b0 + sz <= len(data):
                h[t2]["data_offsets"] = [b0, b0 + sz]
            else:
                return "overlap-skip", st_bytes(h, data), "ok"
        return "overlap:%s,%s" % (t, t2), st_bytes(h, data), "fail"
    if k == 16:
        # missing required tensor
        tens = dict(base.tensors)
        del tens[t]
        hh, dd = pack_tensors(tens)
        return "missing:%s" % t, st_bytes(hh, dd), "fail"
    if k == 17:
        # shape transposed / reshaped with same byte count
        shape = h[t]["shape"]
        new = list(reversed(shape)) if len(shape) == 2 and shape[0] != shape[1] else [int(np.prod(shape))]
        if len(shape) == 1:
            new = [1, shape[0]]
        h[t]["shape"] = new
        return "reshape:%s=%s" % (t, new), st_bytes(h, data), "fail"
    if k == 18:
        # entry not an object / keys missing
        v = rng.choice([None, 1, "x", [], {}, {"dtype": "F32"}, {"shape": [1]}, {"dtype": "F32", "shape": [64]}])
        h[t] = v
        return "entry:%s=%s" % (t, json.dumps(v)), st_bytes(h, data), "fail"
    if k == 19:
        # header not an object
        hb = rng.choice([b"[]", b"null", b"1", b'"x"', b"", b"{", b'{"a":}', b"{}", b'{"__metadata__":{}}'])
        return "top:%r" % hb, st_bytes(None, data, header_bytes=hb), "fail"
    if k == 20:
        # unicode escapes in names
        esc = rng.choice(["\\ud800", "\\udc00", "\\ud800\\u0041", "\\u0000", "\\uZZZZ", "\\u00", "\\x41", "\\"])
        hb = json.dumps(h).encode().replace(t.encode(), t.encode() + esc.encode(), 1)
        return "escape:%s" % esc, st_bytes(None, data, header_bytes=hb), "fail"
    if k == 21:
        # empty data section / empty file / only the length
        return "empty:%d" % k, rng.choice([b"", b"\x00" * 8, struct.pack("<Q", 2) + b"{}", struct.pack("<Q", 8) + b"{}      "]), "fail"
    if k == 22:
        # many tensors (huge header of tiny extra entries) -> unexpected tensor, but must be fast
        extra = {("x.%d" % i): {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(200000)}
        h.update(extra)
        return "many-entries", st_bytes(h, data), "fail"
    # offsets that leave a gap / data not covered
    hb = json.dumps(h).encode()
    return "trailing-data", st_bytes(None, data + b"\x00" * rng.choice([1, 7, 4096]), header_bytes=hb), "ok"


def run_header(r, rng, base, work):
    name, blob, expect = mut_header(rng, base)
    d = fresh(work, base, skip=["model.safetensors"])
    write(os.path.join(d, "model.safetensors"), blob)
    args = list(HF)
    if name.startswith("data:") and rng.random() < 0.5:
        args += ["--type", "f32"]
    r.run("safetensors", name, d, args, expect)


def split_shards(base, n=2):
    names = list(base.tensors)
    parts = [names[i::n] for i in range(n)]
    files = {}
    wm = {}
    for i, p in enumerate(parts):
        fn = "model-%05d-of-%05d.safetensors" % (i + 1, n)
        h, d = pack_tensors({k: base.tensors[k] for k in p})
        files[fn] = st_bytes(h, d)
        for k in p:
            wm[k] = fn
    return files, wm


def run_shard(r, rng, base, work):
    d = fresh(work, base, skip=["model.safetensors"])
    files, wm = split_shards(base, rng.choice([2, 3]))
    index = {"metadata": {"total_size": len(base.data)}, "weight_map": dict(wm)}
    names = list(wm)
    t = rng.choice(names)
    k = rng.randrange(16)
    expect = "fail"
    raw_index = None
    if k == 0:
        index["weight_map"][t] = "model-missing.safetensors"
        name = "missing-shard"
    elif k == 1:
        # the same tensor in two shards
        other = [f for f in files if f != wm[t]][0]
        h, dd = read_safetensors_bytes(files[other])
        tens = tensors_of(h, dd)
        tens[t] = base.tensors[t]
        hh, dd2 = pack_tensors(tens)
        files[other] = st_bytes(hh, dd2)
        if rng.random() < 0.5:
            raw_index = json.dumps(index)[:-2] + ', "%s": "%s"}}' % (t, other)
        name = "tensor-in-two-shards"
    elif k == 2:
        p = rng.choice(["../" + wm[t], "/tmp/" + wm[t], "sub/" + wm[t], "..", ".", "", "./" + wm[t], wm[t] + "/",
                        "\\..\\x", "..\u2215x", wm[t] + "\u0000"])
        for n in names:
            if wm[n] == wm[t]:
                index["weight_map"][n] = p
        if p.startswith("../"):
            write(os.path.join(work, wm[t]), files[wm[t]])
        name = "path:%r" % p
    elif k == 3:
        # a shard that is a symlink: to a valid file outside (accepted), to a dir, /dev/zero, a loop, dangling
        target = rng.choice(["outside", "dir", "/dev/zero", "loop", "dangling", "/proc/self/mem", "/dev/urandom"])
        fn = wm[t]
        lp = os.path.join(d, fn)
        if target == "outside":
            op = os.path.join(work, "outside.safetensors")
            write(op, files[fn])
            os.symlink(op, lp)
            expect = "ok"
        elif target == "dir":
            os.symlink(work, lp)
        elif target == "loop":
            os.symlink(lp, lp)
        elif target == "dangling":
            os.symlink(os.path.join(work, "nothing-here"), lp)
        else:
            os.symlink(target, lp)
        del files[fn]
        name = "symlink:%s" % target
    elif k == 4:
        fn = wm[t]
        os.mkfifo(os.path.join(d, fn))
        del files[fn]
        name = "fifo-shard"
    elif k == 5:
        index = rng.choice([{}, {"weight_map": []}, {"weight_map": None}, {"weight_map": {t: 1}}, {"weight_map": {t: None}},
                            {"weight_map": {}}, [], {"weight_map": {"": wm[t]}}])
        name = "index:%s" % json.dumps(index)[:40]
    elif k == 6:
        # index does not list a tensor a shard holds (stale)
        del index["weight_map"][t]
        name = "stale-index"
    elif k == 7:
        # index names a tensor that the shard does not hold
        index["weight_map"]["model.layers.0.mlp.extra.weight"] = wm[t]
        name = "index-extra-tensor"
    elif k == 8:
        # both model.safetensors and index (single wins: must be ok)
        os.link(os.path.join(base.dir, "model.safetensors"), os.path.join(d, "model.safetensors"))
        expect = "ok"
        name = "single-and-index"
    elif k == 9:
        # shard name with odd characters but valid
        fn = wm[t]
        new = rng.choice(["shard with space.safetensors", "ünï.safetensors", "-x.safetensors", "a" * 250])
        files[new] = files.pop(fn)
        for n in names:
            if wm[n] == fn:
                index["weight_map"][n] = new
        expect = "ok"
        name = "oddname:%s" % new[:20]
    elif k == 10:
        raw_index = rng.choice(["", "{", "null", "\xff", '{"weight_map": {"a": "b", "a": "c"}}', "[" * 100000])
        name = "index-raw:%r" % raw_index[:10]
    elif k == 11:
        # a shard that is empty / truncated
        fn = wm[t]
        files[fn] = files[fn][:rng.randrange(len(files[fn]))]
        name = "truncated-shard"
    elif k == 12:
        # many index entries pointing to a missing shard
        for i in range(100000):
            index["weight_map"]["x.%d" % i] = "nope.safetensors"
        name = "huge-index"
    elif k == 13:
        # shard is a directory
        fn = wm[t]
        os.mkdir(os.path.join(d, fn))
        del files[fn]
        name = "dir-shard"
    elif k == 14:
        # index lists the same shard name differently ("./x")
        for n in names:
            if wm[n] == wm[t] and rng.random() < 0.5:
                index["weight_map"][n] = "./" + wm[t]
        name = "dot-slash-mix"
    else:
        expect = "ok"
        name = "valid-sharded"
    for fn, b in files.items():
        write(os.path.join(d, fn), b)
    write(os.path.join(d, "model.safetensors.index.json"), raw_index if raw_index is not None else json.dumps(index))
    r.run("sharded", name, d, HF, expect)


def read_safetensors_bytes(b):
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


CONFIG_NUMERIC = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                  "head_dim", "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "pad_token_id",
                  "bos_token_id", "eos_token_id", "tie_word_embeddings", "attention_bias", "mlp_bias",
                  "partial_rotary_factor", "model_type", "architectures", "hidden_act", "rope_scaling", "rope_parameters",
                  "quantization_config"]


def run_config(r, rng, base, work):
    d = fresh(work, base, skip=["config.json"])
    c = dict(base.config)
    k = rng.randrange(6)
    expect = "any"
    raw = None
    if k <= 1:
        key = rng.choice(CONFIG_NUMERIC)
        v = rng.choice(HUGE)
        c[key] = "__RAW__"
        raw = json.dumps(c).replace('"__RAW__"', jnum(v))
        name = "%s=%s" % (key, jnum(v))
        same = {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5, "num_attention_heads": 8,
                "num_key_value_heads": 4, "head_dim": 8, "vocab_size": 512}
        if key in same and not (isinstance(v, (int, float)) and not isinstance(v, bool) and v == same[key]):
            expect = "fail"
        if key == "head_dim" and v == "null":   # the default, hidden_size / heads, is stories260K's 8
            expect = "any"
    elif k == 2:
        key = rng.choice(list(c))
        del c[key]
        name = "missing:%s" % key
        if key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                   "tie_word_embeddings", "num_key_value_heads"):
            expect = "fail"
    elif k == 3:
        rs = rng.choice([{}, [], "linear", 2, {"type": "linear"}, {"type": "linear", "factor": 0}, {"type": "linear", "factor": -1},
                         {"type": "linear", "factor": "2"}, {"type": "linear", "factor": 1e39}, {"rope_type": "yarn", "factor": 2},
                         {"type": "linear", "rope_type": "default", "factor": 2}, {"type": None}, {"type": 1},
                         {"rope_type": "default"}, {"type": "linear", "factor": 2.0}, {"type": "dynamic", "factor": 2},
                         {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1}, {"type": "linear", "factor": [2]},
                         {"type": "linear", "factor": float("nan")}, {"type": "linear", "factor": 1e-45},
                         {"type": "linear", "factor": 2, "partial_rotary_factor": 0.5}, {"rope_theta": -1}])
        which = rng.choice(["rope_scaling", "rope_parameters", "both"])
        if which in ("rope_scaling", "both"):
            c["rope_scaling"] = rs
        if which in ("rope_parameters", "both"):
            c["rope_parameters"] = dict(rs) if isinstance(rs, dict) else rs
            if which == "both" and rng.random() < 0.5 and isinstance(rs, dict):
                c["rope_parameters"] = {"rope_type": "default", "rope_theta": 5000}
        raw = json.dumps(c, allow_nan=True)
        name = "%s:%s" % (which, json.dumps(rs, allow_nan=True)[:50])
    elif k == 4:
        tv = rng.choice([False, "true", 1, 0, None, [True], {}, "false"])
        c["tie_word_embeddings"] = tv
        name = "tie=%s" % json.dumps(tv)
        expect = "fail"
    else:
        raw = rng.choice(["", "{}", "[]", "null", "{" * 70 + "}" * 70, "\xef\xbb\xbf" + json.dumps(c), json.dumps(c) + "x",
                          json.dumps(c).replace('"llama"', '"ll\\u0000ama"'), json.dumps(c)[:-1],
                          json.dumps(c).replace("64", "6" * 1000, 1), json.dumps(c).replace('"model_type"', '"model_type":"llama","model_type"'),
                          '{"model_type": "llama", ' + ", ".join('"k%d": %d' % (i, i) for i in range(100000)) + "}"])
        name = "raw:%r" % raw[:30]
        expect = "fail" if raw != json.dumps(c).replace('"model_type"', '"model_type":"llama","model_type"') else "ok"
    write(os.path.join(d, "config.json"), raw if raw is not None else json.dumps(c, allow_nan=True))
    r.run("config", name, d, HF, expect)


def run_tokenizer(r, rng, base, work):
    d = fresh(work, base, skip=["tokenizer.model"])
    fields = list(base.tok_fields)
    piece_idx = [i for i, f in enumerate(fields) if f[0] == 1]
    k = rng.randrange(18)
    expect = "any"
    if k == 0:
        blob = base.tok[:rng.randrange(len(base.tok))]
        name = "truncate"
    elif k == 1:
        blob = base.tok + rng.choice([b"\xff" * 11, b"\x80", b"\x0a", b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
                                      b"\x00", b"\x08", b"\xf8\xff\xff\xff\x0f"])   # (field 536870911 with no value)
        name = "tail-garbage"
        expect = "fail"
    elif k == 2:
        # a piece's length past the end
        i = rng.choice(piece_idx)
        n, w, p = fields[i]
        pre = join_fields(fields[:i])
        blob = pre + varint(1 << 3 | 2) + varint(len(p) + rng.choice([1, 100, 2**31, 2**63])) + p + join_fields(fields[i + 1:])
        name = "piece-length"
        expect = "fail"
    elif k == 3:
        count = rng.choice([100000, 1000000, 3000000])
        blob = join_fields(fields) + piece(b"", 0.0) * count if rng.random() < 0.5 else join_fields(fields) + b"\x0a\x00" * count
        name = "many-pieces:%d" % count
        expect = "fail"
    elif k == 4:
        i = rng.choice(piece_idx)
        text = rng.choice([b"", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", "<s>".encode(), b"a" * 100000])
        fields[i] = (1, 2, field(1, 2, text) + field(2, 5, struct.pack("<f", 0.0)))
        blob = join_fields(fields)
        name = "piece-text"
    elif k == 5:
        i = rng.choice(piece_idx)
        sc = rng.choice([struct.pack("<f", float("nan")), struct.pack("<f", float("inf")), struct.pack("<f", -float("inf")),
                         b"\xff\xff\xff\xff", struct.pack("<f", 3.4e38)])
        pf = parse_fields(fields[i][2])
        pf = [(n, w, sc if n == 2 else p) for n, w, p in pf]
        if not any(n == 2 for n, _, _ in pf):
            pf.append((2, 5, sc))
        fields[i] = (1, 2, join_fields(pf))
        blob = join_fields(fields)
        name = "score:%r" % sc
    elif k == 6:
        i = rng.choice(piece_idx)
        ty = rng.choice([0, 2, 3, 4, 5, 6, 7, 100, 2**31, 2**32 + 1, 2**64 - 1, 2**63])
        pf = [(n, w, p) for n, w, p in parse_fields(fields[i][2]) if n != 3] + [(3, 0, varint(ty))]
        fields[i] = (1, 2, join_fields(pf))
        blob = join_fields(fields)
        name = "type:%d" % ty
    elif k == 7:
        drop = rng.choice([2, 3, 5, 1])
        blob = join_fields([f for f in fields if f[0] != drop])
        name = "drop-field:%d" % drop
        if drop == 1:
            expect = "fail"
    elif k == 8:
        # trainer spec: model type, byte_fallback, special pieces
        tf = [f for f in fields if f[0] == 2]
        ts = parse_fields(tf[0][2]) if tf else []
        mod = rng.choice([(3, 0, varint(rng.choice([0, 1, 3, 4, 5, 2**63]))), (35, 0, varint(1)), (35, 0, varint(0)),
                          (46, 2, b"\xff"), (46, 2, b"nope"), (47, 2, b""), (44, 2, b"\xff"), (44, 2, b"x" * 100000),
                          (24, 0, varint(1)), (3, 2, b"x"), (35, 5, b"\x00\x00\x00\x00")])
        ts = [f for f in ts if f[0] != mod[0]] + [mod]
        fields = [(2, 2, join_fields(ts)) if f[0] == 2 else f for f in fields]
        blob = join_fields(fields)
        name = "trainer:%d" % mod[0]
    elif k == 9:
        nf = [f for f in fields if f[0] == 3]
        ns = parse_fields(nf[0][2]) if nf else []
        mod = rng.choice([(1, 2, b"nmt_nfkc"), (2, 2, b"\x00" * 16), (3, 0, varint(0)), (4, 0, varint(0)), (5, 0, varint(0)),
                          (1, 2, b"\xff")])
        ns = [f for f in ns if f[0] != mod[0]] + [mod]
        fields = [(3, 2, join_fields(ns)) if f[0] == 3 else f for f in fields]
        blob = join_fields(fields)
        name = "normalizer:%d" % mod[0]
    elif k == 10:
        # unknown wire types / field numbers
        blob = join_fields(fields) + rng.choice([varint(9 << 3 | 3), varint(9 << 3 | 4), varint(9 << 3 | 6), varint(9 << 3 | 7),
                                                 varint(0), varint(2**29 << 3 | 2) + b"\x00", varint(2**32 << 3)])
        name = "wiretype"
        expect = "fail"
    elif k == 11:
        # pieces as wire type 0
        i = rng.choice(piece_idx)
        fields[i] = (1, 0, varint(5))
        blob = join_fields(fields)
        name = "piece-wire0"
        expect = "fail"
    elif k == 12:
        # duplicate pieces
        i, j = rng.sample(piece_idx, 2)
        fields[j] = fields[i]
        blob = join_fields(fields)
        name = "duplicate-piece"
    elif k == 13:
        # shuffle order: trainer spec first
        rng.shuffle(fields)
        blob = join_fields(fields)
        name = "shuffled"
    elif k == 14:
        # remove pieces: fewer than vocab_size
        cut = rng.choice(piece_idx)
        blob = join_fields(fields[:cut] + [f for f in fields[cut:] if f[0] != 1])
        name = "fewer-pieces"   # padded to vocab_size with [PADi], as llama.cpp does
    elif k == 15:
        blob = rng.choice([b"", b"\x00", b"GGUF", b"\x0a", open(os.path.join(base.dir, "config.json"), "rb").read(),
                           b"\x0a\x00" * 512])
        name = "garbage:%r" % blob[:8]
        expect = "fail"
    elif k == 16:
        # random byte flips
        b = bytearray(base.tok)
        for _ in range(rng.randrange(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        blob = bytes(b)
        name = "flip"
    else:
        # deeply nested sub-messages in an unknown field (skipped, not recursed)
        inner = b""
        for _ in range(2000):
            inner = field(1, 2, inner)
        blob = join_fields(fields) + field(99, 2, inner)
        name = "nested-unknown"
        expect = "ok"
    write(os.path.join(d, "tokenizer.model"), blob)
    r.run("tokenizer", name, d, HF, expect)
    # The tokenizer reader is shared with palr tokenize --model tokenizer.model.
    palr = os.path.join(r.bin, "palr")
    rc, err, rss, _ = r.exec([palr, "tokenize", "--model", os.path.join(d, "tokenizer.model"), "hello <s> w\u00f6rld \x01"], d)
    if rc is None or rc < 0 or rc >= 128 or "Fatal error" in err:
        r.record("tokenizer-palr", name, d, ["palr", "tokenize"], rc, err, ["palr tokenize rc=%s" % rc], None)


def lora_tensors(base, rank, modules, layers, dtype=np.float32, rng=None):
    c = base.config
    hid, kv = c["hidden_size"], c["num_key_value_heads"] * c["head_dim"]
    outs = {"q_proj": hid, "k_proj": kv, "v_proj": kv, "o_proj": hid, "gate_proj": c["intermediate_size"],
            "up_proj": c["intermediate_size"], "down_proj": hid}
    ins = {"q_proj": hid, "k_proj": hid, "v_proj": hid, "o_proj": hid, "gate_proj": hid, "up_proj": hid,
           "down_proj": c["intermediate_size"]}
    kind = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
            "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
    g = np.random.default_rng(1)
    tens = {}
    for l in layers:
        for m in modules:
            p = "base_model.model.model.layers.%d.%s.%s" % (l, kind[m], m)
            tens[p + ".lora_A.weight"] = ("F32", [rank, ins[m]], (g.standard_normal((rank, ins[m])) * 0.01).astype(dtype).tobytes())
            tens[p + ".lora_B.weight"] = ("F32", [outs[m], rank], (g.standard_normal((outs[m], rank)) * 0.01).astype(dtype).tobytes())
    return tens


def run_lora(r, rng, base, work):
    d = fresh(work, base)
    ad = os.path.join(d, "adapter")
    os.makedirs(ad)
    cfg = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "bias": "none",
           "task_type": "CAUSAL_LM", "base_model_name_or_path": "stories260K"}
    rank = 4
    modules = ["q_proj", "v_proj"]
    layers = list(range(5))
    k = rng.randrange(14)
    expect = "fail"
    tens = None
    raw = None
    if k == 0:
        v = rng.choice([0, -1, 2**20 + 1, 2**31, 2**63, 1e308, 1.5, '"4"', None, True, "NaN", "Infinity", 4.0])
        cfg["r"] = "__RAW__"
        raw = json.dumps(cfg).replace('"__RAW__"', jnum(v) if not isinstance(v, bool) and v is not None else json.dumps(v))
        name = "r=%s" % v
        expect = "ok" if v in (4.0, None) and v is not True and v is not False else "fail"
        if v is None:
            expect = "fail"   # default r=8 does not fit rank-4 tensors
    elif k == 1:
        cfg["target_modules"] = rng.choice([["nope"], [], "nope", "(.*)*x", "((a+)+)+b", "[", "(?<", "\\", ["q_proj", 1], 5,
                                            ".*", "all-linear", "model\\.layers\\.\\d+\\.self_attn\\.(q|v)_proj",
                                            "(" * 1000 + ")" * 1000, "(a|aa)*$", "(.*.*)*=", "(?:.*){1000000}",
                                            "x{99999999999}", "\\p{Nope}"])
        tm = cfg["target_modules"]
        name = "target:%s" % json.dumps(tm)[:40]
        expect = "ok" if tm in (".*", "all-linear", "model\\.layers\\.\\d+\\.self_attn\\.(q|v)_proj") else "fail"
    elif k == 2:
        # A/B shape mismatch
        tens = lora_tensors(base, rank, modules, layers)
        key = rng.choice(list(tens))
        dt, shape, b = tens[key]
        tens[key] = (dt, rng.choice([[shape[1], shape[0]], [shape[0] + 1, shape[1]], [shape[0] * shape[1]],
                                     [1, shape[0], shape[1]]]), b if rng.random() < 0.5 else b + b"\x00" * 4 * shape[1])
        ns = tens[key][1]
        if int(np.prod(ns)) * 4 != len(tens[key][2]):
            tens[key] = (dt, ns, b"\x00" * 4 * int(np.prod(ns)))
        name = "shape:%s" % key.split(".", 3)[-1]
    elif k == 3:
        v = rng.choice(["NaN", "Infinity", "-Infinity", "1e308", "-1", "0", "1e39", "\"8\"", "null", "1e-320"])
        cfg["lora_alpha"] = "__RAW__"
        raw = json.dumps(cfg).replace('"__RAW__"', v)
        name = "alpha=%s" % v
        # 1e39 / r is still a finite Float32 scale: refused only if a weight overflows its type
        expect = "ok" if v in ("-1", "0", "null", "1e-320") else "any" if v == "1e39" else "fail"
        if v == "null":
            expect = "ok"
    elif k == 4:
        tens = lora_tensors(base, rank, modules, layers)
        key = rng.choice(list(tens))
        dt, shape, b = tens[key]
        arr = np.frombuffer(b, dtype=np.float32).copy()
        v = rng.choice([np.nan, np.inf, 3e38])
        arr[rng.randrange(len(arr))] = v
        tens[key] = (dt, shape, arr.tobytes())
        name = "ab-data:%s" % v
        expect = "fail" if not np.isfinite(v) else "any"
    elif k == 5:
        cfg["rank_pattern"] = rng.choice([{"q_proj": 0}, {"q_proj": 2**40}, {"[": 4}, {"q_proj": 4}, {"(.*)*x": 4}, [], {"": 4},
                                          {"q_proj": "4"}, {"q_proj": 8}])
        cfg["alpha_pattern"] = rng.choice([{}, {"q_proj": "NaN"}, {"v_proj": 1e308}, {"q_proj": 16}, {"(": 1}])
        name = "patterns:%s:%s" % (json.dumps(cfg["rank_pattern"])[:20], json.dumps(cfg["alpha_pattern"])[:20])
        expect = "any"
    elif k == 6:
        cfg["layers_to_transform"] = rng.choice([[0], [-1], 2**63, "0", [0.5], [[0]], {"a": 1}, [99], 0, [0, 1, 2, 3, 4]])
        name = "layers:%s" % json.dumps(cfg["layers_to_transform"])
        expect = "ok" if cfg["layers_to_transform"] == [0, 1, 2, 3, 4] else "any"
    elif k == 7:
        # tensors for modules that do not exist / wrong prefix / lm_head of a tied model / embed_tokens
        tens = lora_tensors(base, rank, modules, layers)
        bad = rng.choice(["base_model.model.model.layers.9.self_attn.q_proj", "base_model.model.lm_head",
                          "base_model.model.model.embed_tokens", "model.layers.0.self_attn.q_proj",
                          "base_model.model.model.layers.0.self_attn.x_proj", "base_model.model.model.norm",
                          "base_model.model.model.layers.0.input_layernorm"])
        tens[bad + ".lora_A.weight"] = ("F32", [rank, 64], b"\x00" * 4 * rank * 64)
        tens[bad + ".lora_B.weight"] = ("F32", [64, rank], b"\x00" * 4 * rank * 64)
        cfg["target_modules"] = rng.choice([["q_proj", "v_proj"], ".*", "all-linear"])
        name = "module:%s" % bad
    elif k == 8:
        # a lone A or B; a dtype the merge cannot read
        tens = lora_tensors(base, rank, modules, layers)
        key = rng.choice(list(tens))
        if rng.random() < 0.5:
            del tens[key]
            name = "lone-half"
        else:
            dt, shape, b = tens[key]
            tens[key] = (rng.choice(["I32", "U8", "F64"]), shape, b if rng.random() < 0.3 else b"\x00" * len(b))
            if tens[key][0] == "U8":
                tens[key] = ("U8", shape, b"\x00" * int(np.prod(shape)))
            elif tens[key][0] == "F64":
                tens[key] = ("F64", shape, b"\x00" * 8 * int(np.prod(shape)))
            name = "ab-dtype:%s" % tens[key][0]
    elif k == 9:
        cfg = rng.choice([{}, [], None, {"peft_type": "LORA"}, {"peft_type": "LOHA"}, dict(cfg, use_dora=True),
                          dict(cfg, fan_in_fan_out=True), dict(cfg, use_rslora="yes"), dict(cfg, modules_to_save=["lm_head"]),
                          dict(cfg, bias="all"), dict(cfg, exclude_modules=["q_proj"]), dict(cfg, exclude_modules="(")])
        name = "cfg:%s" % json.dumps(cfg)[:60]
        expect = "any"
    elif k == 10:
        # no tensors / empty file / missing files
        what = rng.choice(["no-tensors", "no-weights", "no-config", "weights-is-dir", "adapter-is-file"])
        name = "files:%s" % what
        if what == "no-tensors":
            tens = {}
        elif what == "no-weights":
            tens = "skip"
        elif what == "no-config":
            raw = "skip"
        elif what == "weights-is-dir":
            os.makedirs(os.path.join(ad, "adapter_model.safetensors"))
            tens = "skip"
        else:
            shutil.rmtree(ad)
            write(ad, b"x")
            r.run("lora", name, d, HF + ["--lora", "adapter"], "fail")
            return
    elif k == 11:
        # huge rank tensors declared but data tiny (header lie), rank large but consistent
        rank = rng.choice([64, 512])
        cfg["r"] = rank
        tens = lora_tensors(base, rank, modules, layers[:1])
        cfg["layers_to_transform"] = [0]
        name = "big-rank:%d" % rank
        expect = "ok"
    elif k == 12:
        # the adapter given twice, and an adapter that is the model folder
        tens = lora_tensors(base, rank, modules, layers)
        h, dd = pack_tensors(tens)
        write(os.path.join(ad, "adapter_model.safetensors"), st_bytes(h, dd))
        write(os.path.join(ad, "adapter_config.json"), json.dumps(cfg))
        if rng.random() < 0.5:
            r.run("lora", "twice", d, HF + ["--lora", "adapter", "--lora", "adapter"], "ok")
        else:
            r.run("lora", "model-as-adapter", d, HF + ["--lora", "."], "fail")
        return
    else:
        tens = lora_tensors(base, rank, modules, layers)
        name = "valid"
        expect = "ok"
    if tens is None:
        tens = lora_tensors(base, rank, modules, layers)
    if tens != "skip":
        h, dd = pack_tensors(tens)
        write(os.path.join(ad, "adapter_model.safetensors"), st_bytes(h, dd))
    if raw != "skip":
        write(os.path.join(ad, "adapter_config.json"), raw if raw is not None else json.dumps(cfg))
    r.run("lora", name, d, HF + ["--lora", "adapter"] + (["--type", "f32"] if rng.random() < 0.3 else []), expect)


# ---------------------------------------------------------------- catalog


class CatalogBase:
    def __init__(self, work):
        items = open(os.path.join(SHARED_DATA, "movies.csv"), "rb").read().split(b"\n")
        ratings = open(os.path.join(SHARED_DATA, "ratings.csv"), "rb").read().split(b"\n")
        self.items = items[:301]
        keep = set(l.split(b",")[0] for l in self.items[1:])
        self.ratings = [ratings[0]] + [l for l in ratings[1:8000] if l and l.split(b",")[1] in keep]


def run_catalog(r, rng, cb, work):
    d = os.path.join(work, "m")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    items = list(cb.items)
    ratings = list(cb.ratings)
    k = rng.randrange(22)
    expect = "any"
    target = rng.choice(["items", "ratings"])
    lines = items if target == "items" else ratings
    extra = []
    if k == 0:
        i = rng.randrange(1, len(lines) - 1)
        lines[i] = lines[i] + b',"unbalanced' if rng.random() < 0.5 else b'"' + lines[i]
        name = "unbalanced-quote"
        expect = "fail"
    elif k == 1:
        i = rng.randrange(1, len(lines) - 1)
        j = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:j] + b"\x00" + lines[i][j:]
        name = "nul"
    elif k == 2:
        lines = [l.rstrip(b"\r") + b"\r" for l in lines]
        name = "crlf"
        expect = "ok"
    elif k == 3:
        i = rng.randrange(1, len(lines) - 1)
        size = rng.choice([100000, 10**6, 20 * 10**6])
        if target == "items":
            lines[i] = lines[i].split(b",")[0] + b",\"" + b"T" * size + b"\",x"
        else:
            lines[i] = b"1," + b"9" * size + b",5,1"
        name = "huge-field:%d" % size
    elif k == 4:
        lines[0] = rng.choice([b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]) + lines[0]
        name = "bom:%r" % lines[0][:4]
        expect = "ok" if lines[0].startswith(b"\xef\xbb\xbf") and not lines[0].startswith(b"\xef\xbb\xbf\xef\xbb\xbf") else "any"
    elif k == 5:
        i = rng.randrange(1, len(lines) - 1)
        lines.insert(i, lines[i])
        name = "duplicate-line"
        expect = "fail" if target == "items" else "ok"
    elif k == 6:
        i = rng.randrange(1, len(lines) - 1)
        f = lines[i].split(b",")
        col = 0 if target == "items" else rng.choice([0, 1])
        f[col] = rng.choice([b"abc", b"-1", b"1.5", b"", b" ", b"\xff", b"9" * 30, b"\x01", b"\xe2\x80\xae", b"a" * 300,
                             b"\xc2\xa0", b"+1", b"0x10"])
        lines[i] = b",".join(f)
        name = "id:%r" % f[col][:10]
    elif k == 7:
        lines = list(ratings)
        target = "ratings"
        i = rng.randrange(1, len(lines) - 1)
        f = lines[i].split(b",")
        f[3] = rng.choice([b"-9223372036854775808", b"9223372036854775807", b"9223372036854775808", b"99999999999999999999",
                           b"-1", b"1e9", b"1.5", b"", b"nan", b"0x10", b"-9223372036854775809", b"+5", b"--5"])
        lines[i] = b",".join(f)
        name = "time:%r" % f[3]
    elif k == 8:
        i = rng.randrange(1, len(lines) - 1)
        n = rng.choice([1000, 100000, 2 * 10**6])
        lines[i] = lines[i] + b"," * n
        name = "columns:%d" % n
        expect = "fail"
    elif k == 9:
        n = rng.choice([10**5, 10**6])
        lines[0] = b",".join(b"c%d" % j for j in range(n))
        name = "header-columns:%d" % n
        expect = "fail"
    elif k == 10:
        lines = rng.choice([[], [b""], [lines[0]], [lines[0], b""], [b"\n\n\n"], [b"\xef\xbb\xbf"], [b","], [b'"']])
        name = "empty:%r" % b"\n".join(lines)[:20]
        expect = "fail"
    elif k == 11:
        # rating not finite
        lines = list(ratings)
        target = "ratings"
        i = rng.randrange(1, len(lines) - 1)
        f = lines[i].split(b",")
        f[2] = rng.choice([b"nan", b"inf", b"1e400", b"", b"x", b"-0", b"1e-400"])
        lines[i] = b",".join(f)
        name = "rating:%r" % f[2]
    elif k == 12:
        # blank line in the middle / lone CR
        i = rng.randrange(1, len(lines) - 1)
        lines.insert(i, rng.choice([b"", b"\r", b" ", b"\t"]))
        name = "blank-middle:%r" % lines[i]
        expect = "fail" if lines[i] in (b"", b"\r") else "any"
    elif k == 13:
        # quoted field with newline / escaped quotes / quote after close
        lines, target = items, "items"
        name = "quoted:%r" % set_title(rng, items, [b'"a\nb",x', b'"a""b",x', b'"a"b,x', b'"",x', b'"a\r\nb",x', b'"\n",x'])
    elif k == 14:
        # lone CR line endings (old Mac)
        data = b"\r".join(lines)
        name = "lone-cr"
        return finish_catalog(r, d, items, ratings, target, name, "fail", raw=data)
    elif k == 15:
        # interactions referencing unknown items only
        lines = [ratings[0]] + [b"1,999999%d,5,%d" % (j, j) for j in range(100)]
        target = "ratings"
        name = "unknown-items"
    elif k == 16:
        # neighbours csv import
        nb = [b"item,neighbour,score"] + [b"%s,%s,%s" % (items[1 + j % 200].split(b",")[0], items[2 + j % 150].split(b",")[0],
                                                          rng.choice([b"0.5", b"nan", b"inf", b"1e39", b"-1", b"x", b"", b"1e30"]))
                                           for j in range(300)]
        write(os.path.join(d, "nb.csv"), b"\n".join(nb))
        extra = ["--neighbours-csv", "nb.csv"]
        name = "neighbours-csv"
    elif k == 17:
        # --columns odd
        extra = ["--columns", rng.choice(["user=userId,item=movieId,time=timestamp", "user=rating,item=movieId", "user=x",
                                          "user=userId,user=userId", "item=movieId,time=userId", "=", ",", "user=userId,,"])]
        name = "columns-arg:%s" % extra[1]
    elif k == 18:
        # tab separated with csv name / wrong format flag
        lines = [l.replace(b",", b"\t") for l in lines]
        name = "tsv-as-csv"
    elif k == 19:
        # many users/items of all-distinct ids (scale, must stay fast)
        lines = [ratings[0]] + [b"u%d,%s,5,%d" % (j, items[1 + j % 300].split(b",")[0], j) for j in range(200000)]
        target = "ratings"
        name = "many-users"
        expect = "ok"
    elif k == 20:
        # latin-1 / invalid UTF-8 title
        lines, target = items, "items"
        name = "title:%r" % set_title(rng, items, [b"Caf\xe9,x", b"\xc3,x", b"\xed\xa0\x80,x", b"\xe2\x80\xae,x", b"  ,x", b"\t,x"])
    else:
        # k, params, hold-out, method
        extra = rng.choice([["--k", "10000"], ["--k", "0"], ["--params", "window=0"], ["--params", "window=1e9"],
                            ["--hold-out", "1000000"], ["--method", "seq", "--params", "window=99999999"], ["--tune"],
                            ["--params", "k=5,k=6"], ["--hold-out", "-1"], ["--version", "4294967296"],
                            ["--params", "history_length=0"], ["--params", "recency_decay=nan"], ["--threads", "100000"]])
        name = "args:%s" % " ".join(extra)
    if target == "items":
        items = lines
    else:
        ratings = lines
    return finish_catalog(r, d, items, ratings, target, name, expect, extra=extra)


def set_title(rng, items, choices):
    """Replaces the title (and what follows) of a random item line; returns the new text."""
    i = rng.randrange(1, len(items) - 1)
    new = rng.choice(choices)
    items[i] = items[i].split(b",", 1)[0] + b"," + new
    return new


def finish_catalog(r, d, items, ratings, target, name, expect, raw=None, extra=()):
    write(os.path.join(d, "movies.csv"), raw if raw is not None and target == "items" else b"\n".join(items))
    write(os.path.join(d, "ratings.csv"), raw if raw is not None and target == "ratings" else b"\n".join(ratings))
    r.run("catalog", "%s:%s" % (name, target), d,
          ["catalog", "--items", "movies.csv", "--interactions", "ratings.csv", "-o", "{OUT}", "--threads", "1"] + list(extra),
          expect)


KINDS = {"safetensors": run_header, "sharded": run_shard, "config": run_config, "tokenizer": run_tokenizer,
         "lora": run_lora, "catalog": run_catalog}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=".build/release", help="folder of palr-convert and palr")
    ap.add_argument("--work", default="/tmp/palr-convert-fuzz", help="scratch folder (mutants, findings)")
    ap.add_argument("--minutes", type=float, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: " + ",".join(KINDS))
    ap.add_argument("--count", type=int, default=0, help="stop after this many mutants (0: by time)")
    args = ap.parse_args()
    os.makedirs(os.path.join(args.work, "keep"), exist_ok=True)
    rng = random.Random(args.seed)
    r = Runner(args)
    base = Base(args.work)
    cb = CatalogBase(args.work)
    kinds = args.kinds.split(",")
    t_end = time.time() + args.minutes * 60
    i = 0
    while time.time() < t_end and (args.count == 0 or i < args.count):
        kind = kinds[i % len(kinds)]
        i += 1
        try:
            KINDS[kind](r, rng, cb if kind == "catalog" else base, args.work)
        except Exception as e:   # a bug in a mutator, not a finding
            print("mutator error (%s): %r" % (kind, e), file=sys.stderr)
        if i % 200 == 0:
            print("%d mutants, %d findings: %s" % (r.n, len(r.findings), r.counts), flush=True)
    print("done: %d mutants %s, %d findings" % (r.n, r.counts, len(r.findings)))
    by = {}
    for f in r.findings:
        by.setdefault((f["kind"], f["mutant"].split(":")[0], tuple(p.split(" ")[0] for p in f["problems"])), []).append(f)
    for k, v in sorted(by.items()):
        print("%4d  %s  e.g. %s -> %s" % (len(v), k, v[0]["mutant"][:80], v[0]["stderr"][:160]))


if __name__ == "__main__":
    main()
