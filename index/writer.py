"""Writing the files of one index segment from arrays: FAISS index (chosen and tuned), ids,
embeddings, image tokens, metadata, keyword index, caption index. Build, add and merge all end here, and
every file goes through `index.durable`, so a failed write raises instead of publishing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index import bundle
from index.choose import RECALL_K, choose_factory, exact_topk, make_index, recall_at, tune
from index.codes import CODES_FAISS, CODES_FILE, CodeLayout, make_binary_index, tune_in_collection
from index.durable import save_array, save_faiss, save_rows, write_text
from index.keywords import KEYWORDS_FILE, write_keywords
from index.metadata import Item, write_store
from index.tokens import TOKENS_FILE, bytes_per_image

log = logging.getLogger(__name__)

TUNING_QUERIES = 1000


@dataclass
class Contents:
    """Everything a segment holds, aligned by FAISS position."""

    ids: np.ndarray  # (n,) int64 ascending item ids
    embeds: np.ndarray  # (n, dim) float32
    tokens: Any  # (n, tokens, width) float16: an array, or rows gathered from stores (merge)
    items: list[Item]  # metadata of the live items
    caption_ids: np.ndarray  # (m,) item ids that have a caption
    caption_embeds: np.ndarray  # (m, dim) float32 text embeddings of those captions
    full_tokens: int = 0  # tokens per image the engine gives, before any pooling
    codes: np.ndarray | None = None  # (n, bits / 8) uint8 packed codes, with a `code_layout`
    code_layout: CodeLayout | None = None  # None: the segment holds no codes


def write_contents(folder: Path, c: Contents, factory: str | None, recall_target: float,
                   memory_budget: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Write a segment's data files; return the `segment.json` fields they determine. The
    FAISS index is chosen for the segment's size (`factory` None), trained and tuned."""
    n, dim = c.embeds.shape
    fields: dict[str, Any] = {"rows": n, "dim": dim, "factory": "", "search_params": {},
                              "tuning": {}}
    if c.code_layout is not None:
        fields["codes"] = _write_codes(folder, c, recall_target, seed)
    if c.code_layout is None or c.code_layout.float_index:
        # built where it will be served, as a rule: a GPU here means a GPU-searchable type
        chosen = factory or choose_factory(n, dim, memory_budget, gpu=faiss.get_num_gpus() > 0)
        index = make_index(chosen, c.embeds, seed=seed)
        tuning = _tune(index, c, recall_target, seed)
        fields.update(factory=chosen, search_params=tuning.pop("search_params"), tuning=tuning)
        save_faiss(folder / bundle.FAISS_FILE, index)
    save_array(folder / bundle.IDS_FILE, c.ids.astype(np.int64))
    save_array(folder / bundle.EMBEDDINGS_FILE, c.embeds.astype(np.float32))
    save_rows(folder / TOKENS_FILE, c.tokens, np.float16)
    fields["tokens"] = {"file": TOKENS_FILE, "shape": list(c.tokens.shape), "dtype": "float16",
                        "bytes_per_image": bytes_per_image(c.tokens),
                        "full_tokens": c.full_tokens or int(c.tokens.shape[1])}
    write_store(folder / bundle.METADATA_FILE, c.items)
    write_keywords(folder / KEYWORDS_FILE, c.items)
    fields["captions"] = len(c.caption_ids)
    if len(c.caption_ids):
        # captions are few per image and short queries hit them rarely: exact search is
        # enough until a collection has many millions of captions
        captions = faiss.IndexFlatIP(dim)
        captions.add(np.ascontiguousarray(c.caption_embeds, dtype=np.float32))
        save_faiss(folder / bundle.CAPTIONS_FAISS, captions)
        save_array(folder / bundle.CAPTION_IDS_FILE, c.caption_ids.astype(np.int64))
    return fields


def _write_codes(folder: Path, c: Contents, target: float, seed: int) -> dict[str, Any]:
    """The segment's packed codes and binary index, tuned; its `codes` entry in segment.json."""
    layout = c.code_layout
    if c.codes is None or c.codes.shape != (len(c.ids), layout.bits // 8):
        got = None if c.codes is None else c.codes.shape
        raise ValueError(f"{layout.bits}-bit codes of {len(c.ids)} rows must be "
                         f"({len(c.ids)}, {layout.bits // 8}) bytes, got {got}")
    index, factory = make_binary_index(c.codes, layout.bits, seed)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(c.ids), min(TUNING_QUERIES, len(c.ids)), replace=False))
    tuning = tune_in_collection(index, c.codes, c.embeds, rows, layout.rescore, target)
    save_array(folder / CODES_FILE, c.codes.astype(np.uint8))
    save_faiss(folder / CODES_FAISS, index)
    return {**layout.to_dict(), "factory": factory, "search_params": tuning.pop("search_params"),
            "tuning": tuning, "bytes_per_image": layout.bits // 8}


def _tune(index: faiss.Index, c: Contents, target: float, seed: int) -> dict[str, Any]:
    """Tune on held-out queries: caption embeddings (the real text -> image queries) when
    the collection has captions, otherwise collection vectors with their own match removed."""
    rng = np.random.default_rng(seed)
    if len(c.caption_embeds):
        pick = np.sort(rng.choice(len(c.caption_embeds), min(TUNING_QUERIES, len(c.caption_embeds)),
                                  replace=False))
        queries, kind, exclude = c.caption_embeds[pick], "caption text embeddings", None
    else:
        pick = np.sort(rng.choice(len(c.embeds), min(TUNING_QUERIES, len(c.embeds)), replace=False))
        queries, kind, exclude = c.embeds[pick], "collection vectors, self-match excluded", pick
    truth = _drop(exact_topk(c.embeds, queries, RECALL_K + 1), exclude)
    search = index.search
    if exclude is not None:
        # tune() searches for RECALL_K; wrap so the self match is removed first
        class _LeaveOneOut:
            def search(self, q: np.ndarray, k: int) -> tuple[None, np.ndarray]:
                return None, _drop(search(q, k + 1)[1], exclude)

        proxy: Any = _LeaveOneOut()
        result = tune(index, queries, truth, target, searcher=proxy)
    else:
        result = tune(index, queries, truth, target)
    log.info("tuned %s to recall@10 %.4f (target %.3f) with %s", type(index).__name__,
             result.recall_at_10, target, result.search_params)
    return {"search_params": result.search_params, "recall_target": target,
            "recall_at_10": result.recall_at_10, "queries": result.queries,
            "queries_from": kind, "curve": result.curve}


def _drop(found: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    """Remove each query's own id from its result row (leave-one-out), keep RECALL_K."""
    if exclude is None:
        return found[:, :RECALL_K]
    rows = [[i for i in row if i != own][:RECALL_K] for row, own in zip(found.tolist(), exclude)]
    return np.asarray([r + [-1] * (RECALL_K - len(r)) for r in rows], dtype=np.int64)


def write_skipped(folder: Path, errors: list[tuple[str, str]]) -> None:
    """The report of unreadable images, one JSON line each (always written, maybe empty)."""
    lines = [json.dumps({"uri": uri, "error": err}) for uri, err in errors]
    write_text(folder / bundle.SKIPPED_FILE, "".join(line + "\n" for line in lines))


__all__ = ["Contents", "recall_at", "write_contents", "write_skipped"]
