"""Every hostile input gets a 4xx JSON error naming the problem (or a correct answer where
the input is valid), never a 5xx; and the service answers a normal query right after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app
from tests.service import hostile
from xmodal.demo import DemoPaths

NORMAL = {"text": "a red circle", "k": 3}


@pytest.fixture(scope="module")
def client(demo: DemoPaths) -> Iterator[TestClient]:
    settings = Settings(engine_dir=demo.engine, index_dir=demo.index, max_image_bytes=2_000_000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _still_healthy(client: TestClient) -> None:
    response = client.post("/v1/search/text", json=NORMAL)
    assert response.status_code == 200 and len(response.json()["results"]) == 3


def _is_named_4xx(response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error["code"] and len(error["message"]) > 5


@pytest.mark.parametrize("name", sorted(hostile.broken_images()))
def test_broken_images_are_named_4xx(client: TestClient, name: str) -> None:
    data = hostile.broken_images()[name]
    response = client.post("/v1/search/image", files={"file": (name, data, "image/png")})
    _is_named_4xx(response)
    _still_healthy(client)


def test_decompression_bomb_is_refused_by_size(client: TestClient) -> None:
    response = client.post("/v1/search/image",
                           files={"file": ("b.png", hostile.png_bomb(), "image/png")})
    assert response.status_code == 422 and "limit" in response.json()["error"]["message"]


@pytest.mark.parametrize("name", sorted(hostile.valid_images()))
def test_odd_but_valid_images_are_answered(client: TestClient, name: str) -> None:
    data = hostile.valid_images()[name]
    response = client.post("/v1/search/image", files={"file": (name, data, "image/png")},
                           data={"k": "4"})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 4


@pytest.mark.parametrize("name", sorted(hostile.HOSTILE_TEXTS))
def test_odd_texts_are_answered(client: TestClient, name: str) -> None:
    response = client.post("/v1/search/text", json={"text": hostile.HOSTILE_TEXTS[name], "k": 2})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("body", [
    {"text": ""}, {"text": " \t\n "}, {"text": "x" * 1001}, {"text": None}, {"text": 5},
    {"text": "x", "k": 0}, {"text": "x", "k": -3}, {"text": "x", "k": 10**12},
    {"text": "x", "k": 2.5}, {"text": "x", "k": "ten"}, {"text": "x", "k": None},
    {"text": "x", "min_score": "high"}, {"text": "x", "filter": {"equals": {"a b": 1}}},
    {"text": "x", "filter": {"ranges": {"d": [1]}}}, {}, [], "text",
])
def test_bad_json_fields_are_named_4xx(client: TestClient, body: object) -> None:
    _is_named_4xx(client.post("/v1/search/text", json=body))


@pytest.mark.parametrize("content", [
    b"", b"{", b"{not json}", b"\xff\xfe\x00garbage", b"[" * 100_000, b'{"text": "x"' * 50_000,
    b'{"text": "' + b"\\ud800" + b'"}',
])
def test_malformed_json_bodies_are_named_4xx(client: TestClient, content: bytes) -> None:
    response = client.post("/v1/search/text", content=content,
                           headers={"content-type": "application/json"})
    _is_named_4xx(response)
    _still_healthy(client)


@pytest.mark.parametrize(("content", "content_type"), [
    (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc", "multipart/form-data; boundary=xyz"),
    (b"garbage", "multipart/form-data"),
    (b"garbage", "multipart/form-data; boundary="),
    (b"", "multipart/form-data; boundary=abc"),
    (b"\x00" * 1000, "application/octet-stream"),
])
def test_malformed_multipart_is_named_4xx(client: TestClient, content: bytes, content_type: str) -> None:
    response = client.post("/v1/search/image", content=content, headers={"content-type": content_type})
    _is_named_4xx(response)
    _still_healthy(client)


def test_oversized_upload_is_413(client: TestClient) -> None:
    response = client.post("/v1/search/image", files={"file": ("big.png", b"\0" * 3_000_000, "image/png")})
    assert response.status_code == 413
    _still_healthy(client)


def test_unknown_routes_and_methods_are_json(client: TestClient) -> None:
    _is_named_4xx(client.get("/v1/nowhere"))
    _is_named_4xx(client.get("/v1/search/text"))
    _is_named_4xx(client.get("/v1/images/not-a-number"))


def test_body_over_the_limit_is_refused_before_reading(demo: DemoPaths) -> None:
    settings = Settings(engine_dir=demo.engine, index_dir=demo.index, max_body_bytes=50_000)
    with TestClient(create_app(settings)) as c:
        declared = c.post("/v1/search/text", content=b"x" * 60_000,
                          headers={"content-type": "application/json"})
        streamed = c.post("/v1/search/text", content=(b"x" * 10_000 for _ in range(8)),
                          headers={"content-type": "application/json"})
        assert c.post("/v1/search/text", json=NORMAL).status_code == 200
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/search/image", {"image_base64": "ï¦"}), ("/knn-service", {"image": "ï¦"}),
])
def test_non_ascii_base64_is_named_4xx(client: TestClient, path: str, body: dict) -> None:
    _is_named_4xx(client.post(path, json=body))
