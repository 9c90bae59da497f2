"""An index with binary codes served: the service reads that from the manifest, searches by
the query's code (then rescoring) and says so in `GET /v1/index`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from encoders.codes import pack
from encoders.engine import OnnxEngine
from index.build import build_index
from index.search import Searcher
from service.config import Settings
from service.main import create_app
from service.schemas import IndexInfo
from tests.codes import code_engine
from training.synthetic import write_gallery


@pytest.fixture(scope="module")
def served(tiny_engine: OnnxEngine, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[TestClient, OnnxEngine, Path]]:
    root = tmp_path_factory.mktemp("codes-api")
    engine = code_engine(tiny_engine, write_gallery(root / "train", 40, seed=31), root / "engine")[0]
    gallery = write_gallery(root / "gallery", 30, seed=32)
    build_index(engine, gallery, root / "index", workers=0, codes=64, codes_only=True, rescore=0)
    settings = Settings(engine_dir=root / "engine", index_dir=root / "index")
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client, engine, root / "index"


def test_index_info_says_it_searches_by_codes(served) -> None:
    client, engine, _ = served
    info = client.get("/v1/index").json()
    assert info["engine_id"] == engine.engine_id
    assert info["codes"]["bits"] == 64 and info["codes"]["float_index"] is False
    assert info["codes"]["search_params"] == {"rescore": 0} and info["factory"] == ""
    assert "curve" not in info["codes"]["tuning"]
    described = IndexInfo.model_fields["codes"].description
    assert all(f"`{key}`" in described for key in info["codes"]), (described, info["codes"])


def test_text_search_goes_by_the_query_code(served) -> None:
    client, engine, index = served
    text = "a red circle above a blue square"
    out = engine.encode_text_outputs([text])
    expected = Searcher(index, engine.engine_id).search(out["text_embeds"], 8,
                                                        codes=pack(out["text_codes"]))[0]
    for _ in range(2):  # the second answer comes from the cached embedding and code
        body = client.post("/v1/search/text", json={"text": text, "k": 8}).json()
        assert [r["id"] for r in body["results"]] == [h.id for h in expected]
        # Hamming-only scores: cosines of +-1 codes, multiples of 2/64
        scores = np.asarray([r["score"] for r in body["results"]])
        assert np.allclose((1 - scores) * 32, np.round((1 - scores) * 32), atol=1e-4)
    # a vector query (a stored image's) has no code and is answered over the float vectors
    similar = client.post("/knn-service", json={"image_url": "/v1/images/3", "num_images": 1,
                                               "modality": "image"}).json()
    assert similar[0]["id"] == 3
