"""The quality report's hybrid-search rows: vector, keyword and hybrid search (service.hybrid)
over an index of the demo gallery, on queries of which half name a stored tag literally.

The query set, from the demo gallery's names (training.emoji: each emoji's CLDR name, then its
aliases and short names): every emoji with at least three distinct names is indexed with its
CLDR name as the caption (as the demo gallery is) and its first alias as a user field `tag`.
For a fixed-seed sample of them, two queries each: the tag itself (a literal tag, the word a
user types when they know what they filed an image under) and the second alias, which is
stored nowhere in the index as a whole (a name the user remembers, not the one filed; its
words are often in the caption or tag: "grinning" in "grinning face"). A query finds its
own emoji, and Recall@K counts it in the first K.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from encoders.engine import OnnxEngine
from index.build import build_index
from index.search import Searcher
from service.hybrid import FUSION_DEPTH, RRF_K, ranked_search
from service.schemas import SearchMode

QUERIES = 300  # emoji sampled; each gives a tag query and an unstored-alias query
SEED = 0
KS = (1, 10)


def _gallery(folder: Path) -> tuple[Path, list[tuple[int, str, str]]]:
    """The tagged gallery as a dataset file, and (id, tag, unstored alias) of each emoji with
    three names; ids are row numbers, as an index build assigns them."""
    from training.emoji import twemoji

    folder.mkdir(parents=True, exist_ok=True)
    rows, named = [], []
    for row, e in enumerate(twemoji()):
        tag = e.names[1] if len(e.names) >= 3 else ""
        rows.append(json.dumps({"file": str(e.png), "caption": e.names[0], "tag": tag}))
        if tag:
            named.append((row, tag, e.names[2]))
    data = folder / "tagged.jsonl"
    data.write_text("\n".join(rows) + "\n")
    return data, named


def _index(engine: OnnxEngine, workdir: Path) -> tuple[Searcher, list[tuple[int, str, str]]]:
    folder = workdir / "hybrid"
    data, named = _gallery(folder)
    if not (folder / "index" / "CURRENT").is_file():
        build_index(engine, data, folder / "index")
    return Searcher(folder / "index", engine.engine_id), named


def _ranks(searcher: Searcher, engine: OnnxEngine, texts: list[str], owners: list[int],
           mode: SearchMode) -> np.ndarray:
    """1-based rank of each query's own image (inf when not in the first FUSION_DEPTH)."""
    vectors = engine.encode_texts(texts)
    ranks = []
    for text, vector, owner in zip(texts, vectors, owners, strict=True):
        if mode is SearchMode.vector:
            hits = searcher.search(vector[None], FUSION_DEPTH)[0]
        else:
            hits = ranked_search(searcher, vector, text, mode, FUSION_DEPTH, None)
        ids = [h.id for h in hits]
        ranks.append(ids.index(owner) + 1 if owner in ids else np.inf)
    return np.asarray(ranks, float)


def hybrid_rows(engine: OnnxEngine, workdir: Path) -> tuple[list[str], dict]:
    """The section's lines and its figures (Recall@K in %, by query kind and mode)."""
    searcher, named = _index(engine, workdir)
    rng = np.random.default_rng(SEED)
    sample = [named[i] for i in sorted(rng.choice(len(named), min(QUERIES, len(named)), replace=False))]
    kinds = {"literal tag": [s[1] for s in sample], "unstored alias": [s[2] for s in sample]}
    owners = [s[0] for s in sample]
    figures: dict = {}
    for kind, texts in kinds.items():
        for mode in SearchMode:
            ranks = _ranks(searcher, engine, texts, owners, mode)
            figures[kind, mode.value] = {f"R@{k}": round(100 * float((ranks <= k).mean()), 1) for k in KS}
    searcher.close()
    header = "| queries | " + " | ".join(f"{m.value} R@{k}" for m in SearchMode for k in KS) + " |"
    lines = [
        "## Hybrid search: vector, keyword and hybrid", "",
        (f"The demo gallery indexed with each emoji's CLDR name as its caption and its first alias "
         f"as a user field `tag`; {len(sample)} emoji with at least three names sampled (seed "
         f"{SEED}), each queried by its tag (a literal tag) and by its second alias, stored "
         "nowhere in the index as a whole (its words often are). Keyword: BM25 over captions and string fields (SQLite FTS5); "
         f"hybrid: reciprocal rank fusion of both lists, {FUSION_DEPTH} deep, k = {RRF_K}. The "
         "model trained on every name of these emoji (the gallery is its training set). "
         "Recall in %; no rerank."), "",
        header, "| --- |" + " --- |" * (len(SearchMode) * len(KS)),
        *[f"| {kind} | " + " | ".join(f"{figures[kind, m.value][f'R@{k}']:.1f}" for m in SearchMode
                                     for k in KS) + " |" for kind in kinds], "",
    ]
    return lines, {f"{kind}/{mode}": v for (kind, mode), v in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the quality report's hybrid-search rows alone")
    parser.add_argument("--engine", type=Path, required=True, help="the default model's engine")
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    print("\n".join(hybrid_rows(OnnxEngine(args.engine), args.workdir)[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
