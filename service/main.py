"""The FastAPI application: `create_app(settings)` builds it; the lifespan loads the engine and
index into the query service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from encoders.engine import Engine
from service.changes import IndexChanges
from service.config import Settings
from service.errors import (
    PayloadTooLarge,
    ServiceError,
    UnexpectedErrors,
    install_handlers,
    responses,
)
from service.head import HeadAsGet
from service.leases import LeaseMiddleware, Leases
from service.limits import BodySizeLimit
from service.metrics import Metrics
from service.openapi import with_hoisted_defs
from service.query import QueryService
from service.routes import (
    admin,
    clip_retrieval,
    health,
    images,
    index_info,
    rerank,
    search,
    web,
)

log = logging.getLogger(__name__)

def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The app for `settings`; `engine`: one to serve with instead of the configured bundle."""
    settings = settings or Settings()
    metrics = Metrics()
    leases = Leases()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A mismatched or corrupt bundle raises here, so the service never starts serving it.
        await leases.swap(QueryService.load(settings, metrics, engine))
        try:
            yield
        finally:
            await leases.close()

    # metrics are Prometheus (/metrics); FastAPI's OpenTelemetry bridge would otherwise look
    # for a configured provider on every request. /docs loads Swagger UI from this server
    # (FastAPIOffline), so it works where no CDN can be reached; ReDoc would still fetch its
    # logo from one, and one docs page is enough.
    app = FastAPIOffline(redoc_url=None, title="xmodal", version="0.1.0", lifespan=lifespan,
                  description="Cross-modal text/image retrieval.",
                  responses=responses(PayloadTooLarge, ServiceError),
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.changes = IndexChanges(leases, settings)
    install_handlers(app)
    app.add_middleware(LeaseMiddleware, leases=leases)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # the last added is the outermost: both inside CORS, so errors carry its headers; a HEAD
    # request is a GET to everything inside HeadAsGet
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(HeadAsGet)
    if settings.cors_origins:  # closed unless origins are listed
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type"])
    for module in (health, search, rerank, images, index_info, admin, clip_retrieval, web):
        app.include_router(module.router)
    app.openapi = with_hoisted_defs(app)  # type: ignore[method-assign]
    return app


def serve(settings: Settings | None = None) -> None:
    """Run the app with uvicorn on the configured host and port."""
    import uvicorn

    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower())
