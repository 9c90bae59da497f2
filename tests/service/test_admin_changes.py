"""Admin add/delete/compact through the API: each publishes a version and is served at once."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from index import update
from service.config import Settings
from service.main import create_app
from tests.service.samples import square_png
from xmodal.demo import DemoPaths

KEY = "admin-change-key-0123456789"
HEADERS = {"X-API-Key": KEY}


def test_add_delete_compact_through_the_api(demo: DemoPaths, tmp_path: Path) -> None:
    root = tmp_path / "index"
    shutil.copytree(demo.index, root)
    settings = Settings(engine_dir=demo.engine, index_dir=root, api_keys=[KEY])
    with TestClient(create_app(settings)) as c:
        before = c.get("/v1/index").json()
        files = [("files", (f"{c_}.png", square_png(c_), "image/png")) for c_ in ("red", "blue")]
        added = c.post("/v1/admin/images", files=files, headers=HEADERS,
                       data={"captions": json.dumps(["a red square", "a blue square"])})
        assert added.status_code == 200, added.text
        assert added.json()["added"] == 2 and added.json()["count"] == before["count"] + 2
        info = c.get("/v1/index").json()
        assert info["version"] == added.json()["index_version"] != before["version"]
        hits = c.post("/v1/search/image", files={"file": ("q.png", square_png("red"), "image/png")},
                      data={"k": "1"}).json()["results"]
        new_id = hits[0]["id"]
        assert hits[0]["caption"] == "a red square" and new_id >= before["count"]
        assert c.get(f"/v1/images/{new_id}").content == square_png("red")

        deleted = c.post("/v1/admin/images/delete", json={"ids": [new_id, 0]}, headers=HEADERS)
        assert deleted.status_code == 200 and deleted.json()["count"] == before["count"]
        after = c.post("/v1/search/image", files={"file": ("q.png", square_png("red"), "image/png")},
                       data={"k": "50"}).json()["results"]
        assert new_id not in {r["id"] for r in after} and 0 not in {r["id"] for r in after}
        assert c.get(f"/v1/images/{new_id}").status_code == 404

        compacted = c.post("/v1/admin/index/compact", headers=HEADERS)
        assert compacted.status_code == 200 and c.get("/v1/index").json()["deleted"] == 0
        again = c.post("/v1/search/image", files={"file": ("q.png", square_png("red"), "image/png")},
                       data={"k": "50"}).json()["results"]
        assert new_id not in {r["id"] for r in again}


def test_bad_changes_are_refused_and_change_nothing(demo: DemoPaths, tmp_path: Path) -> None:
    root = tmp_path / "index"
    shutil.copytree(demo.index, root)
    settings = Settings(engine_dir=demo.engine, index_dir=root, api_keys=[KEY])
    with TestClient(create_app(settings)) as c:
        version = c.get("/v1/index").json()["version"]
        unknown = c.post("/v1/admin/images/delete", json={"ids": [10**9]}, headers=HEADERS)
        broken = c.post("/v1/admin/images", headers=HEADERS,
                        files=[("files", ("x.png", b"not an image", "image/png"))])
        tiff = io.BytesIO()
        Image.new("RGB", (8, 8)).save(tiff, format="TIFF")
        odd = c.post("/v1/admin/images", headers=HEADERS,
                     files=[("files", ("x.tif", tiff.getvalue(), "image/tiff"))])
        unauth = c.post("/v1/admin/images/delete", json={"ids": [1]})
        assert c.get("/v1/index").json()["version"] == version
    assert unknown.status_code == 422 and str(10**9) in unknown.json()["error"]["message"]
    assert broken.status_code == 422 and odd.status_code == 422 and "TIFF" in odd.text
    assert unauth.status_code == 401


def test_version_folder_cannot_be_changed(demo: DemoPaths) -> None:
    version = next(p for p in demo.index.iterdir() if p.is_dir() and p.name.startswith("v"))
    settings = Settings(engine_dir=demo.engine, index_dir=version, api_keys=[KEY])
    with TestClient(create_app(settings)) as c:
        response = c.post("/v1/admin/images/delete", json={"ids": [1]}, headers=HEADERS)
    assert response.status_code == 409 and "index root" in response.json()["error"]["message"]


def test_a_write_that_fails_on_storage_is_a_409_and_the_version_stays(
        demo: DemoPaths, tmp_path: Path, monkeypatch) -> None:
    """A read-only volume (the Kubernetes serving pods mount bundles so) or a full disk."""
    root = tmp_path / "index"
    shutil.copytree(demo.index, root)

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(root))

    monkeypatch.setattr(update, "delete_ids", read_only)
    monkeypatch.setattr(update, "compact", read_only)
    settings = Settings(engine_dir=demo.engine, index_dir=root, api_keys=[KEY])
    with TestClient(create_app(settings)) as c:
        before = c.get("/v1/index").json()["version"]
        for path, body in (("/v1/admin/images/delete", {"ids": [1]}),
                           ("/v1/admin/index/compact", None)):
            r = c.post(path, json=body, headers=HEADERS)
            assert r.status_code == 409, r.text
            message = r.json()["error"]["message"]
            assert "Read-only file system" in message and before in message
        assert c.get("/v1/index").json()["version"] == before
        assert c.post("/v1/search/text", json={"text": "a red square"}).status_code == 200
