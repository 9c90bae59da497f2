"""Writers of one index root at once, and a full disk, through the admin API: a CLI delete in
another process while the API adds images; a real tmpfs that fills mid-publish; and the
add -> delete -> compact -> add -> reload cycle on a pooled-token index with rerank on."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from encoders.engine import OnnxEngine
from index import bundle
from index.build import build_index
from service.config import Settings
from service.main import create_app
from tests.disk import leave_free, published
from tests.service.samples import square_png
from xmodal.demo import DemoPaths

KEY = "admin-writers-key-0123456789"
HEADERS = {"X-API-Key": KEY}
REPO = Path(__file__).resolve().parents[2]
ROUNDS = 20
COLOURS = ("red", "green", "blue", "yellow")


def _png(i: int) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (f"{i}.png", square_png(COLOURS[i % len(COLOURS)]), "image/png"))


def _deleter(root: Path, batches: list[list[int]]) -> subprocess.Popen:
    """Another process running `xmodal index delete` once per batch, spread over the adds."""
    script = textwrap.dedent(f"""
        import sys, time
        from xmodal.cli import main
        codes = []
        for batch in {batches!r}:
            codes.append(main(["index", "delete", "--index", {str(root)!r}, *map(str, batch)]))
            time.sleep(0.1)
        sys.exit(max(codes))
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_api_adds_and_a_cli_delete_in_another_process_keep_both(demo: DemoPaths,
                                                                 tmp_path: Path) -> None:
    root = tmp_path / "index"
    shutil.copytree(demo.index, root)
    first = bundle.read_manifest(bundle.resolve(root), verify=False)
    gone = [[2 * i, 2 * i + 1] for i in range(ROUNDS)]
    settings = Settings(engine_dir=demo.engine, index_dir=root, api_keys=[KEY])
    deadline = time.monotonic() + 240
    with TestClient(create_app(settings)) as c:
        deleter = _deleter(root, gone)
        for i in range(ROUNDS):
            while True:  # refused when the CLI published first: reload and add again
                added = c.post("/v1/admin/images", files=[_png(i)], headers=HEADERS)
                if added.status_code == 200:
                    break
                assert added.status_code == 409, added.text
                assert c.post("/v1/admin/index/reload", headers=HEADERS).status_code == 200
                assert time.monotonic() < deadline, "adds kept being refused"
        assert deleter.wait(timeout=max(1, deadline - time.monotonic())) == 0, deleter.stderr.read()
        assert c.post("/v1/admin/index/reload", headers=HEADERS).status_code == 200
        info = c.get("/v1/index").json()
        assert info["count"] == first.count - 2 * ROUNDS + ROUNDS
        for item in (i for batch in gone for i in batch):  # every deleted id stays deleted
            assert c.get(f"/v1/images/{item}").status_code == 404
        for item in range(first.next_id, first.next_id + ROUNDS):  # every added image is found
            assert c.get(f"/v1/images/{item}").status_code == 200
        hits = c.post("/v1/search/text", json={"text": "a red square", "k": 100}).json()["results"]
        assert not {h["id"] for h in hits} & {i for batch in gone for i in batch}


def test_full_disk_through_the_api_is_a_409_and_serving_goes_on(
        demo: DemoPaths, small_disk: Path) -> None:
    root = small_disk / "index"
    shutil.copytree(demo.index, root)
    settings = Settings(engine_dir=demo.engine, index_dir=root, api_keys=[KEY])
    refusals = []
    with TestClient(create_app(settings)) as c:
        served = c.get("/v1/index").json()["version"]
        query = {"text": "a red circle", "k": 5}
        answer = c.post("/v1/search/text", json=query).json()["results"]
        for free in (0, 16 << 10, 48 << 10, 96 << 10, 192 << 10, 384 << 10, 1 << 20, 4 << 20):
            before = published(root)
            leave_free(small_disk, free)
            added = c.post("/v1/admin/images", files=[_png(i) for i in range(8)], headers=HEADERS)
            if added.status_code == 200:
                break
            assert added.status_code == 409, added.text
            refusals.append(added.json()["error"]["message"])
            assert published(root) == before  # nothing published, nothing half-written left
            assert c.get("/v1/index").json()["version"] == served
            assert c.post("/v1/search/text", json=query).json()["results"] == answer
        else:
            pytest.fail("the add never fitted; the disk is too small for the test")
    assert any(f"/{bundle.SEGMENTS}/" in m for m in refusals), refusals  # failed mid-publish


def test_pooled_index_add_delete_compact_add_reload_with_rerank(rerank_setup, tmp_path) -> None:
    root = tmp_path / "pooled"
    build_index(OnnxEngine(rerank_setup.engine), rerank_setup.gallery, root, workers=0,
                token_pool=4)
    settings = Settings(engine_dir=rerank_setup.engine, index_dir=root, api_keys=[KEY])
    query = {"text": "a red circle", "k": 10, "rerank": True, "rerank_k": 16}
    gone: set[int] = set()
    with TestClient(create_app(settings)) as c:
        def search() -> list[int]:
            response = c.post("/v1/search/text", json=query)
            assert response.status_code == 200, response.text
            assert all(r["match_probability"] is not None for r in response.json()["results"])
            return [r["id"] for r in response.json()["results"]]

        steps = [lambda: c.post("/v1/admin/images", files=[_png(0), _png(1)], headers=HEADERS),
                 lambda: c.post("/v1/admin/images/delete", json={"ids": search()[:2]},
                                headers=HEADERS),
                 lambda: c.post("/v1/admin/index/compact", headers=HEADERS),
                 lambda: c.post("/v1/admin/images", files=[_png(2)], headers=HEADERS),
                 lambda: c.post("/v1/admin/index/reload", headers=HEADERS)]
        for step in steps:
            before = search()
            response = step()
            assert response.status_code == 200, response.text
            if "delete" in str(response.url):
                gone |= set(before[:2])
            assert not set(search()) & gone
        assert c.get("/v1/index").json()["tokens"]["pool"] == 4
