"""One WebDataset rule for training and the index build (`encoders.webdataset`), on real tar
shards: the same shard gives the same samples, captions and fields on both paths, and what
the rule cannot read is refused on both with a message naming the member."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from encoders.captions import CAPTIONS_FILE, read_caption_rows
from encoders.records import DatasetError, Record
from index.build import build_index
from index.search import Searcher
from tests.numpy_engine import NumpyEngine
from training.datasets import decode, load_dataset

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _image(colour: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format=fmt)
    return buf.getvalue()


def _shard(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _training(shard: Path, tmp_path: Path) -> list[tuple[str, str | None, dict, np.ndarray]]:
    records = load_dataset(shard)
    decoded = decode(records)
    assert decoded.skipped == 0
    return [(r.uri.split("::")[1], r.caption, r.fields, np.asarray(image)[0, 0])
            for r, image in zip(decoded.kept(records), decoded.images, strict=True)]


def _index(shard: Path, tmp_path: Path) -> list[tuple[str, str | None, dict, np.ndarray]]:
    engine = NumpyEngine()
    build_index(engine, shard, tmp_path / "index", workers=0)
    searcher = Searcher(tmp_path / "index", engine.engine_id)
    items = searcher.metadata.get([int(i) for i in searcher.ids])
    out = []
    for i in sorted(items):
        item, data = searcher.image(i)
        out.append((item.path.split("::")[1], item.caption, item.fields,
                    np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[0, 0]))
    return out


PATHS: dict[str, Callable] = {"training": _training, "index build": _index}


@pytest.mark.parametrize("read", PATHS.values(), ids=PATHS.keys())
def test_both_paths_read_a_shard_by_one_rule(read: Callable, tmp_path: Path) -> None:
    shard = _shard(tmp_path / "shard-000.tar", {
        # a dot in a folder name: the key ends at the first dot of the *file* name
        "imgs.v2/0001.png": _image(RED), "imgs.v2/0001.txt": b"a red square\n\nscarlet\n",
        # upper-case extension; the caption in .json when there is no .txt, the rest fields
        "0002.PNG": _image(BLUE), "0002.json": json.dumps({"caption": "a blue one", "tag": "sky"}).encode(),
        # a second field ending in .png is not a second image; .txt wins over .json's caption
        "0003.jpg": _image(GREEN, "JPEG"), "0003.seg.png": _image(RED),
        "0003.txt": b"a green square", "0003.json": json.dumps({"caption": "not this", "n": 3}).encode(),
        "0004.txt": b"a caption without an image",  # skipped
    })
    got = read(shard, tmp_path)
    assert [(name, caption, fields) for name, caption, fields, _ in got] == [
        ("imgs.v2/0001.png", "a red square", {}),
        ("0002.PNG", "a blue one", {"tag": "sky"}),
        ("0003.jpg", "a green square", {"n": 3}),
    ]
    colours = [tuple(int(v) for v in pixel) for *_, pixel in got]
    assert colours[0] == RED and colours[1] == BLUE and colours[2][1] > 200  # jpeg: near green


def test_training_keeps_every_line_of_txt_as_a_caption(tmp_path: Path) -> None:
    shard = _shard(tmp_path / "s.tar", {"a.png": _image(RED), "a.txt": b"red\n\n crimson \n",
                                        "b.png": _image(BLUE),
                                        "b.json": json.dumps({"captions": ["blue", "navy"]}).encode()})
    assert [r.captions for r in load_dataset(shard)] == [("red", "crimson"), ("blue", "navy")]


@pytest.mark.parametrize("read", PATHS.values(), ids=PATHS.keys())
@pytest.mark.parametrize(("members", "problem"), [
    # read as an image by the index's old last-dot rule and skipped by training's old one
    ({"photo.2024.jpg": _image(RED), "photo.txt": b"red"},
     r"photo.2024.jpg is no image of it: a WebDataset key ends at the first dot"),
    ({"a.jpg": _image(RED, "JPEG"), "a.png": _image(BLUE)}, r"'a' has 2 images \(a.jpg, a.png\)"),
    ({"a.png": _image(RED), "a.json": b"[1, 2]"}, r"'a': its .json is list, not an object"),
    ({"a.png": _image(RED), "a.json": b"{nope"}, r"'a': its .json is not JSON"),
    ({"a.png": _image(RED), "a.json": b'{"captions": "red"}'}, r'"captions" is str, not a list'),
])
def test_what_the_rule_cannot_read_is_refused_on_both_paths(read: Callable, members: dict,
                                                            problem: str, tmp_path: Path) -> None:
    shard = _shard(tmp_path / "bad.tar", members)
    with pytest.raises(DatasetError, match=problem) as refused:
        read(shard, tmp_path)
    assert str(shard) in str(refused.value)


def test_caption_rows_give_fields_and_name_a_bad_line(tmp_path: Path) -> None:
    rows = tmp_path / CAPTIONS_FILE
    rows.write_text('{"file": "a.png", "caption": "red", "tag": "x"}\n\n{"file": "b.png"}\n')
    assert read_caption_rows(rows) == [Record("a.png", ("red",), fields={"tag": "x"}),
                                       Record("b.png")]
    rows.write_text('{"file": "a.png"}\n{"caption": "no file"}\n')
    with pytest.raises(DatasetError, match=r"captions.jsonl:2: expected a JSON object with a \"file\""):
        read_caption_rows(rows)


def test_a_folder_takes_captions_and_fields_from_its_rows(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_image(RED))
    (tmp_path / "b.png").write_bytes(_image(BLUE))
    (tmp_path / CAPTIONS_FILE).write_text('{"file": "a.png", "caption": "red", "tag": "x"}\n')
    engine = NumpyEngine()
    build_index(engine, tmp_path, tmp_path / "index", workers=0)
    searcher = Searcher(tmp_path / "index", engine.engine_id)
    items = searcher.metadata.get([int(i) for i in searcher.ids])
    assert sorted((it.path, it.caption, it.fields) for it in items.values()) == [
        ("a.png", "red", {"tag": "x"}), ("b.png", None, {})]
