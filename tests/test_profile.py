"""Profiles and width selection (issue 11)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import natural_like, record_argument
from PIL import Image
from slimcodec_edge.profile import count_macs, latency_fit, profile_model
from slimcodec_edge.select import select_width
from test_edge import tiny

from slimcodec.cli import main
from slimcodec.errors import SlimcodecError
from slimcodec.zoo import save_model_file


@pytest.fixture(scope="module", params=["slimcae", "slimcae-vr"])
def profiled(request, tmp_path_factory):
    model = tiny(request.param)
    return model, profile_model(model, request.param, size=(64, 96), repeats=2)


def test_profile_schema(profiled):
    model, profile = profiled
    assert profile["size"] == [64, 96] and "1 MAC" in profile["convention"]
    assert profile["tile"] == 32
    json.dumps(profile)  # plain JSON
    widths = [e["width"] for e in profile["widths"]]
    assert widths == list(model.widths)
    for entry in profile["widths"]:
        for part in ("encoder", "decoder"):
            p = entry[part]
            assert p["macs"] > 0 and p["peak_memory_bytes"] > 0 and p["graph_bytes"] > 0
            assert p["params"]["total"] == p["params"]["shared"] + p["params"]["private"]
            assert p["weight_bytes"] == 4 * p["params"]["total"]
            for runtime in ("onnxruntime", "torch"):
                for threads in ("threads_1", "threads_all"):
                    t = p["latency_ms"][runtime][threads]
                    assert 0 < t["median"] <= t["p90"]
            edge = p["latency_ms"]["edge"]["threads_1"]  # the whole encode or decode
            assert 0 < edge["median"] <= edge["p90"]
            fit = p["latency_ms"]["edge"]["fit"]  # through the profile size and a smaller one
            assert fit["fixed_ms"] >= 0 and fit["ms_per_mpixel"] > 0
            assert fit["sizes"] == [[64, 96], [48, 64]]
    wide, narrow = profile["widths"]
    assert narrow["decoder"]["macs"] < wide["decoder"]["macs"]
    assert narrow["encoder"]["params"]["shared"] < wide["encoder"]["params"]["shared"]


def test_profile_with_eval_shows_what_each_width_costs_and_buys(tmp_path, capsys):
    """`profile --eval`: the table gains each width's bpp and PSNR, the JSON names the
    images and carries MS-SSIM, and the plot takes another model's profile beside it."""
    model = tiny("slimcae-vr")
    save_model_file(model, tmp_path / "m.pt")
    (tmp_path / "photos").mkdir()
    for k in range(2):
        Image.fromarray(natural_like(176, 192, seed=k)).save(tmp_path / "photos" / f"{k}.png")
    assert main(["eval", str(tmp_path / "photos"), "--model", str(tmp_path / "m.pt"),
                 "--json", str(tmp_path / "rd.json")]) == 0
    base = ["profile", "--model", str(tmp_path / "m.pt"), "--size", "96x64", "--repeats", "1"]
    assert main([*base, "--json", str(tmp_path / "a.json")]) == 0
    assert "at 96x64, tiles of 32;" in capsys.readouterr().out
    assert main([*base, "--tile", "2", "--json", str(tmp_path / "t.json")]) == 0
    assert "at 96x64, tiles of 2;" in capsys.readouterr().out
    assert json.loads((tmp_path / "t.json").read_text())["tile"] == 2
    assert main([*base, "--eval", str(tmp_path / "rd.json"), "--json", str(tmp_path / "b.json"),
                 "--plot", str(tmp_path / "p.png"), "--compare", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    head, *rows = [line for line in out.splitlines() if line.strip()[:5].strip().isdigit()
                   or line.lstrip().startswith("width")][:3]
    assert "bpp" in head and "PSNR" in head and len(rows) == 2 and "over 2 images" in out
    profile = json.loads((tmp_path / "b.json").read_text())
    assert [i["image"] for i in profile["rd_source"]["images"]] == ["0.png", "1.png"]
    assert all("ms_ssim" in p for e in profile["widths"] for p in e["points"])
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_macs_count_gdn_beyond_the_convolutions():
    """fvcore counts the convolutions; the handles add GDN's elementwise work."""
    model = tiny("slimcae")
    c, h, w = 16, 64, 64
    model.set_width(c)
    n1, n2, n3 = (h // 4) * (w // 4), (h // 8) * (w // 8), (h // 16) * (w // 16)
    convs = n1 * c * 3 * 81 + n2 * c * c * 25 + n3 * c * c * 25
    gdn_1x1 = (n1 + n2 + n3) * c * c
    gdn_elementwise = 3 * (n1 + n2 + n3) * c  # square, rsqrt, multiply
    macs = count_macs(model.g_a, (torch.rand(1, 3, h, w),))
    assert macs >= convs + gdn_1x1 + gdn_elementwise
    assert macs < convs + gdn_1x1 + gdn_elementwise + 3 * 12 * c * c  # parameter reparam ops


def test_macs_count_the_synthesis_as_its_transposed_convolutions():
    """On a CPU the last layer runs as a sub-pixel convolution, whose zero taps are more
    multiply-adds; the profile counts the architecture's (fvcore traces the layer as it is)."""
    from slimcodec.models import SlimCAE

    torch.manual_seed(0)
    model = SlimCAE(widths=(48,))
    c, n = 48, 4 * 6  # latent positions
    convs = n * c * c * 25 + 4 * n * c * c * 25 + 16 * n * c * 3 * 81
    gdn = 21 * n * c * c + 3 * 21 * n * c  # 1x1 and square, rsqrt, multiply at n, 4n, 16n
    macs = count_macs(model.g_s, (torch.rand(1, c, 4, 6),))
    assert convs + gdn <= macs < convs + gdn + 3 * 12 * c * c


def synthetic_profile():
    def part(ms, macs, mb):
        return {"macs": macs, "peak_memory_bytes": mb * 2**20,
                "latency_ms": {"onnxruntime": {"threads_1": {"median": ms, "p90": ms}}}}
    return {"widths": [
        {"width": 48, "encoder": part(5, 1e8, 10), "decoder": part(6, 1e8, 20),
         "points": [{"bpp": 0.05, "psnr": 26.0, "lmbda": 0.001},
                    {"bpp": 0.2, "psnr": 30.0, "lmbda": 0.01}]},
        {"width": 96, "encoder": part(12, 4e8, 30), "decoder": part(14, 4e8, 50),
         "points": [{"bpp": 0.08, "psnr": 27.0, "lmbda": 0.001},
                    {"bpp": 0.5, "psnr": 33.0, "lmbda": 0.05}]},
        {"width": 192, "encoder": part(40, 1.6e9, 90), "decoder": part(45, 1.6e9, 150),
         "points": [{"bpp": 0.1, "psnr": 27.5, "lmbda": 0.002},
                    {"bpp": 1.2, "psnr": 37.0, "lmbda": 0.2}]},
    ]}


def test_selection_reports_each_widths_own_figures_and_the_reachable_range():
    """A single-rate width chosen for a rate reports the rate it codes at, not the target;
    a target nothing reaches names the range the widths within the limits cover."""
    profile = synthetic_profile()
    for entry, (bpp, psnr) in zip(profile["widths"], [(0.06, 27.0), (0.108, 32.46),
                                                      (0.11, 33.16)], strict=True):
        entry["points"] = [{"bpp": bpp, "psnr": psnr}]  # one point: a single-rate model
    choice = select_width(profile, target_bpp=0.2)
    assert (choice.width, choice.bpp, choice.psnr) == (192, 0.11, 33.16)  # the best PSNR
    with pytest.raises(SlimcodecError, match=r"reaches 0\.05 bpp: they cover 0\.06-0\.11 bpp"):
        select_width(profile, target_bpp=0.05)
    with pytest.raises(SlimcodecError, match=r"reaches 35 dB: they cover 27-32\.46 dB"):
        select_width(profile, target_psnr=35.0, max_latency_ms=20)


def test_selection_respects_every_limit_and_target():
    profile = synthetic_profile()
    assert select_width(profile).width == 192
    assert select_width(profile, max_latency_ms=20).width == 96
    assert select_width(profile, max_latency_ms=20, side="encoder").width == 96
    assert select_width(profile, max_macs=2e8).width == 48
    assert select_width(profile, max_memory_mb=40).width == 48
    assert select_width(profile, max_memory_mb=40, side="encoder").width == 96
    assert select_width(profile, target_bpp=0.4).width == 192  # 32.8 dB against 32.3
    choice = select_width(profile, target_bpp=0.4, max_latency_ms=20)
    assert choice.width == 96 and 0.001 < choice.lmbda < 0.05 and choice.psnr > 32
    choice = select_width(profile, target_psnr=28.0)
    assert choice.width == 48  # reaches 28 dB at the lowest rate
    with pytest.raises(SlimcodecError, match="narrowest, 48, needs 6 ms"):
        select_width(profile, max_latency_ms=5.5)
    with pytest.raises(SlimcodecError, match="reaches 40 dB"):
        select_width(profile, target_psnr=40.0)


def test_budgets_scale_to_the_image_and_refuse_sizes_not_measured():
    """Time and MACs scale with the pixels the tiled transforms run on (halos counted),
    memory with the pixels; over 4x is refused, under 0.25x budgeted as 0.25x."""
    from slimcodec.tiling import processed_pixels

    profile = dict(synthetic_profile(), size=[512, 768])

    def work(h, w):
        return processed_pixels(h, w) / processed_pixels(512, 768)

    assert select_width(profile, max_latency_ms=20, image_size=(512, 768)).width == 96
    double = work(1024, 768)
    assert 2 < double < 2.3  # the halos of the extra row of tiles
    choice = select_width(profile, max_latency_ms=20, image_size=(1024, 768))
    assert (choice.width, choice.scale) == (48, double) and "scaled ×2.19" in choice.reason
    assert choice.costs["decoder_ms"] == 6 * double and choice.costs["memory_mb"] == 20 * 2
    assert "scaled ×2.19 to the image" in choice.describe()
    with pytest.raises(SlimcodecError, match=r"narrowest, 48, needs 26.25 ms.*at this image"):
        select_width(profile, max_latency_ms=20, image_size=(1024, 1536))  # 4x the pixels
    with pytest.raises(SlimcodecError, match=r"5\.27x the profile's 768x512.*--size 1920x1088"):
        select_width(profile, max_latency_ms=1e3, image_size=(1080, 1920))  # 16s: 1088
    # Smaller than a quarter: budgeted as a quarter of the pixels, an upper bound.
    quarter = work(256, 384)
    assert select_width(profile, max_latency_ms=45 * quarter * 0.99,
                        image_size=(64, 64)).width == 96
    assert select_width(profile, max_latency_ms=45 * quarter * 1.01,
                        image_size=(64, 64)).width == 192


def test_budgets_scale_by_the_pixels_the_profile_s_tiles_run_on():
    from slimcodec.tiling import processed_pixels

    for tile in (16, 32):
        profile = dict(synthetic_profile(), size=[512, 768], tile=tile)
        work = processed_pixels(1024, 768, tile=tile) / processed_pixels(512, 768, tile=tile)
        choice = select_width(profile, max_latency_ms=1e3, image_size=(1024, 768))
        assert choice.scale == pytest.approx(work)
    assert processed_pixels(1024, 768, tile=16) / processed_pixels(512, 768, tile=16) != work


def test_a_profile_times_the_edge_runtime_with_its_tile(monkeypatch):
    """``profile_model(tile=N)`` (``slimcodec profile --tile N``) times the edge runtime in
    tiles of N and records it; the fit counts the pixels such tiles run on."""
    from slimcodec import tiling

    tiles = record_argument(monkeypatch, tiling, "spans", "tile")
    profile = profile_model(tiny("slimcae"), "slimcae", size=(64, 96), widths=[8],
                            repeats=1, tile=2)
    assert profile["tile"] == 2 and tiles and set(tiles) == {2}
    times = {(64, 96): {"median": 10.0}, (48, 64): {"median": 6.0}}
    fits = [latency_fit(times, (64, 96), (48, 64), tile) for tile in (2, 32)]
    assert fits[0]["ms_per_mpixel"] != fits[1]["ms_per_mpixel"]


def test_budgets_use_the_profiles_fit_of_the_edge_times():
    """Where the profile fitted the edge runtime's time over two sizes, a budget on a small
    image predicts with the fit (its fixed cost stays), on a large one with the scaled
    time: the larger of the two."""
    from slimcodec.tiling import processed_pixels

    profile = dict(synthetic_profile(), size=[512, 768])
    for entry in profile["widths"]:
        for part in ("encoder", "decoder"):
            median = entry[part]["latency_ms"]["onnxruntime"]["threads_1"]["median"]
            entry[part]["latency_ms"]["edge"] = {
                "threads_1": {"median": median + 10, "p90": median + 10},
                "fit": {"fixed_ms": 10.0, "ms_per_mpixel": median / 0.442368}}
    small = (256, 384)
    choice = select_width(profile, image_size=small)
    expected = 10 + 45 / 0.442368 * processed_pixels(*small) / 1e6
    assert choice.costs["decoder_ms"] == pytest.approx(expected)
    assert select_width(profile, max_latency_ms=expected * 0.99, image_size=small).width == 96
    assert select_width(profile, max_latency_ms=expected * 1.01, image_size=small).width == 192
    # Without an image size, the edge time measured at the profile's.
    assert select_width(profile).costs["decoder_ms"] == 55
    # Larger than the profile: the time scaled by the work, which the fit does not exceed
    # there (a fit through two nearby sizes is not extrapolated).
    large = (1024, 768)
    work = processed_pixels(*large) / processed_pixels(512, 768)
    assert select_width(profile, image_size=large).costs["decoder_ms"] == pytest.approx(
        55 * work)


def test_select_prints_the_widths_own_figures_and_cheapest_on_request(tmp_path, capsys):
    profile = dict(synthetic_profile(), size=[512, 768], fingerprint="00" * 8)
    (tmp_path / "p.json").write_text(json.dumps(profile))
    base = ["select", "--profile", str(tmp_path / "p.json"), "--target-bpp", "0.4"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert out.startswith("width 192") and "expected: 0.4000 bpp, 32.80 dB" in out
    assert "its measured range: 0.1-1.2 bpp, 27.50-37.00 dB" in out
    assert "its cost (at the profile's size): encoder 40 ms, decoder 45 ms" in out
    assert main([*base, "--prefer", "cost"]) == 0
    assert capsys.readouterr().out.startswith("width 96")
    assert main([*base, "--image-size", "1536x1024", "--max-latency-ms", "65"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("width 96") and "scaled ×4.38 to the image" in out
    assert main([*base, "--target-bpp", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "they cover 0.05-1.2 bpp" in err


def test_select_cli_and_compress_with_a_budget(profiled, tmp_path, capsys):
    model, profile = profiled
    (tmp_path / "p.json").write_text(json.dumps(profile))
    save_model_file(model, tmp_path / "m.pt")
    limit = profile["widths"][1]["decoder"]["macs"] * 1.01  # only the narrow width fits
    assert main(["select", "--profile", str(tmp_path / "p.json"), "--max-macs", str(limit)]) == 0
    assert capsys.readouterr().out.startswith("width 8")
    Image.fromarray(natural_like(64, 96)).save(tmp_path / "in.png")  # the profile's size
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.slc"),
                 "--model", str(tmp_path / "m.pt"), "--profile", str(tmp_path / "p.json"),
                 "--max-macs", str(limit)]) == 0
    assert "width 8" in capsys.readouterr().out
    code = main(["select", "--profile", str(tmp_path / "p.json"), "--max-macs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no width fits" in err


def test_a_budget_picks_each_images_width_when_several_are_compressed(profiled, tmp_path,
                                                                     capsys):
    """A budget scales with each image's size: in one call, each file is the one compress
    writes for that image alone (the first image's choice does not carry over)."""
    from slimcodec.bitstream import unpack

    model, profile = profiled
    (tmp_path / "p.json").write_text(json.dumps(profile))
    save_model_file(model, tmp_path / "m.pt")
    limit = str(profile["widths"][0]["decoder"]["macs"] * 1.01)  # the widest, at its size
    Image.fromarray(natural_like(64, 96)).save(tmp_path / "small.png")
    Image.fromarray(natural_like(128, 96, seed=1)).save(tmp_path / "large.png")  # 2x: narrower
    budget = ["--model", str(tmp_path / "m.pt"), "--profile", str(tmp_path / "p.json"),
              "--max-macs", limit]
    (tmp_path / "out").mkdir()
    assert main(["compress", str(tmp_path / "small.png"), str(tmp_path / "large.png"), "-o",
                 str(tmp_path / "out"), *budget]) == 0
    for name in ("small", "large"):
        assert main(["compress", str(tmp_path / f"{name}.png"), "-o",
                     str(tmp_path / f"{name}.slc"), *budget]) == 0
        assert (tmp_path / "out" / f"{name}.slc").read_bytes() == \
            (tmp_path / f"{name}.slc").read_bytes()
    widths = [unpack((tmp_path / f"{n}.slc").read_bytes()).header.width
              for n in ("small", "large")]
    assert widths[0] == model.widths[0] and widths[1] < widths[0]
    capsys.readouterr()


def test_profile_of_an_adapted_codec_counts_the_adapter(profiled, tmp_path, capsys):
    from slimcodec.adaptation import DomainAdapter, save_adapter

    model, plain = profiled
    save_adapter(DomainAdapter(model, "extend", "screen"), tmp_path / "s.adapter")
    save_model_file(model, tmp_path / "m.pt")
    assert main(["profile", "--model", str(tmp_path / "m.pt"), "--size", "96x64",
                 "--repeats", "1", "--adapter", str(tmp_path / "s.adapter"),
                 "--json", str(tmp_path / "p.json")]) == 0
    assert "with domain 'screen' (extend)" in capsys.readouterr().out
    adapted = json.loads((tmp_path / "p.json").read_text())
    assert adapted["adapter"]["method"] == "extend" and adapted["adapter"]["parameters"] > 0
    for ours, theirs in zip(adapted["widths"], plain["widths"], strict=True):
        for part in ("encoder", "decoder"):  # extend adapts both sides
            assert ours[part]["macs"] > theirs[part]["macs"]
            assert ours[part]["params"] == theirs[part]["params"]
    profile_model(model, "m", size=(64, 96), repeats=1,
                  adapter=DomainAdapter(model, "bias", "art"))
    assert model.adapter is None  # profiling leaves the model as it found it


def test_budgets_pick_the_width_on_the_edge_and_refuse_another_models_profile(
        profiled, tmp_path, capsys):
    from slimcodec_edge.edge.cli import main as edge_main
    from slimcodec_edge.onnx_export import export_bundle

    from slimcodec.adaptation import DomainAdapter, save_adapter
    from slimcodec.bitstream import unpack

    model, profile = profiled
    (tmp_path / "p.json").write_text(json.dumps(profile))
    adapter = DomainAdapter(model, "bias", "art")
    export_bundle(model, tmp_path / "b", "tiny", adapters=[adapter])
    Image.fromarray(natural_like(64, 96)).save(tmp_path / "in.png")  # the profile's size
    limit = profile["widths"][1]["decoder"]["macs"] * 1.01  # only the narrow width fits
    budget = ["--profile", str(tmp_path / "p.json"), "--max-macs", str(limit)]
    encode = ["encode", str(tmp_path / "b"), str(tmp_path / "in.png"), "-o",
              str(tmp_path / "x.slc")]
    assert edge_main([*encode, *budget]) == 0
    assert unpack((tmp_path / "x.slc").read_bytes()).header.width == 8
    assert "budget: width 8" in capsys.readouterr().err
    # A budget holds for the tile its profile timed: another is refused, not guessed at,
    # by both tools; a profile of that tile lets it through.
    assert profile["tile"] == 32
    save_model_file(model, tmp_path / "m.pt")
    before = (tmp_path / "x.slc").read_bytes()
    compress = ["compress", *encode[2:], "--model", str(tmp_path / "m.pt")]
    # The budget's width is chosen for the image's own size, so the scale auto would
    # choose is not, in either tool: at the top of the range it codes upsampled only
    # without a budget (a checkerboard, which the untrained model codes better at ×1.5;
    # with no palette, whose exact blocks code it best at ×1).
    if getattr(model, "lambda_bounds", None):
        top = ["--quality", "100", "--no-palette"]
        checker = (np.indices((64, 96)).sum(axis=0) % 2 * 255).astype(np.uint8)
        Image.fromarray(np.repeat(checker[..., None], 3, axis=2)).save(tmp_path / "c.png")
        for tool, coder in ((edge_main, encode), (main, compress)):
            coder = [str(tmp_path / "c.png") if a == str(tmp_path / "in.png") else a
                     for a in coder]
            for argv, upsampled in (([*coder, *top, "--width", "8"], True),
                                    ([*coder, *top, *budget], False)):
                assert tool(argv) == 0
                coded = unpack((tmp_path / "x.slc").read_bytes()).header.coded_size
                assert (coded is not None) == upsampled, argv
        capsys.readouterr()
        before = (tmp_path / "x.slc").read_bytes()
    for tool, argv in ((edge_main, encode), (main, compress)):
        assert tool([*argv, *budget, "--tile", "16"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "profile with --tile 16" in err, err
        assert (tmp_path / "x.slc").read_bytes() == before
    (tmp_path / "p16.json").write_text(json.dumps(dict(profile, tile=16)))
    budget16 = ["--profile", str(tmp_path / "p16.json"), "--max-macs", str(limit)]
    assert edge_main([*encode, *budget16, "--tile", "16"]) == 0
    assert main([*compress, *budget16, "--tile", "16"]) == 0
    assert edge_main([*encode, *budget16]) == 2
    assert "or code with --tile 16" in capsys.readouterr().err
    assert main(["select", *budget16]) == 0  # select codes nothing: any profile's tile
    (tmp_path / "p0.json").write_text(json.dumps(dict(profile, tile=0)))
    assert main(["select", "--profile", str(tmp_path / "p0.json"), "--max-macs", "1e12"]) == 2
    assert "not a slimcodec profile" in capsys.readouterr().err
    (tmp_path / "x.slc").write_bytes(before)
    # An image 5x the profile's pixels: its costs were not measured to scale that far.
    before = (tmp_path / "x.slc").read_bytes()
    Image.fromarray(natural_like(160, 192)).save(tmp_path / "big.png")
    assert edge_main([*encode[:2], str(tmp_path / "big.png"), *encode[3:], *budget]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "slimcodec profile --size 192x160" in err, err
    assert (tmp_path / "x.slc").read_bytes() == before  # refused before writing anything
    # The source's profile for a file coded with an adapter: coded, with a warning.
    assert edge_main([*encode, *budget, "--domain", "art"]) == 0
    assert "profile measured the source codec" in capsys.readouterr().err
    # Another model's profile is refused, in one line, by both tools.
    other = dict(profile, fingerprint="00" * 8, model="other")
    (tmp_path / "o.json").write_text(json.dumps(other))
    wrong = ["--profile", str(tmp_path / "o.json"), "--max-macs", str(limit)]
    assert edge_main([*encode, *wrong]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the profile measured other" in err
    save_model_file(model, tmp_path / "m.pt")
    save_adapter(adapter, tmp_path / "a.adapter")
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "y.slc"), "--model",
                 str(tmp_path / "m.pt"), *wrong]) == 2
    assert "the profile measured other" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "y.slc"), "--model",
                 str(tmp_path / "m.pt"), *budget, "--adapter", str(tmp_path / "a.adapter")]) == 0
    assert "slimcodec: warning: the profile measured the source codec" in capsys.readouterr().err


def test_light_commands_run_where_torch_cannot_be_imported(profiled, tmp_path):
    """`slimcodec --help`, `info`, `models` and `select` in a process where importing torch
    fails (a device with the edge runtime alone, or a fast start)."""
    from helpers import run_without_torch

    _, profile = profiled
    (tmp_path / "p.json").write_text(json.dumps(profile))
    golden = Path(__file__).parent / "golden" / "slimcae-hp.slc"
    run_without_torch(f"""
import contextlib, io
from slimcodec.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    assert main(["info", {str(golden)!r}, "--json"]) == 0
    assert main(["models"]) == 0
    assert main(["select", "--profile", {str(tmp_path / "p.json")!r}]) == 0
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
text = out.getvalue()
assert '"model": "slimcae-hp"' in text and "(default)" in text and "width " in text, text
assert "compress" in text and "profile" in text  # every command listed by --help
""")


def test_compress_with_a_latency_budget_through_the_python_api(profiled, tmp_path):
    import slimcodec
    from slimcodec.codec import Codec

    model, profile = profiled
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile))
    codec = Codec(model)
    img = natural_like(32, 32)
    data = slimcodec.compress(img, model=codec, max_latency_ms=1e6, profile=path)
    assert slimcodec.read_header(data).width == model.widths[0]  # everything fits: the widest
    with pytest.raises(SlimcodecError, match="no width fits"):
        slimcodec.compress(img, model=codec, max_latency_ms=1e-6, profile=path)
    with pytest.raises(ValueError, match="needs profile"):
        slimcodec.compress(img, model=codec, max_latency_ms=10)
    with pytest.raises(SlimcodecError, match="profile with --tile 4"):
        slimcodec.compress(img, model=codec, max_latency_ms=1e6, profile=path, tile=4)
    other = dict(profile, fingerprint="00" * 8)
    path.write_text(json.dumps(other))
    with pytest.raises(slimcodec.ModelMismatchError, match="the profile measured"):
        slimcodec.compress(img, model=codec, max_latency_ms=1e6, profile=path)
