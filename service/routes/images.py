"""The collection's images, by id. Only indexed items can be named, so no request can reach
a file outside the collection; tar-shard members are served as well as plain files."""

import asyncio
import mimetypes
from typing import Annotated

from fastapi import APIRouter, Response
from fastapi import Path as PathParam

from service.deps import PipelineDep
from service.errors import NotFound
from service.schemas import MAX_ID

router = APIRouter(prefix="/v1/images", tags=["images"])


@router.get("/{image_id}", response_class=Response,
            responses={200: {"content": {"image/*": {}}, "description": "the image file"}})
async def get_image(image_id: Annotated[int, PathParam(ge=0, le=MAX_ID)],
                    pipeline: PipelineDep) -> Response:
    searcher = pipeline.runtime.searcher
    item = searcher.metadata.get([image_id]).get(image_id)
    if item is None or image_id in set(searcher.deleted.tolist()):
        raise NotFound(f"no image with id {image_id}")
    try:
        data = await asyncio.to_thread(searcher.image_bytes, image_id)
    except (KeyError, OSError) as exc:
        raise NotFound(f"image {image_id} is not available") from exc
    media_type = mimetypes.guess_type(item.path.rsplit("::", 1)[-1])[0] or "application/octet-stream"
    return Response(data, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})
