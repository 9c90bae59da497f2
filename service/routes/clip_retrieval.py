"""The clip-retrieval back-end protocol (`/indices-list`, `/knn-service`, `/metadata`), so its
`ClipClient` and front end work against this service unchanged.

`/knn-service` answers as clip-retrieval's back end does: up to `num_result_ids` results, best
first, each with `id` and `similarity`; the first `num_images` also carry the metadata
(`url`, `image_path`, `caption`), and the front end fetches the rest's through `/metadata` as
it scrolls. Both counts are clamped to `MAX_RESULTS` (the front end asks for 3,000 ids, and
10,000 to download); clip-retrieval itself clamps neither.

Fields, and how each is honoured (the README lists the same):
- `text`, `image` (base64), `embedding_input` (normalised here): the query; exactly one.
- `image_url`: an image URL this service gave out (a result's `url`): searched with that
  image's stored vector; any other URL is refused with a 422, as nothing is fetched.
- `modality`: "image" searches the images; "text" searches the items' captions (the caption
  index); anything else is a 422 naming the two.
- `num_images`, `num_result_ids` (default: `num_images`): as above.
- `indice_name`: must be this service's index name (or absent), else a 404.
- `deduplicate`: drops near-duplicate results by their stored image vectors, for either
  modality (see `service.dedup`).
- `use_mclip`, `use_safety_model`, `use_violence_detector`, `aesthetic_score`,
  `aesthetic_weight`: accepted and ignored, as clip-retrieval's back end ignores them when it
  has no such model loaded; text is always encoded by this engine's own text tower.
Errors are this service's JSON errors (4xx), not the Flask back end's 500s.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
from fastapi import APIRouter, Request
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.deps import QueryDep, SettingsDep
from service.errors import (
    InvalidQuery,
    NoCaptionIndex,
    NotFound,
    NotReady,
    ServiceError,
    describe,
    responses,
)
from service.images import decode_base64, decode_upload_off_loop
from service.schemas import MAX_TEXT_CHARS, ItemId, parse_item_id

router = APIRouter(tags=["clip-retrieval"])

# Results per request, with or without metadata. The search fetches every result's metadata,
# and concurrent searches share one FAISS call whose k is the largest asked (see
# service.batches), so this bounds the work a front-end query puts on the queries batched
# with it: 32 (the default batch) x 1,000 ids stays within SQLite's default 32,766 variables.
MAX_RESULTS = 1000


class KnnRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # the client sends fields this service ignores

    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    image: str | None = None
    image_url: str | None = None
    embedding_input: list[float] | None = None
    modality: Literal["image", "text"] = Field(
        "image", description="image: search the images; text: search the items' captions")
    num_images: int = Field(40, ge=1, description=f"results with metadata (at most {MAX_RESULTS})")
    num_result_ids: int | None = Field(
        None, ge=1, description=f"results in all (default num_images; at most {MAX_RESULTS})")
    indice_name: str | None = None
    deduplicate: bool = Field(False, description="drop near-duplicate images "
                                                 "(cosine >= XMODAL_DEDUP_THRESHOLD)")


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


def _metadata(request: Request, item: Any) -> dict[str, Any]:
    return {"url": str(request.url_for("get_image", image_id=item.id)),
            "image_path": item.path, "caption": item.caption or ""}


def result_counts(num_images: int, num_result_ids: int | None) -> tuple[int, int]:
    """(results in all, results with metadata), clamped to MAX_RESULTS."""
    total = min(num_images if num_result_ids is None else num_result_ids, MAX_RESULTS)
    return total, min(num_images, total)


def _stored_vector(request: Request, query: QueryDep, url: str) -> np.ndarray:
    """The stored vector of an image URL this service gave out (a result's `url`, which the
    front end sends back to find similar images); any other URL is refused, as nothing is
    fetched."""
    prefix = request.url_for("get_image", image_id="0").path.removesuffix("0")
    path = urlsplit(url).path
    number = parse_item_id(path.removeprefix(prefix)) if path.startswith(prefix) else None
    if number is None:
        raise InvalidQuery("image_url: only this service's own image URLs (a result's url, "
                           f"{prefix}{{id}}, an id of at most 19 digits) are searched; it "
                           "fetches no others")
    try:
        return query.vector(number)
    except ServiceError as exc:
        raise type(exc)(f"image_url: {exc}") from exc


async def _query(body: KnnRequest, query: QueryDep, request: Request,
                 settings: SettingsDep) -> str | Image.Image | np.ndarray:
    """The text, decoded image or normalised vector the request searches with."""
    given = [f for f in ("text", "image", "image_url", "embedding_input") if getattr(body, f)]
    if len(given) != 1:
        raise InvalidQuery("give exactly one of text, image, image_url, embedding_input (got "
                           f"{given or 'none'})")
    if body.image_url:
        return _stored_vector(request, query, body.image_url)
    if body.text:
        return body.text
    if body.image:
        return await decode_upload_off_loop(decode_base64(body.image, "image"), settings)
    vector = np.asarray(body.embedding_input, dtype=np.float32)
    dim = query.dim
    if vector.shape != (dim,) or not np.isfinite(vector).all():
        raise InvalidQuery(f"embedding_input must be {dim} finite numbers")
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:  # no direction: every image would score 0
        raise InvalidQuery("embedding_input is all zeros; it names no direction to search")
    return vector / norm


@router.get("/indices-list")
async def indices_list(settings: SettingsDep) -> list[str]:
    return [settings.index_name]


@router.post("/knn-service", responses=responses(NotFound, InvalidQuery, NotReady),
             openapi_extra={"requestBody": {
    "content": {"application/json": {"schema": KnnRequest.model_json_schema()}}}})
async def knn_service(request: Request, query: QueryDep,
                      settings: SettingsDep) -> list[dict[str, Any]]:
    body: KnnRequest = await _parse(request, KnnRequest)
    _check_index(body.indice_name, settings)
    searched = await _query(body, query, request, settings)
    total, described = result_counts(body.num_images, body.num_result_ids)
    try:
        hits = await query.find(searched, total, captions=body.modality == "text",
                                dedup=settings.dedup_threshold if body.deduplicate else None)
    except NoCaptionIndex as exc:
        raise InvalidQuery("modality 'text' searches the items' captions, and this index has "
                           "none; use modality 'image'") from exc
    return [{**_metadata(request, hit.item), "id": hit.id, "similarity": hit.score}
            if rank < described else {"id": hit.id, "similarity": hit.score}
            for rank, hit in enumerate(hits)]


@router.post("/metadata", responses=responses(NotFound, InvalidQuery, NotReady),
             openapi_extra={"requestBody": {
    "content": {"application/json": {"schema": MetadataRequest.model_json_schema()}}}})
async def metadata(request: Request, query: QueryDep,
                   settings: SettingsDep) -> list[dict[str, Any]]:
    body: MetadataRequest = await _parse(request, MetadataRequest)
    _check_index(body.indice_name, settings)
    items = query.items(body.ids)
    return [{"id": i, "metadata": _metadata(request, items[i]) if i in items else {}}
            for i in body.ids]
