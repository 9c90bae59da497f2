"""Every hostile input gets a 4xx JSON error naming the problem (or a correct answer where
the input is valid), never a 5xx; and the service answers a normal query right after."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import EpsImagePlugin, Image

from service.config import Settings
from service.images import UPLOAD_FORMATS
from service.main import create_app
from service.routes import rerank
from tests.service import hostile
from tests.service.conftest import RerankSetup
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
    message = response.json()["error"]["message"]
    assert "BytesIO" not in message and " at 0x" not in message, message  # no Python reprs
    _still_healthy(client)


# over Pillow's own limit of ~179 M pixels (it raises), over its warning at ~89 M, under both
@pytest.mark.parametrize("side", [100_000, 10_000, 8_000])
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_by_size(client: TestClient, side: int) -> None:
    response = client.post("/v1/search/image",
                           files={"file": ("b.png", hostile.png_bomb(side), "image/png")})
    assert response.status_code == 422
    pillow_refuses = side * side > 2 * Image.MAX_IMAGE_PIXELS  # before the size is known
    size = f"{side * side}" if pillow_refuses else f"{side}x{side} = {side * side}"
    expected = f"image bytes is {size} pixels, over the limit of 40000000"
    assert response.json()["error"]["message"] == expected


ACCEPTED = ", ".join(UPLOAD_FORMATS)


@pytest.mark.parametrize("name", sorted(hostile.other_formats()))
def test_other_image_formats_are_refused_by_name(client: TestClient, name: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ghostscript(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload reached Pillow's Ghostscript call")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_ghostscript)
    data = hostile.other_formats()[name]
    response = client.post("/v1/search/image", files={"file": (name, data, "image/png")})
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert f"accepted formats are {ACCEPTED}" in message or f"({ACCEPTED})" in message, message
    fmt = name.rsplit(".", 1)[1].upper()
    # TGA has no signature of its own (its first bytes may pass for CUR's): not named
    assert f"format {fmt} " in message or fmt == "TGA", message


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


@pytest.fixture(scope="module")
def rerank_client(rerank_setup: RerankSetup) -> Iterator[TestClient]:
    settings = Settings(engine_dir=rerank_setup.engine, index_dir=rerank_setup.index)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_rerank_uploads_are_decoded_one_at_a_time_off_the_event_loop(
    rerank_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four 6000x6000 PNGs of 35 KB each used to be decoded together, on the event loop."""
    decoded: list[weakref.ref] = []
    seen: list[tuple[int, bool]] = []  # (decoded images still alive, on the event loop)

    def tracking(data: bytes, settings: Settings) -> Image.Image:
        gc.collect()
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        seen.append((sum(r() is not None for r in decoded), on_loop))
        image = real(data, settings)
        decoded.append(weakref.ref(image))
        return image

    real = rerank.decode_upload
    monkeypatch.setattr(rerank, "decode_upload", tracking)
    files = [("files", (f"{c}.png", hostile._encode(Image.new("RGB", (400, 300), c), "PNG"),
                        "image/png")) for c in ("red", "green", "blue")]
    response = rerank_client.post("/v1/rerank", data={"text": "a red circle"}, files=files)
    assert response.status_code == 200, response.text
    assert sorted(r["filename"] for r in response.json()["results"]) == \
        ["blue.png", "green.png", "red.png"]
    assert seen == [(0, False)] * 3


@pytest.mark.parametrize(("name", "data", "problem"), [
    ("x.ppm", hostile.other_formats()["image.ppm"], "format PPM"),
    ("x.png", b"not an image", "cannot decode"),
    ("bomb.png", hostile.png_bomb(), "over the limit"),
])
def test_bad_rerank_uploads_are_named_4xx(rerank_client: TestClient, name: str, data: bytes,
                                          problem: str) -> None:
    good = hostile._encode(Image.new("RGB", (32, 32), "red"), "PNG")
    files = [("files", ("ok.png", good, "image/png")), ("files", (name, data, "image/png"))]
    response = rerank_client.post("/v1/rerank", data={"text": "a red circle"}, files=files)
    _is_named_4xx(response)
    message = response.json()["error"]["message"]
    assert message.startswith(f"files[1] ({name}): ") and problem in message, message


def test_rerank_uploads_adding_up_past_the_request_pixel_limit_are_refused_undecoded(
        rerank_setup: RerankSetup, monkeypatch) -> None:
    settings = Settings(engine_dir=rerank_setup.engine, index_dir=rerank_setup.index,
                        max_image_pixels=4_000_000, max_request_pixels=10_000_000)
    decoded: list[int] = []
    real = rerank.decode_upload
    monkeypatch.setattr(rerank, "decode_upload", lambda *a: decoded.append(1) or real(*a))
    big = hostile._encode(Image.new("RGB", (2000, 2000), "red"), "PNG")  # 4 M pixels, 20 KB
    files = [("files", (f"{i}.png", big, "image/png")) for i in range(3)]
    with TestClient(create_app(settings)) as c:
        refused = c.post("/v1/rerank", data={"text": "a red circle"}, files=files)
        accepted = c.post("/v1/rerank", data={"text": "a red circle"}, files=files[:2])
    assert refused.status_code == 413
    assert "add up to 12000000 pixels, over the limit of 10000000" in \
        refused.json()["error"]["message"]
    assert accepted.status_code == 200 and len(decoded) == 2  # the refused request decoded none
