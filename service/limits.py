"""A cap on request body size, enforced before the body is read into memory.

A declared Content-Length over the cap is refused at once; a body without one (chunked) is
counted as it streams, and the read that passes the cap raises a 413 HTTPException in the
app, which answers it like any other error: the reply is an ordinary response, counted in
the metrics, with no traceback. (FastAPI passes an HTTPException raised while it reads a
body on as it is; any other exception there would become a 400.)
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge, error_response


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(Request(scope), PayloadTooLarge.status,
                                      PayloadTooLarge.code, self._message())
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(PayloadTooLarge.status, self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"request body is over the limit of {self.max_bytes} bytes"
