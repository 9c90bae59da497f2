"""clip-retrieval's own ClipClient against this service, over real HTTP."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from encoders.engine import OnnxEngine
from encoders.preprocess import load_image
from tests.service.live_server import live_server
from xmodal.demo import DemoPaths

def _clip_client_module() -> ModuleType:
    """Load clip_retrieval/clip_client.py alone: the package's __init__ imports torch models."""
    package = importlib.util.find_spec("clip_retrieval")
    assert package is not None, "clip-retrieval is installed by `make test`"
    path = Path(package.submodule_search_locations[0]) / "clip_client.py"
    spec = importlib.util.spec_from_file_location("clip_client", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server(demo: DemoPaths) -> Iterator[str]:
    with live_server(demo.engine, demo.index) as url:
        yield url


def test_clip_client_text_and_image_queries(server: str, demo: DemoPaths) -> None:
    module = _clip_client_module()
    client = module.ClipClient(url=f"{server}/knn-service", indice_name="xmodal", num_images=5)
    by_text = client.query(text="a red circle and a blue square")
    assert len(by_text) == 5
    assert {"id", "similarity", "url", "caption"} <= set(by_text[0])
    assert httpx.get(by_text[0]["url"]).status_code == 200
    by_image = client.query(image=str(demo.gallery / "scene-00042.png"))
    assert by_image[0]["image_path"] == "scene-00042.png"
    assert by_image[0]["similarity"] == pytest.approx(1.0, abs=1e-3)


def test_indices_list_and_metadata(server: str) -> None:
    assert httpx.get(f"{server}/indices-list").json() == ["xmodal"]
    metas = httpx.post(f"{server}/metadata", json={"ids": [3, 999999], "indice_name": "xmodal"}).json()
    assert metas[0]["id"] == 3 and metas[0]["metadata"]["image_path"] == "scene-00003.png"
    assert metas[1] == {"id": 999999, "metadata": {}}


@pytest.mark.parametrize(("body", "status"), [
    ({"text": "x", "modality": "image", "num_images": 3, "indice_name": "other"}, 404),
    ({"image_url": "http://127.0.0.1/x.png", "modality": "image", "num_images": 3}, 422),
    ({"text": "x", "modality": "text", "num_images": 3}, 422),
    ({"modality": "image", "num_images": 3}, 422),
    ({"embedding_input": [0.1, 0.2], "modality": "image", "num_images": 3}, 422),
])
def test_unsupported_knn_requests_say_why(server: str, body: dict, status: int) -> None:
    response = httpx.post(f"{server}/knn-service", json=body)
    assert response.status_code == status
    assert response.json()["error"]["message"]


def test_embedding_input_is_searched_directly(server: str, demo: DemoPaths) -> None:
    engine = OnnxEngine(demo.engine)
    vector = engine.encode_images([load_image(demo.gallery / "scene-00077.png")])[0] * 3.0
    hits = httpx.post(f"{server}/knn-service", json={
        "embedding_input": vector.tolist(), "modality": "image", "num_images": 2}).json()
    assert hits[0]["image_path"] == "scene-00077.png"
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-3)  # the input was normalised
