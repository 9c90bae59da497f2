"""`GET /v1/index`: what is being served."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from service.deps import PipelineDep
from service.errors import NotReady, responses

router = APIRouter(prefix="/v1", tags=["index"], responses=responses(NotReady))


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


@router.get("/index")
async def index_info(pipeline: PipelineDep) -> IndexInfo:
    manifest = pipeline.runtime.searcher.manifest
    engine = pipeline.runtime.engine.manifest
    return IndexInfo(
        engine_id=engine.engine_id, family=engine.family, precision=engine.precision,
        rerank=pipeline.can_rerank, version=manifest.version, parent=manifest.parent,
        created=manifest.created, count=manifest.count, deleted=manifest.deleted,
        dim=manifest.dim, factory=manifest.factory, search_params=manifest.search_params,
        tuning=manifest.tuning, tokens=manifest.tokens, captions=manifest.captions,
    )
