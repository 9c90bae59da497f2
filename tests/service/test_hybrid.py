"""`POST /v1/search/text` in its three modes: keyword finds a literal tag the dual encoder
knows nothing of, hybrid is the reciprocal rank fusion of the vector and keyword lists,
filters apply to all three, and every result is scored by the dual encoder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from index.build import build_index
from service.config import Settings
from service.main import create_app
from service.schemas import MAX_K
from tests.colour_gallery import TAGGED, write_colour_gallery
from tests.numpy_engine import NumpyEngine


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("hybrid")
    build_index(NumpyEngine(), write_colour_gallery(root / "gallery"), root / "index")
    settings = Settings(engine_dir=root / "no-engine-bundle", index_dir=root / "index")
    with TestClient(create_app(settings, engine=NumpyEngine())) as c:
        yield c


def _search(client: TestClient, text: str, **options) -> list[dict]:
    response = client.post("/v1/search/text", json={"text": text, **options})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def _rrf(*rankings: list[int], k: int = 60) -> list[int]:
    """Reciprocal rank fusion written out again here, so the service's is checked against it."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + 1 / (k + rank + 1)
    return sorted(scores, key=lambda item: (-scores[item], item))


def test_keyword_mode_finds_a_literal_tag(client: TestClient) -> None:
    tagged = sorted(f for f, tag in TAGGED.items() if tag == "zanzibar")
    assert sorted(r["path"] for r in _search(client, "zanzibar", mode="keyword")) == tagged
    # the dual encoder cannot: the word names no colour
    assert sorted(r["path"] for r in _search(client, "zanzibar", k=2)) != tagged
    assert _search(client, "zanzibar", mode="keyword", k=1)[0]["path"] in tagged


@pytest.mark.parametrize("text", ["red zanzibar", "blue square kilimanjaro", "green"])
def test_hybrid_is_the_rrf_of_the_vector_and_keyword_lists(client: TestClient, text: str) -> None:
    vector = [r["id"] for r in _search(client, text, mode="vector", k=MAX_K)]
    keyword = [r["id"] for r in _search(client, text, mode="keyword", k=MAX_K)]
    hybrid = [r["id"] for r in _search(client, text, mode="hybrid", k=10)]
    assert hybrid == _rrf(vector, keyword)[:10]
    assert hybrid != vector[:10] or hybrid != keyword[:10]  # the fusion changed something


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_filters_apply_in_every_mode(client: TestClient, mode: str) -> None:
    found = _search(client, "blue zanzibar square", mode=mode, k=20,
                    filter={"equals": {"shade": 200}})
    assert found and all(r["fields"]["shade"] == 200 for r in found)
    ranged = _search(client, "red zanzibar", mode=mode, filter={"ranges": {"shade": [None, 150]}})
    assert ranged and all(r["fields"]["shade"] <= 150 for r in ranged)


def test_every_mode_scores_by_the_dual_encoder_and_reranks(client: TestClient) -> None:
    cosine = {r["id"]: r["score"] for r in _search(client, "red zanzibar", k=MAX_K)}
    for mode in ("keyword", "hybrid"):
        found = _search(client, "red zanzibar", mode=mode, k=5)
        assert [r["score"] for r in found] == pytest.approx([cosine[r["id"]] for r in found])
        reranked = _search(client, "red zanzibar", mode=mode, k=5, rerank=True, rerank_k=5)
        assert {r["id"] for r in reranked} == {r["id"] for r in found}  # fused before the rerank
        probs = [r["match_probability"] for r in reranked]
        assert probs == sorted(probs, reverse=True)


def test_an_unknown_mode_is_refused_by_name(client: TestClient) -> None:
    response = client.post("/v1/search/text", json={"text": "red", "mode": "fuzzy"})
    assert response.status_code == 422 and "mode" in response.json()["error"]["message"]

