"""Filters over HTTP: what SQLite cannot run is a 422 naming the problem, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.errors import InvalidQuery
from service.main import create_app
from xmodal.demo import DemoPaths


@pytest.fixture(scope="module")
def client(demo: DemoPaths) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(engine_dir=demo.engine, index_dir=demo.index))) as c:
        yield c


@pytest.mark.parametrize(("where", "problem"), [
    ({"equals": {"n": 2**70}}, "64-bit integers"),
    ({"ranges": {"n": [2**64, None]}}, "64-bit integers"),
    ({"equals": {f"f{i}": 1 for i in range(2000)}}, "at most 32 fields"),
    ({"ranges": {f"f{i}": [0, 1] for i in range(600)}}, "at most 32 fields"),
    ({"equals": {"a b": 1}}, "letters, digits"),
])
def test_a_filter_the_store_cannot_run_is_refused(client: TestClient, where, problem) -> None:
    response = client.post("/v1/search/text", json={"text": "a red circle", "filter": where})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == InvalidQuery.code and problem in error["message"]


def test_a_filter_at_the_limits_is_served(client: TestClient) -> None:
    where = {"equals": {f"f{i}": 2**63 - 1 for i in range(31)}, "ranges": {"n": [-(2**63), None]}}
    response = client.post("/v1/search/text", json={"text": "a red circle", "filter": where})
    assert response.status_code == 200, response.text
    assert response.json()["results"] == []


@pytest.mark.parametrize(("body", "problem"), [
    ({"filter": {"eq": {"tag": "x"}}}, "filter.eq: Extra inputs are not permitted"),
    ({"min_match_probability": 0.5}, "needs rerank: true"),
])
def test_options_that_would_be_ignored_are_refused(client: TestClient, body, problem) -> None:
    response = client.post("/v1/search/text", json={"text": "a red circle", **body})
    assert response.status_code == 422, response.text
    assert problem in response.json()["error"]["message"]
