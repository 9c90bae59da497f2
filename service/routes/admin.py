"""Admin endpoints, behind `X-API-Key`: add and delete images, compact, and swap the serving
index; each change publishes a new index version and switches to it with no failed requests.
Writes are serialised: one change at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from encoders.errors import InputError
from index import bundle, update
from index.errors import IndexError_
from service.deps import AdminDep, PipelineDep, SettingsDep
from service.errors import Conflict, InvalidQuery
from service.images import decode_upload, stored_suffix
from service.pipeline import QueryPipeline
from service.schemas import ItemId

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep])


class ReloadRequest(BaseModel):
    index_dir: Path | None = Field(
        None, description="index root or version to serve; default: the configured root, "
                          "re-reading its CURRENT pointer")


class ReloadResponse(BaseModel):
    previous_version: str
    index_version: str
    count: int


_writes = asyncio.Lock()


class ChangeResponse(BaseModel):
    previous_version: str
    index_version: str
    count: int
    added: int = 0
    skipped: int = 0
    deleted: int = 0


class DeleteRequest(BaseModel):
    ids: list[ItemId] = Field(min_length=1, max_length=10_000)


def _writable_root(settings: SettingsDep) -> Path:
    root = settings.index_dir
    if not (root / bundle.CURRENT).is_file():
        raise Conflict(f"{root} is a single index version, not an index root with "
                       f"{bundle.CURRENT}; changes need a root to publish new versions into")
    return root


@contextlib.contextmanager
def _storage_errors(root: Path, serving: str) -> Iterator[None]:
    """A failed write (read-only volume, disk full, permissions) is a 409 naming the cause;
    nothing was published, so the serving version stays as it was."""
    try:
        yield
    except OSError as exc:
        raise Conflict(f"could not write a new version into {root} ({exc.strerror or exc}); "
                       f"still serving {serving}") from exc


async def _switch(request: Request, pipeline: QueryPipeline, root: Path) -> QueryPipeline:
    runtime = await asyncio.to_thread(pipeline.runtime.with_index, root)
    state = request.app.state
    new = QueryPipeline(runtime, state.settings, state.metrics, pipeline.cache)
    await state.serving.swap(new)
    return new


async def _save_uploads(request: Request, settings: SettingsDep, root: Path) -> Path:
    """Validated uploads (and optional captions) into a new folder under the index root."""
    form = await request.form(max_files=1000, max_fields=4)
    uploads = [f for f in form.getlist("files") if not isinstance(f, str)]
    if not uploads:
        raise InvalidQuery("multipart body needs one or more 'files' parts")
    captions = form.get("captions")
    captions = json.loads(captions) if isinstance(captions, str) and captions else []
    if captions and len(captions) != len(uploads):
        raise InvalidQuery(f"captions has {len(captions)} entries for {len(uploads)} files")
    folder = root / "uploads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    rows = []
    for i, upload in enumerate(uploads):
        data = await upload.read(settings.max_image_bytes + 1)
        decode_upload(data, settings)  # refuse what could not be indexed, with the reason
        name = f"{i:05d}.{stored_suffix(data)}"
        (folder / name).write_bytes(data)
        if captions:
            rows.append(json.dumps({"file": name, "caption": str(captions[i])}))
    if rows:
        (folder / "captions.jsonl").write_text("\n".join(rows) + "\n")
    return folder


@router.post("/images")
async def add_images(request: Request, pipeline: PipelineDep,
                     settings: SettingsDep) -> ChangeResponse:
    """Multipart `files` (and optional `captions`, a JSON list) -> indexed, then served."""
    root = _writable_root(settings)
    async with _writes:
        try:
            with _storage_errors(root, pipeline.index_version):
                folder = await _save_uploads(request, settings, root)
                manifest = await asyncio.to_thread(update.add_images, pipeline.runtime.engine,
                                                   root, folder)
        except InputError as exc:
            raise InvalidQuery(str(exc)) from exc
        new = await _switch(request, pipeline, root)
    return ChangeResponse(previous_version=pipeline.index_version,
                          index_version=new.index_version, count=manifest.count,
                          added=manifest.count - pipeline.runtime.searcher.manifest.count,
                          skipped=manifest.skipped)


@router.post("/images/delete")
async def delete_images(body: DeleteRequest, request: Request, pipeline: PipelineDep,
                        settings: SettingsDep) -> ChangeResponse:
    """Delete ids: they never appear in results again (the space is freed by compact)."""
    root = _writable_root(settings)
    async with _writes:
        try:
            with _storage_errors(root, pipeline.index_version):
                manifest = await asyncio.to_thread(update.delete_ids, root, body.ids)
        except InputError as exc:
            raise InvalidQuery(str(exc)) from exc
        new = await _switch(request, pipeline, root)
    return ChangeResponse(previous_version=pipeline.index_version,
                          index_version=new.index_version, count=manifest.count,
                          deleted=len(set(body.ids)))


@router.post("/index/compact")
async def compact_index(request: Request, pipeline: PipelineDep,
                        settings: SettingsDep) -> ChangeResponse:
    """Rebuild without deleted ids (retrains and retunes the FAISS index)."""
    root = _writable_root(settings)
    async with _writes:
        with _storage_errors(root, pipeline.index_version):
            manifest = await asyncio.to_thread(update.compact, root)
        new = await _switch(request, pipeline, root)
    return ChangeResponse(previous_version=pipeline.index_version,
                          index_version=new.index_version, count=manifest.count)


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
    async with _writes:
        await state.serving.swap(new)
    return ReloadResponse(previous_version=pipeline.index_version,
                          index_version=new.index_version, count=runtime.searcher.manifest.count)
