"""Admin API: key checks, and an index swap under a stream of queries with no failed request."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from encoders.engine import OnnxEngine
from index.build import build_index
from service.config import Settings
from service.main import create_app
from tests.service.live_server import live_server
from xmodal.demo import DemoPaths

KEY = "test-admin-key-0123456789"


@pytest.mark.parametrize(("keys", "header", "status"), [
    ([], KEY, 403), ([KEY], None, 401), ([KEY], "wrong", 401), ([KEY], KEY[:-1], 401),
])
def test_admin_refuses_without_a_valid_key(demo: DemoPaths, keys, header, status) -> None:
    settings = Settings(engine_dir=demo.engine, index_dir=demo.index, api_keys=keys)
    headers = {"X-API-Key": header} if header else {}
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/admin/index/reload", json={}, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] in ("unauthorized", "forbidden")


def test_failed_reload_keeps_serving_the_old_index(demo: DemoPaths, tmp_path: Path) -> None:
    root = tmp_path / "index"
    shutil.copytree(demo.index, root)
    (root / "not-an-index").mkdir()
    settings = Settings(engine_dir=demo.engine, index_dir=root, api_keys=["a", KEY])
    with TestClient(create_app(settings)) as client:
        before = client.get("/readyz").json()["index_version"]
        response = client.post("/v1/admin/index/reload", json={"index_dir": "not-an-index"},
                               headers={"X-API-Key": KEY})
        assert response.status_code == 409
        assert before in response.json()["error"]["message"]
        assert client.get("/readyz").json()["index_version"] == before
        assert client.post("/v1/search/text", json={"text": "a red circle"}).status_code == 200


def _stream(url: str, stop: threading.Event, seen: list[tuple[int, str]]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            r = client.post(f"{url}/v1/search/text", json={"text": "a green circle", "k": 5})
            seen.append((r.status_code, r.json().get("index_version", r.text)))


def test_index_swap_under_load_fails_no_request(demo: DemoPaths, tmp_path: Path) -> None:
    root = tmp_path / "index"
    shutil.copytree(demo.index, root)
    with live_server(demo.engine, root, api_keys=f'["{KEY}"]') as url:
        old = httpx.get(f"{url}/readyz").json()["index_version"]
        new = build_index(OnnxEngine(demo.engine), demo.gallery, root).version
        stop, seen = threading.Event(), []
        threads = [threading.Thread(target=_stream, args=(url, stop, seen)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        swap = httpx.post(f"{url}/v1/admin/index/reload", json={}, headers={"X-API-Key": KEY},
                          timeout=60)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
    assert swap.status_code == 200 and swap.json()["index_version"] == new
    assert all(status == 200 for status, _ in seen), {s for s, _ in seen}
    versions = [v for _, v in seen]
    assert old in versions and new in versions and versions[-1] == new
