"""The service's error hierarchy and the one place it is mapped to HTTP responses.

Every error leaves as `{"error": {"code": ..., "message": ...}}` with a 4xx/5xx status and
is counted in the metrics by code.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from encoders.errors import InputError

log = logging.getLogger(__name__)


class ServiceError(Exception):
    status = 500
    code = "internal_error"


class InvalidQuery(ServiceError):
    status = 422
    code = "invalid_query"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class NotReady(ServiceError):
    status = 503
    code = "not_ready"


def error_response(request: Request, status: int, code: str, message: str) -> JSONResponse:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(code=code).inc()
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _location(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


def describe(errors: list[dict]) -> str:
    """pydantic's error list as one line: `field: problem; field: problem`."""
    return "; ".join(f"{_location(tuple(e['loc']))}: {e['msg']}" for e in errors)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(request, exc.status, exc.code, str(exc))

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return error_response(request, InvalidQuery.status, InvalidQuery.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 422, "invalid_request", describe(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal_error", "internal error; see the server log")
