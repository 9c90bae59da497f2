"""Admin endpoints, behind `X-API-Key`: add and delete images, compact, and swap the serving
index; each change publishes a new index version and switches to it with no failed requests.

Changes and reloads are serialised (one at a time) and apply to the index being served: a
change starts from the served version and publishes into the root it was loaded from. It is
refused (409) when that cannot be done faithfully: a version folder is served (pinned by the
configuration, or by a reload that rolled back), or the root's CURRENT has moved on since the
served version was loaded (another writer). Applying it to anything else would change what is
served in a way nobody asked for, or drop someone else's change.

After a change, versions beyond `KEEP_VERSIONS` are pruned, never the served one or its
parent. Reloads reach the configured index root and folders inside it only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from encoders.errors import InputError
from index import bundle, update
from index.errors import IndexBusyError, IndexError_
from index.sources import CAPTIONS_FILE
from service.config import Settings
from service.deps import AdminDep, SettingsDep
from service.errors import (
    Conflict,
    Forbidden,
    InvalidQuery,
    NotReady,
    Unauthorized,
    responses,
)
from service.images import check_total_pixels, decode_upload_off_loop, stored_suffix
from service.pipeline import QueryPipeline
from service.schemas import MAX_TEXT_CHARS, ItemId

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep],
                   responses=responses(Unauthorized, Forbidden, Conflict, InvalidQuery, NotReady))

# versions a root keeps after a change: the served one, its parent (a rollback) and one more
KEEP_VERSIONS = 3
MAX_FILES = 1000

_writes = asyncio.Lock()


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


def _served(request: Request) -> QueryPipeline:
    """The pipeline serving now (not the one this request leased: a change or reload may have
    replaced it while this request waited for its turn)."""
    pipeline = request.app.state.serving.current
    if pipeline is None:
        raise NotReady("the engine and index are not loaded yet")
    return pipeline


def _writable_root(served: QueryPipeline) -> Path:
    root = served.runtime.index_dir
    if root is None or not (root / bundle.CURRENT).is_file() or (root / bundle.MANIFEST).is_file():
        raise Conflict(f"serving {served.index_version}, a single version folder (pinned by the "
                       f"configuration or a reload), not an index root with {bundle.CURRENT}; "
                       f"changes need a root to publish new versions into: reload one first "
                       f"(POST /v1/admin/index/reload)")
    return root


@contextlib.contextmanager
def _write_errors(root: Path, served: str) -> Iterator[None]:
    """A failed write is a 4xx naming the cause; nothing was published, so the serving version
    stays as it was: bad input 422, a moved CURRENT or a failed write (read-only volume, disk
    full, permissions) 409."""
    try:
        yield
    except InputError as exc:
        raise InvalidQuery(str(exc)) from exc
    except IndexBusyError as exc:
        raise Conflict(f"{exc}; still serving {served}") from exc
    except update.StaleVersionError as exc:
        raise Conflict(f"{exc}; this server serves {served}: reload first (POST "
                       f"/v1/admin/index/reload) so that the change applies to what is "
                       f"served") from exc
    except OSError as exc:
        raise Conflict(f"could not write a new version into {root} ({exc.strerror or exc}); "
                       f"still serving {served}") from exc


async def _switch(request: Request, served: QueryPipeline, root: Path,
                  manifest: bundle.IndexManifest, **counts: int) -> ChangeResponse:
    """Serve the version just published, prune old ones, and report the change."""
    runtime = await asyncio.to_thread(served.runtime.with_index, root, manifest.version)
    state = request.app.state
    await state.serving.swap(QueryPipeline(runtime, state.settings, state.metrics, served.cache))
    pruned = await asyncio.to_thread(_prune, root, manifest.version)
    return ChangeResponse(previous_version=served.index_version, index_version=manifest.version,
                          count=manifest.count, pruned=pruned, **counts)


def _prune(root: Path, serving: str) -> list[str]:
    """Old versions out; a failure here is logged, as the change itself is published."""
    try:
        return update.prune(root, KEEP_VERSIONS, protect={serving})
    except (OSError, IndexError_, InputError) as exc:
        log.warning("could not prune old versions of %s: %s", root, exc)
        return []


_JSON_TYPES = {dict: "object", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def _captions(raw: str | UploadFile | None, files: int) -> list[str | None]:
    """The `captions` field: a JSON list with a string (or null) per file; absent: none."""
    if raw is None or raw == "":
        return [None] * files
    if not isinstance(raw, str):
        raise InvalidQuery("captions must be a form field holding a JSON list, not a file")
    try:
        captions = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidQuery(f"captions is not JSON ({exc}); send a JSON list with a caption "
                           f"per file") from exc
    if not isinstance(captions, list):
        raise InvalidQuery(f"captions must be a JSON list with a caption per file, not a JSON "
                           f"{_JSON_TYPES.get(type(captions), 'value')}")
    if len(captions) != files:
        raise InvalidQuery(f"captions has {len(captions)} entries for {files} files")
    for i, caption in enumerate(captions):
        if caption is not None and not isinstance(caption, str):
            raise InvalidQuery(f"captions[{i}] must be a string or null")
        if caption is not None and len(caption) > MAX_TEXT_CHARS:
            raise InvalidQuery(f"captions[{i}] is over {MAX_TEXT_CHARS} characters")
    return captions


async def _read_uploads(request: Request,
                        settings: Settings) -> tuple[list[tuple[str, bytes]], list[str | None]]:
    """Every part checked, nothing written: (file name to store, bytes) and a caption each."""
    form = await request.form(max_files=MAX_FILES, max_fields=4)
    uploads = [f for f in form.getlist("files") if not isinstance(f, str)]
    if not uploads:
        raise InvalidQuery("multipart body needs one or more 'files' parts")
    captions = _captions(form.get("captions"), len(uploads))
    encoded = [await upload.read(settings.max_image_bytes + 1) for upload in uploads]
    check_total_pixels(encoded, settings)
    files = []
    for i, (upload, data) in enumerate(zip(uploads, encoded, strict=True)):
        try:
            await decode_upload_off_loop(data, settings)  # refuse what could not be indexed
            files.append((f"{i:05d}.{stored_suffix(data)}", data))
        except InvalidQuery as exc:
            raise InvalidQuery(f"files[{i}] ({upload.filename}): {exc}") from exc
    return files, captions


def _write_batch(folder: Path, files: list[tuple[str, bytes]],
                 captions: list[str | None]) -> None:
    folder.mkdir(parents=True)
    for name, data in files:
        (folder / name).write_bytes(data)
    rows = [json.dumps({"file": name, "caption": caption})
            for (name, _), caption in zip(files, captions, strict=True) if caption is not None]
    if rows:
        (folder / CAPTIONS_FILE).write_text("\n".join(rows) + "\n")


_ADD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "minItems": 1, "maxItems": MAX_FILES,
                  "items": {"type": "string", "format": "binary"},
                  "description": "the images, one part each (PNG, JPEG, WebP, GIF or BMP)"},
        "captions": {"type": "string",
                     "description": 'optional: a JSON list with a caption (a string, or null '
                                    'for none) per file, in order: ["a red square", null]'}}}},
}}}


@router.post("/images", openapi_extra=_ADD_BODY)
async def add_images(request: Request, settings: SettingsDep) -> ChangeResponse:
    """Multipart `files` (and optional `captions`, a JSON list) -> indexed, then served.

    The files are kept in the index root (`uploads/<batch>/`); the paths results give for
    them are relative to it, as the collection's are to the collection."""
    files, captions = await _read_uploads(request, settings)
    async with _writes:
        served = _served(request)
        root = _writable_root(served)
        folder = root / bundle.UPLOADS / uuid.uuid4().hex
        try:
            with _write_errors(root, served.index_version):
                await asyncio.to_thread(_write_batch, folder, files, captions)
                manifest = await asyncio.to_thread(
                    update.add_images, served.runtime.engine, root, folder,
                    parent=served.index_version, work_root=folder)
        except Exception:  # nothing published: leave nothing behind either
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return await _switch(request, served, root, manifest, skipped=manifest.skipped,
                             added=manifest.count - served.runtime.searcher.manifest.count)


@router.post("/images/delete")
async def delete_images(body: DeleteRequest, request: Request) -> ChangeResponse:
    """Delete ids: they never appear in results again (the space is freed by compact)."""
    async with _writes:
        served = _served(request)
        root = _writable_root(served)
        with _write_errors(root, served.index_version):
            manifest = await asyncio.to_thread(update.delete_ids, root, body.ids,
                                               parent=served.index_version)
        return await _switch(request, served, root, manifest, deleted=len(set(body.ids)))


@router.post("/index/compact")
async def compact_index(request: Request) -> ChangeResponse:
    """Rebuild without deleted ids (retrains and retunes the FAISS index)."""
    async with _writes:
        served = _served(request)
        root = _writable_root(served)
        with _write_errors(root, served.index_version):
            manifest = await asyncio.to_thread(update.compact, root,
                                               parent=served.index_version)
        return await _switch(request, served, root, manifest)


def _reload_target(settings: Settings, given: Path | None) -> Path:
    """The configured root, or a folder inside it. Anything else is refused before it is
    read, with one message whether it exists or not: the admin key reaches no other path."""
    if given is None:
        return settings.index_dir
    root = settings.index_dir.resolve()
    target = (root / given).resolve()  # an absolute `given` stands alone; links are followed
    if target != root and root not in target.parents:
        raise InvalidQuery("index_dir must be inside the configured index root: the root, one "
                           "of its versions or an index root in it (absolute, or relative to "
                           "the root)")
    return target


@router.post("/index/reload")
async def reload_index(request: Request, settings: SettingsDep,
                       body: ReloadRequest | None = None) -> ReloadResponse:
    """Load an index beside the serving one, then switch to it; on any error nothing changes.
    No body (or `{}`): the configured root, re-reading its CURRENT."""
    target = _reload_target(settings, body.index_dir if body else None)
    async with _writes:
        served = _served(request)
        try:
            runtime = await asyncio.to_thread(served.runtime.with_index, target)
        except (IndexError_, OSError) as exc:
            raise Conflict(f"index {target} was not loaded, still serving "
                           f"{served.index_version}: {exc}") from exc
        state = request.app.state
        new = QueryPipeline(runtime, settings, state.metrics, served.cache)
        await state.serving.swap(new)
    return ReloadResponse(previous_version=served.index_version,
                          index_version=new.index_version, count=runtime.searcher.manifest.count)
