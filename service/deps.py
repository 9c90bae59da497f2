"""FastAPI dependencies, as `Annotated` aliases the routes take.

Dependencies and handlers that never block are `async def`: FastAPI runs a plain `def` in
its thread pool, a thread hop per request for work that takes microseconds.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from service.changes import IndexChanges
from service.config import Settings
from service.errors import Forbidden, NotReady, Unauthorized
from service.metrics import Metrics
from service.query import QueryService


async def get_query(request: Request) -> QueryService:
    """The query service this request leased (see service.leases.LeaseMiddleware)."""
    query = request.scope.get("state", {}).get("query")
    if query is None:
        raise NotReady("the engine and index are not loaded yet")
    return query


async def get_changes(request: Request) -> IndexChanges:
    return request.app.state.changes


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


# a security scheme in the OpenAPI schema; auto_error off, as the key check below answers
# with this service's own errors (401 without a valid key, 403 with no keys configured)
admin_key = APIKeyHeader(name="X-API-Key", scheme_name="AdminKey", auto_error=False,
                         description="one of the keys in XMODAL_API_KEYS")


async def require_admin(
    request: Request, x_api_key: Annotated[str | None, Security(admin_key)]
) -> None:
    keys = request.app.state.settings.api_keys
    if not keys:
        raise Forbidden("the admin API is disabled: no XMODAL_API_KEYS are configured")
    given = (x_api_key or "").encode()
    # compare against every key, in constant time each, so timing reveals nothing
    matches = [hmac.compare_digest(given, key.encode()) for key in keys]
    if not x_api_key or not any(matches):
        raise Unauthorized("a valid X-API-Key header is required")


QueryDep = Annotated[QueryService, Depends(get_query)]
ChangesDep = Annotated[IndexChanges, Depends(get_changes)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
AdminDep = Depends(require_admin)
