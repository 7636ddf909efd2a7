"""Issue 10's defects, each with a test that fails on the defect."""

import struct
import threading
import zlib

import numpy as np
import pytest
import torch
from helpers import SMALL_WIDTHS, natural_like, record_argument
from PIL import Image

import slimcodec
from slimcodec.bitstream import unpack
from slimcodec.cli import main
from slimcodec.codec import Codec
from slimcodec.errors import (
    CorruptBitstreamError,
    ModelFileError,
    ResourceLimitError,
)
from slimcodec.tiling import analyze, synthesize
from slimcodec.utils.metrics import psnr
from slimcodec.utils.tensors import from_tensor, pad_to_multiple, to_tensor
from slimcodec.zoo import fingerprint, load_model, load_model_file, save_model_file


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- tiling -----------------------------------------------------------------------------


def fine(y):
    """A quantiser fine enough to expose any difference (a random model's latent rounds to 0)."""
    return np.rint(y * 1e4).astype(np.int32)


def np_fn(fn):
    """A tensor function as the tiler calls it."""
    return lambda a: fn(torch.from_numpy(a)).numpy()


@pytest.mark.parametrize("size", [(40, 56), (150, 97), (16, 300)])
def test_tiled_transforms_equal_whole_image_ones(small_model, size):
    """Tiles of 3 latent positions with a halo of 3 give the whole-image latent and image."""
    rgb = natural_like(*size)
    model = small_model
    with torch.inference_mode():
        x = pad_to_multiple(to_tensor(rgb), 16)
        whole = fine(model.analysis(x)[0].numpy())
        tiled = analyze(np_fn(model.analysis), rgb, 16, fine, tile=3, halo=3)
        assert np.abs(tiled - whole).max() <= 2  # float rounding, 2e-4 of a quantisation step
        symbols = np.random.default_rng(0).integers(-4, 5, whole.shape, dtype=np.int32)
        decode = np_fn(model.synthesis), np_fn(model.dequantize_latent)
        image = synthesize(*decode, symbols, size, 16, 3, 3)
        x_hat = model.synthesis(model.dequantize_latent(torch.from_numpy(symbols[None])))
        reference = from_tensor(x_hat[..., : size[0], : size[1]])
    assert np.abs(image.astype(int) - reference.astype(int)).max() <= 1
    assert reference.std() > 5  # not a flat image


def test_too_small_a_halo_is_visible(small_model):
    """The halo test above has teeth: with a halo too small, tile seams change the result."""
    rgb = natural_like(96, 96)
    model = small_model
    symbols = np.random.default_rng(0).integers(-4, 5, (16, 6, 6), dtype=np.int32)
    with torch.inference_mode():
        a = analyze(np_fn(model.analysis), rgb, 16, fine, tile=2, halo=1)
        b = analyze(np_fn(model.analysis), rgb, 16, fine, tile=2, halo=3)
        assert np.abs(a - b).max() > 100
        decode = np_fn(model.synthesis), np_fn(model.dequantize_latent)
        a = synthesize(*decode, symbols, (96, 96), 16, 2, 0)
        b = synthesize(*decode, symbols, (96, 96), 16, 2, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() > 2


# -- size limits --------------------------------------------------------------------------


def test_max_pixels_refuses_before_decoding(small_model, tmp_path):
    codec = Codec(small_model, max_pixels=32 * 32)
    with pytest.raises(ResourceLimitError, match="over the limit of 1024"):
        codec.encode(natural_like(33, 32))
    data = Codec(small_model).encode(natural_like(40, 40))
    with pytest.raises(ResourceLimitError, match="1600 pixels"):
        codec.decode(data)
    path = tmp_path / "big.png"
    Image.fromarray(natural_like(40, 40)).save(path)
    with pytest.raises(ResourceLimitError):  # from the file's header, before decoding it
        codec.encode(path)
    assert slimcodec.decompress(data, model=Codec(small_model), max_pixels=1600).size == (40, 40)


def test_the_api_s_tile_codes_in_such_tiles_and_leaves_the_codec_given_as_it_is(
        small_model, monkeypatch):
    from slimcodec import tiling

    tiles = record_argument(monkeypatch, tiling, "spans", "tile")
    codec = Codec(small_model)
    data = slimcodec.compress(natural_like(40, 40), model=codec, tile=1)
    assert tiles and set(tiles) == {1} and codec.tile == tiling.DEFAULT_TILE
    tiles.clear()
    assert slimcodec.decompress(data, model=codec, tile=2).size == (40, 40)
    assert tiles and set(tiles) == {2}
    for name, value in [("tile", 0), ("tile", -1), ("max_pixels", 0)]:
        with pytest.raises(ValueError, match=f"{name} must be positive, not {value}"):
            slimcodec.compress(natural_like(40, 40), model=codec, **{name: value})
        with pytest.raises(ValueError, match=f"{name} must be positive, not {value}"):
            Codec(small_model, **{name: value})


def test_forged_giant_size_is_refused_in_one_line(tmp_path, capsys):
    """A 44-byte file declaring 32768x32768 once asked for > 10 GB."""
    photo = tmp_path / "p.png"
    Image.fromarray(natural_like(16, 16)).save(photo)
    run(capsys, "compress", photo, "-o", tmp_path / "p.slc", "--width", 48, "--scale", 1)
    body = bytearray((tmp_path / "p.slc").read_bytes()[:-4])
    struct.pack_into("<II", body, 23, 32768, 32768)
    (tmp_path / "giant.slc").write_bytes(bytes(body) + struct.pack("<I", zlib.crc32(body)))
    code, _, err = run(capsys, "decompress", tmp_path / "giant.slc", "-o", tmp_path / "g.png")
    assert code == 2 and err.count("\n") == 1 and "over the limit" in err


def test_memory_errors_become_one_line(tmp_path, capsys, monkeypatch):
    photo = tmp_path / "p.png"
    Image.fromarray(natural_like(16, 16)).save(photo)
    run(capsys, "compress", photo, "-o", tmp_path / "p.slc", "--width", 48)

    def exhausted(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 10737418240 bytes.")

    monkeypatch.setattr("slimcodec.tiling.synthesize", exhausted)
    code, _, err = run(capsys, "decompress", tmp_path / "p.slc", "-o", tmp_path / "o.png")
    assert code == 2 and err.count("\n") == 1 and "out of memory" in err
    monkeypatch.setattr("slimcodec.tiling.synthesize", lambda *a, **k: (_ for _ in ()).throw(
        MemoryError()))
    with pytest.raises(ResourceLimitError, match="out of memory"):
        slimcodec.decompress((tmp_path / "p.slc").read_bytes())


# -- models and files ---------------------------------------------------------------------


def test_a_folder_named_like_a_model_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "slimcae").mkdir()
    assert fingerprint(load_model("slimcae")).hex() == "424d47da02a81639"
    with pytest.raises(ModelFileError, match="is a directory"):
        load_model("./slimcae")


def test_model_file_errors_are_one_line(tmp_path, capsys):
    photo = tmp_path / "p.png"
    Image.fromarray(natural_like(16, 16)).save(photo)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    code, _, err = run(capsys, "compress", photo, "-o", tmp_path / "x.slc", "--model", junk)
    assert code == 2 and err.count("\n") == 1 and "weights_only" not in err
    code, _, err = run(capsys, "compress", photo, "-o", tmp_path / "x.slc", "--model",
                       tmp_path / "missing.pt")
    assert code == 2 and "no such model file" in err


def test_output_errors_name_the_users_path(tmp_path, capsys):
    photo = tmp_path / "p.png"
    Image.fromarray(natural_like(16, 16)).save(photo)
    out = tmp_path / "no" / "such" / "dir" / "x.slc"
    code, _, err = run(capsys, "compress", photo, "-o", out)
    assert code == 2 and str(out) in err and ".tmp" not in err


def test_codecs_sharing_a_model_do_not_race(small_model):
    a, b = Codec(small_model), Codec(small_model)
    img = natural_like(48, 48)
    expected = {w: a.encode_rgb(img, w) for w in SMALL_WIDTHS}
    errors = []

    def worker(codec, width):
        for _ in range(15):
            if codec.encode_rgb(img, width) != expected[width]:
                errors.append(width)

    threads = [threading.Thread(target=worker, args=(c, w))
               for c in (a, b) for w in SMALL_WIDTHS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_codec_rebuilds_stale_cdf_tables(small_model, tmp_path):
    """Changed weights must not be coded with the tables of the old ones."""
    save_model_file(small_model, tmp_path / "m.pt")
    loaded = load_model_file(tmp_path / "m.pt")
    assert Codec(loaded).fingerprint == fingerprint(loaded)  # as saved: tables kept
    with torch.no_grad():
        for eb in loaded.entropy_bottlenecks:
            eb.quantiles.mul_(3.0)
            for p in eb.matrices:
                p.sub_(1.0)
    stale = loaded.entropy_bottlenecks[0]._quantized_cdf.clone()
    codec = Codec(loaded)
    assert not torch.equal(loaded.entropy_bottlenecks[0]._quantized_cdf, stale)
    save_model_file(loaded, tmp_path / "m2.pt")  # the file this model would be saved as
    assert codec.fingerprint == fingerprint(load_model_file(tmp_path / "m2.pt"))


def test_rate_bytes_must_be_zero_for_rate_kind_none(small_model):
    data = bytearray(Codec(small_model).encode(natural_like(16, 16))[:-4])
    data[17] = 1
    forged = bytes(data) + struct.pack("<I", zlib.crc32(data))
    with pytest.raises(CorruptBitstreamError, match="non-zero rate bytes"):
        unpack(forged)


# -- quality --------------------------------------------------------------------------------

# PSNR floors (dB) of the shipped slimcae on the bundled 512x512 sample, about 0.5 dB under
# what it measures (`slimcodec demo`): a decoder returning a flat or wrong image fails.
FLOORS = {192: 26.9, 144: 26.6, 96: 25.4, 72: 23.1, 48: 22.5}


def test_shipped_model_quality_floor_per_width():
    from slimcodec.cli import sample_image
    from slimcodec.utils.image import load_rgb

    rgb, _ = load_rgb(sample_image())
    for width, floor in FLOORS.items():
        data = slimcodec.compress(rgb, width=width, model="slimcae", scale=1)
        out = np.asarray(slimcodec.decompress(data))
        assert psnr(rgb, out) > floor, width
        assert 8 * len(data) / rgb.shape[0] / rgb.shape[1] < 0.3
