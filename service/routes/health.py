"""Liveness and readiness probes."""

from fastapi import APIRouter

from service.deps import RuntimeDep
from service.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> Health:
    """The process is up and answering."""
    return Health(status="ok")


@router.get("/readyz")
def readyz(runtime: RuntimeDep) -> Readiness:
    """Engine and index are loaded and consistent; 503 otherwise."""
    return Readiness(
        status="ready",
        engine_id=runtime.engine.engine_id,
        index_version=runtime.searcher.version,
        count=runtime.searcher.manifest.count,
    )
