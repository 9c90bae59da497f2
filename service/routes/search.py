"""Search endpoints: text -> images, image -> images or captions. Each parses its request and
hands it to the query service, which answers with the response body."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from service.deps import QueryDep, SettingsDep
from service.errors import InvalidQuery, NotReady, describe, responses
from service.images import decode_base64, decode_upload_off_loop
from service.schemas import ImageQuery, ImageSearchRequest, SearchResponse, TextSearchRequest

router = APIRouter(prefix="/v1/search", tags=["search"],
                   responses=responses(InvalidQuery, NotReady))

JSON = "application/json"


@router.post("/text", response_model=SearchResponse)
async def search_text(request: TextSearchRequest, query: QueryDep) -> Response:
    """Query text -> the k best images, best first, by the dual encoder (`mode: vector`), the
    words of the text in captions and fields (`keyword`) or both fused (`hybrid`); optionally
    reranked."""
    return Response(await query.search(request.text, request, mode=request.mode), media_type=JSON)


async def _image_request(request: Request, settings: SettingsDep) -> tuple[ImageQuery, bytes]:
    """Accept multipart (file + form fields) or JSON with base64; validate both the same way."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=16)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise InvalidQuery("multipart body needs a 'file' part with the image")
            data = await upload.read(settings.max_image_bytes + 1)
            fields = {k: v for k, v in form.items() if k != "file"}
            if "filter" in fields:
                fields["filter"] = _json_field(str(fields["filter"]))
            return ImageQuery.model_validate(fields), data
        parsed = ImageSearchRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidQuery(describe(exc.errors())) from exc
    return parsed, decode_base64(parsed.image_base64, "image_base64")


def _json_field(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidQuery(f"filter must be JSON: {exc}") from exc


def _form_field(spec: dict[str, Any]) -> dict[str, Any]:
    """A form field is sent or left out, never null: drop null from an `anyOf`."""
    spec = {k: v for k, v in spec.items() if not (k == "default" and v is None)}
    variants = [v for v in spec.get("anyOf", []) if v.get("type") != "null"]
    if len(variants) == 1:
        spec = {**{k: v for k, v in spec.items() if k != "anyOf"}, **variants[0]}
    return spec


def _multipart_schema() -> dict[str, Any]:
    """`file` and the query's options as form fields, made from ImageQuery so they stay in step;
    `filter` is JSON text. Its `$defs` are moved into components by service.main."""
    query = ImageQuery.model_json_schema()
    fields = {name: _form_field(spec) for name, spec in query["properties"].items()}
    fields["filter"] = {"type": "string", "description": 'FilterSpec as JSON, e.g. '
                                                          '{"equals": {"tag": "cat"}}'}
    return {"type": "object", "required": ["file"], "$defs": query.get("$defs", {}),
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "the image file"}, **fields}}


@router.post(
    "/image",
    response_model=SearchResponse,
    openapi_extra={"requestBody": {"content": {
        JSON: {"schema": ImageSearchRequest.model_json_schema()},
        "multipart/form-data": {"schema": _multipart_schema()},
    }, "required": True}},
)
async def search_image(request: Request, query: QueryDep, settings: SettingsDep) -> Response:
    """An image (multipart `file`, or JSON `image_base64`) -> similar images (`target: image`)
    or the items whose captions match it best (`target: text`)."""
    parsed, data = await _image_request(request, settings)
    image = await decode_upload_off_loop(data, settings)
    return Response(await query.search(image, parsed, parsed.target), media_type=JSON)
