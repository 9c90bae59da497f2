"""service.images: one allow-list of upload formats, decoding off the event loop, and the
suffix an added image is stored under."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from encoders.records import IMAGE_SUFFIXES
from service.config import Settings
from service.errors import InvalidQuery
from service.images import (
    UPLOAD_FORMATS,
    decode_upload,
    decode_upload_off_loop,
    stored_suffix,
)

SETTINGS = Settings()


def _encoded(fmt: str, **kw: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "navy").save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def test_every_accepted_format_is_stored_under_a_suffix_the_index_build_reads() -> None:
    for fmt, suffix in UPLOAD_FORMATS.items():
        data = _encoded(fmt)
        assert decode_upload(data, SETTINGS).size == (8, 8)
        assert stored_suffix(data) == suffix and f".{suffix}" in IMAGE_SUFFIXES


def test_a_camera_jpeg_with_more_pictures_is_stored_as_jpg() -> None:
    data = _encoded("MPO", save_all=True, append_images=[Image.new("RGB", (8, 8), "red")])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert decode_upload(data, SETTINGS).size == (8, 8) and stored_suffix(data) == "jpg"


def test_other_formats_are_refused_by_the_same_list() -> None:
    tiff = _encoded("TIFF")
    with pytest.raises(InvalidQuery, match="format TIFF .*accepted formats are JPEG, PNG"):
        decode_upload(tiff, SETTINGS)
    with pytest.raises(InvalidQuery, match="use one of JPEG, PNG, WEBP, GIF, BMP"):
        stored_suffix(tiff)


def test_decoding_off_the_loop_runs_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    on_loop = []

    def recording(data: bytes, settings: Settings) -> Image.Image:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return decode_upload(data, settings)

    monkeypatch.setattr("service.images.decode_upload", recording)
    image = asyncio.run(decode_upload_off_loop(_encoded("PNG"), SETTINGS))
    assert image.size == (8, 8) and on_loop == [False]
