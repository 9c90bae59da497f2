"""Request and response models of the public API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

MAX_K = 100
MAX_TEXT_CHARS = 1000


class TextSearchRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="the query text")
    k: int = Field(10, ge=1, le=MAX_K, description="number of results")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must contain something other than white space")
        return value


class SearchResult(BaseModel):
    id: int
    score: float = Field(description="dual-encoder cosine similarity")
    path: str = Field(description="image path within the collection")
    caption: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    engine_id: str
    index_version: str
    results: list[SearchResult]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    engine_id: str
    index_version: str
    count: int
