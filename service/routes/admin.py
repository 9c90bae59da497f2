"""Admin endpoints, behind `X-API-Key`: add and delete images, compact, and swap the serving
index. Each parses its request and hands it to `service.changes`, which publishes a new index
version and switches to it with no failed requests."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from service.deps import AdminDep, ChangesDep, SettingsDep
from service.errors import (
    Conflict,
    Forbidden,
    InvalidQuery,
    NotReady,
    Unauthorized,
    responses,
)
from service.images import check_total_pixels, decode_upload_off_loop, stored_suffix
from service.schemas import (
    MAX_TEXT_CHARS,
    ChangeResponse,
    DeleteRequest,
    ReloadRequest,
    ReloadResponse,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep],
                   responses=responses(Unauthorized, Forbidden, Conflict, InvalidQuery, NotReady))

MAX_FILES = 1000


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
                        settings: SettingsDep) -> tuple[list[tuple[str, bytes]], list[str | None]]:
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
async def add_images(request: Request, settings: SettingsDep,
                     changes: ChangesDep) -> ChangeResponse:
    """Multipart `files` (and optional `captions`, a JSON list) -> indexed, then served.

    The files are kept in the index root (`uploads/<batch>/`); the paths results give for
    them are relative to it, as the collection's are to the collection."""
    files, captions = await _read_uploads(request, settings)
    return await changes.add_images(files, captions)


@router.post("/images/delete")
async def delete_images(body: DeleteRequest, changes: ChangesDep) -> ChangeResponse:
    """Delete ids: they never appear in results again (the space is freed by compact)."""
    return await changes.delete(body.ids)


@router.post("/index/compact")
async def compact_index(changes: ChangesDep) -> ChangeResponse:
    """Rebuild without deleted ids (retrains and retunes the FAISS index)."""
    return await changes.compact()


@router.post("/index/reload")
async def reload_index(changes: ChangesDep, body: ReloadRequest | None = None) -> ReloadResponse:
    """Load an index beside the serving one, then switch to it; on any error nothing changes.
    No body (or `{}`): the configured root, re-reading its CURRENT."""
    return await changes.reload(body.index_dir if body else None)
