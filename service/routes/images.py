"""The collection's images, by id; never a file outside the collection root."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.deps import PipelineDep
from service.errors import NotFound

router = APIRouter(prefix="/v1/images", tags=["images"])


@router.get("/{image_id}", response_class=FileResponse)
def get_image(image_id: int, pipeline: PipelineDep) -> FileResponse:
    searcher = pipeline.runtime.searcher
    item = searcher.metadata.get([image_id]).get(image_id)
    if item is None:
        raise NotFound(f"no image with id {image_id}")
    root = Path(searcher.manifest.source).resolve()
    path = (root / item.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound(f"image {image_id} is not available")
    return FileResponse(path)
