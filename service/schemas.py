"""Request and response models of the public API."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_K = 100
MAX_TEXT_CHARS = 1000


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("text must contain something other than white space")
    return value


MAX_RERANK_K = 100
MAX_ID = 2**63 - 1  # ids are SQLite integers
ItemId = Annotated[int, Field(ge=0, le=MAX_ID)]
# an id as the service writes it in URLs: ASCII digits ([0-9], not str.isdigit's superscripts
# and other scripts' digits), no leading zero, at most MAX_ID's 19 digits
CANONICAL_ID = r"^(0|[1-9][0-9]{0,18})$"


def parse_item_id(text: str) -> int | None:
    """An id written as `CANONICAL_ID` and within MAX_ID; None for anything else."""
    if re.fullmatch(CANONICAL_ID.strip("^$"), text) is None:
        return None
    number = int(text)
    return number if number <= MAX_ID else None
Scalar = str | int | float | bool


class FilterSpec(BaseModel):
    """Restrict results by the items' user fields: exact values and inclusive ranges.

    At most 32 fields in all; integers within 64 bits (what the metadata store holds).
    """

    model_config = ConfigDict(extra="forbid")  # a misspelt key would silently filter nothing

    equals: dict[str, Scalar] = Field(default_factory=dict, description='e.g. {"tag": "cat"}')
    ranges: dict[str, tuple[Scalar | None, Scalar | None]] = Field(
        default_factory=dict, description='e.g. {"date": ["2024-01-01", null]}; null is open')


class SearchOptions(BaseModel):
    k: int = Field(10, ge=1, le=MAX_K, description="number of results")
    min_score: float | None = Field(None, ge=-1.0, le=1.0,
                                    description="drop results whose dual-encoder score is lower")
    filter: FilterSpec | None = None
    rerank: bool = Field(False, description="rescore the top rerank_k with the fusion reranker")
    rerank_k: int = Field(16, ge=1, le=MAX_RERANK_K, description="how many to rerank")
    min_match_probability: float | None = Field(
        None, ge=0.0, le=1.0, description="with rerank: drop results the reranker scores lower, "
                                          "and those beyond rerank_k, which it did not score")

    @model_validator(mode="after")
    def _cut_off_needs_rerank(self) -> SearchOptions:
        if self.min_match_probability is not None and not self.rerank:
            raise ValueError("min_match_probability needs rerank: true (only reranked results "
                             "have a match probability)")
        return self


class SearchMode(str, Enum):
    vector = "vector"  # the dual encoder's nearest neighbours
    keyword = "keyword"  # BM25 over captions and string user fields
    hybrid = "hybrid"  # both lists fused by reciprocal rank fusion (k = 60)


class TextSearchRequest(SearchOptions):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="the query text")
    mode: SearchMode = Field(
        SearchMode.vector,
        description="vector: the dual encoder's nearest neighbours; keyword: the words of the "
                    "text matched in captions and string fields (BM25); hybrid: both rankings "
                    "fused by reciprocal rank fusion, 1 / (60 + rank) summed, before any "
                    "rerank. Filters apply to all three; scores are the dual encoder's in all")

    _text_not_blank = field_validator("text")(_not_blank)


class Target(str, Enum):
    image = "image"  # image -> similar images
    text = "text"  # image -> captions


class ImageQuery(SearchOptions):
    """Options of an image query; multipart uploads send them as form fields beside `file`."""

    target: Target = Target.image


class ImageSearchRequest(ImageQuery):
    """JSON form of an image query."""

    image_base64: str = Field(min_length=1, description="the image file, base64-encoded")


class SearchResult(BaseModel):
    id: int
    score: float = Field(description="dual-encoder cosine similarity (in every search mode: "
                                     "the mode decides the order)")
    match_probability: float | None = Field(
        None, description="the reranker's image-text match probability, when reranked")
    path: str = Field(description="image path within the collection")
    caption: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    thumbnail_url: str = Field(description="where the image itself is served")


class SearchResponse(BaseModel):
    engine_id: str
    index_version: str
    results: list[SearchResult]


class RerankRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    ids: list[ItemId] = Field(min_length=1, max_length=MAX_RERANK_K,
                              description="candidate image ids, each once")

    _text_not_blank = field_validator("text")(_not_blank)

    @field_validator("ids")
    @classmethod
    def _each_once(cls, ids: list[int]) -> list[int]:
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"ids are named more than once: {repeated[:10]}")
        return ids


class RerankResult(BaseModel):
    id: int
    match_probability: float
    path: str
    caption: str | None = None
    thumbnail_url: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    engine_id: str
    index_version: str
    count: int
    rerank: bool = Field(description="the engine has a reranker and the index stores tokens")


class IndexInfo(BaseModel):
    engine_id: str
    family: str
    precision: str
    rerank: bool
    version: str
    parent: str
    created: str
    count: int
    deleted: int
    dim: int
    factory: str
    search_params: dict[str, Any]
    tuning: dict[str, Any]
    tokens: dict[str, Any]
    captions: int
    keywords: bool = Field(
        description="every segment has a keyword (SQLite FTS5) index, so `mode` keyword and "
                    "hybrid of POST /v1/search/text can answer")
    codes: dict[str, Any] = Field(
        default_factory=dict,
        description="binary codes queries are searched by (Hamming distance, then float "
                    "rescoring of `search_params.rescore` candidates): `bits`, `float_index` "
                    "(a float index is kept beside them), `rescore` (as built; null: tuned), "
                    "`factory` (the binary FAISS index), `search_params`, `tuning` (measured "
                    "`recall_at_10` against exact float search, `recall_target`, `queries`, "
                    "`queries_from`), `bytes_per_image`; empty: searched by float vectors")


# versions a root keeps after a change: the served one, its parent (a rollback) and one more
KEEP_VERSIONS = 3


class ReloadRequest(BaseModel):
    index_dir: Path | None = Field(
        None, description="what to serve, inside the configured index root: the root itself, "
                          "one of its versions (a rollback: `v20250101T000000-000000`) or an "
                          "index root inside it; absolute or relative to the configured root. "
                          "Default: the configured root, re-reading its CURRENT")


class ReloadResponse(BaseModel):
    previous_version: str
    index_version: str
    count: int


class ChangeResponse(BaseModel):
    previous_version: str = Field(description="the version served before; the new one's parent")
    index_version: str
    count: int
    added: int = 0
    skipped: int = 0
    deleted: int = 0
    pruned: list[str] = Field(default_factory=list,
                              description=f"old versions removed (a root keeps {KEEP_VERSIONS})")


class DeleteRequest(BaseModel):
    ids: list[ItemId] = Field(min_length=1, max_length=10_000)


class ErrorBody(BaseModel):
    code: str = Field(description="what kind of error, for programs: invalid_request, "
                                  "payload_too_large, not_found, unauthorized, ...",
                      examples=["invalid_request"])
    message: str = Field(description="what is wrong, for people",
                         examples=["k: Input should be less than or equal to 100"])


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody
