#!/usr/bin/env python3
"""Differential fuzzing of palr's SentencePiece tokenizer against the Python
`sentencepiece` library (the ground truth).

    swift build -c release
    python3 tools/fuzz/tokenizer/fuzz.py --bin .build/release --minutes 20 --seed 1

For every model pair (the file palr loads, the tokenizer.model sentencepiece loads) it
generates strings by category, runs them through `palr tokenize --jsonl --no-bos` in
batches (thousands per process) and compares each line with `sp.encode(text)`. A few
batches also run without --no-bos (against `sp.encode(text, add_bos=True)`) and with
--pieces (against the pieces of sentencepiece's ids). Mismatches are shrunk to a small string; a batch
that crashes or times out is bisected to the string that did it. Then a timing pass
encodes 1 MB strings of hostile shapes (and their 256 kB versions four times, the
same bytes) one per process and flags super-linear growth of palr's time per byte, or a time far above sentencepiece's
(and checks those ids too).

BOS / whitespace mapping: `palr tokenize` prepends BOS unless --no-bos; sentencepiece's
`encode(text)` adds nothing, `encode(text, add_bos=True)` adds bos_id(). Both apply the
model's own add_dummy_prefix / remove_extra_whitespaces (a GGUF's add_space_prefix and
remove_extra_whitespaces keys), so no other option is needed.

The bundled model's tokenizer (palr-ml-small-q4_0.gguf) has no tokenizer.model in the
repository: it is rebuilt by tools/train/make_tokenizer.py (deterministic) into the
work folder, and used only if its pieces, scores and types equal the GGUF's.

Findings go to OUT/findings.jsonl (model, category, input, expected, got; shrunk) and
counts to OUT/summary.json. Exit status 1 when anything was found.
"""
import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time

import sentencepiece as spm

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
SHARED = "/work/shared"

# --- models ----------------------------------------------------------------------------


def gguf_vocab(path):
    """(pieces, scores, types) of a GGUF's tokenizer.ggml.* keys (gguf-py)."""
    import gguf
    r = gguf.GGUFReader(path)
    f = r.fields

    def arr(name):
        fld = f[name]
        return [fld.parts[i] for i in fld.data]
    pieces = [bytes(x).decode("utf-8") for x in arr("tokenizer.ggml.tokens")]
    scores = [float(x[0]) for x in arr("tokenizer.ggml.scores")]
    types = [int(x[0]) for x in arr("tokenizer.ggml.token_type")]
    return pieces, scores, types


def sp_vocab(sp, user_defined):
    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    scores = [sp.get_score(i) for i in range(n)]

    def t(i):
        if sp.is_unknown(i): return 2
        if sp.is_control(i): return 3
        if sp.is_byte(i): return 6
        if sp.is_unused(i): return 5
        return 4 if pieces[i] in user_defined else 1
    return pieces, scores, [t(i) for i in range(n)]


def bundled_reference(work):
    """tokenizer.model of the bundled model, rebuilt by tools/train/make_tokenizer.py."""
    out = os.path.join(work, "palr-ml-small", "tokenizer.model")
    if not os.path.exists(out):
        env = dict(os.environ, PALR_WORK=os.path.dirname(out))
        subprocess.run([sys.executable, "make_tokenizer.py", "--out", out], cwd=os.path.join(ROOT, "tools", "train"),
                       env=env, check=True, stdout=subprocess.DEVNULL)
    gguf_path = os.path.join(ROOT, "models", "palr-ml-small-q4_0.gguf")
    sp = spm.SentencePieceProcessor(model_file=out)
    if gguf_vocab(gguf_path) != sp_vocab(sp, {"\n-", "\n("}):
        return None, "the rebuilt tokenizer.model differs from the GGUF's vocabulary"
    return out, None


def synthetic_models(work, titles):
    """Small models trained here on the movies.csv titles for the features the five real
    ones lack: pieces with a "▁" inside (split_by_whitespace=False: palr then merges whole
    texts, not word by word), remove_extra_whitespaces with user-defined pieces (one with
    spaces), no dummy prefix, and UNUSED pieces of three or more characters (every 7th
    such piece marked UNUSED; needs the protobuf package, skipped without it)."""
    folder = os.path.join(work, "synthetic")
    os.makedirs(folder, exist_ok=True)
    text = os.path.join(folder, "titles.txt")
    with open(text, "w", encoding="utf-8") as f:
        f.write("\n".join(titles[1682:]) + "\n")  # movies.csv's titles (u.item's come first)
    common = dict(input=text, model_type="bpe", character_coverage=1.0, normalization_rule_name="identity",
                  minloglevel=2, num_threads=1, unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    specs = {
        "syn-inner-space": dict(vocab_size=1500, split_by_whitespace=False, byte_fallback=True, add_dummy_prefix=True,
                                remove_extra_whitespaces=False, user_defined_symbols=["\n-", "New York"]),
        "syn-remove-extra": dict(vocab_size=800, byte_fallback=False, add_dummy_prefix=True, remove_extra_whitespaces=True,
                                 user_defined_symbols=["\n-", "<sep>", " x ", "(19"]),
        "syn-no-dummy": dict(vocab_size=600, byte_fallback=True, add_dummy_prefix=False, remove_extra_whitespaces=False),
    }
    out = []
    for name, spec in specs.items():
        path = os.path.join(folder, name + ".model")
        if not os.path.exists(path):
            spm.SentencePieceTrainer.train(model_prefix=path[:-len(".model")], **common, **spec)
        out.append((name, path, path))
        if name == "syn-no-dummy": continue
        try:
            from sentencepiece import sentencepiece_model_pb2 as pb
        except ImportError:
            continue
        unused = os.path.join(folder, name + "-unused.model")
        m = pb.ModelProto()
        with open(path, "rb") as f:
            m.ParseFromString(f.read())
        for i, piece in enumerate(m.pieces):
            if piece.type == pb.ModelProto.SentencePiece.NORMAL and len(piece.piece) >= 3 and i % 7 == 0:
                piece.type = pb.ModelProto.SentencePiece.UNUSED
        with open(unused, "wb") as f:
            f.write(m.SerializeToString())
        out.append((name + "-unused", unused, unused))
    return out


def models(work):
    llama2 = f"{SHARED}/models/llama2-tokenizer/tokenizer.model"
    out = [
        ("llama2", llama2, llama2),
        ("llama-spm-gguf", f"{SHARED}/models/llama-spm-vocab-gguf/ggml-vocab-llama-spm.gguf", llama2),
        ("stories260K", f"{SHARED}/models/stories260K-hf/tokenizer.model", f"{SHARED}/models/stories260K-hf/tokenizer.model"),
        ("tiny", os.path.join(ROOT, "Tests/Fixtures/tokenizer/tiny.model"), os.path.join(ROOT, "Tests/Fixtures/tokenizer/tiny.model")),
    ]
    ref, why = bundled_reference(work)
    if ref:
        out.append(("palr-ml-small-gguf", os.path.join(ROOT, "models", "palr-ml-small-q4_0.gguf"), ref))
    else:
        print(f"skipping palr-ml-small-q4_0.gguf: {why}", file=sys.stderr)
    return out


# --- string generators --------------------------------------------------------------------

SCRIPTS = {
    "ascii": [(0x20, 0x7E)], "latin1": [(0xA0, 0xFF)], "latin-ext": [(0x100, 0x24F)],
    "greek": [(0x370, 0x3FF)], "cyrillic": [(0x400, 0x4FF)], "hebrew": [(0x590, 0x5FF)],
    "arabic": [(0x600, 0x6FF), (0x750, 0x77F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)],
    "devanagari": [(0x900, 0x97F)], "thai": [(0xE00, 0xE7F)], "hangul": [(0xAC00, 0xD7A3), (0x1100, 0x11FF)],
    "kana": [(0x3040, 0x30FF)], "cjk": [(0x4E00, 0x9FFF)], "cjk-ext-b": [(0x20000, 0x2A6DF)],
    "combining": [(0x300, 0x36F), (0x1AB0, 0x1AFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F)],
    "symbols": [(0x2000, 0x2BFF)], "emoji": [(0x1F300, 0x1FAFF), (0x2600, 0x27BF)],
    "math-alnum": [(0x1D400, 0x1D7FF)], "pua": [(0xE000, 0xF8FF), (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD)],
    "specials": [(0xFFF0, 0xFFFF), (0xFDD0, 0xFDEF)], "fullwidth": [(0xFF00, 0xFFEF)],
    "any-bmp": [(0x0, 0xD7FF), (0xE000, 0xFFFF)], "any": [(0x0, 0xD7FF), (0xE000, 0x10FFFF)],
}
WHITESPACE = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\r", "\v", "\f", "\u00a0", "\u1680", "\u2000", "\u2002",
              "\u2003", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u0085", "\u180e",
              "\u200b", "\ufeff", "\u2581", "\u2581\u2581", " \u2581", "\u2581 "]
CONTROLS = [chr(c) for c in range(0, 32)] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)] + [
    "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
    "\u200c", "\u200d", "\u2060", "\ufeff", "\ufffd", "\ufffe", "\uffff", "\U0010ffff", "\U000e0001"]
EMOJI_BASE = ["😀", "😂", "🥲", "👍", "👋", "🧑", "👨", "👩", "👧", "👦", "🧒", "👶", "🏃", "🏊", "🤝", "💻", "🚀",
              "❤", "⭐", "☕", "🎬", "🍿", "🦙", "🏳", "🏴", "🌈", "⚧", "🔥", "👁", "🗨", "🐻", "❄"]
SKIN = [chr(c) for c in range(0x1F3FB, 0x1F400)]
WORDS = ["the", "The", "movie", "Story", "Toy", "of", "and", "a", "in", "Night", "Love", "II", "(1995)", "Heat",
         "Watched", "Candidates", "Next", "Hello", "world", "über", "naïve", "café", "東京", "映画", "Привет",
         "مرحبا", "नमस्ते", "ภาษาไทย", "1999", "3.14", "—", "...", "!!!", "<s>", "</s>", "<unk>", "<0x0A>", "▁"]


def random_char(rng, script):
    lo, hi = rng.choice(SCRIPTS[script])
    c = rng.randint(lo, hi)
    if 0xD800 <= c <= 0xDFFF:
        c = 0xFFFD
    return chr(c)


def gen_scripts(rng, ctx):
    out = []
    scripts = rng.sample(list(SCRIPTS), rng.randint(1, 3))
    for _ in range(rng.randint(1, 60)):
        r = rng.random()
        if r < 0.15:
            out.append(rng.choice(WHITESPACE[:4]))
        elif r < 0.25:
            out.append(random_char(rng, "combining"))
        else:
            out.append(random_char(rng, rng.choice(scripts)))
    return "".join(out)


def emoji_one(rng):
    r = rng.random()
    if r < 0.3:  # ZWJ sequence, skin tones, VS16
        parts = []
        for _ in range(rng.randint(2, 5)):
            e = rng.choice(EMOJI_BASE)
            if rng.random() < 0.4: e += rng.choice(SKIN)
            if rng.random() < 0.3: e += "\ufe0f"
            parts.append(e)
        return "\u200d".join(parts)
    if r < 0.45:  # flag
        return chr(0x1F1E6 + rng.randint(0, 25)) + chr(0x1F1E6 + rng.randint(0, 25))
    if r < 0.55:  # keycap
        return rng.choice("0123456789#*") + "\ufe0f\u20e3"
    if r < 0.62:  # tag sequence (subdivision flag)
        return "🏴" + "".join(chr(0xE0061 + rng.randint(0, 25)) for _ in range(rng.randint(2, 6))) + "\U000e007f"
    if r < 0.75:
        return rng.choice(SKIN)  # a lone modifier
    return random_char(rng, "emoji") + (rng.choice(SKIN) if rng.random() < 0.3 else "")


def gen_emoji(rng, ctx):
    out = []
    for _ in range(rng.randint(1, 20)):
        out.append(emoji_one(rng))
        if rng.random() < 0.3: out.append(rng.choice([" ", "", rng.choice(WORDS), " " + rng.choice(WORDS) + " "]))
    return "".join(out)


def gen_whitespace(rng, ctx):
    out = []
    for _ in range(rng.randint(1, 25)):
        r = rng.random()
        if r < 0.5:
            out.append(rng.choice(WHITESPACE) * rng.choice([1, 1, 1, 2, 3, 7, 16]))
        elif r < 0.8:
            out.append(rng.choice(WORDS))
        else:
            out.append(random_char(rng, rng.choice(["ascii", "latin1", "cjk"])))
    s = "".join(out)
    if rng.random() < 0.3: s = " " * rng.randint(1, 5) + s
    if rng.random() < 0.3: s = s + " " * rng.randint(1, 5)
    return s


def mix(rng, count, parts):
    """`count` parts joined, each drawn by one rng.random() against the cumulative
    thresholds of `parts` ((threshold, make) pairs, the last one 1.0)."""
    out = []
    for _ in range(count):
        r = rng.random()
        out.append(next(make for threshold, make in parts if r < threshold)())
    return "".join(out)


def gen_controls(rng, ctx):
    return mix(rng, rng.randint(1, 30), [(0.5, lambda: rng.choice(CONTROLS)), (0.8, lambda: rng.choice(WORDS)),
                                         (1.0, lambda: rng.choice(WHITESPACE))])


def gen_glue(rng, ctx):
    """Vocabulary pieces glued together, "▁" mostly turned back into spaces: the strings
    most likely to expose merge-order bugs."""
    pieces = ctx["pieces"]
    literal = rng.random() < 0.15
    out = []
    for _ in range(rng.randint(1, 12)):
        p = rng.choice(pieces)
        r = rng.random()
        if r < 0.15 and len(p) > 1:  # a prefix or suffix of a piece
            k = rng.randint(1, len(p) - 1)
            p = p[:k] if rng.random() < 0.5 else p[k:]
        out.append(p)
    s = "".join(out)
    return s if literal else s.replace("\u2581", " ")


def gen_glue_related(rng, ctx):
    """Chains of pieces that overlap: each next piece starts with the end of the last."""
    pieces, by_first = ctx["pieces"], ctx["by_first"]
    p = rng.choice(pieces)
    s = p
    for _ in range(rng.randint(1, 10)):
        tail = s[-1]
        cands = by_first.get(tail)
        if not cands: break
        q = rng.choice(cands)
        s += q[1:] if rng.random() < 0.5 else q
    return s.replace("\u2581", " ") if rng.random() < 0.8 else s


def gen_space_marker(rng, ctx):
    """Literal "▁" (U+2581) in text, next to spaces and pieces."""
    pieces = ctx["pieces"]
    return mix(rng, rng.randint(1, 10), [(0.35, lambda: "\u2581" * rng.randint(1, 3)),
                                         (0.55, lambda: " " * rng.randint(1, 3)), (1.0, lambda: rng.choice(pieces))])


def gen_bytefallback(rng, ctx):
    """Characters outside the vocabulary (byte fallback or <unk>), mixed with known ones."""
    unknown = ctx["unknown_chars"]
    return mix(rng, rng.randint(1, 20), [(0.5, lambda: rng.choice(unknown)), (0.7, lambda: random_char(rng, "any")),
                                         (0.85, lambda: " "),
                                         (1.0, lambda: rng.choice(ctx["pieces"]).replace("\u2581", " "))])


def gen_titles(rng, ctx):
    titles = ctx["titles"]
    t = rng.choice(titles)
    r = rng.random()
    if r < 0.3: return t
    if r < 0.4: return t.lower() if rng.random() < 0.5 else t.upper()
    if r < 0.55: return rng.choice(["", " ", "  ", "\n", "- ", "\n- ", "(A) ", "\n("]) + t + rng.choice(["", " ", "\n", "  ", ","])
    if r < 0.7: return rng.choice([" ", "\n", ", ", "", "\t", "  ", "\n- "]).join(rng.choice(titles) for _ in range(rng.randint(2, 6)))
    if r < 0.85:  # a cut
        a = rng.randint(0, len(t)); b = rng.randint(a, len(t))
        return t[a:b]
    return mutate(rng, t, ctx)


LABELS = "ABCDEFGHIJKLMNOPQRST"


def gen_prompt(rng, ctx):
    titles = ctx["titles"]
    s = "Watched, most recent last:"
    for _ in range(rng.randint(0, 8)):
        s += "\n- " + rng.choice(titles)
    s += "\nCandidates:"
    for i in range(rng.randint(0, 20)):
        s += f"\n({LABELS[i]}) " + rng.choice(titles)
    s += "\nNext: ("
    if rng.random() < 0.3: s = mutate(rng, s, ctx)
    return s


def gen_edges(rng, ctx):
    """Short strings: single characters and pairs, edges of spaces."""
    r = rng.random()
    if r < 0.2: return ""
    if r < 0.5: return chr(rng.randint(0, 0x2FF))
    if r < 0.7: return chr(rng.randint(0, 0x7F)) + chr(rng.randint(0, 0x7F))
    if r < 0.85: return rng.choice([" ", "\u2581", "\n", "\t", "a", "\u3000"]) * rng.randint(1, 6) + rng.choice(["", "a", " a", "a "])
    return random_char(rng, "any") + rng.choice(["", " ", random_char(rng, "any")])


def gen_long(rng, ctx):
    """A single long word (about 10k characters) or a long mixed text."""
    r = rng.random()
    n = rng.randint(2000, 10000)
    if r < 0.25: return rng.choice("aeiouxyzqAE0123456789") * n
    if r < 0.45: return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
    if r < 0.6:
        p = rng.choice(ctx["pieces"]).replace("\u2581", "")
        return (p or "ab") * max(1, n // max(1, len(p)))
    if r < 0.7: return "".join(random_char(rng, rng.choice(["cjk", "hangul", "thai", "arabic"])) for _ in range(n // 3))
    if r < 0.8: return "".join(emoji_one(rng) for _ in range(n // 8))
    if r < 0.9: return "".join(gen_glue(rng, ctx) for _ in range(n // 40)).replace(" ", "")
    return "".join(rng.choice(ctx["pieces"]) for _ in range(n // 5))


def mutate(rng, s, ctx):
    s = list(s)
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        i = rng.randint(0, len(s))
        if r < 0.3:
            s[i:i] = list(rng.choice([rng.choice(WHITESPACE), rng.choice(CONTROLS), random_char(rng, "any"), emoji_one(rng),
                                      rng.choice(ctx["pieces"])]))
        elif r < 0.5 and s:
            del s[min(i, len(s) - 1)]
        elif r < 0.7 and s:
            j = rng.randint(i, min(len(s), i + 8))
            s[i:i] = s[i:j]
        elif r < 0.85 and len(s) > 1:
            i = min(i, len(s) - 2)
            s[i], s[i + 1] = s[i + 1], s[i]
        else:
            s[i:i] = [random_char(rng, rng.choice(list(SCRIPTS)))]
    return "".join(s)


def gen_mutated(rng, ctx):
    base = rng.choice([gen_glue, gen_titles, gen_whitespace, gen_scripts, gen_emoji, gen_space_marker])(rng, ctx)
    return mutate(rng, base, ctx)


CATEGORIES = [
    ("scripts", gen_scripts, 900), ("emoji", gen_emoji, 600), ("whitespace", gen_whitespace, 900),
    ("controls", gen_controls, 600), ("glue", gen_glue, 2000), ("glue-related", gen_glue_related, 1200),
    ("space-marker", gen_space_marker, 700), ("byte-fallback", gen_bytefallback, 700), ("titles", gen_titles, 1200),
    ("prompts", gen_prompt, 200), ("edges", gen_edges, 600), ("long", gen_long, 6), ("mutated", gen_mutated, 1200),
]


def load_titles():
    with open(f"{SHARED}/data/ml-100k/u.item", "rb") as f:
        titles = [line.split("|")[1] for line in f.read().decode("latin-1").split("\n") if line]
    with open(f"{SHARED}/data/ml-latest-small/movies.csv", newline="", encoding="utf-8") as f:
        titles += [row[1] for row in list(csv.reader(f))[1:]]
    return titles


def context(sp, titles):
    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)
              if not (sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i))]
    by_first = {}
    for p in pieces:
        by_first.setdefault(p[0], []).append(p)
    known = set("".join(pieces))
    rng = random.Random(0)
    unknown = []
    while len(unknown) < 2000:
        c = random_char(rng, rng.choice(["any", "any-bmp", "cjk", "emoji", "pua", "specials"]))
        if c not in known: unknown.append(c)
    return {"pieces": pieces, "by_first": by_first, "unknown_chars": unknown, "titles": titles}


# --- running palr ---------------------------------------------------------------------------


class Palr:
    def __init__(self, binary, model, timeout):
        self.binary, self.model, self.timeout = binary, model, timeout

    def run(self, strings, bos=False, pieces=False):
        """(status, output lines or None, stderr, seconds)."""
        cmd = [self.binary, "tokenize", "--model", self.model, "--jsonl"]
        if not bos: cmd.append("--no-bos")
        if pieces: cmd.append("--pieces")
        data = "".join(json.dumps(s, ensure_ascii=(i % 2 == 1)) + "\n" for i, s in enumerate(strings)).encode("utf-8")
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, input=data, capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return "timeout", None, "", time.monotonic() - t0
        dt = time.monotonic() - t0
        if p.returncode != 0:
            return f"exit {p.returncode}", None, p.stderr.decode("utf-8", "replace")[-2000:], dt
        lines = p.stdout.decode("utf-8").split("\n")
        if lines and lines[-1] == "": lines.pop()
        if len(lines) != len(strings):
            return f"{len(lines)} lines for {len(strings)} strings", None, p.stderr.decode("utf-8", "replace")[-2000:], dt
        return "ok", [json.loads(line) for line in lines], "", dt


def expected(sp, strings, bos=False, pieces=False):
    """sentencepiece's ids; with `pieces`, the piece of each id (`--pieces` prints
    `piece(id)`: "<unk>" for an unknown run, where `out_type=str` gives its surface text)."""
    ids = sp.encode(strings, add_bos=bos)
    return [[sp.id_to_piece(i) for i in row] for row in ids] if pieces else ids


def bisect_failure(palr, strings, **kw):
    """The first string whose batch alone fails (crash, timeout, wrong line count)."""
    lo = list(strings)
    while len(lo) > 1:
        half = lo[:len(lo) // 2]
        status, _, _, _ = palr.run(half, **kw)
        lo = half if status != "ok" else lo[len(lo) // 2:]
    return lo[0] if lo else None


def shrink(palr, sp, s, budget=40):
    """A smaller string that still mismatches: drops chunks, then single characters,
    testing all candidates of a step in one palr process."""
    def bad(cands):
        status, got, _, _ = palr.run(cands)
        if status != "ok": return [c for c in cands[:1]]
        exp = expected(sp, cands)
        return [c for c, g, e in zip(cands, got, exp) if g != e]
    chunk = max(1, len(s) // 2)
    steps = 0
    while steps < budget and len(s) > 1:
        steps += 1
        cands = [s[:i] + s[i + chunk:] for i in range(0, len(s), chunk)]
        if len(s) > 200 and chunk == 1: break
        failing = bad(cands)
        if failing:
            s = min(failing, key=len)
            chunk = max(1, min(chunk, len(s) // 2))
        elif chunk == 1:
            break
        else:
            chunk = max(1, chunk // 2)
    return s


# --- timing -------------------------------------------------------------------------------------


def timing_inputs(rng, ctx, size):
    """Hostile shapes of about `size` bytes."""
    pieces = ctx["pieces"]
    longest = max(pieces, key=len).replace("\u2581", " ")
    def fill(f):
        out, n = [], 0
        while n < size:
            x = f()
            out.append(x)
            n += len(x.encode("utf-8"))
        return "".join(out)
    return {
        "a-run": "a" * size,
        "ab-run": "ab" * (size // 2),
        "random-letters-one-word": fill(lambda: rng.choice("abcdefghijklmnopqrstuvwxyz")),
        "words": fill(lambda: rng.choice(WORDS) + " "),
        "spaces": " " * size,
        "space-marker": "\u2581" * (size // 3),
        "newlines": "\n" * size,
        "digits": fill(lambda: rng.choice("0123456789")),
        "cjk": fill(lambda: random_char(rng, "cjk")),
        "emoji-zwj": fill(lambda: emoji_one(rng)),
        "byte-fallback": fill(lambda: rng.choice(ctx["unknown_chars"])),
        "longest-piece-repeated": fill(lambda: longest),
        "glue-no-spaces": fill(lambda: gen_glue(rng, ctx).replace(" ", "")),
        "glue": fill(lambda: gen_glue(rng, ctx)),
        "titles": fill(lambda: rng.choice(ctx["titles"]) + "\n"),
        "user-defined": fill(lambda: rng.choice(["\n-", "\n(", "\n", "-", "("])),
        "combining": "e" + fill(lambda: random_char(rng, "combining")),
        "mixed": fill(lambda: gen_mutated(rng, ctx)),
    }


def timing_pass(palr, sp, ctx, seed, log):
    """For each shape, one process encodes a 1 MB string and another the 256 kB string of
    the same shape four times (the same bytes), minus an empty input's
    time (loading). Best of 2. Flags the 1 MB string taking more than 2.5× as long (super-linear), and
    palr taking more than 5× sentencepiece's time on it, above 0.5 s. Checks the ids too."""
    findings, rows = [], []

    def best(strings):
        runs = [palr.run(strings) for _ in range(2)]
        return min(runs, key=lambda r: r[3])
    base = best([""])[3]
    for name in timing_inputs(random.Random(seed), ctx, 16):
        small = timing_inputs(random.Random(seed), ctx, 1 << 18)[name]
        large = timing_inputs(random.Random(seed), ctx, 1 << 20)[name]
        status, got, err, dt = best([large])
        nbytes = len(large.encode("utf-8"))
        if status != "ok":
            findings.append({"kind": "timing-" + status, "category": "timing/" + name, "bytes": nbytes, "stderr": err})
            continue
        sp_dt = float("inf")
        for _ in range(2):
            t0 = time.monotonic()
            exp = expected(sp, [large])
            sp_dt = min(sp_dt, time.monotonic() - t0)
        if got[0] != exp[0]:
            findings.append({"kind": "mismatch", "category": "timing/" + name, "bytes": nbytes,
                             "first-diff": next(i for i, (a, b) in enumerate(zip(got[0] + [None], exp[0] + [None])) if a != b)})
        _, got4, _, dt4 = best([small] * 4)
        if got4 is not None and got4[0] != expected(sp, [small])[0]:
            findings.append({"kind": "mismatch", "category": "timing/" + name, "bytes": len(small.encode("utf-8"))})
        own, own4 = max(dt - base, 0.0), max(dt4 - base, 0.0)
        rows.append({"input": name, "bytes": nbytes, "palr-s": round(own, 3), "palr-4x256kB-s": round(own4, 3),
                     "sentencepiece-s": round(sp_dt, 3)})
        log(f"  timing {name:24s} {nbytes:8d} B  palr {own:6.3f} s (4 × 256 kB: {own4:6.3f} s)  sentencepiece {sp_dt:6.3f} s")
        if own > 0.5 and own > 2.5 * max(own4, 0.05):
            findings.append({"kind": "super-linear", "category": "timing/" + name, "palr-s": own, "palr-4x256kB-s": own4})
        if own > 0.5 and own > 5 * sp_dt:
            findings.append({"kind": "slow", "category": "timing/" + name, "palr-s": own, "sentencepiece-s": sp_dt})
    return findings, rows


# --- random vocabularies --------------------------------------------------------------------


def random_vocabulary_model(rng, path):
    """A random BPE tokenizer.model over a small alphabet: random pieces of 2–6 characters
    with random (often tied) scores, some UNUSED or USER_DEFINED, sometimes with "▁"
    inside, a missing base character, byte fallback, no dummy prefix or extra-whitespace
    removal. Returns the alphabet for texts. Needs the protobuf package."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    SP = pb.ModelProto.SentencePiece
    m = pb.ModelProto()
    for p, t in [("<unk>", SP.UNKNOWN), ("<s>", SP.CONTROL), ("</s>", SP.CONTROL)]:
        x = m.pieces.add(); x.piece = p; x.type = t; x.score = 0
    alpha = rng.choice(["ab\u2581", "abc\u2581", "abcd\u2581", "a\u00e9\u6771\u2581", "ab\U0001F999\u2581"])
    inner = rng.random() < 0.5
    byte_fallback = rng.random() < 0.3
    seen = set()
    for ch in alpha:
        if rng.random() < 0.95:
            x = m.pieces.add(); x.piece = ch; x.type = SP.NORMAL; x.score = rng.choice([-100.0, -50.0, 0.0]); seen.add(ch)
    letters = alpha.replace("\u2581", "")
    for _ in range(rng.randint(3, 40)):
        p = "".join(rng.choice(alpha) for _ in range(rng.randint(2, 6)))
        if not inner: p = p[0] + p[1:].replace("\u2581", rng.choice(letters))
        if p in seen: continue
        seen.add(p)
        x = m.pieces.add(); x.piece = p
        r = rng.random()
        x.type = SP.UNUSED if r < 0.2 else SP.USER_DEFINED if r < 0.25 else SP.NORMAL
        x.score = 0.0 if x.type == SP.USER_DEFINED else float(rng.choice([-1, -2, -3, -4, -5, rng.uniform(-10, 0)]))
    if byte_fallback:
        for b in range(256):
            x = m.pieces.add(); x.piece = "<0x%02X>" % b; x.type = SP.BYTE; x.score = 0
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = byte_fallback
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id = 0, 1, 2, -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = rng.random() < 0.7
    m.normalizer_spec.remove_extra_whitespaces = rng.random() < 0.4
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return alpha.replace("\u2581", " ") + "\u2581x"


def random_vocabulary_pass(binary, seed, count, folder, record, log):
    """`count` random vocabularies, 400 texts over each one's alphabet."""
    total = bad = 0
    path = os.path.join(folder, "random-vocab.model")
    for k in range(count):
        rng = random.Random(f"{seed}/vocab/{k}")
        alpha = random_vocabulary_model(rng, path)
        sp = spm.SentencePieceProcessor(model_file=path)
        texts = ["".join(rng.choice(alpha) for _ in range(rng.randint(0, 30))) for _ in range(400)]
        palr = Palr(binary, path, 60)
        status, got, err, _ = palr.run(texts)
        if status != "ok":
            record({"model": f"random-vocab {seed}/{k}", "kind": status, "category": "random-vocab",
                    "input": bisect_failure(palr, texts), "stderr": err})
            continue
        total += len(texts)
        for t, e, g in zip(texts, expected(sp, texts), got):
            if e != g:
                bad += 1
                small = shrink(palr, sp, t)
                record({"model": f"random-vocab {seed}/{k}", "kind": "mismatch", "category": "random-vocab",
                        "input": small, "expected": expected(sp, [small])[0], "got": palr.run([small])[1]})
                break
    log(f"random vocabularies: {count} models, {total} texts, {bad} models with a mismatch")
    return total


# --- main ------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"), help="folder with the palr binary")
    ap.add_argument("--minutes", type=float, default=10, help="time for the random rounds (the timing pass comes after)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=0, help="a fixed number of rounds instead of --minutes")
    ap.add_argument("--only", default="", help="models whose name contains this")
    ap.add_argument("--out", default="", help="default /tmp/palr-tokfuzz-SEED")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--random-vocabs", type=int, default=500, help="random small vocabularies to try (0: none)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the systematic sweep (all scalars, pairs)")
    ap.add_argument("--no-synthetic", action="store_true", help="only the five real models")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per palr process")
    args = ap.parse_args()

    out_dir = args.out or f"/tmp/palr-tokfuzz-{args.seed}"
    os.makedirs(out_dir, exist_ok=True)
    binary = os.path.join(os.path.abspath(args.bin), "palr")
    log_file = open(os.path.join(out_dir, "log.txt"), "w")

    def log(msg):
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    titles = load_titles()
    pairs = models(out_dir) + ([] if args.no_synthetic else synthetic_models(out_dir, titles))
    pairs = [m for m in pairs if args.only in m[0]]
    sps = {name: spm.SentencePieceProcessor(model_file=ref) for name, _, ref in pairs}
    ctxs = {name: context(sps[name], titles) for name, _, _ in pairs}
    counts = {name: {c: 0 for c, _, _ in CATEGORIES} for name, _, _ in pairs}
    mismatches = {name: {c: 0 for c, _, _ in CATEGORIES} for name, _, _ in pairs}
    findings = []
    seen = set()
    findings_file = open(os.path.join(out_dir, "findings.jsonl"), "w")

    def record(f):
        key = (f["model"], f.get("kind"), f.get("input", f.get("category")))
        if key in seen: return
        seen.add(key)
        findings.append(f)
        findings_file.write(json.dumps(f, ensure_ascii=False) + "\n")
        findings_file.flush()
        log(f"FINDING {json.dumps(f, ensure_ascii=True)[:600]}")

    # Lines that are not one JSON string of valid Unicode (lone surrogates cannot be
    # encoded, nor invalid UTF-8): palr must stop with status 1 and name the line.
    if pairs:
        bad_lines = ['"\\ud800"', '"x\\udc00y"', '"\\ud83d"', '"a" "b"', "1", '"\\u00"', '"\udcff"']  # the last: a raw 0xFF byte
        for k, line in enumerate(bad_lines):
            data = ('"ok"\n' + line + "\n").encode("utf-8", "surrogateescape")
            p = subprocess.run([binary, "tokenize", "--model", pairs[0][1], "--jsonl"], input=data, capture_output=True,
                               timeout=args.timeout)
            err = p.stderr.decode("utf-8", "replace")
            if p.returncode != 1 or "stdin line 2" not in err or err.count("\n") != 1:
                record({"model": pairs[0][0], "kind": "bad-json-line", "category": "json", "input": line,
                        "status": p.returncode, "stderr": err})
        log(f"{len(bad_lines)} invalid JSON lines checked")

    # The systematic sweep: every Unicode scalar alone, every BMP scalar doubled between
    # "a" and a space, every pair of code points below U+0100.
    sweep_counts = {}
    if not args.no_sweep:
        scalars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
        sweep = {"every-scalar": scalars,
                 "bmp-doubled": ["a" + c + c + " " for c in scalars[:0xF800]],
                 "latin1-pairs": [chr(a) + chr(b) for a in range(256) for b in range(256)]}
        for name, _, _ in pairs:
            sp = sps[name]
            palr = Palr(binary, [p for n, p, _ in pairs if n == name][0], args.timeout)
            sweep_counts[name] = {}
            for cat, strings in sweep.items():
                bad = 0
                for k in range(0, len(strings), 50000):
                    chunk = strings[k:k + 50000]
                    status, got, err, _ = palr.run(chunk)
                    if status != "ok":
                        x = bisect_failure(palr, chunk)
                        record({"model": name, "kind": status, "category": "sweep/" + cat, "input": x, "stderr": err})
                        continue
                    for s, e, g in zip(chunk, expected(sp, chunk), got):
                        if e != g:
                            bad += 1
                            if bad <= 20:
                                record({"model": name, "kind": "mismatch", "category": "sweep/" + cat, "input": s,
                                        "expected": e, "got": g})
                sweep_counts[name][cat] = len(strings)
                log(f"sweep {name} {cat}: {len(strings)} strings, {bad} mismatches")

    random_vocab_texts = 0
    if args.random_vocabs:
        try:
            import sentencepiece.sentencepiece_model_pb2  # noqa: F401 (needs protobuf)
            random_vocab_texts = random_vocabulary_pass(binary, args.seed, args.random_vocabs, out_dir, record, log)
        except ImportError:
            log("random vocabularies skipped: `pip install protobuf` for sentencepiece_model_pb2")

    deadline = time.monotonic() + args.minutes * 60
    rnd = 0
    while (rnd < args.rounds) if args.rounds else (time.monotonic() < deadline):
        for name, path, _ in pairs:
            sp, ctx = sps[name], ctxs[name]
            palr = Palr(binary, path, args.timeout)
            rng = random.Random(f"{args.seed}/{rnd}/{name}")
            strings, cats = [], []
            for cat, gen, n in CATEGORIES:
                for _ in range(n):
                    strings.append(gen(rng, ctx))
                    cats.append(cat)
            # Round r: ids without BOS; every 4th round also with BOS, every 4th (offset) pieces.
            modes = [dict()]
            if rnd % 4 == 1: modes.append(dict(bos=True))
            if rnd % 4 == 3: modes.append(dict(pieces=True))
            for mode in modes:
                exp = expected(sp, strings, **mode)
                status, got, err, dt = palr.run(strings, **mode)
                if status != "ok":
                    bad = bisect_failure(palr, strings, **mode)
                    record({"model": name, "kind": status, "mode": mode, "category": cats[strings.index(bad)],
                            "input": bad, "stderr": err})
                    continue
                for s, c, e, g in zip(strings, cats, exp, got):
                    if not mode: counts[name][c] += 1
                    if e != g:
                        mismatches[name][c] += 1
                        if mismatches[name][c] > 20: continue  # counted; the first 20 are kept
                        small = shrink(palr, sp, s) if not mode else s
                        record({"model": name, "kind": "mismatch", "mode": mode, "category": c, "input": small,
                                "expected": expected(sp, [small], **mode)[0],
                                "got": palr.run([small], **mode)[1], "original-length": len(s)})
                log(f"round {rnd} {name} {mode or 'ids'}: {len(strings)} strings, {dt:.1f} s")
        rnd += 1

    timing = {}
    if not args.no_timing:
        for name, path, _ in pairs:
            # The same code paths as another model's: LLaMA's vocabulary, the base models.
            if name.endswith("-unused") or name in ("syn-no-dummy", "syn-remove-extra", "llama-spm-gguf", "tiny"): continue
            log(f"timing {name}")
            fs, rows = timing_pass(Palr(binary, path, args.timeout * 5), sps[name], ctxs[name], args.seed, log)
            timing[name] = rows
            for f in fs:
                f["model"] = name
                record(f)

    summary = {"seed": args.seed, "rounds": rnd, "sweep": sweep_counts, "random-vocab-texts": random_vocab_texts, "strings": counts, "mismatching-strings": mismatches,
               "total-per-model": {n: sum(c.values()) for n, c in counts.items()},
               "findings": len(findings), "timing": timing}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log(json.dumps({k: summary[k] for k in ("seed", "rounds", "total-per-model", "findings")}))
    log(f"per category (model → category → strings): {json.dumps(counts)}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
