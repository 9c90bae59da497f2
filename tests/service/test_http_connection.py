"""Over a real HTTP connection: an unexpected error is the JSON 500, logged and counted, and
the connection it came on serves the next request; so does a chunked upload cut off at the
body cap, a 413 with no traceback; HEAD is answered without a body."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from service.config import Settings
from service.main import create_app
from tests.service.redis_server import free_port


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """uvicorn in a thread, without the lifespan: these routes need no engine or index."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


MAX_BODY = 10_000


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = create_app(Settings(max_body_bytes=MAX_BODY))

    @app.get("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @app.post("/v1/upload")
    async def upload(request: Request) -> dict[str, int]:
        """Reads a form as the image search and rerank routes do."""
        return {"fields": len(await request.form())}

    with serving(app) as base:
        yield base


def _local_address(response: httpx.Response) -> tuple[str, int]:
    return response.extensions["network_stream"].get_extra_info("client_addr")


def _errors(client: httpx.Client, code: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'xmodal_errors_total{{code="{code}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_unexpected_error_keeps_the_connection(url: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    with httpx.Client(base_url=url) as client:
        failed = client.get("/v1/broken")
        assert failed.status_code == 500
        assert failed.json() == {"error": {"code": "internal_error",
                                           "message": "internal error; see the server log"}}
        assert failed.headers.get("connection") != "close"
        after = client.get("/healthz")  # was "Connection reset by peer"
        assert after.status_code == 200
        assert _local_address(after) == _local_address(failed)  # the same connection
        metrics = client.get("/metrics").text
    assert 'xmodal_errors_total{code="internal_error"} 1.0' in metrics
    logged = [r for r in caplog.records if r.name == "service.errors"]
    assert len(logged) == 1 and "GET /v1/broken" in logged[0].getMessage()
    assert logged[0].exc_info and isinstance(logged[0].exc_info[1], RuntimeError)
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/openapi.json"])
def test_head_answers_get_routes_with_headers_only(url: str, path: str) -> None:
    with httpx.Client(base_url=url) as client:
        get, head = client.get(path), client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


def test_wrong_method_names_the_allowed_ones(url: str) -> None:
    with httpx.Client(base_url=url) as client:
        put = client.put("/healthz")
        get = client.get("/v1/search/text")
    assert put.status_code == 405 and put.headers["allow"] == "GET, HEAD"
    assert put.json()["error"]["code"] == "method_not_allowed"
    assert get.status_code == 405 and get.headers["allow"] == "POST"


def _chunked_upload(size: int) -> Iterator[bytes]:
    yield (b'--cut\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
           b"Content-Type: image/png\r\n\r\n")
    for _ in range(size // 1000):
        yield b"\0" * 1000
    yield b"\r\n--cut--\r\n"


def test_upload_cut_off_at_the_cap_is_a_clean_counted_413(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with httpx.Client(base_url=url) as client:
        before = {code: _errors(client, code) for code in ("payload_too_large", "internal_error")}
        response = client.post("/v1/upload", content=_chunked_upload(3 * MAX_BODY),
                               headers={"content-type": "multipart/form-data; boundary=cut"})
        assert "content-length" not in response.request.headers  # sent chunked
        assert response.status_code == 413
        assert response.json() == {"error": {
            "code": "payload_too_large",
            "message": f"request body is over the limit of {MAX_BODY} bytes"}}
        assert client.post("/v1/upload", files={"file": ("a.png", b"x")}).json() == {"fields": 1}
        after = {code: _errors(client, code) for code in before}
    assert after == {"payload_too_large": before["payload_too_large"] + 1,
                     "internal_error": before["internal_error"]}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
