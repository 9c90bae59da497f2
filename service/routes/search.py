"""Search endpoints: text -> images and image -> images. Handlers stay thin: parse, call the
pipeline, shape the response. Responses are cached whole, keyed by engine, index version and
the request."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from index.search import Hit
from service.deps import PipelineDep, SettingsDep
from service.errors import InvalidQuery
from service.images import decode_upload
from service.schemas import (
    ImageQuery,
    ImageSearchRequest,
    SearchOptions,
    SearchResponse,
    SearchResult,
    Target,
    TextSearchRequest,
)

router = APIRouter(prefix="/v1/search", tags=["search"])

JSON = "application/json"


def _response(pipeline: PipelineDep, hits: list[Hit], options: SearchOptions) -> SearchResponse:
    kept = [h for h in hits if options.min_score is None or h.score >= options.min_score]
    return SearchResponse(
        engine_id=pipeline.engine_id,
        index_version=pipeline.index_version,
        results=[SearchResult(id=h.id, score=h.score, path=h.item.path, caption=h.item.caption,
                              fields=h.item.fields, thumbnail_url=f"/v1/images/{h.id}")
                 for h in kept],
    )


@router.post("/text", response_model=SearchResponse)
async def search_text(request: TextSearchRequest, pipeline: PipelineDep) -> Response:
    """Query text -> the k most similar images, best first."""
    key = "text:" + request.model_dump_json()
    cached = pipeline.cached_response(key)
    if cached is not None:
        return Response(cached, media_type=JSON)
    vector = await pipeline.embed_text(request.text)
    hits = await pipeline.search(vector, request.k)
    body = _response(pipeline, hits, request).model_dump_json().encode()
    pipeline.store_response(key, body)
    return Response(body, media_type=JSON)


async def _image_request(request: Request, settings: SettingsDep) -> tuple[ImageQuery, bytes]:
    """Accept multipart (file + form fields) or JSON with base64; validate both the same way."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=8)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise InvalidQuery("multipart body needs a 'file' part with the image")
            data = await upload.read(settings.max_image_bytes + 1)
            fields = {k: v for k, v in form.items() if k != "file"}
            return ImageQuery.model_validate(fields), data
        parsed = ImageSearchRequest.model_validate_json(await request.body())
        return parsed, base64.b64decode(parsed.image_base64, validate=True)
    except ValidationError as exc:
        raise InvalidQuery("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                     for e in exc.errors())) from exc
    except binascii.Error as exc:
        raise InvalidQuery(f"image_base64 is not valid base64: {exc}") from exc


@router.post(
    "/image",
    response_model=SearchResponse,
    openapi_extra={"requestBody": {"content": {
        JSON: {"schema": ImageSearchRequest.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}, "k": {"type": "integer"},
            "target": {"type": "string", "enum": ["image", "text"]},
            "min_score": {"type": "number"}}}},
    }, "required": True}},
)
async def search_image(request: Request, pipeline: PipelineDep, settings: SettingsDep) -> Response:
    """An image (multipart `file`, or JSON `image_base64`) -> similar images (`target: image`)."""
    parsed, data = await _image_request(request, settings)
    if parsed.target is Target.text:
        raise InvalidQuery("image -> text search needs a caption index, which this index lacks")
    image = decode_upload(data, settings)
    vector = await pipeline.embed_image(image)
    hits = await pipeline.search(vector, parsed.k)
    return Response(_response(pipeline, hits, parsed).model_dump_json(), media_type=JSON)
