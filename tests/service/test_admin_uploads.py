"""Admin add: input checked before anything is written, nothing left behind on failure, paths
in results relative to the collection, and a documented multipart body."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from encoders.engine import OnnxEngine
from index import update
from service.config import Settings
from service.errors import InvalidQuery
from service.main import create_app
from tests.service.samples import square_png
from xmodal.demo import DemoPaths

KEY = "admin-upload-key-0123456789"
HEADERS = {"X-API-Key": KEY}


def _tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
    return buffer.getvalue()


@pytest.fixture()
def root(demo: DemoPaths, tmp_path: Path) -> Path:
    root = tmp_path / "index"
    shutil.copytree(demo.index, root)
    return root


def _leftovers(root: Path) -> list[str]:
    """What a failed add could leave in the root: upload folders and build work folders."""
    uploads = sorted(p.relative_to(root).as_posix() for p in (root / "uploads").rglob("*")) \
        if (root / "uploads").exists() else []
    return uploads + sorted(p.name for p in root.glob(".build-*"))


@pytest.mark.parametrize(("captions", "problem"), [
    ("[bad", "not JSON"),
    ('{"a": 1}', "list"),
    ('"abc"', "list"),
    ('["one"]', "2 files"),
    ('["one", 2]', "captions[1]"),
])
def test_bad_captions_are_a_422_and_write_nothing(demo: DemoPaths, root: Path, captions: str,
                                                  problem: str) -> None:
    settings = Settings(engine_dir=demo.engine, index_dir=root, api_keys=[KEY])
    files = [("files", (f"{c}.png", square_png(c), "image/png")) for c in ("red", "blue")]
    with TestClient(create_app(settings)) as c:
        version = c.get("/v1/index").json()["version"]
        r = c.post("/v1/admin/images", files=files, data={"captions": captions}, headers=HEADERS)
        assert c.get("/v1/index").json()["version"] == version
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == InvalidQuery.code and "captions" in error["message"]
    assert problem in error["message"], error["message"]
    assert _leftovers(root) == []


@pytest.mark.parametrize(("parts", "problem"), [
    ([("x.tif", _tiff())], "TIFF"),
    ([("x.png", b"not an image")], "files[0]"),
    ([("a.png", square_png("red")), ("x.png", b"not an image")], "files[1]"),  # after a good file
    ([("a.png", square_png("red")), ("x.tif", _tiff())], "files[1]"),
])
def test_bad_images_are_a_422_and_write_nothing(demo: DemoPaths, root: Path,
                                                parts: list[tuple[str, bytes]],
                                                problem: str) -> None:
    settings = Settings(engine_dir=demo.engine, index_dir=root, api_keys=[KEY])
    files = [("files", (name, data, "application/octet-stream")) for name, data in parts]
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/admin/images", files=files, headers=HEADERS)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == InvalidQuery.code
    assert problem in r.json()["error"]["message"]
    assert _leftovers(root) == []


def test_a_failure_after_the_upload_is_written_removes_it(demo: DemoPaths, root: Path,
                                                          monkeypatch) -> None:
    """The index step fails (here: an encode error) after the files were saved."""
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the engine failed")

    monkeypatch.setattr(update, "encode_records", broken)
    settings = Settings(engine_dir=demo.engine, index_dir=root, api_keys=[KEY])
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        r = c.post("/v1/admin/images", headers=HEADERS,
                   files=[("files", ("a.png", square_png("red"), "image/png"))])
    assert r.status_code == 500
    assert _leftovers(root) == []


def test_added_items_have_paths_relative_to_the_collection(demo: DemoPaths, root: Path,
                                                           tmp_path: Path) -> None:
    settings = Settings(engine_dir=demo.engine, index_dir=root, api_keys=[KEY])
    with TestClient(create_app(settings)) as c:
        added = c.post("/v1/admin/images", headers=HEADERS,
                       files=[("files", ("red.png", square_png("red"), "image/png"))],
                       data={"captions": json.dumps(["a red square"])})
        assert added.status_code == 200, added.text
        hit = c.post("/v1/search/image", files={"file": ("q.png", square_png("red"), "image/png")},
                     data={"k": "1"}).json()["results"][0]
        knn = c.post("/knn-service", json={"image": base64.b64encode(square_png("red")).decode(),
                                                 "num_images": 1}).json()[0]
        assert c.get(f"/v1/images/{hit['id']}").content == square_png("red")
    assert hit["caption"] == "a red square"
    for path in (hit["path"], knn["image_path"]):
        assert not Path(path).is_absolute() and str(tmp_path) not in path, path
        assert path.startswith("uploads/") and path.endswith("/00000.png"), path
    # a re-index into a new root carries the uploads along: still readable, still relative
    new_root = tmp_path / "reindexed"
    manifest = update.reindex(OnnxEngine(demo.engine), root, new_root)
    settings = Settings(engine_dir=demo.engine, index_dir=new_root, api_keys=[KEY])
    with TestClient(create_app(settings)) as c:
        assert c.get(f"/v1/images/{hit['id']}").content == square_png("red")
        again = c.post("/v1/search/image", files={"file": ("q.png", square_png("red"), "image/png")},
                       data={"k": "1"}).json()["results"][0]
    assert manifest.skipped == 0 and again["path"] == hit["path"]


def test_add_documents_its_multipart_body(demo: DemoPaths) -> None:
    settings = Settings(engine_dir=demo.engine, index_dir=demo.index, api_keys=[KEY])
    operation = create_app(settings).openapi()["paths"]["/v1/admin/images"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    schema = body["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["files"]
    files = schema["properties"]["files"]
    assert files["type"] == "array" and files["minItems"] == 1
    assert files["items"] == {"type": "string", "format": "binary"}
    assert schema["properties"]["captions"]["type"] == "string"
    assert "JSON" in schema["properties"]["captions"]["description"]
