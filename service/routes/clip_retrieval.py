"""The clip-retrieval back-end protocol (`/indices-list`, `/knn-service`, `/metadata`), so its
`ClipClient` and front end work against this service unchanged.

Honoured: `text`, `image` (base64), `embedding_input`, `modality` ("image"), `num_images`,
`num_result_ids`, `indice_name`, `deduplicate` (drops results with identical scores and
paths). Accepted and ignored, as this service has no such models: `use_mclip`,
`use_safety_model`, `use_violence_detector`, `aesthetic_score`, `aesthetic_weight`.
Refused with a 422: `image_url` (no URL fetching) and `modality: "text"` without a caption index.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from index.metadata import Item
from service.config import Settings
from service.deps import PipelineDep, SettingsDep
from service.errors import InvalidQuery, NotFound, describe
from service.images import decode_upload
from service.pipeline import QueryPipeline
from service.schemas import MAX_K, MAX_TEXT_CHARS, ItemId

router = APIRouter(tags=["clip-retrieval"])


class KnnRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # the client sends fields this service ignores

    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    image: str | None = None
    image_url: str | None = None
    embedding_input: list[float] | None = None
    modality: str = "image"
    num_images: int = Field(40, ge=1, le=MAX_K)
    num_result_ids: int | None = Field(None, ge=1, le=MAX_K)
    indice_name: str | None = None
    deduplicate: bool = False


class MetadataRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    ids: list[ItemId] = Field(max_length=1000)
    indice_name: str | None = None


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    """clip-retrieval's client posts JSON without a JSON content type; read the body as JSON
    whatever the header says, as its Flask back end does."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidQuery(describe(exc.errors())) from exc


def _check_index(name: str | None, settings: SettingsDep) -> None:
    if name not in (None, settings.index_name):
        raise NotFound(f"no index named {name!r}; this service has {settings.index_name!r}")


def _metadata(request: Request, item: Item) -> dict[str, Any]:
    return {"url": str(request.url_for("get_image", image_id=item.id)),
            "image_path": item.path, "caption": item.caption or ""}


def _query(body: KnnRequest, pipeline: QueryPipeline,
           settings: Settings) -> str | Image.Image | np.ndarray:
    """The text, decoded image or normalised vector the request searches with."""
    given = [f for f in ("text", "image", "image_url", "embedding_input") if getattr(body, f)]
    if len(given) != 1:
        raise InvalidQuery(f"give exactly one of text, image, embedding_input (got {given or 'none'})")
    if body.image_url:
        raise InvalidQuery("image_url is not supported: this service does not fetch URLs")
    if body.text:
        return body.text
    if body.image:
        try:
            data = base64.b64decode(body.image, validate=True)
        except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
            raise InvalidQuery(f"image is not valid base64: {exc}") from exc
        return decode_upload(data, settings)
    vector = np.asarray(body.embedding_input, dtype=np.float32)
    dim = pipeline.runtime.engine.dim
    if vector.shape != (dim,) or not np.isfinite(vector).all():
        raise InvalidQuery(f"embedding_input must be {dim} finite numbers")
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


@router.get("/indices-list")
async def indices_list(settings: SettingsDep) -> list[str]:
    return [settings.index_name]


@router.post("/knn-service", openapi_extra={"requestBody": {
    "content": {"application/json": {"schema": KnnRequest.model_json_schema()}}}})
async def knn_service(request: Request, pipeline: PipelineDep,
                      settings: SettingsDep) -> list[dict[str, Any]]:
    body: KnnRequest = await _parse(request, KnnRequest)
    _check_index(body.indice_name, settings)
    if body.modality != "image":
        raise InvalidQuery("modality 'text' needs a caption index, which this index lacks")
    query = _query(body, pipeline, settings)
    hits = await pipeline.find(query, max(body.num_images, body.num_result_ids or 0))
    results, seen = [], set()
    for hit in hits:
        signature = (round(hit.score, 5), hit.item.path)
        if body.deduplicate and signature in seen:
            continue
        seen.add(signature)
        results.append({**_metadata(request, hit.item), "id": hit.id, "similarity": hit.score})
    return results[: body.num_images]


@router.post("/metadata", openapi_extra={"requestBody": {
    "content": {"application/json": {"schema": MetadataRequest.model_json_schema()}}}})
async def metadata(request: Request, pipeline: PipelineDep,
                   settings: SettingsDep) -> list[dict[str, Any]]:
    body: MetadataRequest = await _parse(request, MetadataRequest)
    _check_index(body.indice_name, settings)
    items = pipeline.runtime.searcher.metadata.get(body.ids)
    return [{"id": i, "metadata": _metadata(request, items[i]) if i in items else {}}
            for i in body.ids]
