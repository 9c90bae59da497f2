"""Request and response models of the public API."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field, field_validator

MAX_K = 100
MAX_TEXT_CHARS = 1000


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("text must contain something other than white space")
    return value


class SearchOptions(BaseModel):
    k: int = Field(10, ge=1, le=MAX_K, description="number of results")
    min_score: float | None = Field(None, ge=-1.0, le=1.0,
                                    description="drop results whose dual-encoder score is lower")


class TextSearchRequest(SearchOptions):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="the query text")

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
    score: float = Field(description="dual-encoder cosine similarity")
    path: str = Field(description="image path within the collection")
    caption: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    thumbnail_url: str = Field(description="where the image itself is served")


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


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
