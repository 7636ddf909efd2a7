import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import aux_trained, few_colours, natural_like, record_argument
from PIL import Image

from slimcodec.bitstream import MAGIC, unpack
from slimcodec.cli import main
from slimcodec.models import SlimCAE
from slimcodec.zoo import DEFAULT_MODEL, save_model_file


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(natural_like(37, 50)).save(path)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("width", [192, 144, 96, 72, 48])
def test_compress_decompress_round_trip_every_width(tmp_path, photo, capsys, width):
    slc, png = tmp_path / "p.slc", tmp_path / "p.png"
    code, out, _ = run(capsys, "compress", photo, "-o", slc, "--width", width)
    assert code == 0 and f"width {width}" in out
    code, _, _ = run(capsys, "decompress", slc, "-o", png)  # model from the fingerprint
    assert code == 0
    decoded = np.asarray(Image.open(png))
    assert decoded.shape == (37, 50, 3)
    code, _, _ = run(capsys, "decompress", slc, "-o", tmp_path / "again.png", "--model",
                     DEFAULT_MODEL)
    assert code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), decoded)


def test_lossy_input_warns_in_one_line(tmp_path, capsys):
    rgba = np.dstack([natural_like(20, 24), np.full((20, 24), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "half.png")
    code, _, err = run(capsys, "compress", tmp_path / "half.png", "-o", tmp_path / "h.slc",
                       "--width", 48)
    assert code == 0 and err.count("\n") == 1
    assert err.startswith("slimcodec: warning: ") and "half.png: transparency" in err


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_dash_is_standard_input_and_output(tmp_path, photo, monkeypatch, capsysbinary):
    _stdin(monkeypatch, photo.read_bytes())
    assert main(["compress", "-", "-o", "-", "--width", "48"]) == 0
    data, err = capsysbinary.readouterr()
    assert data.startswith(MAGIC) and unpack(data).header.width == 48
    assert err.startswith(b"-: ")  # the summary goes to stderr, stdout holds the file only
    _stdin(monkeypatch, data)
    assert main(["decompress", "-", "-o", "-"]) == 0
    png, _ = capsysbinary.readouterr()
    assert Image.open(io.BytesIO(png)).size == (50, 37)
    _stdin(monkeypatch, b"not an image")
    assert main(["compress", "-", "-o", str(tmp_path / "x.slc")]) == 2
    assert b"standard input: not an image" in capsysbinary.readouterr().err


def test_several_files_are_coded_into_a_folder_each_as_alone(tmp_path, photo, capsys):
    """One process for many files: each written into the folder under its own name, the
    same bytes and pixels as coded alone; a bad file is one line naming it, the others are
    still coded, and the exit status says that one failed."""
    other = tmp_path / "other.png"
    Image.fromarray(natural_like(40, 31, seed=3)).save(other)
    (tmp_path / "broken.png").write_bytes(b"junk")
    coded, decoded = tmp_path / "coded", tmp_path / "decoded"
    coded.mkdir()
    decoded.mkdir()
    code, out, err = run(capsys, "compress", photo, tmp_path / "broken.png", other, "-o", coded,
                         "--width", 48)
    assert code == 2 and sorted(p.name for p in coded.iterdir()) == ["other.slc", "photo.slc"]
    assert out.count("\n") == 2 and err.splitlines() == [
        f"slimcodec: error: {tmp_path / 'broken.png'}: not a readable image (cannot "
        f"identify image file '{tmp_path / 'broken.png'}')",
        "slimcodec: error: 1 of 3 files failed"]
    code, _, _ = run(capsys, "compress", other, "-o", tmp_path / "alone.slc", "--width", 48)
    assert (coded / "other.slc").read_bytes() == (tmp_path / "alone.slc").read_bytes()
    code, out, err = run(capsys, "decompress", *sorted(coded.iterdir()), "-o", decoded)
    assert code == 0 and err == "" and out.count("\n") == 2
    run(capsys, "decompress", tmp_path / "alone.slc", "-o", tmp_path / "alone.png")
    assert np.array_equal(np.asarray(Image.open(decoded / "other.png")),
                          np.asarray(Image.open(tmp_path / "alone.png")))
    # one input and a folder: written into it, as with several
    assert run(capsys, "decompress", coded / "photo.slc", "-o", tmp_path)[0] == 0
    assert (tmp_path / "photo.png").exists()


def test_a_folder_is_coded_file_by_file_into_the_same_tree(tmp_path, photo, capsys):
    """A folder input stands for the images below it: each coded as alone, to its path
    below the folder under -o (made where missing), other files left out; its .slc files
    decode the same way. A bad image is its line, and its subfolder is not left behind."""
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "bad").mkdir()
    Image.open(photo).save(tree / "top.png")
    Image.fromarray(natural_like(24, 30, seed=1)).save(tree / "sub" / "deeper" / "low.JPG")
    (tree / "sub" / "notes.txt").write_text("not an image")
    (tree / "bad" / "broken.png").write_bytes(b"junk")
    coded = tmp_path / "new" / "coded"  # -o and its parent are made
    code, out, err = run(capsys, "compress", tree, "-o", coded, "--width", 48)
    assert code == 2 and out.count("\n") == 2 and "broken.png" in err
    assert sorted(p.relative_to(coded).as_posix() for p in coded.rglob("*")) == [
        "sub", "sub/deeper", "sub/deeper/low.slc", "top.slc"]  # no bad/, no notes
    run(capsys, "compress", photo, "-o", tmp_path / "alone.slc", "--width", 48)
    assert (coded / "top.slc").read_bytes() == (tmp_path / "alone.slc").read_bytes()
    code, out, err = run(capsys, "decompress", coded, "-o", tmp_path / "decoded")
    assert code == 0 and err == "" and out.count("\n") == 2
    assert Image.open(tmp_path / "decoded" / "sub" / "deeper" / "low.png").size == (30, 24)
    assert sorted(p.name for p in (tmp_path / "decoded").iterdir()) == ["sub", "top.png"]
    # a file's -o is made by no one: a typo in its folder is an error, not a new folder
    code, _, err = run(capsys, "compress", photo, "-o", tmp_path / "typo" / "p.slc")
    assert code == 2 and "No such file or directory" in err and not (tmp_path / "typo").exists()


@pytest.mark.parametrize("case", ["no image", "a file", "standard output", "same name"])
def test_a_folder_that_would_lose_something_is_refused_before_any_work(tmp_path, photo,
                                                                      capsys, case):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "empty").mkdir()
    Image.open(photo).save(tree / "a.png")
    Image.open(photo).save(tree / "sub" / "a.png")
    kept = tmp_path / "kept.slc"
    kept.write_bytes(b"keep")
    inputs, output, message = {
        "no image": ([tree / "empty"], tmp_path / "out", "a folder with no image below it"),
        "a file": ([tree], kept, "not a folder"),
        "standard output": ([tree], "-", "not a folder"),
        "same name": ([tree, tree / "sub"], tmp_path / "out", "would both be written to"),
    }[case]
    code, out, err = run(capsys, "compress", *inputs, "-o", output, "--width", 48)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and kept.read_bytes() == b"keep"


def test_several_files_load_their_model_once(tmp_path, photo, capsys, monkeypatch):
    from slimcodec import commands

    coded = tmp_path / "coded"
    coded.mkdir()
    other = tmp_path / "other.png"
    Image.fromarray(natural_like(30, 20, seed=2)).save(other)
    assert run(capsys, "compress", photo, other, "-o", coded, "--width", 48)[0] == 0
    loads = []
    load = commands.codec_for
    monkeypatch.setattr(commands, "codec_for", lambda *a: loads.append(a[0]) or load(*a))
    assert run(capsys, "decompress", *sorted(coded.iterdir()), "-o", tmp_path)[0] == 0
    assert loads == [DEFAULT_MODEL]


@pytest.mark.parametrize("case", ["same name", "not a folder", "standard input",
                                  "standard input alone", "an input"])
def test_several_files_that_would_lose_something_are_refused_before_any_work(
        tmp_path, photo, capsys, case):
    folder = tmp_path / "out"
    folder.mkdir()
    twin = tmp_path / "photo.jpg"
    Image.open(photo).save(twin)
    inputs, output, message = {
        "same name": ([photo, twin], folder, "would both be written to"),
        "not a folder": ([photo, twin], tmp_path / "x.slc", "names an existing folder"),
        "standard input": (["-", photo], folder, "standard input ('-') is coded alone"),
        "standard input alone": (["-"], folder, "standard input ('-') is coded alone"),
        "an input": ([photo, folder / "kept.slc"], folder, "is the input file"),
    }[case]
    if case == "an input":  # its output, the folder's kept.slc, is that input
        (folder / "kept.slc").write_bytes(b"keep")
    before = sorted(p.name for p in folder.iterdir())
    code, out, err = run(capsys, "compress", *inputs, "-o", output, "--width", 48)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1
    assert sorted(p.name for p in folder.iterdir()) == before
    if case == "an input":
        assert (folder / "kept.slc").read_bytes() == b"keep"


def test_output_onto_the_input_is_refused(tmp_path, photo, capsys):
    before = photo.read_bytes()
    code, _, err = run(capsys, "compress", photo, "-o", photo.parent / "." / photo.name)
    assert code == 2 and "is the input file" in err and photo.read_bytes() == before
    slc = tmp_path / "p.slc"
    run(capsys, "compress", photo, "-o", slc, "--width", 48)
    written = slc.read_bytes()
    code, _, err = run(capsys, "decompress", slc, "-o", slc)
    assert code == 2 and "is the input file" in err and slc.read_bytes() == written


def test_info(tmp_path, photo, capsys):
    slc = tmp_path / "p.slc"
    run(capsys, "compress", photo, "-o", slc, "--width", 72)
    code, out, _ = run(capsys, "info", slc, "--json")
    info = json.loads(out)
    assert code == 0
    assert info["width"] == 72 and (info["image_height"], info["image_width"]) == (37, 50)
    assert info["model"] == DEFAULT_MODEL and info["file_bytes"] == slc.stat().st_size
    code, out, _ = run(capsys, "info", slc)
    assert code == 0 and "fingerprint" in out
    # λ is stored as float32: shown to 6 digits, not as 0.004183...9 (the JSON keeps it)
    lines = dict(map(str.strip, line.split(": ", 1)) for line in out.strip().splitlines())
    assert repr(info["rate"]) != f"{info['rate']:.6g}"
    assert (lines["rate"], lines["bpp"]) == (f"{info['rate']:.6g}", f"{info['bpp']:.6g}")


def test_compress_sends_a_palette_on_a_screen_unless_told_not_to(tmp_path, capsys):
    path = tmp_path / "screen.png"
    Image.fromarray(few_colours(64, 96, seed=1)).save(path)
    for flags, colours in (((), True), (("--no-palette",), False)):
        slc = tmp_path / "s.slc"
        code, _, _ = run(capsys, "compress", path, "-o", slc, "--lmbda", 0.05, "--scale", 1,
                         *flags)
        assert code == 0
        _, out, _ = run(capsys, "info", slc, "--json")
        info = json.loads(out)
        assert bool(info["palette"]) == colours and bool(info["palette_reach"]) == colours
        header = unpack(slc.read_bytes()).header
        assert len(header.palette) == info["palette"]
        # and the exact blocks, which a palette makes possible
        assert bool(info["index_map_bytes"]) == colours
        assert len(header.index_map) == info["index_map_bytes"]
        # and the residual (here or not, as it pays), never with --no-palette
        assert len(header.residual) == info["residual_bytes"]
        assert colours or not info["residual_bytes"]


def test_eval_writes_json(tmp_path, capsys):
    images = tmp_path / "imgs" / "nested"
    images.mkdir(parents=True)
    for i, size in enumerate([(20, 30), (33, 17)]):
        Image.fromarray(natural_like(*size, seed=i)).save(images / f"{i}.png")
    (images / "broken.png").write_bytes(b"junk")
    out_json = tmp_path / "rd.json"
    code, _, err = run(capsys, "eval", tmp_path / "imgs", "--widths", 96, 48,
                       "--json", out_json)
    assert code == 0 and err.startswith("slimcodec: warning: skipping") and "broken.png" in err
    result = json.loads(out_json.read_text())
    assert result["model"] == DEFAULT_MODEL and result["images"] == 2
    # the default model is variable-rate: 5 λ per width
    assert [p["width"] for p in result["points"]] == [96] * 5 + [48] * 5
    for p in result["points"]:
        assert p["bpp"] > 0 and p["psnr"] > 0 and p["enc_ms"] > 0 and p["dec_ms"] > 0
        assert p["ms_ssim"] is None  # images too small for five scales
    # bpp is counted from the container bytes
    first = next(r for r in result["per_image"] if r["width"] == 96)
    assert first["bpp"] == pytest.approx(8 * first["bytes"] / (20 * 30))
    assert "eval" in err  # progress bar on stderr


def test_demo_codes_with_the_default_model_over_its_range_at_every_width(capsys):
    code, out, _ = run(capsys, "demo")
    assert code == 0 and DEFAULT_MODEL in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in
            (["192"], ["144"], ["96"], ["72"], ["48"])]
    widths = {r[0] for r in rows}
    assert widths == {"192", "144", "96", "72", "48"} and all(float(r[2]) > 0 for r in rows)
    assert len(rows) == 25  # the default is variable-rate: 5 λ per width, its range's ends included


@pytest.fixture
def bad_files(tmp_path, photo, capsys):
    slc = tmp_path / "good.slc"
    run(capsys, "compress", photo, "-o", slc)
    data = slc.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    files = {
        "truncated": data[: len(data) // 2],
        "corrupt": bytes(flipped),
        "foreign": photo.read_bytes(),
        "empty": b"",
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.slc"
        paths[name].write_bytes(content)
    torch.manual_seed(3)
    other = tmp_path / "other.pt"
    save_model_file(aux_trained(SlimCAE((16, 8))), other)
    paths["other-model"] = tmp_path / "other.slc"
    run(capsys, "compress", photo, "-o", paths["other-model"], "--model", other)
    return paths


@pytest.mark.parametrize("kind, message", [
    ("truncated", "truncated"),
    ("corrupt", "CRC"),
    ("foreign", "not a slimcodec file"),
    ("empty", "truncated"),
    ("other-model", "not registered"),
])
def test_bad_files_give_one_line_and_status_2(bad_files, tmp_path, capsys, kind, message):
    out_png = tmp_path / "out.png"
    code, _, err = run(capsys, "decompress", bad_files[kind], "-o", out_png)
    assert code == 2
    assert err.count("\n") == 1 and message in err and err.startswith("slimcodec: error:")
    assert not out_png.exists()  # nothing half-written


def test_wrong_model_for_file(bad_files, capsys, tmp_path):
    code, _, err = run(capsys, "decompress", bad_files["other-model"], "-o",
                       tmp_path / "x.png", "--model", "slimcae")
    assert code == 2 and "not by slimcae" in err


def test_bad_arguments(tmp_path, photo, capsys):
    for argv, message in [
        (("compress", tmp_path / "missing.png", "-o", tmp_path / "x.slc"), "no such file"),
        (("compress", photo, "-o", tmp_path / "x.slc", "--width", 100), "not one of"),
        (("compress", photo, "-o", tmp_path / "x.slc", "--model", "nope"), "unknown model"),
        (("info", tmp_path / "missing.slc"), "No such file"),
        (("eval", tmp_path / "nowhere"), "no such file"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)


def test_tile_reaches_the_transforms_and_a_bad_tile_is_refused(tmp_path, photo, capsys,
                                                               monkeypatch):
    """``--tile N`` runs compress's analysis and decompress's synthesis in tiles of N latent
    positions (the 37x50 photo is 3x4 positions: 12 tiles of 1); the image decodes as with
    the default tile, to float rounding; a tile or pixel limit below 1 is an argument
    error."""
    from slimcodec import tiling

    tiles = record_argument(monkeypatch, tiling, "spans", "tile")
    slc, png = tmp_path / "p.slc", tmp_path / "p.png"
    assert run(capsys, "compress", photo, "-o", slc, "--tile", 1)[0] == 0
    assert tiles and set(tiles) == {1}
    tiles.clear()
    assert run(capsys, "decompress", slc, "-o", png, "--tile", 1)[0] == 0
    assert tiles and set(tiles) == {1}
    tiles.clear()
    assert run(capsys, "decompress", slc, "-o", tmp_path / "d.png")[0] == 0
    assert set(tiles) == {tiling.DEFAULT_TILE}
    diff = np.abs(np.asarray(Image.open(png), int) - np.asarray(Image.open(tmp_path / "d.png")))
    assert diff.max() <= 1
    for option, bad in [("--tile", "0"), ("--tile", "-3"), ("--tile", "two"),
                        ("--max-pixels", "0")]:
        with pytest.raises(SystemExit) as exit_:
            main(["compress", str(photo), "-o", str(tmp_path / "x.slc"), option, bad])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and f"{option}: {bad!r} is not a" in err, err
    assert not (tmp_path / "x.slc").exists()


def test_subprocess_no_traceback(bad_files, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "slimcodec", "decompress", str(bad_files["corrupt"]),
         "-o", str(tmp_path / "o.png")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
