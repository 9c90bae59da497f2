"""Search endpoints. Handlers are plain `def`: FastAPI runs them in its thread pool, so
inference never blocks the event loop."""

from fastapi import APIRouter

from index.search import Hit
from service.deps import RuntimeDep
from service.schemas import SearchResponse, SearchResult, TextSearchRequest

router = APIRouter(prefix="/v1/search", tags=["search"])


def _result(hit: Hit) -> SearchResult:
    return SearchResult(id=hit.id, score=hit.score, path=hit.item.path,
                        caption=hit.item.caption, fields=hit.item.fields)


@router.post("/text")
def search_text(request: TextSearchRequest, runtime: RuntimeDep) -> SearchResponse:
    """Query text -> the k most similar images, best first."""
    query = runtime.engine.encode_texts([request.text])
    hits = runtime.searcher.search(query, request.k)[0]
    return SearchResponse(
        engine_id=runtime.engine.engine_id,
        index_version=runtime.searcher.version,
        results=[_result(h) for h in hits],
    )
