"""Admin writes and reloads against the version actually served; reload targets confined to
the configured index root; old versions pruned, rollback kept possible."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from index import bundle, update
from service.config import Settings
from service.main import create_app
from service.schemas import KEEP_VERSIONS
from training.synthetic import COLOURS
from xmodal.demo import DemoPaths

KEY = "admin-version-key-0123456789"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture()
def root(demo: DemoPaths, tmp_path: Path) -> Path:
    root = tmp_path / "index"
    shutil.copytree(demo.index, root)
    return root


def _client(demo: DemoPaths, root: Path) -> TestClient:
    return TestClient(create_app(Settings(engine_dir=demo.engine, index_dir=root,
                                          api_keys=[KEY])))


def _current(root: Path) -> str:
    return (root / bundle.CURRENT).read_text().strip()


def _versions(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if (p / bundle.MANIFEST).is_file()}


def test_a_write_goes_to_the_root_being_served(demo: DemoPaths, root: Path) -> None:
    """Reload to another root, then delete: the change lands there, and stays served."""
    blue = root / "blue"
    shutil.copytree(demo.index, blue)
    blue_version = update.delete_ids(blue, [7]).version  # a version of its own
    configured = _current(root)
    with _client(demo, root) as c:
        assert c.post("/v1/admin/index/reload", json={"index_dir": str(blue)},
                      headers=HEADERS).json()["index_version"] == blue_version
        r = c.post("/v1/admin/images/delete", json={"ids": [5]}, headers=HEADERS)
        assert r.status_code == 200, r.text
        info = c.get("/v1/index").json()
        hits = c.post("/v1/search/text", json={"text": "a red circle", "k": 50}).json()
    assert r.json()["previous_version"] == blue_version == info["parent"]
    assert r.json()["index_version"] == info["version"] == _current(blue)
    assert _current(root) == configured  # the configured root was not touched
    assert not {5, 7} & {h["id"] for h in hits["results"]}


def test_a_write_while_a_pinned_version_is_served_is_refused(demo: DemoPaths,
                                                            root: Path) -> None:
    """A reload to a version folder (a rollback) pins it: writes would fork or undo it."""
    old = _current(root)
    with _client(demo, root) as c:
        newer = c.post("/v1/admin/images/delete", json={"ids": [3]}, headers=HEADERS).json()
        pinned = c.post("/v1/admin/index/reload", json={"index_dir": old}, headers=HEADERS)
        assert pinned.status_code == 200 and pinned.json()["index_version"] == old
        r = c.post("/v1/admin/images/delete", json={"ids": [5]}, headers=HEADERS)
        compacted = c.post("/v1/admin/index/compact", headers=HEADERS)
        served = c.get("/v1/index").json()["version"]
    assert r.status_code == 409 and compacted.status_code == 409
    assert old in r.json()["error"]["message"] and "reload" in r.json()["error"]["message"]
    assert served == old and _current(root) == newer["index_version"]


def test_a_write_over_a_stale_version_is_refused(demo: DemoPaths, root: Path) -> None:
    """Another writer moved CURRENT on since this server loaded its version."""
    with _client(demo, root) as c:
        served = c.get("/v1/index").json()["version"]
        moved = update.delete_ids(root, [3]).version
        r = c.post("/v1/admin/images/delete", json={"ids": [5]}, headers=HEADERS)
        still = c.get("/v1/index").json()["version"]
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert served in message and moved in message and "reload" in message
    assert still == served and _current(root) == moved


def test_reload_without_a_body_reloads_the_configured_root(demo: DemoPaths,
                                                           root: Path) -> None:
    with _client(demo, root) as c:
        moved = update.delete_ids(root, [3]).version
        r = c.post("/v1/admin/index/reload", headers=HEADERS)
        served = c.get("/v1/index").json()["version"]
    assert r.status_code == 200, r.text
    assert r.json()["index_version"] == moved == served


def test_reload_targets_outside_the_root_are_refused_alike(demo: DemoPaths, root: Path,
                                                          tmp_path: Path) -> None:
    """Refused before anything is read, with one message whether the path exists or not."""
    outside = [str(demo.index), str(tmp_path / "no-such-folder"), "/etc", "../",
               str(root / ".." / "index-other")]
    with _client(demo, root) as c:
        before = c.get("/v1/index").json()["version"]
        replies = [c.post("/v1/admin/index/reload", json={"index_dir": p}, headers=HEADERS)
                   for p in outside]
        assert c.get("/v1/index").json()["version"] == before
    assert [r.status_code for r in replies] == [422] * len(outside)
    messages = {r.json()["error"]["message"].replace(p, "<path>")
                for r, p in zip(replies, outside)}
    assert len(messages) == 1, messages
    assert "inside the configured index root" in messages.pop()


def test_old_versions_are_pruned_and_rollback_stays_possible(demo: DemoPaths,
                                                             root: Path) -> None:
    image = io.BytesIO()
    Image.new("RGB", (64, 64), COLOURS["red"]).save(image, format="PNG")
    with _client(demo, root) as c:
        added = c.post("/v1/admin/images", headers=HEADERS,
                       files=[("files", ("red.png", image.getvalue(), "image/png"))]).json()
        uploads = list((root / "uploads").iterdir())
        new_id = c.post("/v1/search/image", data={"k": "1"}, files={
            "file": ("q.png", image.getvalue(), "image/png")}).json()["results"][0]["id"]
        replies = [c.post("/v1/admin/images/delete", json={"ids": [new_id]}, headers=HEADERS)]
        replies += [c.post("/v1/admin/images/delete", json={"ids": [i]}, headers=HEADERS)
                    for i in range(KEEP_VERSIONS + 1)]
        assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
        last = replies[-1].json()
        kept = _versions(root)
        # rollback to the predecessor, then back to CURRENT
        rollback = c.post("/v1/admin/index/reload", json={"index_dir": last["previous_version"]},
                          headers=HEADERS)
        back = c.post("/v1/admin/index/reload", headers=HEADERS)
    assert len(kept) == KEEP_VERSIONS, kept
    assert {last["index_version"], last["previous_version"]} <= kept
    assert added["index_version"] not in kept and added["index_version"] in {
        v for r in replies for v in r.json()["pruned"]}
    assert rollback.status_code == 200 and back.json()["index_version"] == last["index_version"]
    # the added image's upload folder went with the last version that referenced it
    assert len(uploads) == 1 and not uploads[0].exists()
