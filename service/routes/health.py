"""Liveness and readiness probes, and Prometheus metrics."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import MetricsDep, QueryDep
from service.errors import NotReady, responses
from service.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process is up and answering."""
    return Health(status="ok")


@router.get("/readyz", responses=responses(NotReady))
async def readyz(query: QueryDep) -> Readiness:
    """Engine and index are loaded and consistent; 503 otherwise."""
    return query.readiness()


@router.get("/metrics", response_class=Response)
async def metrics(m: MetricsDep) -> Response:
    """Prometheus text format: stage latencies, cache outcomes, errors by code, batch sizes."""
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
