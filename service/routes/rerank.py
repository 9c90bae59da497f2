"""`POST /v1/rerank`: a text against candidate images, scored by the fusion reranker.

Candidates are ids from the index (their stored image tokens are used) or uploaded images
(multipart `files`, encoded on the spot).
"""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError

from service.deps import PipelineDep, SettingsDep
from service.errors import InvalidQuery, NotReady, PayloadTooLarge, describe, responses
from service.images import check_total_pixels, decode_upload
from service.pipeline import QueryPipeline
from service.schemas import MAX_RERANK_K, MAX_TEXT_CHARS, RerankRequest, RerankResult

router = APIRouter(prefix="/v1", tags=["rerank"], responses=responses(InvalidQuery, NotReady))


class UploadScore(BaseModel):
    index: int = Field(description="position of the file in the request")
    filename: str | None
    match_probability: float


class RerankResponse(BaseModel):
    engine_id: str
    results: list[RerankResult] | list[UploadScore]


def _require_reranker(pipeline: QueryPipeline, stored: bool) -> None:
    if not pipeline.runtime.engine.has_reranker:
        raise InvalidQuery(f"engine {pipeline.engine_id} has no reranker")
    if stored and not pipeline.runtime.searcher.has_tokens:
        raise InvalidQuery(f"index {pipeline.index_version} stores no image tokens to rerank")


async def _by_ids(body: RerankRequest, pipeline: QueryPipeline) -> RerankResponse:
    _require_reranker(pipeline, stored=True)
    items = pipeline.runtime.searcher.metadata.get(body.ids)
    unknown = [i for i in body.ids if i not in items]
    if unknown:
        raise InvalidQuery(f"unknown image ids: {unknown[:10]}")
    try:
        probs = await pipeline.match_probabilities(body.text, body.ids)
    except KeyError as exc:  # known to the metadata but deleted from the index
        raise InvalidQuery(str(exc.args[0])) from exc
    ranked = sorted(zip(body.ids, probs), key=lambda pair: -pair[1])
    return RerankResponse(engine_id=pipeline.engine_id, results=[
        RerankResult(id=i, match_probability=float(p), path=items[i].path,
                     caption=items[i].caption, thumbnail_url=f"/v1/images/{i}")
        for i, p in ranked])


async def _by_upload(request: Request, pipeline: QueryPipeline,
                     settings: SettingsDep) -> RerankResponse:
    _require_reranker(pipeline, stored=False)
    form = await request.form(max_files=MAX_RERANK_K, max_fields=4)
    text = form.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
        raise InvalidQuery(f"a 'text' field of 1 to {MAX_TEXT_CHARS} characters is required")
    uploads = [f for f in form.getlist("files") if not isinstance(f, str)]
    if not uploads:
        raise InvalidQuery("multipart rerank needs one or more 'files' parts")
    engine = pipeline.runtime.engine
    encoded = [await upload.read(settings.max_image_bytes + 1) for upload in uploads]
    check_total_pixels(encoded, settings)

    def pixels() -> np.ndarray:
        """One upload at a time: each is decoded, cut down to the model's input and dropped
        before the next, so a request of small PNGs that each decode to hundreds of megabytes
        holds one such image at once (and, in one thread, reuses its memory)."""
        out = []
        for i, (upload, data) in enumerate(zip(uploads, encoded, strict=True)):
            try:
                out.append(engine.pixels([decode_upload(data, settings)])[0])
            except (InvalidQuery, PayloadTooLarge) as exc:
                raise type(exc)(f"files[{i}] ({upload.filename}): {exc}") from exc
        return np.stack(out)

    def run() -> np.ndarray:
        batch = pixels()  # in the worker thread too: decoding would stall the event loop
        with pipeline.metrics.stage("rerank"):
            tokens = engine.encode_pixels(batch)["image_tokens"]
            return engine.score(tokens, [text] * len(batch))

    probs = await asyncio.to_thread(run)
    scores = [UploadScore(index=i, filename=f.filename, match_probability=float(p))
              for i, (f, p) in enumerate(zip(uploads, probs))]
    return RerankResponse(engine_id=pipeline.engine_id,
                          results=sorted(scores, key=lambda s: -s.match_probability))


@router.post("/rerank", response_model=RerankResponse, openapi_extra={"requestBody": {"content": {
    "application/json": {"schema": RerankRequest.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["text", "files"],
                                       "properties": {"text": {"type": "string"},
                                                      "files": {"type": "array", "items": {
                                                          "type": "string", "format": "binary"}}}}},
}, "required": True}})
async def rerank(request: Request, pipeline: PipelineDep, settings: SettingsDep) -> RerankResponse:
    """A text and candidate images (JSON `ids`, or multipart `files`) -> match probabilities,
    best first."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _by_upload(request, pipeline, settings)
    try:
        body = RerankRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidQuery(describe(exc.errors())) from exc
    return await _by_ids(body, pipeline)
