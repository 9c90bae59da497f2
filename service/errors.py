"""The service's error hierarchy and the one place it is mapped to HTTP responses.

Every error leaves as `{"error": {"code": ..., "message": ...}}` with a 4xx/5xx status and
is counted in the metrics by code; `responses(...)` documents that body in the OpenAPI schema.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from encoders.errors import InputError
from service.schemas import ErrorResponse

log = logging.getLogger(__name__)


class ServiceError(Exception):
    status = 500
    code = "internal_error"
    description = "an unexpected error; the server log has the details"


class InvalidQuery(ServiceError):
    """The request is invalid: a field, the body or an image. One code for all of them, whether
    FastAPI's validation or a handler found the problem."""

    status = 422
    code = "invalid_request"
    description = "the request is invalid; the message names the field and the problem"


class NoCaptionIndex(InvalidQuery):
    """A search of the items' captions (image -> text) in an index that has no caption index;
    an `InvalidQuery`, raised apart so that each protocol can say it in its own terms."""


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"
    description = "the request body or an image in it is over the configured limit"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"
    description = "the X-API-Key header is missing or names no configured key"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"
    description = "the admin API is disabled: no admin keys are configured"


class Conflict(ServiceError):
    status = 409
    code = "conflict"
    description = "the change could not be made to the index being served, which is unchanged"


class NotFound(ServiceError):
    status = 404
    code = "not_found"
    description = "nothing with that id or name"


class NotReady(ServiceError):
    status = 503
    code = "not_ready"
    description = "the engine and index are not loaded yet"


# Starlette's own HTTPExceptions (unknown path, wrong method, body over the limit) by status
_HTTP_CODES = {404: NotFound.code, 405: "method_not_allowed", 413: PayloadTooLarge.code}


def responses(*errors: type[ServiceError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors a route can answer with, each with the error body."""
    return {e.status: {"model": ErrorResponse, "description": e.description} for e in errors}


def error_response(request: Request, status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(code=code).inc()
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def _location(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


def _problem(error: dict) -> str:
    if error["type"] == "json_invalid":
        # FastAPI's reads `loc: ("body", 11), msg: "JSON decode error"`; pydantic's own
        # says the line and column in its message
        where = error["loc"][1:]
        reason = error.get("ctx", {}).get("error") or error["msg"]
        return f"body is not valid JSON: {reason}" + (f" at position {where[0]}" if where else "")
    return f"{_location(tuple(error['loc']))}: {error['msg']}"


def describe(errors: list[dict]) -> str:
    """pydantic's error list as one line: `field: problem; field: problem`."""
    return "; ".join(_problem(e) for e in errors)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(request, exc.status, exc.code, str(exc))

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return error_response(request, InvalidQuery.status, InvalidQuery.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, InvalidQuery.status, InvalidQuery.code,
                              describe(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        allow = headers.get("Allow", "").split(", ")
        if "GET" in allow and "HEAD" not in allow:  # GET routes take HEAD (service.main)
            headers["Allow"] = ", ".join([*allow, "HEAD"])
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail), headers)


class UnexpectedErrors:
    """Answers an exception that no handler took with the JSON 500, logged with its traceback.

    Starlette's ServerErrorMiddleware answers too, but then re-raises and the server closes
    the connection, so a pooled client's next request on it fails. Caught here, inside the
    stack, the 500 is an ordinary response and the connection stays open. A response that has
    started cannot be replaced: then the error goes on up, and the connection is closed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except ClientDisconnect:
            # the client left mid-request: nobody to answer, and nothing failed here
            log.info("client went away during %s %s", scope["method"], scope["path"])
        except Exception:
            if started:
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            request = Request(scope, receive)
            response = error_response(request, ServiceError.status, ServiceError.code,
                                      "internal error; see the server log")
            await response(scope, receive, send)
