import io

import numpy as np
import pytest
from PIL import Image

from encoders.errors import InputError
from encoders.preprocess import ImagePreprocess, load_image, preprocess

SPEC = ImagePreprocess(size=32)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_shape_dtype_and_normalisation() -> None:
    out = preprocess([Image.new("RGB", (50, 40), (255, 0, 0))], SPEC)
    assert out.shape == (1, 3, 32, 32) and out.dtype == np.float32
    assert np.allclose(out[0, 0], 1.0) and np.allclose(out[0, 1], -1.0)


def test_shortest_side_resize_then_centre_crop_keeps_the_middle() -> None:
    wide = Image.new("RGB", (300, 100), (0, 0, 255))
    wide.paste((255, 0, 0), (100, 0, 200, 100))  # red middle third
    out = preprocess([wide], SPEC)[0]
    assert np.allclose(out[0][:, 1:-1], 1.0, atol=0.05)  # red, but for resampling at the edges
    assert np.allclose(out[2][:, 1:-1], -1.0, atol=0.05)  # no blue


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK", "I;16"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    image = Image.new("RGB", (20, 20), (10, 200, 30)).convert(mode)
    assert load_image(_png(image) if mode != "CMYK" else _jpeg(image)).mode == "RGB"


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def test_transparent_pixels_are_composited_on_white() -> None:
    clear = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert load_image(_png(clear)).getpixel((0, 0)) == (255, 255, 255)


def test_undecodable_bytes_raise_input_error() -> None:
    with pytest.raises(InputError, match="cannot decode"):
        load_image(b"definitely not an image")
    with pytest.raises(InputError, match="cannot decode"):
        load_image(_png(Image.new("RGB", (30, 30)))[:40])


def test_exif_orientation_is_applied() -> None:
    tall = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = tall.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buffer = io.BytesIO()
    tall.save(buffer, format="JPEG", exif=exif)
    assert load_image(buffer.getvalue()).size == (20, 40)


def test_animated_image_uses_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    red, _, blue = load_image(buffer.getvalue()).getpixel((8, 8))
    assert red > 200 and blue < 50


@pytest.mark.parametrize("size", [(1, 1), (1, 500), (700, 3)])
def test_tiny_and_extreme_aspect_images_preprocess(size: tuple[int, int]) -> None:
    out = preprocess([Image.new("RGB", size, (0, 255, 0))], SPEC)
    assert out.shape == (1, 3, 32, 32) and np.isfinite(out).all()


def test_oversized_image_is_refused_before_decoding() -> None:
    huge = _png(Image.new("L", (5000, 5000)))  # compresses to a few kilobytes
    with pytest.raises(InputError, match="over the limit"):
        load_image(huge, max_pixels=1_000_000)


UPLOADS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


def _encoded(fmt: str) -> bytes:
    image = Image.new("RGB", (8, 8), (200, 30, 30))
    buffer = io.BytesIO()
    (image.convert("1") if fmt == "XBM" else image).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PPM", "PCX", "SGI", "DDS", "QOI", "XBM", "TIFF", "EPS", "ICO"])
def test_other_formats_are_refused_by_name_before_any_parser_sees_them(fmt: str,
                                                                       monkeypatch) -> None:
    from PIL import EpsImagePlugin, PpmImagePlugin, TiffImagePlugin

    def never(self: Image.Image) -> None:
        raise AssertionError(f"{type(self).__name__} parsed bytes it should never see")

    for plugin in (EpsImagePlugin.EpsImageFile, PpmImagePlugin.PpmImageFile,
                   TiffImagePlugin.TiffImageFile):
        monkeypatch.setattr(plugin, "_open", never)
    with pytest.raises(InputError) as refused:
        load_image(_encoded(fmt), formats=UPLOADS)
    message = str(refused.value)
    assert f"format {fmt} " in message and "JPEG, PNG, WEBP, GIF, BMP" in message, message


@pytest.mark.filterwarnings("ignore:IM image format is deprecated")
def test_formats_without_a_signature_are_refused_without_a_name() -> None:
    with pytest.raises(InputError, match=r"not an image in an accepted format \(JPEG, PNG"):
        load_image(_encoded("IM"), formats=UPLOADS)


@pytest.mark.parametrize("fmt", UPLOADS)
def test_accepted_formats_decode(fmt: str) -> None:
    assert load_image(_encoded(fmt), formats=UPLOADS).size == (8, 8)


@pytest.mark.parametrize("data", [b"definitely not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 30])
def test_undecodable_bytes_are_described_without_python_object_reprs(data: bytes) -> None:
    for formats in (None, UPLOADS):
        with pytest.raises(InputError, match="cannot decode image bytes") as refused:
            load_image(data, formats=formats)
        assert "BytesIO" not in str(refused.value) and " at 0x" not in str(refused.value)


def test_images_over_pillows_own_limit_get_the_pixel_limit_message() -> None:
    """Over ~179 M pixels Pillow refuses on its own, as a 'decompression bomb DOS attack'."""
    from tests.service.hostile import png_bomb

    with pytest.raises(InputError) as refused:
        load_image(png_bomb(20_000), max_pixels=1_000_000)  # 400 M pixels
    assert str(refused.value) == "image bytes is 400000000 pixels, over the limit of 1000000"
