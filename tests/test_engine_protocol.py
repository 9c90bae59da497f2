"""The `Engine` protocol is the seam between the engine and everything that calls it: a numpy
engine (tests.numpy_engine) builds an index, and the service searches and reranks with it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from encoders.engine import Engine, OnnxEngine
from index.build import build_index
from service.config import Settings
from service.main import create_app
from tests.numpy_engine import COLOURS, NumpyEngine

SHADES = (255, 200, 150)  # of each colour, so each has several images


def test_both_engines_have_every_member_the_protocol_declares(tiny_engine: OnnxEngine) -> None:
    members = {n for n in vars(Engine) if not n.startswith("_")} | set(Engine.__annotations__)
    assert {"encode_pixels", "pixels", "has_reranker", "dim", "path"} <= members
    for engine in (NumpyEngine(), tiny_engine):
        assert [m for m in sorted(members) if not hasattr(engine, m)] == [], type(engine)


def _png(rgb: tuple[int, ...]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), rgb).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def colour_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery of plain colours with captions, indexed by the numpy engine."""
    root = tmp_path_factory.mktemp("colours")
    gallery = root / "gallery"
    gallery.mkdir()
    rows = []
    for name, signs in COLOURS.items():
        for shade in SHADES:
            file = f"{name}-{shade}.png"
            (gallery / file).write_bytes(_png(tuple(shade if s > 0 else 0 for s in signs)))
            rows.append(json.dumps({"file": file, "caption": f"a {name} square"}))
    (gallery / "captions.jsonl").write_text("\n".join(rows) + "\n")
    build_index(NumpyEngine(), gallery, root / "index")
    return root / "index"


@pytest.fixture(scope="module")
def client(colour_index: Path) -> Iterator[TestClient]:
    settings = Settings(engine_dir=colour_index.parent / "no-engine-bundle", index_dir=colour_index)
    with TestClient(create_app(settings, engine=NumpyEngine())) as c:
        yield c


def test_the_service_searches_with_a_numpy_engine(client: TestClient) -> None:
    ready = client.get("/readyz").json()
    assert ready["engine_id"] == "numpy-colours" and ready["count"] == len(COLOURS) * len(SHADES)
    results = client.post("/v1/search/text", json={"text": "red", "k": 3}).json()["results"]
    assert sorted(r["path"] for r in results) == [f"red-{s}.png" for s in sorted(SHADES)]
    blue = {"file": ("q.png", _png((0, 0, 230)), "image/png")}
    images = client.post("/v1/search/image", files=blue, data={"k": "3"}).json()["results"]
    assert all(r["path"].startswith("blue-") for r in images)
    captions = client.post("/v1/search/image", files=blue,
                           data={"k": "1", "target": "text"}).json()["results"]
    assert captions[0]["caption"] == "a blue square"


def test_the_service_reranks_with_a_numpy_engine(client: TestClient) -> None:
    query = {"text": "green", "k": 6, "rerank": True, "rerank_k": 6}
    results = client.post("/v1/search/text", json=query).json()["results"]
    probs = [r["match_probability"] for r in results]
    assert probs == sorted(probs, reverse=True)
    assert all(r["path"].startswith("green-") for r in results[:3]) and probs[0] > 0.9
    upload = [("files", ("g.png", _png((0, 240, 0)), "image/png")),
              ("files", ("m.png", _png((240, 0, 240)), "image/png"))]
    scored = client.post("/v1/rerank", data={"text": "green"}, files=upload).json()["results"]
    assert [s["filename"] for s in scored] == ["g.png", "m.png"]
