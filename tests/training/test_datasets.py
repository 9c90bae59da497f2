"""Each dataset format loads into the same records; unreadable images are skipped and counted."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from training.datasets import (
    DatasetError,
    decode,
    load_coco,
    load_dataset,
    load_karpathy,
    load_shards,
    load_table,
    write_karpathy,
)


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(_png((255, 0, 0)))
    (tmp_path / "imgs" / "b.png").write_bytes(_png((0, 0, 255)))
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not an image")
    return tmp_path


def test_karpathy_reads_paths_splits_and_every_sentence(folder: Path) -> None:
    data = {"images": [
        {"filepath": "imgs", "filename": "a.png", "split": "restval",
         "sentences": [{"raw": "a red one "}, {"raw": "red"}]},
        {"filepath": "imgs", "filename": "b.png", "split": "test", "sentences": [{"raw": "blue"}]},
    ]}
    (folder / "k.json").write_text(json.dumps(data))
    records = load_karpathy(folder / "k.json")
    assert [r.captions for r in records] == [("a red one", "red"), ("blue",)]
    assert [r.split for r in records] == ["train", "test"]  # restval is training data
    assert decode(records).images[1].getpixel((0, 0)) == (0, 0, 255)
    assert load_dataset(folder / "k.json") == records


def test_coco_groups_annotations_by_image(folder: Path) -> None:
    data = {"images": [{"id": 7, "file_name": "imgs/a.png"}, {"id": 9, "file_name": "imgs/b.png"}],
            "annotations": [{"image_id": 9, "caption": "blue"}, {"image_id": 7, "caption": "red"},
                            {"image_id": 9, "caption": "a blue one"}]}
    (folder / "c.json").write_text(json.dumps(data))
    records = load_dataset(folder / "c.json")
    assert [(Path(r.uri).name, r.captions) for r in records] == [
        ("a.png", ("red",)), ("b.png", ("blue", "a blue one"))]
    data["annotations"].append({"image_id": 3, "caption": "x"})
    (folder / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="image_id 3"):
        load_coco(folder / "bad.json")


def test_csv_and_jsonl_tables_agree_and_skip_unreadable(folder: Path) -> None:
    (folder / "t.csv").write_text("image,caption,split\nimgs/a.png,red,train\n"
                                  "imgs/b.png,blue,test\nimgs/a.png,crimson,train\n"
                                  "imgs/broken.png,nothing,train\nimgs/missing.png,gone,train\n")
    rows = [{"image": "imgs/a.png", "caption": "red"}, {"image": "imgs/b.png", "caption": "blue",
             "split": "test"}, {"image": "imgs/a.png", "caption": "crimson"},
            {"image": "imgs/broken.png", "caption": "nothing"}, {"image": "imgs/missing.png", "caption": "gone"}]
    (folder / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    from_csv, from_jsonl = load_table(folder / "t.csv"), load_table(folder / "t.jsonl")
    assert from_csv == from_jsonl
    assert from_csv[0].captions == ("red", "crimson")
    decoded = decode(from_csv)
    assert decoded.skipped == 2
    assert [Path(r.uri).name for r in decoded.kept(from_csv)] == ["a.png", "b.png"]


def test_table_without_caption_column_names_the_problem(folder: Path) -> None:
    (folder / "t.csv").write_text("image,text\nimgs/a.png,red\n")
    with pytest.raises(DatasetError, match="'caption'"):
        load_table(folder / "t.csv")


def test_webdataset_shards_pair_images_with_txt_or_json(folder: Path) -> None:
    members = {"s0.png": _png((255, 0, 0)), "s0.txt": b"red\ncrimson\n",
               "s1.png": _png((0, 0, 255)), "s1.json": json.dumps({"caption": "blue"}).encode(),
               "s2.jpg": b"garbage", "s2.txt": b"broken", "s3.txt": b"no image"}
    with tarfile.open(folder / "shard-000.tar", "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    records = load_shards(folder)
    assert [r.captions for r in records] == [("red", "crimson"), ("blue",), ("broken",)]
    decoded = decode(records)
    assert decoded.skipped == 1 and len(decoded.images) == 2
    assert decoded.images[1].getpixel((0, 0)) == (0, 0, 255)
    assert load_dataset(folder / "shard-000.tar") == records


def test_karpathy_round_trip(folder: Path) -> None:
    (folder / "t.csv").write_text("image,caption\nimgs/a.png,red\nimgs/b.png,blue\n")
    records = load_table(folder / "t.csv")
    again = load_karpathy(write_karpathy(records, folder / "k.json"))
    assert again == records


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset format"):
        load_dataset(tmp_path / "data.parquet")
