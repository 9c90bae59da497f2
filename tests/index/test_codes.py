"""Binary codes in the index (index.codes): built beside or instead of the float index,
searched by Hamming distance with and without float rescoring, kept through add, delete
and compaction, and refused with an engine that does not make them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from encoders.codes import pack
from encoders.engine import OnnxEngine
from encoders.errors import InputError
from index import bundle
from index.build import build_index
from index.codes import CODES_FAISS, CODES_FILE
from index.errors import EngineMismatchError
from index.search import Searcher
from index.segment import read_segment
from index.update import add_images, compact, delete_ids
from tests.codes import code_engine
from training.synthetic import write_gallery

QUERIES = ["a red circle", "a blue square left of a green triangle", "two yellow circles"]


@pytest.fixture(scope="module")
def coded(tiny_engine: OnnxEngine, tmp_path_factory: pytest.TempPathFactory) -> OnnxEngine:
    root = tmp_path_factory.mktemp("coded")
    train = write_gallery(root / "train", 40, seed=21)
    return code_engine(tiny_engine, train, root / "engine", bits=64)[0]


def _query(engine: OnnxEngine, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    out = engine.encode_text_outputs(texts)
    return out["text_embeds"], pack(out["text_codes"])


def _ids(hits) -> list[list[int]]:
    return [[h.id for h in row] for row in hits]


def _stored(root: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder = read_segment(root, name).folder
    return (np.load(folder / bundle.IDS_FILE), np.load(folder / CODES_FILE),
            np.load(folder / bundle.EMBEDDINGS_FILE))


def test_search_with_codes_returns_the_expected_neighbours(coded, gallery, tmp_path) -> None:
    rescored = build_index(coded, gallery, tmp_path / "rescored", workers=0, codes=64,
                           rescore=100)
    build_index(coded, gallery, tmp_path / "hamming", workers=0, codes=64, rescore=0)
    assert rescored.codes["bits"] == 64 and rescored.codes["factory"] == "BFlat"
    assert rescored.codes["search_params"]["rescore"] == 100 and rescored.factory  # float beside
    vectors, codes = _query(coded, QUERIES)
    ids, stored, embeds = _stored(tmp_path / "rescored", rescored.segments[0]["name"])
    # rescoring more candidates than the gallery holds is exact float search
    s = Searcher(tmp_path / "rescored", coded.engine_id)
    exact = ids[np.argsort(-(vectors @ embeds.T), axis=1, kind="stable")[:, :5]]
    assert _ids(s.search(vectors, 5, codes=codes)) == exact.tolist()
    # Hamming alone: the 5 smallest distances, computed here bit by bit, scored as cosines
    h = Searcher(tmp_path / "hamming", coded.engine_id)
    hits = h.search(vectors, 5, codes=codes)
    bits = np.unpackbits(stored, axis=1)
    for row, q in zip(hits, np.unpackbits(codes, axis=1), strict=True):
        dist = (bits != q).sum(axis=1)
        expected = np.sort(dist)[:5]
        got = [int(dist[np.searchsorted(ids, hit.id)]) for hit in row]
        assert got == expected.tolist()
        assert [hit.score for hit in row] == pytest.approx((1 - 2 * expected / 64).tolist())
    # the stored codes are the engine's codes of those images
    first = h.image(int(ids[0]))[1]
    from io import BytesIO

    from PIL import Image
    image_codes = pack(coded.encode_pixels(coded.pixels([Image.open(BytesIO(first))]))["image_codes"])
    assert (stored[0] == image_codes[0]).all()
    # without query codes the float index answers, as before
    assert _ids(s.search(vectors, 5)) == _ids(Searcher(tmp_path / "rescored", coded.engine_id)
                                             .search(vectors, 5))


def test_codes_only_has_no_float_index_and_still_answers(coded, gallery, tmp_path) -> None:
    built = build_index(coded, gallery, tmp_path / "only", workers=0, codes=64, codes_only=True)
    folder = read_segment(tmp_path / "only", built.segments[0]["name"]).folder
    assert not (folder / bundle.FAISS_FILE).exists() and (folder / CODES_FAISS).is_file()
    assert built.factory == "" and built.codes["float_index"] is False
    assert "rescore" in built.codes["search_params"]  # tuned to the recall target
    s = Searcher(tmp_path / "only", coded.engine_id)
    vectors, codes = _query(coded, QUERIES)
    assert all(len(row) == 4 for row in s.search(vectors, 4, codes=codes))
    # a query with no code (a stored image's vector) is answered exactly over the vectors
    own = s.vectors([3])
    assert s.search(own, 1)[0][0].id == 3
    with pytest.raises(InputError, match="query codes must have shape"):
        s.search(vectors, 4, codes=codes[:, :4])


def test_codes_survive_add_delete_and_compact(coded, gallery, tmp_path) -> None:
    root = tmp_path / "idx"
    first = build_index(coded, gallery, root, workers=0, codes=64, rescore=0)
    extra = write_gallery(tmp_path / "extra", 5, seed=78)
    added = add_images(coded, root, extra)
    assert len(added.segments) == 2 and added.codes["bits"] == 64
    new_ids, new_codes, _ = _stored(root, added.segments[1]["name"])
    assert new_ids.tolist() == list(range(first.next_id, first.next_id + 5))
    s = Searcher(root, coded.engine_id)
    # each added image's own code finds an image at distance 0: itself or an identical code
    vectors = s.vectors(new_ids.tolist())
    for row, own in zip(s.search(vectors, 1, codes=new_codes), new_ids, strict=True):
        assert row[0].score == 1.0
    gone = [int(new_ids[0]), 2]
    delete_ids(root, gone)
    s = Searcher(root, coded.engine_id)
    seen = {h.id for row in s.search(vectors, 40, codes=new_codes) for h in row}
    assert not seen & set(gone) and len(seen) == s.manifest.count
    compacted = compact(root)
    assert len(compacted.segments) == 1 and compacted.codes["bits"] == 64
    ids, codes, _ = _stored(root, compacted.segments[0]["name"])
    assert not set(gone) & set(ids.tolist())
    before = dict(zip(new_ids.tolist(), map(bytes, new_codes), strict=True))
    after = dict(zip(ids.tolist(), map(bytes, codes), strict=True))
    assert all(after[i] == before[i] for i in new_ids[1:].tolist())  # rows moved, codes kept
    s = Searcher(root, coded.engine_id)
    assert {h.id for row in s.search(vectors, 40, codes=new_codes) for h in row} == set(ids.tolist())


def test_a_binary_index_is_refused_by_a_mismatched_engine(coded, tiny_engine, gallery,
                                                           tmp_path) -> None:
    built = build_index(coded, gallery, tmp_path / "idx", workers=0, codes=64)
    with pytest.raises(EngineMismatchError) as err:
        Searcher(tmp_path / "idx", tiny_engine.engine_id)  # the same towers without codes
    assert built.engine_id in str(err.value) and tiny_engine.engine_id in str(err.value)
    # and a build asks for codes the engine does not make
    with pytest.raises(InputError, match="engine .* has no codes"):
        build_index(tiny_engine, gallery, tmp_path / "none", workers=0, codes=64)
    with pytest.raises(InputError, match="an index of 128-bit codes .* has 64-bit codes"):
        build_index(coded, gallery, tmp_path / "other", workers=0, codes=128)
    with pytest.raises(InputError, match="need --codes"):
        build_index(coded, gallery, tmp_path / "flag", workers=0, codes_only=True)
    assert not (tmp_path / "none" / bundle.CURRENT).exists()


def test_cli_builds_codes(coded, gallery, tmp_path, capsys) -> None:
    from xmodal import cli

    assert cli.main(["index", "build", "--engine", str(coded.path), "--images", str(gallery),
                     "--out", str(tmp_path / "cli"), "--workers", "0", "--codes", "64",
                     "--codes-only"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["codes"]["bits"] == 64 and report["codes"]["float_index"] is False
    assert report["codes"]["recall_at_10"] is not None
