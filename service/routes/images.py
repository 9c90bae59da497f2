"""The collection's images, by id. Only indexed items can be named, so no request can reach
a file outside the collection; tar-shard members are served as well as plain files.

An id is named one way only, as a canonical non-negative integer: `1.0`, `+5` or ` 369` name
no image, so neither caches nor logs see one image under many URLs.

`?size=N` asks for a thumbnail: the image scaled down (never up) so its longer side is at most
N pixels, as WebP; search results link to 256-pixel ones, so a grid of results does not pull
full-size originals.

Caching: an ETag (a hash of the bytes) and a one-minute lifetime. An id keeps its image while
the index keeps it, but a delete, or a reload to another index, can take it away or give the
id to another image; after a minute a browser revalidates, and gets a 304 with no body, a 404
or the new image. An hour's lifetime kept deleted images on screen for an hour.
"""

import asyncio
import hashlib
import io
import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from PIL import Image

from service.deps import QueryDep
from service.errors import InvalidQuery, NotFound, NotReady, responses
from service.schemas import CANONICAL_ID, parse_item_id

router = APIRouter(prefix="/v1/images", tags=["images"],
                   responses=responses(NotFound, InvalidQuery, NotReady))

CACHE_CONTROL = "public, max-age=60"
THUMBNAIL_SIZES = (16, 1024)  # the smallest and largest `size` a thumbnail may have


@router.get("/{image_id}", response_class=Response,
            responses={200: {"content": {"image/*": {}}, "description": "the image file"},
                       304: {"description": "the image is unchanged (If-None-Match)"}})
async def get_image(
    image_id: Annotated[str, PathParam(pattern=CANONICAL_ID, examples=["0", "42"],
                                       description="the image's id, a non-negative integer")],
    request: Request, query: QueryDep,
    size: Annotated[int | None, Query(ge=THUMBNAIL_SIZES[0], le=THUMBNAIL_SIZES[1],
                                      description="a thumbnail: the longer side at most this "
                                                  "many pixels (never enlarged), as WebP")] = None,
) -> Response:
    number = parse_item_id(image_id)
    if number is None:
        raise NotFound(f"no image with id {image_id}")
    item, data = await query.image(number)
    tag = hashlib.blake2b(data, digest_size=16).hexdigest() + (f"-{size}" if size else "")
    headers = {"Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff",
               "ETag": f'"{tag}"'}
    if _etags(request.headers.get("if-none-match", "")) & {headers["ETag"], "*"}:
        return Response(status_code=304, headers=headers)
    media_type = mimetypes.guess_type(item.path.rsplit("::", 1)[-1])[0] or "application/octet-stream"
    if size is not None:
        data, media_type = await asyncio.to_thread(_thumbnail, data, size, media_type)
    return Response(data, media_type=media_type, headers=headers)


def _thumbnail(data: bytes, size: int, media_type: str) -> tuple[bytes, str]:
    """The image scaled so its longer side is at most `size`, as WebP; the stored bytes as
    they are when they are that small already (or not an image Pillow reads)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) <= size:
                return data, media_type
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
            image.thumbnail((size, size), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            image.save(out, "WEBP", quality=80)
    except (OSError, ValueError, Image.DecompressionBombError):
        return data, media_type
    return out.getvalue(), "image/webp"


def _etags(header: str) -> set[str]:
    """The tags of an If-None-Match header (weak ones compare as strong, as RFC 9110 says)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}
