"""Shared pieces of the training recipe: data loading, the user split, the letters-mode
prompt (a mirror of the Swift ranker), and ranking metrics.

Nothing here writes into the repository; every derived file goes under the work
directory (default /tmp/palr-train).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import unicodedata
from dataclasses import dataclass

DATA_DIR = os.environ.get("PALR_DATA", "/work/shared/data/ml-latest-small")
WORK_DIR = os.environ.get("PALR_WORK", "/tmp/palr-train")

# --- data -------------------------------------------------------------------------

@dataclass
class Interaction:
    user: str
    item: str
    timestamp: int
    row: int          # position in ratings.csv (the tie-breaker)


def read_movies(path: str | None = None) -> list[tuple[str, str]]:
    """(movieId, title) in file order."""
    path = path or os.path.join(DATA_DIR, "movies.csv")
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["movieId"], r["title"]) for r in csv.DictReader(f)]


def read_sequences(path: str | None = None) -> dict[str, list[Interaction]]:
    """Per user, interactions sorted by timestamp, ties by their order in the file
    (never by item id). Users appear in file order."""
    path = path or os.path.join(DATA_DIR, "ratings.csv")
    seqs: dict[str, list[Interaction]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row, r in enumerate(csv.DictReader(f)):
            seqs.setdefault(r["userId"], []).append(
                Interaction(r["userId"], r["movieId"], int(r["timestamp"]), row))
    for s in seqs.values():
        s.sort(key=lambda x: (x.timestamp, x.row))
    return seqs


def write_ratings(seqs: dict[str, list[Interaction]], path: str) -> None:
    """Writes sequences as a MovieLens ratings.csv (rating column 5.0, which no
    neighbour method reads). Rows come out user by user in sorted order, so sorting
    the written file again by (timestamp, row) gives the same sequences."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for s in seqs.values():
            for x in s:
                w.writerow([x.user, x.item, "5.0", x.timestamp])


# --- the user split ---------------------------------------------------------------

HELD_OUT_PERCENT = 20


def is_held_out(user: str) -> bool:
    """A fixed ~20% of users, chosen by a hash of the user id: never trained on."""
    h = int.from_bytes(hashlib.sha256(f"palr-split:{user}".encode()).digest()[:8], "big")
    return h % 100 < HELD_OUT_PERCENT


def fold_of(user: str, folds: int) -> int:
    """The cross-fitting fold of a training user (see build_examples.py)."""
    h = int.from_bytes(hashlib.sha256(f"palr-fold:{user}".encode()).digest()[:8], "big")
    return h % folds


# --- the prompt: a mirror of Ranker.prompt(mode: .letters, ...) --------------------
#
# Sources/Ranker/Settings.swift (defaults) and Sources/Ranker/Ranker.swift:
#   template       "Watched, most recent last:\n{history}{profile}Candidates:\n{candidates}Next: ("
#   history item   "- {title}\n"       (history oldest first, the last 20 kept)
#   candidate item "({label}) {title}\n" with labels A, B, ..., T in retrieval order
#   profile        "" (no profile line in letters training)
#   titles         cut to 32 tokens: encode without BOS; if longer, decode the first 32
#                  ids and trim whitespace (Swift's CharacterSet.whitespaces: Zs and tab)
#   encoding       the whole text, BOS prepended
#   scores         the logits of the pieces "A".."T" at the last prompt position

LETTERS_TEMPLATE = "Watched, most recent last:\n{history}{profile}Candidates:\n{candidates}Next: ("
HISTORY_ITEM = "- {title}\n"
CANDIDATE_ITEM = "({label}) {title}\n"
MAX_HISTORY = 20
# palr.history_step (PALR_HISTORY_STEP, default 1: the latest MAX_HISTORY titles): the
# shown history's window starts at multiples of it, as PALRSettings.shownHistory does.
# run.sh writes the same step into the converted model.
HISTORY_STEP = int(os.environ.get("PALR_HISTORY_STEP", "1"))
if not 1 <= HISTORY_STEP <= MAX_HISTORY:
    raise ValueError(f"PALR_HISTORY_STEP must be in 1..{MAX_HISTORY}, not {HISTORY_STEP}")


def shown_history(history: list, max_history: int = MAX_HISTORY, step: int = HISTORY_STEP) -> list:
    """The items a prompt shows of `history` (oldest first): all of at most max_history;
    else the latest, from the first multiple of `step` that leaves at most max_history."""
    over = len(history) - max_history
    if over <= 0:
        return history
    return history[(over + step - 1) // step * step:]
MAX_CANDIDATES = 20
TITLE_TOKEN_LIMIT = 32
LABELS = [chr(65 + i) for i in range(20)]   # A..T


def _swift_whitespace(c: str) -> bool:
    return c == "\t" or unicodedata.category(c) == "Zs"


def swift_trim_whitespace(s: str) -> str:
    a, b = 0, len(s)
    while a < b and _swift_whitespace(s[a]):
        a += 1
    while b > a and _swift_whitespace(s[b - 1]):
        b -= 1
    return s[a:b]


class PromptBuilder:
    """Letters-mode prompts exactly as the Swift ranker builds them.

    Mirrors Ranker.prompt(mode: .letters, history:, profile: nil, candidates:) and
    Ranker.cutTitle(_:) with the default PALRSettings. Keep the two in step."""

    def __init__(self, sp):
        self.sp = sp
        self.label_ids = [sp.piece_to_id(l) for l in LABELS]
        for l, i in zip(LABELS, self.label_ids):
            if sp.id_to_piece(i) != l:
                raise ValueError(f"the tokenizer has no single piece {l!r}")
        self._cut: dict[str, str] = {}

    def cut_title(self, title: str) -> str:
        c = self._cut.get(title)
        if c is None:
            ids = self.sp.encode(title)
            c = title if len(ids) <= TITLE_TOKEN_LIMIT else swift_trim_whitespace(self.sp.decode(ids[:TITLE_TOKEN_LIMIT]))
            self._cut[title] = c
        return c

    def text(self, history: list[str], candidates: list[str]) -> str:
        """history: titles oldest first; candidates: titles in retrieval order (≤ 20)."""
        assert len(candidates) <= MAX_CANDIDATES
        hist = "".join(HISTORY_ITEM.replace("{title}", self.cut_title(t)) for t in shown_history(history))
        cands = "".join(CANDIDATE_ITEM.replace("{label}", LABELS[i]).replace("{title}", self.cut_title(t))
                        for i, t in enumerate(candidates))
        # Ranker's fill() substitutes placeholders in one left-to-right pass, so a title
        # containing "{history}" is not expanded again; do the same.
        return _fill(LETTERS_TEMPLATE, {"history": hist, "profile": "", "candidates": cands})

    def ids(self, history: list[str], candidates: list[str]) -> list[int]:
        return [self.sp.bos_id()] + self.sp.encode(self.text(history, candidates))


def _fill(template: str, values: dict[str, str]) -> str:
    """Settings.swift fill(): one pass; unknown placeholders stay as they are."""
    out = []
    i = 0
    while True:
        o = template.find("{", i)
        if o < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:o])
        c = template.find("}", o + 1)
        if c >= 0 and template[o + 1:c] in values:
            out.append(values[template[o + 1:c]])
            i = c + 1
        else:
            out.append("{")
            i = o + 1


# --- metrics (as Sources/Catalog/Evaluation.swift) ---------------------------------

def ndcg_at(rank: int | None, k: int = 10) -> float:
    return 1.0 / math.log2(rank + 1) if rank is not None and rank <= k else 0.0


def hit_at(rank: int | None, k: int = 10) -> float:
    return 1.0 if rank is not None and rank <= k else 0.0
