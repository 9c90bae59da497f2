"""`POST /v1/rerank`: a text against candidate images, scored by the fusion reranker.

Candidates are ids from the index (their stored image tokens are used) or uploaded images
(multipart `files`, encoded on the spot).
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from PIL import Image
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from service.deps import QueryDep, SettingsDep
from service.errors import InvalidQuery, NotReady, PayloadTooLarge, describe, responses
from service.images import check_total_pixels, decode_upload
from service.schemas import MAX_RERANK_K, MAX_TEXT_CHARS, RerankRequest, RerankResult

router = APIRouter(prefix="/v1", tags=["rerank"], responses=responses(InvalidQuery, NotReady))


class UploadScore(BaseModel):
    index: int = Field(description="position of the file in the request")
    filename: str | None
    match_probability: float


class RerankResponse(BaseModel):
    engine_id: str
    results: list[RerankResult] | list[UploadScore]


async def _by_upload(request: Request, query: QueryDep, settings: SettingsDep) -> RerankResponse:
    form = await request.form(max_files=MAX_RERANK_K, max_fields=4)
    text = form.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
        raise InvalidQuery(f"a 'text' field of 1 to {MAX_TEXT_CHARS} characters is required")
    uploads = [f for f in form.getlist("files") if not isinstance(f, str)]
    if not uploads:
        raise InvalidQuery("multipart rerank needs one or more 'files' parts")
    encoded = [await upload.read(settings.max_image_bytes + 1) for upload in uploads]
    check_total_pixels(encoded, settings)
    images = [partial(_decode, i, upload, data, settings)
              for i, (upload, data) in enumerate(zip(uploads, encoded, strict=True))]
    probs = await query.rerank_images(text, images)
    scores = [UploadScore(index=i, filename=f.filename, match_probability=float(p))
              for i, (f, p) in enumerate(zip(uploads, probs, strict=True))]
    return RerankResponse(engine_id=query.engine_id,
                          results=sorted(scores, key=lambda s: -s.match_probability))


def _decode(i: int, upload: UploadFile, data: bytes, settings: SettingsDep) -> Image.Image:
    """The i-th upload, decoded; its errors name the file."""
    try:
        return decode_upload(data, settings)
    except (InvalidQuery, PayloadTooLarge) as exc:
        raise type(exc)(f"files[{i}] ({upload.filename}): {exc}") from exc


@router.post("/rerank", response_model=RerankResponse, openapi_extra={"requestBody": {"content": {
    "application/json": {"schema": RerankRequest.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["text", "files"],
                                       "properties": {"text": {"type": "string"},
                                                      "files": {"type": "array", "items": {
                                                          "type": "string", "format": "binary"}}}}},
}, "required": True}})
async def rerank(request: Request, query: QueryDep, settings: SettingsDep) -> RerankResponse:
    """A text and candidate images (JSON `ids`, or multipart `files`) -> match probabilities,
    best first."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _by_upload(request, query, settings)
    try:
        body = RerankRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidQuery(describe(exc.errors())) from exc
    return RerankResponse(engine_id=query.engine_id,
                          results=await query.rerank_ids(body.text, body.ids))
