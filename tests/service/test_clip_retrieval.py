"""clip-retrieval's own ClipClient, and its front end's requests, against this service over
real HTTP."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from encoders.engine import OnnxEngine
from encoders.preprocess import load_image
from index import bundle
from index.build import build_index
from service.config import Settings
from service.dedup import DEDUP_THRESHOLD, near_duplicates
from service.main import create_app
from service.routes import clip_retrieval
from tests.segments import data_folder
from tests.service.live_server import live_server
from xmodal.demo import DemoPaths

GALLERY = 200  # images in the demo index

# what clip-retrieval's front end posts for a text search with its defaults (clip-front.js)
FRONT_END = {"text": "a red circle", "image": None, "image_url": None, "embedding_input": None,
             "modality": "image", "num_images": 40, "indice_name": "xmodal",
             "num_result_ids": 3000, "use_mclip": False, "deduplicate": True,
             "use_safety_model": True, "use_violence_detector": True, "aesthetic_score": "9",
             "aesthetic_weight": "0.5"}
METADATA = {"url", "image_path", "caption"}


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


def _knn(server: str, **fields: object) -> httpx.Response:
    # as the front end and ClipClient post it: JSON text without a JSON content type
    return httpx.post(f"{server}/knn-service", content=json.dumps({**FRONT_END, **fields}))


def _image_vectors(demo: DemoPaths, ids: list[int]) -> np.ndarray:
    folder = data_folder(demo.index)
    positions = np.searchsorted(np.load(folder / bundle.IDS_FILE), ids)
    return np.load(folder / bundle.EMBEDDINGS_FILE)[positions]


def test_clip_client_text_and_image_queries(server: str, demo: DemoPaths) -> None:
    module = _clip_client_module()
    client = module.ClipClient(url=f"{server}/knn-service", indice_name="xmodal", num_images=5,
                               deduplicate=False)
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
    # ids past 64 bits, and digits that are not ASCII (str.isdigit accepts a superscript two)
    ({"image_url": "/v1/images/99999999999999999999", "modality": "image", "num_images": 3}, 422),
    ({"image_url": "/v1/images/\u00b2", "modality": "image", "num_images": 3}, 422),
    ({"modality": "image", "num_images": 3}, 422),
    ({"embedding_input": [0.1, 0.2], "modality": "image", "num_images": 3}, 422),
    ({"text": "x", "modality": "image", "num_images": 0}, 422),
    ({"text": "x", "modality": "image", "num_images": 3, "num_result_ids": "many"}, 422),
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


def test_a_result_url_sent_back_finds_that_image_first(server: str) -> None:
    """The front end's "similar images" button sends a result's url as image_url."""
    first = httpx.post(f"{server}/knn-service", json={"text": "a red circle", "num_images": 5,
                                                      "deduplicate": False}).json()
    target = first[3]
    similar = httpx.post(f"{server}/knn-service", json={"image_url": target["url"],
                                                        "num_images": 3}).json()
    assert similar[0]["id"] == target["id"]
    assert similar[0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    foreign = httpx.post(f"{server}/knn-service", json={"image_url": "http://example.com/x.png"})
    assert foreign.status_code == 422 and "fetches no others" in foreign.json()["error"]["message"]
    gone = httpx.post(f"{server}/knn-service",
                      json={"image_url": target["url"].rsplit("/", 1)[0] + "/999999"})
    assert gone.status_code == 404


def test_an_all_zero_embedding_input_is_refused(server: str, demo: DemoPaths) -> None:
    dim = OnnxEngine(demo.engine).dim
    response = httpx.post(f"{server}/knn-service", json={"embedding_input": [0.0] * dim})
    assert response.status_code == 422
    assert "all zeros" in response.json()["error"]["message"]


def test_front_end_search_gets_result_ids_beyond_its_metadata(server: str) -> None:
    """num_result_ids results (the whole 200-image gallery here), metadata on the first
    num_images; the front end fetches the rest's metadata through /metadata as it scrolls."""
    response = _knn(server, deduplicate=False)
    assert response.status_code == 200
    results = response.json()
    assert len(results) == GALLERY
    assert all(METADATA <= set(r) for r in results[:40])
    assert all(set(r) == {"id", "similarity"} for r in results[40:])
    similarities = [r["similarity"] for r in results]
    assert similarities == sorted(similarities, reverse=True)
    next_page = [r["id"] for r in results[40:80]]
    metas = httpx.post(f"{server}/metadata", content=json.dumps(
        {"ids": next_page, "indice_name": "xmodal"})).json()
    assert [m["id"] for m in metas] == next_page
    assert all(METADATA <= set(m["metadata"]) for m in metas)


def test_front_end_download_gets_metadata_on_every_result(server: str) -> None:
    response = _knn(server, num_images=10000, num_result_ids=10000, deduplicate=False)
    assert response.status_code == 200
    assert len(response.json()) == GALLERY
    assert all(METADATA <= set(r) for r in response.json())


def test_counts_are_clamped_not_refused() -> None:
    cap, counts = clip_retrieval.MAX_RESULTS, clip_retrieval.result_counts
    assert counts(40, 3000) == (min(3000, cap), 40)
    assert counts(10000, 10000) == (cap, cap)
    assert counts(40, None) == (40, 40)  # num_result_ids defaults to num_images
    assert counts(40, 10) == (10, 10)  # as in clip-retrieval: the shorter count wins


def test_results_are_capped_end_to_end(demo: DemoPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clip_retrieval, "MAX_RESULTS", 30)
    settings = Settings(engine_dir=demo.engine, index_dir=demo.index)
    with TestClient(create_app(settings)) as client:
        results = client.post("/knn-service", json={**FRONT_END, "deduplicate": False}).json()
    assert len(results) == 30
    assert all(METADATA <= set(r) for r in results)  # 40 asked, 30 given


def test_text_modality_searches_captions(server: str, demo: DemoPaths) -> None:
    module = _clip_client_module()
    client = module.ClipClient(url=f"{server}/knn-service", indice_name="xmodal", num_images=3,
                               deduplicate=False, modality=module.Modality.TEXT)
    caption = "a green circle and a red square"  # scene-00002's caption
    hits = client.query(text=caption)
    assert len(hits) == 3 and METADATA <= set(hits[0])
    assert hits[0]["caption"] == caption
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-3)  # the very caption's vector


def test_text_modality_with_an_image_matches_image_to_text_search(server: str,
                                                                  demo: DemoPaths) -> None:
    image = demo.gallery / "scene-00042.png"
    with image.open("rb") as f:
        reference = httpx.post(f"{server}/v1/search/image", files={"file": f},
                               data={"k": "5", "target": "text"}).json()["results"]
    module = _clip_client_module()
    client = module.ClipClient(url=f"{server}/knn-service", indice_name="xmodal", num_images=5,
                               deduplicate=False, modality=module.Modality.TEXT)
    hits = client.query(image=str(image))
    assert [h["id"] for h in hits] == [r["id"] for r in reference]
    assert [h["similarity"] for h in hits] == pytest.approx([r["score"] for r in reference])


def test_text_modality_without_captions_says_so(demo: DemoPaths, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("scene-00001.png", "scene-00002.png", "scene-00003.png"):
        shutil.copy(demo.gallery / name, images / name)  # no captions.jsonl: no caption index
    build_index(OnnxEngine(demo.engine), images, tmp_path / "index")
    settings = Settings(engine_dir=demo.engine, index_dir=tmp_path / "index")
    with TestClient(create_app(settings)) as client:
        response = client.post("/knn-service", json={**FRONT_END, "modality": "text"})
        assert client.post("/knn-service", json=FRONT_END).status_code == 200
    assert response.status_code == 422
    assert "this index has none" in response.json()["error"]["message"]


@pytest.mark.parametrize("modality", ["audio", "video", ""])
def test_unknown_modality_names_the_supported_ones(server: str, modality: str) -> None:
    response = _knn(server, modality=modality)
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "'image' or 'text'" in message and "caption" not in message


def test_near_duplicates_keeps_the_best_of_each_linked_group() -> None:
    def unit(degrees: float) -> list[float]:
        return [np.cos(np.radians(degrees)), np.sin(np.radians(degrees))]

    # cos 15 deg = 0.966 >= 0.94 > cos 30 deg = 0.866: 0~1~2 is one chain though 0 and 2 are
    # apart; 3 and 4 are exact duplicates; 5 stands alone
    vectors = np.array([unit(0), unit(15), unit(30), unit(90), unit(90), unit(180)], np.float32)
    assert near_duplicates(vectors).tolist() == [False, True, True, False, True, False]
    assert near_duplicates(vectors[::-1]).tolist() == [False, False, True, False, True, True]
    assert near_duplicates(vectors, threshold=0.999).tolist() == [False] * 4 + [True, False]
    assert not near_duplicates(vectors[:1]).any()


def test_deduplicate_drops_near_duplicate_images(server: str, demo: DemoPaths) -> None:
    everything = _knn(server, deduplicate=False).json()
    deduplicated = _knn(server, deduplicate=True).json()
    ids = [r["id"] for r in everything]
    kept = [r["id"] for r in deduplicated]

    def closest_pair(chosen: list[int]) -> float:
        vectors = _image_vectors(demo, chosen)
        sims = vectors @ vectors.T
        np.fill_diagonal(sims, -1.0)
        return float(sims.max())

    assert closest_pair(ids) >= DEDUP_THRESHOLD  # the demo gallery has near duplicates
    assert closest_pair(kept) < DEDUP_THRESHOLD
    assert kept[0] == ids[0]
    assert kept == [i for i in ids if i in set(kept)]  # a subsequence, in rank order
    dropped = [i for i in ids if i not in set(kept)]
    sims = _image_vectors(demo, dropped) @ _image_vectors(demo, ids).T
    assert (np.sort(sims, axis=1)[:, -2] >= DEDUP_THRESHOLD).all()  # each has a near duplicate
    # metadata still goes on the first num_images of what is returned
    assert all(METADATA <= set(r) for r in deduplicated[:40])
    assert all(set(r) == {"id", "similarity"} for r in deduplicated[40:])


def test_the_dedup_threshold_is_a_setting(demo: DemoPaths, server: str) -> None:
    default = _knn(server, deduplicate=True).json()
    with live_server(demo.engine, demo.index, dedup_threshold="0.9999") as strict:
        looser = _knn(strict, deduplicate=True).json()
    everything = _knn(server, deduplicate=False).json()
    assert len(default) < len(looser) <= len(everything)
