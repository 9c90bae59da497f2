"""`GET /v1/index`: what is being served."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import QueryDep
from service.errors import NotReady, responses
from service.schemas import IndexInfo

router = APIRouter(prefix="/v1", tags=["index"], responses=responses(NotReady))


@router.get("/index")
async def index_info(query: QueryDep) -> IndexInfo:
    return query.info()
