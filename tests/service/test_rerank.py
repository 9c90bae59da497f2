"""Reranking through the API: the head re-ordered by match probability, the rerank endpoint,
image -> text search, and clear refusals where the engine or index cannot rerank."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from encoders.captions import read_captions
from encoders.engine import OnnxEngine
from encoders.preprocess import load_image
from index.metadata import Item
from index.search import Hit, Searcher
from service.config import Settings
from service.main import create_app
from service.results import search_body
from service.schemas import SearchResponse
from tests.service.conftest import RerankSetup
from xmodal.demo import DemoPaths


@pytest.fixture(scope="module")
def client(rerank_setup: RerankSetup) -> Iterator[TestClient]:
    settings = Settings(engine_dir=rerank_setup.engine, index_dir=rerank_setup.index)
    with TestClient(create_app(settings)) as c:
        yield c


def test_rerank_orders_the_head_by_match_probability(client: TestClient) -> None:
    query = {"text": "a red circle and a blue square", "k": 12, "rerank": True, "rerank_k": 8}
    plain = client.post("/v1/search/text", json={**query, "rerank": False}).json()["results"]
    results = client.post("/v1/search/text", json=query).json()["results"]
    head, tail = results[:8], results[8:]
    probs = [r["match_probability"] for r in head]
    assert all(p is not None and 0.0 <= p <= 1.0 for p in probs)
    assert probs == sorted(probs, reverse=True)
    assert {r["id"] for r in head} == {r["id"] for r in plain[:8]}  # the same candidates
    assert [r["id"] for r in tail] == [r["id"] for r in plain[8:]]
    assert all(r["match_probability"] is None for r in tail)
    assert [r["id"] for r in head] != [r["id"] for r in plain[:8]]  # the order did change


def test_search_bodies_are_the_documented_schema_byte_for_byte(client: TestClient) -> None:
    """Bodies are written without building the response model; they must be what it writes."""
    for query in ({"text": "a red circle", "k": 5},
                  {"text": "a red circle", "k": 5, "rerank": True, "rerank_k": 3}):
        body = client.post("/v1/search/text", json=query).content
        assert SearchResponse.model_validate_json(body).model_dump_json().encode() == body
    odd = Item(7, "dir/ü ñ.png", None, {"tag": "ünï \"q\"", "n": 1.5, "list": [1, None, True]})
    body = search_body("e", "v", [(Hit(7, 0.25, odd), 0.875), (Hit(7, -0.5, odd), None)])
    model = SearchResponse.model_validate_json(body)
    assert model.model_dump_json().encode() == body
    assert model.results[0].fields == odd.fields and model.results[1].match_probability is None


def test_min_match_probability_cuts_reranked_results(client: TestClient) -> None:
    query = {"text": "a green triangle", "k": 10, "rerank": True, "rerank_k": 10}
    probs = [r["match_probability"] for r in client.post("/v1/search/text", json=query).json()["results"]]
    cut = sorted(probs)[5]
    kept = client.post("/v1/search/text", json={**query, "min_match_probability": cut}).json()
    assert len(kept["results"]) == len([p for p in probs if p >= cut]) < 10


def test_rerank_endpoint_scores_stored_images(client: TestClient, rerank_setup: RerankSetup) -> None:
    ids = [3, 17, 42, 99]
    body = client.post("/v1/rerank", json={"text": "a purple diamond", "ids": ids}).json()
    engine = OnnxEngine(rerank_setup.engine)
    searcher = Searcher(rerank_setup.index, engine.engine_id)
    expected = engine.score(searcher.tokens(ids), ["a purple diamond"] * len(ids))
    got = {r["id"]: r["match_probability"] for r in body["results"]}
    np.testing.assert_allclose([got[i] for i in ids], expected, atol=1e-5)
    assert [r["match_probability"] for r in body["results"]] == sorted(got.values(), reverse=True)


def test_rerank_refuses_an_id_named_twice(client: TestClient) -> None:
    response = client.post("/v1/rerank", json={"text": "a purple diamond", "ids": [3, 17, 3]})
    assert response.status_code == 422
    assert "more than once: [3]" in response.json()["error"]["message"]


def test_rerank_endpoint_scores_uploads_like_stored_tokens(
    client: TestClient, rerank_setup: RerankSetup
) -> None:
    files = [("files", (n, (rerank_setup.gallery / n).read_bytes(), "image/png"))
             for n in ("scene-00003.png", "scene-00017.png")]
    uploaded = client.post("/v1/rerank", data={"text": "a purple diamond"}, files=files).json()
    stored = client.post("/v1/rerank", json={"text": "a purple diamond", "ids": [3, 17]}).json()
    by_name = {r["filename"]: r["match_probability"] for r in uploaded["results"]}
    by_id = {r["id"]: r["match_probability"] for r in stored["results"]}
    # stored tokens are fp16: equal up to that rounding
    assert by_name["scene-00003.png"] == pytest.approx(by_id[3], abs=2e-3)
    assert by_name["scene-00017.png"] == pytest.approx(by_id[17], abs=2e-3)


@pytest.mark.parametrize("body", [
    {"text": "x", "ids": [123456]}, {"text": "x", "ids": []}, {"text": " ", "ids": [1]},
    {"ids": [1]}, {"text": "x", "ids": list(range(101))},
])
def test_bad_rerank_requests_are_named(client: TestClient, body: dict) -> None:
    response = client.post("/v1/rerank", json=body)
    assert response.status_code == 422 and response.json()["error"]["message"]


def test_engine_without_reranker_refuses_rerank_clearly(demo: DemoPaths) -> None:
    with TestClient(create_app(Settings(engine_dir=demo.engine, index_dir=demo.index))) as c:
        search = c.post("/v1/search/text", json={"text": "a red circle", "rerank": True})
        direct = c.post("/v1/rerank", json={"text": "a red circle", "ids": [1, 2]})
    for response in (search, direct):
        assert response.status_code == 422 and "no reranker" in response.json()["error"]["message"]


def test_image_to_text_ranks_captions_like_brute_force(demo: DemoPaths) -> None:
    captions = read_captions(demo.gallery)
    files = sorted(captions)
    engine = OnnxEngine(demo.engine)
    query = (demo.gallery / "scene-00010.png").read_bytes()
    with TestClient(create_app(Settings(engine_dir=demo.engine, index_dir=demo.index))) as c:
        body = c.post("/v1/search/image", files={"file": ("q.png", query, "image/png")},
                      data={"k": "5", "target": "text"}).json()
    results = body["results"]
    scores = engine.encode_texts([captions[f] for f in files]) @ \
        engine.encode_images([load_image(query)])[0]
    expected = [captions[files[i]] for i in np.argsort(-scores, kind="stable")[:5]]
    assert [r["caption"] for r in results] == expected
    np.testing.assert_allclose([r["score"] for r in results], np.sort(scores)[::-1][:5], atol=1e-4)


def test_image_to_text_reranks_captions_against_the_query_image(
        client: TestClient, rerank_setup: RerankSetup) -> None:
    query = (rerank_setup.gallery / "scene-00010.png").read_bytes()
    form = {"k": "8", "target": "text", "rerank_k": "5"}
    files = {"file": ("q.png", query, "image/png")}
    plain = client.post("/v1/search/image", files=files, data=form).json()["results"]
    results = client.post("/v1/search/image", files=files,
                          data={**form, "rerank": "true"}).json()["results"]
    head, tail = results[:5], results[5:]
    engine = OnnxEngine(rerank_setup.engine)
    tokens = engine.encode_pixels(engine.pixels([load_image(query)]))["image_tokens"]
    captions = [r["caption"] for r in head]
    expected = engine.score(np.repeat(tokens, len(head), axis=0), captions)
    np.testing.assert_allclose([r["match_probability"] for r in head], expected, atol=1e-5)
    assert [r["match_probability"] for r in head] == sorted(expected.tolist(), reverse=True)
    assert {r["id"] for r in head} == {r["id"] for r in plain[:5]}
    assert [r["id"] for r in tail] == [r["id"] for r in plain[5:8]]


def test_image_to_image_search_cannot_rerank(client: TestClient, rerank_setup: RerankSetup) -> None:
    query = (rerank_setup.gallery / "scene-00010.png").read_bytes()
    response = client.post("/v1/search/image", files={"file": ("q.png", query, "image/png")},
                           data={"k": "3", "rerank": "true"})
    assert response.status_code == 422
    assert "text on one side" in response.json()["error"]["message"]
