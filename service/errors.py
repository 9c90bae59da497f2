"""The service's error hierarchy and the one place it is mapped to HTTP responses.

Every error leaves as `{"error": {"code": ..., "message": ...}}` with a 4xx/5xx status.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from encoders.errors import InputError

log = logging.getLogger(__name__)


class ServiceError(Exception):
    status = 500
    code = "internal_error"


class InvalidQuery(ServiceError):
    status = 422
    code = "invalid_query"


class NotReady(ServiceError):
    status = 503
    code = "not_ready"


def _body(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return _body(exc.status, exc.code, str(exc))

    @app.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError) -> JSONResponse:
        return _body(InvalidQuery.status, InvalidQuery.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in exc.errors()
        )
        return _body(422, "invalid_request", problems)
