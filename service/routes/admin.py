"""Admin endpoints, behind `X-API-Key`: swap the serving index with no failed requests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from index.errors import IndexError_
from service.deps import AdminDep, PipelineDep, SettingsDep
from service.errors import Conflict
from service.pipeline import QueryPipeline

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep])


class ReloadRequest(BaseModel):
    index_dir: Path | None = Field(
        None, description="index root or version to serve; default: the configured root, "
                          "re-reading its CURRENT pointer")


class ReloadResponse(BaseModel):
    previous_version: str
    index_version: str
    count: int


@router.post("/index/reload")
async def reload_index(body: ReloadRequest, request: Request, pipeline: PipelineDep,
                       settings: SettingsDep) -> ReloadResponse:
    """Load an index beside the serving one, then switch to it; on any error nothing changes."""
    target = body.index_dir or settings.index_dir
    try:
        runtime = await asyncio.to_thread(pipeline.runtime.with_index, target)
    except IndexError_ as exc:
        raise Conflict(f"index {target} was not loaded, still serving "
                       f"{pipeline.index_version}: {exc}") from exc
    state = request.app.state
    new = QueryPipeline(runtime, settings, state.metrics, pipeline.cache)
    await state.serving.swap(new)
    return ReloadResponse(previous_version=pipeline.index_version,
                          index_version=new.index_version, count=runtime.searcher.manifest.count)
