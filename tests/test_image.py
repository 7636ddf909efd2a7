import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import natural_like
from PIL import Image

from slimcodec.errors import ImageError, LossyConversionWarning
from slimcodec.utils.image import load_rgb, to_rgb
from slimcodec.utils.tensors import crop, pad_to_multiple, to_tensor


def test_rgb_passthrough_and_arrays():
    a = natural_like(9, 7)
    out, gray = load_rgb(a)
    assert gray is False and np.array_equal(out, a)
    out, gray = load_rgb(Image.fromarray(a))
    assert np.array_equal(out, a)
    out, gray = load_rgb(a[..., 0])
    assert gray is True and np.array_equal(out[..., 2], a[..., 0])


def test_grayscale_modes():
    base = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    rgb, gray = to_rgb(Image.fromarray(base, "L"))
    assert gray and np.array_equal(np.asarray(rgb)[..., 1], base)
    rgb, gray = to_rgb(Image.fromarray(base > 127).convert("1"))
    assert gray and set(np.unique(np.asarray(rgb))) <= {0, 255}


def test_sixteen_bit_is_scaled_to_eight():
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, "PNG")  # a real 16-bit PNG
    buf.seek(0)
    rgb, gray = load_rgb(Image.open(buf))
    assert gray
    assert np.asarray(rgb)[0, :, 0].tolist() == [0, 1, 255, 128]


def test_float_mode_is_clipped():
    f = Image.fromarray(np.array([[-5.0, 12.4, 300.0]], dtype=np.float32), "F")
    with pytest.warns(LossyConversionWarning, match="float samples rounded and clipped"):
        rgb, gray = to_rgb(f)
    assert gray and np.asarray(rgb)[0, :, 0].tolist() == [0, 12, 255]


def test_alpha_is_composited_over_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    rgba[1, 1] = (0, 0, 0, 0)  # fully transparent becomes white
    with pytest.warns(LossyConversionWarning, match="transparency"):
        rgb, gray = load_rgb(rgba)
    assert not gray
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[1, 1].tolist() == [255, 255, 255]
    la = Image.fromarray(np.array([[[0, 0], [100, 255]]], np.uint8), "LA")
    with pytest.warns(LossyConversionWarning, match="transparency"):
        rgb, gray = to_rgb(la)
    assert gray and np.asarray(rgb)[0].tolist() == [[255] * 3, [100] * 3]


def test_palette_with_and_without_transparency():
    p = Image.fromarray(natural_like(8, 8)).convert("P", palette=Image.Palette.ADAPTIVE)
    rgb, gray = to_rgb(p)
    assert rgb.mode == "RGB" and not gray
    p.info["transparency"] = 0
    with pytest.warns(LossyConversionWarning, match="transparency"):
        rgb, _ = to_rgb(p)
    assert rgb.mode == "RGB"
    transparent = np.asarray(p) == 0  # pixels of palette entry 0 become white
    assert transparent.any()
    assert (np.asarray(rgb)[transparent] == 255).all()
    assert not (np.asarray(rgb)[~transparent] == 255).all()


def test_lossy_conversions_warn_and_lossless_ones_do_not(tmp_path):
    opaque = np.dstack([natural_like(6, 5), np.full((6, 5), 255, np.uint8)])
    eight_in_sixteen = (natural_like(6, 5)[..., 0].astype(np.uint16) * 257)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LossyConversionWarning)
        load_rgb(opaque)  # alpha everywhere 255: nothing lost
        load_rgb(Image.fromarray(eight_in_sixteen))  # 8-bit values stored as v * 257
        load_rgb(Image.fromarray(np.array([[0.0, 12.0, 255.0]], np.float32), "F"))
    with pytest.warns(LossyConversionWarning, match="16-bit samples rounded to 8 bits"):
        load_rgb(Image.fromarray(np.full((6, 5), 1000, np.uint16)))
    frames = [Image.fromarray(natural_like(8, 8, seed=i)) for i in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(LossyConversionWarning, match=r"anim\.gif: only the first of its 3 frames"):
        rgb, _ = load_rgb(path)
    assert rgb.shape == (8, 8, 3)
    rgba = tmp_path / "clear.png"
    Image.fromarray(np.zeros((4, 4, 4), np.uint8), "RGBA").save(rgba)
    with pytest.warns(LossyConversionWarning, match=r"clear\.png: transparency"):
        load_rgb(rgba)


def test_cmyk_and_exif_orientation():
    rgb, _ = to_rgb(Image.new("CMYK", (3, 2), (0, 255, 255, 0)))
    assert np.asarray(rgb)[0, 0].tolist() == [255, 0, 0]
    img = Image.fromarray(natural_like(4, 6))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    buf.seek(0)
    out, _ = load_rgb(Image.open(buf))
    assert out.shape[:2] == (6, 4)


def test_unreadable_inputs(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    for source in (bad, tmp_path / "missing.png", tmp_path):
        with pytest.raises(ImageError):
            load_rgb(source)
    truncated = tmp_path / "cut.png"
    buf = io.BytesIO()
    Image.fromarray(natural_like(64, 64)).save(buf, "PNG")
    truncated.write_bytes(buf.getvalue()[:200])
    with pytest.raises(ImageError):
        load_rgb(truncated)
    with pytest.raises(ImageError):
        load_rgb(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageError):
        load_rgb(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError):
        load_rgb(42)


def test_pad_and_crop():
    x = to_tensor(natural_like(17, 33))
    padded = pad_to_multiple(x, 16)
    assert padded.shape[-2:] == (32, 48)
    assert torch.equal(padded[..., 17:, :33], x[..., 16:17, :].expand(-1, -1, 15, -1))
    assert torch.equal(padded, F.pad(x, (0, 15, 0, 15), mode="replicate"))
    assert torch.equal(crop(padded, (17, 33)), x)
    assert pad_to_multiple(padded, 16) is padded


def _png16_rgb(a):
    """A real 16-bit RGB PNG (colour type 2, bit depth 16), which Pillow cannot write."""
    import struct
    import zlib

    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_colour_png_says_it_loses_its_low_bytes(tmp_path):
    a = (np.arange(8 * 8 * 3).reshape(8, 8, 3) * 3001 % 65536).astype(np.uint16)
    (tmp_path / "deep.png").write_bytes(_png16_rgb(a))
    with pytest.warns(LossyConversionWarning, match=r"deep\.png: 16-bit colour samples"):
        rgb, gray = load_rgb(tmp_path / "deep.png")
    assert rgb.shape == (8, 8, 3) and not gray


def test_32_bit_samples_are_named_as_such(tmp_path):
    values = np.array([[0, 70000], [-5, 65535]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "wide.tif")
    with pytest.warns(LossyConversionWarning, match="32-bit integer samples clipped"):
        rgb, _ = load_rgb(tmp_path / "wide.tif")
    assert rgb[0, 1, 0] == 255 and rgb[1, 0, 0] == 0
