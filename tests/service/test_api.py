"""The search API beyond text search: image queries, images, metrics, the page, the cache,
and HTTP details (error codes and messages, HEAD, caching headers, the body cap)."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.config import Settings
from service.main import create_app
from tests.service.redis_server import RedisServer
from xmodal.demo import DemoPaths


@pytest.fixture(scope="module")
def client(demo: DemoPaths) -> Iterator[TestClient]:
    settings = Settings(engine_dir=demo.engine, index_dir=demo.index, max_image_bytes=200_000)
    with TestClient(create_app(settings)) as c:
        yield c


def _gallery_png(demo: DemoPaths, name: str = "scene-00010.png") -> bytes:
    return (demo.gallery / name).read_bytes()


def test_image_upload_finds_the_same_image_first(client: TestClient, demo: DemoPaths) -> None:
    files = {"file": ("q.png", _gallery_png(demo), "image/png")}
    response = client.post("/v1/search/image", files=files, data={"k": "3"})
    assert response.status_code == 200, response.text
    top = response.json()["results"][0]
    assert top["path"] == "scene-00010.png" and top["score"] == pytest.approx(1.0, abs=1e-3)


def test_base64_json_image_query_matches_multipart(client: TestClient, demo: DemoPaths) -> None:
    data = base64.b64encode(_gallery_png(demo)).decode()
    body = client.post("/v1/search/image", json={"image_base64": data, "k": 3}).json()
    assert body["results"][0]["path"] == "scene-00010.png"


@pytest.mark.parametrize("encode", [
    lambda data: "data:image/png;base64," + base64.b64encode(data).decode(),
    lambda data: base64.urlsafe_b64encode(data).decode(),
])
def test_base64_as_a_data_url_or_url_safe_is_read(client: TestClient, demo: DemoPaths,
                                                   encode) -> None:
    data = _gallery_png(demo)
    assert base64.urlsafe_b64encode(data) != base64.b64encode(data)  # the alphabets differ here
    body = client.post("/v1/search/image", json={"image_base64": encode(data), "k": 1}).json()
    assert body["results"][0]["path"] == "scene-00010.png"


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"files": {"file": ("x.png", b"", "image/png")}}, 422, "invalid_request"),
    ({"files": {"file": ("x.png", b"not an image at all", "image/png")}}, 422, "invalid_request"),
    ({"files": {"file": ("x.png", b"\0" * 300_000, "image/png")}}, 413, "payload_too_large"),
    ({"data": {"k": "3"}, "files": {"other": ("x", b"1", "text/plain")}}, 422, "invalid_request"),
    ({"json": {"image_base64": "@@@not base64@@@"}}, 422, "invalid_request"),
    ({"json": {"image_base64": "aGVsbG8=", "k": 0}}, 422, "invalid_request"),
    ({"json": {"image_base64": "aGVsbG8=", "target": "text"}}, 422, "invalid_request"),
])
def test_bad_image_queries_get_json_errors(client: TestClient, kwargs: dict, status: int,
                                           code: str) -> None:
    response = client.post("/v1/search/image", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_min_score_cuts_the_tail(client: TestClient) -> None:
    loose = client.post("/v1/search/text", json={"text": "a red circle", "k": 20}).json()
    cut = sorted(r["score"] for r in loose["results"])[10]
    strict = client.post("/v1/search/text",
                         json={"text": "a red circle", "k": 20, "min_score": cut}).json()
    assert 0 < len(strict["results"]) < len(loose["results"])
    assert all(r["score"] >= cut for r in strict["results"])


def test_images_are_served_by_id_and_nothing_else(client: TestClient, demo: DemoPaths) -> None:
    hit = client.post("/v1/search/text", json={"text": "a blue square", "k": 1}).json()["results"][0]
    image = client.get(hit["thumbnail_url"])
    assert image.status_code == 200 and image.content == (demo.gallery / hit["path"]).read_bytes()
    assert client.get("/v1/images/999999").json()["error"]["code"] == "not_found"
    traversal = client.get("/v1/images/..%2F..%2Fetc%2Fpasswd")
    assert traversal.status_code in (404, 422) and "root:" not in traversal.text


def _hit_id(client: TestClient) -> int:
    hit = client.post("/v1/search/text", json={"text": "a blue square", "k": 1}).json()["results"][0]
    return hit["id"]


@pytest.mark.parametrize("alias", ["{}.0", "+{}", "%20{}", "0{}", "{}%0A", "{}e0"])
def test_an_image_has_one_url(client: TestClient, alias: str) -> None:
    image_id = _hit_id(client)
    assert client.get(f"/v1/images/{image_id}").status_code == 200
    response = client.get("/v1/images/" + alias.format(image_id))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_ids_past_the_largest_are_not_found(client: TestClient) -> None:
    assert client.get(f"/v1/images/{2**63}").status_code == 404  # 19 digits, over MAX_ID
    assert client.get(f"/v1/images/{10**19}").status_code == 422  # 20 digits


def test_images_are_not_sniffed_and_revalidate_soon(client: TestClient) -> None:
    url = f"/v1/images/{_hit_id(client)}"
    image = client.get(url)
    assert image.headers["x-content-type-options"] == "nosniff"
    assert image.headers["cache-control"] == "public, max-age=60"
    etag = image.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    unchanged = client.get(url, headers={"If-None-Match": f'W/"other", {etag}'})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_results_link_thumbnails_scaled_down_never_up(client: TestClient) -> None:
    hit = client.post("/v1/search/text", json={"text": "a red circle", "k": 1}).json()["results"][0]
    original = client.get(f"/v1/images/{hit['id']}")
    width, height = Image.open(io.BytesIO(original.content)).size
    linked = client.get(hit["thumbnail_url"])  # 256 px: no smaller than the gallery's images
    assert linked.status_code == 200 and linked.content == original.content
    small = client.get(f"/v1/images/{hit['id']}?size=16")
    assert small.headers["content-type"] == "image/webp"
    thumb = Image.open(io.BytesIO(small.content))
    assert thumb.format == "WEBP" and max(thumb.size) == 16
    assert thumb.size[0] / thumb.size[1] == pytest.approx(width / height, rel=0.1)
    assert small.headers["etag"] not in (original.headers["etag"], linked.headers["etag"])
    for bad in ("8", "2000", "big"):
        assert client.get(f"/v1/images/{hit['id']}?size={bad}").status_code == 422


def test_head_is_answered_like_get_without_a_body(client: TestClient) -> None:
    for url in ("/healthz", "/readyz", "/metrics", f"/v1/images/{_hit_id(client)}", "/"):
        get, head = client.get(url), client.head(url)
        assert head.status_code == get.status_code == 200, url
        assert head.content == b"", url
        assert head.headers["content-type"] == get.headers["content-type"], url


def test_wrong_method_is_405_with_allow(client: TestClient) -> None:
    response = client.delete(f"/v1/images/{_hit_id(client)}")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_favicon_is_not_an_error(client: TestClient) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 204 and response.content == b""


@pytest.mark.parametrize(("path", "message"), [
    ("/v1/search/text",
     "body is not valid JSON: Expecting property name enclosed in double quotes at position 13"),
    ("/v1/search/image", "body is not valid JSON: key must be a string at line 1 column 14"),
])
def test_malformed_json_says_what_and_where(client: TestClient, path: str, message: str) -> None:
    response = client.post(path, content=b'{"text": "x",,}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == {"code": "invalid_request", "message": message}


def _multipart_stream(boundary: str, size: int) -> Iterator[bytes]:
    """A multipart image upload sent in chunks, with no Content-Length."""
    yield (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"'
           f"\r\nContent-Type: image/png\r\n\r\n").encode()
    for _ in range(size // 10_000):
        yield b"\0" * 10_000
    yield f"\r\n--{boundary}--\r\n".encode()


def test_bodies_over_the_cap_are_clean_counted_413s(
    demo: DemoPaths, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(engine_dir=demo.engine, index_dir=demo.index, max_body_bytes=50_000)
    caplog.set_level(logging.WARNING)
    boundary = "xmodal-test-boundary"
    with TestClient(create_app(settings)) as c:
        declared = c.post("/v1/search/image", files={"file": ("big.png", b"\0" * 60_000)})
        cut_off = c.post("/v1/search/image", content=_multipart_stream(boundary, 80_000),
                         headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert c.post("/v1/search/text", json={"text": "a red circle"}).status_code == 200
        metrics = c.get("/metrics").text
    for response in (declared, cut_off):
        assert response.status_code == 413
        assert response.json()["error"] == {
            "code": "payload_too_large", "message": "request body is over the limit of 50000 bytes"}
    assert 'xmodal_errors_total{code="payload_too_large"} 2.0' in metrics
    assert "internal_error" not in metrics
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_metrics_report_stages_cache_and_errors(client: TestClient) -> None:
    for _ in range(2):
        client.post("/v1/search/text", json={"text": "a purple diamond", "k": 4})
    client.post("/v1/search/text", json={"text": ""})
    text = client.get("/metrics").text
    assert 'xmodal_stage_seconds_count{stage="encode"}' in text
    assert 'xmodal_stage_seconds_count{stage="search"}' in text
    assert 'xmodal_cache_total{cache="response",outcome="hit"}' in text
    assert 'xmodal_errors_total{code="invalid_request"}' in text
    assert "xmodal_batch_size_bucket" in text


def test_search_page_is_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="query"' in page.text and "/v1/search/image" in page.text


def test_redis_backed_cache_serves_repeats_and_outlives_redis(demo: DemoPaths) -> None:
    server = RedisServer().start()
    settings = Settings(engine_dir=demo.engine, index_dir=demo.index, redis_url=server.url)
    try:
        with TestClient(create_app(settings)) as c:
            query = {"text": "a yellow triangle", "k": 5}
            first = c.post("/v1/search/text", json=query).json()
            assert c.post("/v1/search/text", json=query).json() == first
            server.kill()
            assert c.post("/v1/search/text", json=query).json() == first  # recomputed
            metrics = c.get("/metrics").text
        assert 'xmodal_cache_total{cache="response",outcome="hit"} 1.0' in metrics
        assert "xmodal_cache_errors_total 1.0" in metrics
    finally:
        server.kill()
