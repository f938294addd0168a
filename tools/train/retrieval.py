"""Candidate retrieval from a catalog pack: a port of Sources/Catalog/Retriever.swift.

    score(j) = sum_{a=0}^{L-1} decay^a * S(h_a, j)  +  popularity_weight * pop(j) / max pop

h_0 is the newest known history item; every history item is "seen" and never
returned; items no neighbour list reaches score only their popularity term, and the
popularity order fills the list. Ties: the more popular item (lower popularity rank)
first. Arithmetic is float32 in the Swift order, so the lists are identical;
`check_retrieval.py` compares this port with `palr retrieve` on many histories.

The pack (a GGUF file written by `palr-convert catalog`) is read with gguf-py.
"""

from __future__ import annotations

import numpy as np
from gguf import GGUFReader


class Pack:
    def __init__(self, path: str):
        r = GGUFReader(path)
        f = r.fields

        def val(key):
            return f[key].contents()

        self.path = path
        self.ids: list[str] = list(val("palr.catalog.item_ids"))
        self.titles: list[str] = list(val("palr.catalog.item_titles"))
        self.k = int(val("palr.catalog.k"))
        self.history_length = int(val("palr.catalog.retrieval.history_length"))
        self.recency_decay = float(np.float32(val("palr.catalog.retrieval.recency_decay")))
        self.popularity_weight = float(np.float32(val("palr.catalog.retrieval.popularity_weight")))
        t = {x.name: x for x in r.tensors}
        n = len(self.ids)
        self.popularity = np.array(t["popularity"].data, dtype=np.float32).reshape(n)
        self.nb_ids = np.array(t["neighbour_ids"].data, dtype=np.int32).reshape(n, self.k)
        self.nb_scores = np.array(t["neighbour_scores"].data, dtype=np.float32).reshape(n, self.k)
        self.index = {x: i for i, x in enumerate(self.ids)}
        # Popularity order: higher first, ties by lower index (ItemCatalog.swift).
        self.pop_order = np.lexsort((np.arange(n), -self.popularity.astype(np.float64))).astype(np.int32)
        self.pop_rank = np.empty(n, dtype=np.int32)
        self.pop_rank[self.pop_order] = np.arange(n, dtype=np.int32)
        m = float(self.popularity.max()) if n else 0.0
        self.max_popularity = np.float32(m if m > 0 else 1.0)
        self._scores = np.zeros(n, dtype=np.float32)

    def retrieve(self, history: list[str], count: int = 20) -> list[int]:
        """Catalog indices of the best `count` candidates, best first, for a history of
        external ids (oldest first). Unknown ids are skipped."""
        return self.retrieve_scored(history, count)[0]

    def retrieve_scored(self, history: list[str], count: int = 20) -> tuple[list[int], list[float]]:
        """The best `count` candidates and their scores, best first."""
        known = [self.index[x] for x in history if x in self.index]
        seen = set(known)
        sources: list[int] = []
        for i in reversed(known):
            if len(sources) >= self.history_length:
                break
            sources.append(i)

        # 1. Neighbour rows of the recent items, weighted by recency (float32, in order).
        touched_order: list[int] = []
        scores = self._scores
        if sources:
            weights = np.empty(len(sources), dtype=np.float32)
            w = np.float32(1)
            d = np.float32(self.recency_decay)
            for a in range(len(sources)):
                weights[a] = w
                w = np.float32(w * d)
            rows = self.nb_ids[sources]                      # (L, K)
            vals = self.nb_scores[sources] * weights[:, None]  # float32 products
            js = rows.ravel()
            vs = vals.ravel()
            ok = js >= 0
            if seen:
                ok &= ~np.isin(js, np.fromiter(seen, dtype=np.int32))
            js = js[ok]
            vs = vs[ok]
            np.add.at(scores, js, vs)                        # sequential, in (a, s) order
            _, first = np.unique(js, return_index=True)
            touched_order = js[np.sort(first)].tolist()

        # 2. Touched items and the popularity prefix; best `count` by (score, -rank).
        pop_scale = np.float32(np.float32(self.popularity_weight) / self.max_popularity)
        touched = np.array(touched_order, dtype=np.int32)
        cand_items = [touched]
        cand_scores = [scores[touched] + pop_scale * self.popularity[touched]]
        scores[touched] = 0
        touched_set = set(touched_order)
        prefix = []
        for j in self.pop_order:
            if len(prefix) >= count:
                break
            j = int(j)
            if j in seen or j in touched_set:
                continue
            prefix.append(j)
        prefix = np.array(prefix, dtype=np.int32)
        cand_items.append(prefix)
        cand_scores.append(pop_scale * self.popularity[prefix])
        items = np.concatenate(cand_items)
        sc = np.concatenate(cand_scores).astype(np.float32)
        order = np.lexsort((self.pop_rank[items], -sc.astype(np.float64)))
        return items[order[:count]].tolist(), sc[order[:count]].tolist()


def build_pack(convert: str, ratings_csv: str, out: str, hold_out: int = 0) -> None:
    """Runs `palr-convert catalog` on movies.csv and a ratings file (default method
    and parameters, the ones the shipped pack uses)."""
    import os
    import subprocess

    import common

    cmd = [convert, "catalog", "--items", os.path.join(common.DATA_DIR, "movies.csv"),
           "--interactions", ratings_csv, "-o", out]
    if hold_out:
        cmd += ["--hold-out", str(hold_out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
