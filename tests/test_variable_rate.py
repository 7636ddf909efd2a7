"""Variable rate (issue 12): modulation, the container's λ, rate control."""

import contextlib
import json
import math
from itertools import pairwise

import numpy as np
import pytest
import torch
from helpers import aux_trained, natural_like, sliced_slimcae
from PIL import Image

from slimcodec import rate_control
from slimcodec.bitstream import RateKind, unpack
from slimcodec.cli import main
from slimcodec.codec import Codec
from slimcodec.errors import RateError
from slimcodec.evaluate import evaluate
from slimcodec.models import ModulatedSlimCAE, SlimCAE
from slimcodec.rate_control import encode_to_target, encode_with_rate, quality_to_lambda
from slimcodec.training import TrainConfig, train
from slimcodec.utils.metrics import psnr
from slimcodec.zoo import save_model_file

RANGE = (0.002, 0.2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny slimcae-vr (widths 16 and 8 cut from the shipped slimcae), trained 40 steps."""
    root = tmp_path_factory.mktemp("vr")
    data = root / "data"
    data.mkdir()
    for i in range(3):
        Image.fromarray(natural_like(64, 64, seed=i)).save(data / f"{i}.png")
    save_model_file(sliced_slimcae((16, 8)), root / "init.pt")
    cfg = TrainConfig(data=str(data), out=str(root / "run"), arch="slimcae-vr",
                      init=str(root / "init.pt"), widths=[16, 8], lambda_ranges=list(RANGE),
                      rate_anchors=3, patch=32, batch=4, steps=40, lr=1e-3,
                      checkpoint_every=1000)
    trainer = train(cfg)
    return root / "run" / "model.pt", trainer.model


@pytest.fixture(scope="module")
def codec(trained):
    return Codec.load(trained[0])


@pytest.fixture(scope="module")
def image():
    return natural_like(128, 160, seed=5)


def test_rate_rises_with_lambda_at_every_width(codec, image):
    for width in codec.widths:
        lo, hi = codec.lambda_range(width)
        grid = np.exp(np.linspace(math.log(lo), math.log(hi), 7))
        rates = [len(codec.encode_rgb(image, width, lmbda=float(v))) for v in grid]
        assert all(b >= a for a, b in pairwise(rates)), (width, rates)
        assert rates[-1] > 2 * rates[0], (width, rates)


def test_container_carries_lambda_and_needs_nothing_else(codec, image):
    data = codec.encode_rgb(image, 8, lmbda=0.01)
    header = unpack(data).header
    assert header.rate_kind == RateKind.LAMBDA and header.rate == pytest.approx(0.01, rel=1e-6)
    out, _ = codec.decode_rgb(data)
    # The decoder used the file's λ: decoding it as another λ's file would differ.
    with codec.operating_point(8, 0.01) as model:
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        expected = model(x)["x_hat"].clamp(0, 1).mul(255).round()[0].permute(1, 2, 0).numpy()
    assert np.abs(out.astype(float) - expected).max() <= 1


def test_out_of_range_lambda_and_targets_give_the_range(codec, image, tmp_path, capsys):
    with pytest.raises(RateError, match=r"range \[0.002, 0.2\]"):
        codec.encode_rgb(image, 16, lmbda=0.5)
    with pytest.raises(RateError, match=r"out of reach.*reaches"):
        encode_to_target(codec, image, target_bpp=50.0)
    # A size target is answered in bytes: the smallest file the model writes of this image.
    smallest = min(len(codec.encode_rgb(image, w, lmbda=codec.lambda_range(w)[0]))
                   for w in codec.widths)
    with pytest.raises(RateError, match=rf"target 10 bytes .* reaches at least {smallest} "
                                        r"bytes on this image"):
        encode_with_rate(codec, image, target_size=10)
    path = tmp_path / "img.png"
    Image.fromarray(image).save(path)
    for option in (["--lmbda", "1e-6"], ["--target-bpp", "0.0001"], ["--quality", "101"]):
        code = main(["compress", str(path), "-o", str(tmp_path / "x.slc"), "--model",
                     str(codec.name), *option])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("slimcodec: error:"), err
    single = Codec(aux_trained(SlimCAE((8,))))
    with pytest.raises(RateError, match="single-rate"):
        single.encode_rgb(image, lmbda=0.01)


def test_target_bpp_search_is_bounded_and_lands(codec, image):
    lo = len(codec.encode_rgb(image, 16, lmbda=RANGE[0])) * 8 / image[..., 0].size
    hi = len(codec.encode_rgb(image, 16, lmbda=RANGE[1])) * 8 / image[..., 0].size
    for target in (lo * 1.3, math.sqrt(lo * hi), hi * 0.8):
        data, search = encode_to_target(codec, image, target_bpp=target, width=16,
                                        max_passes=8)
        achieved = 8 * len(data) / image[..., 0].size
        assert search.passes <= 8
        assert abs(achieved - target) / target <= 0.03, (target, search.describe())
        assert unpack(data).header.rate == pytest.approx(search.lmbda, rel=1e-6)


def test_target_search_measures_the_refined_adapted_file(codec, image, tmp_path, capsys):
    """With --refine (and an adapter), every pass codes as the returned file is coded."""
    from slimcodec.adaptation import DomainAdapter, domain_id

    lo = len(codec.encode_rgb(image, 16, lmbda=RANGE[0])) * 8 / image[..., 0].size
    hi = len(codec.encode_rgb(image, 16, lmbda=RANGE[1])) * 8 / image[..., 0].size
    adapted = Codec(codec.model, codec.name, adapters=[DomainAdapter(codec.model, "bias", "d")])
    target = math.sqrt(lo * hi)
    data, search = encode_to_target(adapted, image, target_bpp=target, width=16,
                                    max_passes=8, refine=5, domain="d")
    assert abs(8 * len(data) / image[..., 0].size - target) / target <= 0.03, search.describe()
    assert data == adapted.encode_rgb(image, 16, lmbda=search.lmbda, refine=5, domain="d")
    assert unpack(data).header.domain == domain_id("d")
    path = tmp_path / "img.png"
    Image.fromarray(image).save(path)
    code = main(["compress", str(path), "-o", str(tmp_path / "x.slc"), "--model",
                 str(codec.name), "--target-bpp", f"{target:.4f}", "--refine", "5", "-v"])
    assert code == 0 and "encoder passes" in capsys.readouterr().err


def test_a_gates_rate_target_is_searched_with_the_model_alone(codec, image):
    """A bpp target through the gate ``auto``: the passes code with the model alone (no
    syntheses) and the gate codes once, at the λ found, its file kept where it holds the
    model alone's strings (a decoder adapter won, or none); where it holds others, the width
    is searched through the gate, pass by pass."""
    from slimcodec.adaptation import DomainAdapter

    class Counting(Codec):
        def encode_rgb(self, *args, domain=None, **kwargs):
            self.domains.append(domain)
            return super().encode_rgb(*args, domain=domain, **kwargs)

    lo = len(codec.encode_rgb(image, 16, lmbda=RANGE[0])) * 8 / image[..., 0].size
    hi = len(codec.encode_rgb(image, 16, lmbda=RANGE[1])) * 8 / image[..., 0].size
    target = math.sqrt(lo * hi)
    gated = Counting(codec.model, codec.name,
                     adapters=[DomainAdapter(codec.model, "bias", "d")])
    gated.domains = []
    data, search = encode_to_target(gated, image, target_bpp=target, width=16,
                                    domain="auto")
    assert gated.domains.count("auto") == 1 and gated.domains.count("source") >= 3
    assert data == gated.encode_rgb(image, 16, lmbda=search.lmbda, domain="auto")
    assert abs(math.log(8 * len(data) / image[..., 0].size / target)) <= math.log1p(0.01)
    # Every pass through the gate (the gate keeping the model alone's strings at each): the
    # same λ one by one, so the same file, for a gate pass per search pass.
    gated.domains = []
    each, _ = encode_to_target(gated, image, target_bpp=target, width=16, domain="auto",
                               gate_proxy=False)
    assert each == data and gated.domains.count("auto") == search.passes - 1 > 1
    # Its adapter codes the model alone's strings, so a width the model alone cannot reach
    # (the widest, for a target below its lowest rate) costs no pass through the gate.
    assert gated.gate_keeps_source_strings
    bottom = {w: 8 * len(codec.encode_rgb(image, w, lmbda=codec.lambda_range(w)[0]))
              / image[..., 0].size for w in (16, 8)}
    assert bottom[8] < bottom[16]
    gated.domains = []
    data, search = encode_to_target(gated, image, target_bpp=math.sqrt(bottom[8] * bottom[16]),
                                    domain="auto")
    assert search.width == 8 and gated.domains.count("auto") == 1

    class Elsewhere(Counting):
        """A gate that keeps other strings than the model alone's: those of a lower λ."""

        def _gate(self, rgb, width, grayscale, lmbda, refine, report, scale=1.0,
                  resampling="lanczos"):
            return self.encode_rgb(rgb, width, grayscale, math.sqrt(lmbda * RANGE[0]),
                                   scale=scale, resampling=resampling)

    other = Elsewhere(codec.model, codec.name)
    other.domains = []
    data, search = encode_to_target(other, image, target_bpp=target, width=16,
                                    domain="auto")
    assert other.domains.count("auto") > 1
    assert data == other.encode_rgb(image, 16, lmbda=search.lmbda, domain="auto")
    assert abs(math.log(8 * len(data) / image[..., 0].size / target)) <= math.log1p(0.01)


def test_a_gates_psnr_target_takes_each_pass_psnr_from_the_gate(codec, image, monkeypatch):
    """The gate ``auto`` decodes every candidate to compare them: a PSNR target's pass
    through it takes the kept file's PSNR from it (``report["psnr"]``), exactly the file's,
    without decoding the file again; the model alone's passes decode theirs."""
    from slimcodec.adaptation import DomainAdapter

    gated = Codec(codec.model, codec.name, adapters=[DomainAdapter(codec.model, "bias", "d")])
    target = _quarter_psnr(gated, image)
    measured = []
    monkeypatch.setattr(rate_control, "psnr", lambda a, b: measured.append(1) or psnr(a, b))
    data, search = encode_to_target(gated, image, target_psnr=target, width=8, domain="auto",
                                    gate_proxy=False)
    assert measured == [] and search.passes >= 3
    assert search.psnr == psnr(image, gated.decode_rgb(data)[0])
    assert abs(search.psnr - target) <= 0.1
    _, alone = encode_to_target(gated, image, target_psnr=target, width=8, domain="source")
    assert len(measured) == alone.passes
    # searched with the model alone, the gate once: the model alone's passes decode
    measured.clear()
    data, search = encode_to_target(gated, image, target_psnr=target, width=8, domain="auto")
    assert len(measured) == search.passes - 1 and search.passes >= 3
    # and a gate asked for no report measures no PSNR (another pass over the image)
    from slimcodec import codec as codec_module

    qualities = []
    monkeypatch.setattr(codec_module, "psnr", lambda a, b: qualities.append(1) or psnr(a, b))
    gated.encode_rgb(image, 8, lmbda=RANGE[0], domain="auto")
    assert qualities == []
    gated.encode_rgb(image, 8, lmbda=RANGE[0], domain="auto", report={})
    assert len(qualities) == 2  # the model alone's candidate and the adapter's


def _quarter_psnr(codec, image, width=8):
    """A PSNR ``width`` reaches, a quarter of the way down its range (where this untrained
    model's PSNR falls with λ: 0.3 dB below the top lies in a jump of its curve)."""
    quarter = RANGE[0] ** 0.25 * RANGE[1] ** 0.75
    return psnr(image, codec.decode_rgb(codec.encode_rgb(image, width, lmbda=quarter,
                                                         domain="auto"))[0])


@pytest.mark.parametrize("sharper", [0.0, 0.05])
def test_a_gates_psnr_target_is_searched_with_the_model_alone_then_the_gate(
        codec, image, sharper):
    """A PSNR target through the gate ``auto`` whose adapters code the model alone's strings:
    the model alone's passes find λ, the gate codes there once, and where it kept an adapter
    above the target (here a gate that reports its files ``sharper`` dB above the model
    alone's, as a decoder adapter that won would), the search goes on through the gate from
    that λ down, without coding it again."""
    from slimcodec.adaptation import DomainAdapter

    class Sharper(Codec):
        """A gate that keeps its adapter, ``sharper`` dB above the model alone, below the
        top of the range (as on a photo where it wins at some rates)."""

        def encode_rgb(self, *args, domain=None, report=None, **kwargs):
            lmbda = args[3] if len(args) > 3 else kwargs.get("lmbda")
            self.asked.append((domain, lmbda))
            self.coded_widths.append(args[1])
            data = super().encode_rgb(*args, domain=domain, report=report, **kwargs)
            if domain == "auto" and report is not None and sharper and lmbda < RANGE[1]:
                report["psnr"] += sharper
                report["domain"] = "d"
            return data

    gated = Sharper(codec.model, codec.name, adapters=[DomainAdapter(codec.model, "bias", "d")])
    gated.asked, gated.coded_widths = [], []
    target = _quarter_psnr(gated, image)
    gated.asked = []
    data, search = encode_to_target(gated, image, target_psnr=target, width=8, domain="auto")
    passes = [(d, x) for d, x in gated.asked if d is not None]  # not the gate's own codings
    # First the gate on the image's probe (this image is its own) at the top of the range,
    # not a pass of the search: it kept the model alone, whose passes search.
    assert passes[0] == ("auto", RANGE[1])
    passes = passes[1:]
    # (0.1 dB: this untrained model's PSNR is flat and jumpy below the top of width 8)
    assert abs(search.psnr - target) <= 0.1 and search.passes == len(passes)
    assert unpack(data).header.rate == pytest.approx(search.lmbda, rel=1e-6)
    alone = [lmbda for domain, lmbda in passes if domain == "source"]
    through = [lmbda for domain, lmbda in passes if domain == "auto"]
    assert len(alone) >= 2 and passes[:len(alone)] == [("source", x) for x in alone]
    if not sharper:  # the gate kept the model alone's file (its adapter does nothing yet)
        assert through == [float(np.float32(alone[-1]))] or through == [alone[-1]]
    else:  # the first through the gate at the model alone's λ, the rest below it, once each
        assert len(through) >= 2 and through[0] in (alone[-1], float(np.float32(alone[-1])))
        assert all(x < through[0] for x in through[1:]), through
        # Once the gate kept an adapter above the target, the image's other widths are
        # searched through the gate alone (the model alone's passes would be spent for
        # nothing): here a gate 5 dB sharper below the top of the range, which width 8
        # (the first, with prefer="cost") does not bring down to the target.
        sharper = 5.0
        gated.asked, gated.coded_widths = [], []
        # (whether width 16 reaches it through the gate matters not here)
        with contextlib.suppress(RateError):
            encode_to_target(gated, image, target_psnr=target, domain="auto", prefer="cost")
        passes = [(d, w) for (d, _), w in zip(gated.asked, gated.coded_widths, strict=True)
                  if d is not None]
        # the probe through the gate (it kept the model alone), then the model alone's
        assert passes[:2] == [("auto", 8), ("source", 8)], passes
        after = passes[[d for d, _ in passes].index("auto", 1):]
        assert ("auto", 16) in after and all(d == "auto" for d, _ in after), passes


def test_a_psnr_target_where_the_gate_keeps_an_adapter_on_the_probe_goes_through_it(
        codec, image):
    """Where the gate ``auto`` keeps an adapter on the image's probe at the top of the
    range (screens: the screen adapter), a PSNR target's every pass goes through the gate,
    as with ``gate_proxy=False``: the model alone's passes would find a λ the gate's
    search then starts from anyway. The same passes, the same file. The probe is the
    scale probe's mosaic (a 256x256 of a larger image), or a small image itself."""
    from slimcodec.adaptation import DomainAdapter

    class Kept(Codec):
        """A gate that reports keeping its adapter, 0.5 dB above the model alone."""

        def encode_rgb(self, *args, domain=None, report=None, **kwargs):
            self.asked.append((domain, args[0].shape[:2]))
            data = super().encode_rgb(*args, domain=domain, report=report, **kwargs)
            if domain == "auto" and report is not None:
                report["psnr"] += 0.5
                report["domain"] = "d"
            return data

    gated = Kept(codec.model, codec.name, adapters=[DomainAdapter(codec.model, "bias", "d")])
    gated.asked = []
    target = _quarter_psnr(gated, image) + 0.5
    runs = []
    for proxy in (True, False):
        gated.asked = []
        data, search = encode_to_target(gated, image, target_psnr=target, width=8,
                                        domain="auto", gate_proxy=proxy)
        runs.append((data, search.passes, search.lmbda, list(gated.asked)))
    assert runs[0][:3] == runs[1][:3]
    passes = [d for d, _ in runs[0][3] if d is not None]
    assert passes == ["auto"] * (1 + runs[0][1]) and runs[0][1] >= 2, passes  # the probe's
    gated.asked = []
    large = natural_like(288, 320, seed=6)
    assert rate_control._gate_keeps_an_adapter(gated, large, 8, False, (1.0, "lanczos"))
    assert gated.asked[0] == ("auto", (256, 256))
    plain = Codec(codec.model, codec.name, adapters=[DomainAdapter(codec.model, "bias", "d")])
    assert not rate_control._gate_keeps_an_adapter(plain, large, 8, False, (1.0, "lanczos"))


def test_a_target_between_two_widths_ranges_says_so(codec, image, monkeypatch):
    """A target inside the span of every range measured, but beyond an end of each (width 8
    tops out below it, width 16 starts above it), is refused with a line that says it falls
    between two ranges, not one that seems to say the span reaches it."""
    spans = {16: [10.0, 20.0], 8: [1.0, 5.0]}

    def search(codec_, width, target, tol, passes, by_psnr, measure, value, ends, *rest):
        ends += spans[width]
        return None

    monkeypatch.setattr(rate_control, "_search", search)
    with pytest.raises(RateError, match=r"reaches 1-20 bpp on this image, but it falls "
                                        r"between the ranges of two of the widths"):
        encode_to_target(codec, image, target_bpp=7)
    with pytest.raises(RateError, match=r"reaches at most 20 bpp on this image$"):
        encode_to_target(codec, image, target_bpp=30)


def test_target_picks_the_widest_width_or_the_cheapest_that_reaches_it(codec, image):
    narrow_top = 8 * len(codec.encode_rgb(image, 8, lmbda=RANGE[1])) / image[..., 0].size
    wide_bottom = 8 * len(codec.encode_rgb(image, 16, lmbda=RANGE[0])) / image[..., 0].size
    target = narrow_top * 0.7
    assert target > wide_bottom  # both widths reach it
    _, search = encode_to_target(codec, image, target_bpp=target, prefer="cost")
    assert search.width == 8
    _, search = encode_to_target(codec, image, target_bpp=target)
    assert search.width == 16
    # a PSNR width 8 reaches where its PSNR falls with λ (see the gate's PSNR test above)
    quarter, _ = codec.decode_rgb(codec.encode_rgb(image, 8, lmbda=RANGE[0] ** 0.25
                                                   * RANGE[1] ** 0.75))
    target = psnr(image, quarter)
    _, search = encode_to_target(codec, image, target_psnr=target, prefer="cost")
    assert search.width == 8 and search.psnr == pytest.approx(target, abs=0.1)


class _Curve:
    """A width's λ range and a rate (or PSNR) curve over it, in place of a codec, for
    :func:`slimcodec.rate_control._search` alone: what it measures, in order."""

    def __init__(self, curve, ends=(0.002, 0.8)):
        self.curve, self.ends, self.asked = curve, ends, []

    def lambda_range(self, width):
        return self.ends

    def search(self, target, by_psnr=False, max_passes=10, ends=None, upward=False,
               below=None, start=None):
        def measure(width, lmbda):
            self.asked.append(lmbda)
            v = self.curve(lmbda)
            return b"", (0.0 if by_psnr else v), (v if by_psnr else None)

        self.asked = []
        return rate_control._search(self, 192, target, 0.02 if by_psnr else 0.01, max_passes,
                                    by_psnr, measure, lambda bpp, q: q if by_psnr else bpp,
                                    [] if ends is None else ends, below, upward, start)


# The default model's rate at width 192 on the held-out photos (its eval points, section
# hyperprior-slimcae-hpc of benchmarks/RESULTS.md), as log bpp quadratic in log λ: concave,
# λ^0.35 at the bottom of the range and λ^0.23 at its top.
_HPC_192 = np.polyfit(np.log([0.002, 0.00894, 0.04, 0.17889, 0.8]),
                      np.log([0.1685, 0.2836, 0.4336, 0.6288, 0.8887]), 2)


def test_a_target_search_steps_down_from_the_top_and_lands_in_few_passes():
    """From the top of the range down by secant steps, then regula falsi once a pass lands
    below the target: a rate the default's curve covers within 1% in at most 4 passes, 3.7
    on average over 12 (coding the range's two ends first took 4.6, up to 6)."""
    curve = _Curve(lambda lmbda: float(np.exp(np.polyval(_HPC_192, np.log(lmbda)))))
    passes = []
    for target in np.geomspace(0.18, 0.87, 12):
        _, _, bpp, _, used = curve.search(target)
        assert abs(math.log(bpp / target)) <= math.log1p(0.01) and used == len(curve.asked)
        assert curve.asked[0] == 0.8 and 0.002 not in curve.asked  # the bottom never needed
        passes.append(used)
    assert max(passes) <= 4 and np.mean(passes) <= 3.75, passes


def test_illinois_halves_the_staying_end_from_the_brackets_first_step():
    """Regula falsi on a curve flat at the bottom of the range and steep at its top (bpp =
    0.1 + 5 λ², a rate the steps overshoot downward): the bracket's side is recorded as it
    forms, so the first regula falsi pass that lands on the same side as the pass that
    formed it halves the staying end at once (Illinois). Without that, 10 passes."""
    curve = _Curve(lambda lmbda: 0.1 + 5 * lmbda ** 2)
    _, _, bpp, _, used = curve.search(0.2055)
    assert abs(math.log(bpp / 0.2055)) <= math.log1p(0.01)
    assert used == len(curve.asked) <= 7, curve.asked


@pytest.mark.parametrize("max_passes", range(2, 11))
def test_a_target_below_a_widths_reach_is_refused_whatever_the_passes(max_passes):
    """A curve so flat that its secant steps stop short of the range's bottom: the last pass
    measures the bottom, so a target below the width's reach is refused (the search goes on
    to another width) rather than the nearest pass returned, at any number of passes."""
    curve = _Curve(lambda lmbda: 0.5 * lmbda ** 0.05)
    ends = []
    assert curve.search(0.9 * curve.curve(0.002), max_passes=max_passes, ends=ends) is None
    assert curve.asked[-1] == 0.002 and ends[-1] == curve.curve(0.002)
    assert len(curve.asked) <= max_passes


@pytest.mark.parametrize("error", [1.0, 0.8, 1.2])
def test_a_predicted_first_end_is_not_coded_and_saves_its_pass(error):
    """``--scale auto``'s second search starts at the λ the first found, where the larger
    scale's rate is predicted from the probe (``start``): that end is not coded and the
    first pass is the step from it, so an exact prediction saves that pass on every search;
    one a fifth off either way still meets every target without coding that end."""
    curve = _Curve(lambda lmbda: float(np.exp(np.polyval(_HPC_192, np.log(lmbda)))))
    fewer = []
    for below in (0.1, 0.3, 0.8):
        for target in np.geomspace(0.2, 0.75 * curve.curve(below), 5):
            curve.search(target, below=below)
            coded = len(curve.asked)
            _, _, bpp, _, used = curve.search(target, below=below,
                                              start=error * curve.curve(below))
            assert below not in curve.asked and used == len(curve.asked) <= 10
            assert abs(math.log(bpp / target)) <= math.log1p(0.01)
            fewer.append(coded - used)
    if error == 1:
        assert fewer == [1] * len(fewer), fewer


def test_a_prediction_within_the_slack_or_beyond_the_target_is_coded():
    """A predicted end that lies within the tolerance of the target, or on its far side, is
    measured as every first end is: a file could be that end, or the target lie beyond it."""
    curve = _Curve(lambda lmbda: float(np.exp(np.polyval(_HPC_192, np.log(lmbda)))))
    target = curve.curve(0.5)
    assert curve.search(target, below=0.5, start=target * 1.005)[4] == 1
    assert curve.asked == [0.5]
    assert curve.search(target * 1.2, below=0.5, start=target * 1.1) is None
    assert curve.asked == [0.5]


def test_each_step_of_a_target_search_grows_at_most_threefold():
    """PSNR flattens near the top of the range: the secant of that stretch would leap far
    past the target. Each step down is at most three times the one before it, and the
    search still lands."""
    curve = _Curve(lambda lmbda: 35.5 - 0.02 * math.log(0.8 / lmbda) ** 3)
    _, _, _, quality, _ = curve.search(35.3, by_psnr=True)
    assert abs(quality - 35.3) <= 0.02
    steps = np.diff(-np.log(curve.asked))
    first_below = next(i for i, lmbda in enumerate(curve.asked) if curve.curve(lmbda) < 35.3)
    assert all(b <= rate_control.GROWTH * a * (1 + 1e-9)
               for a, b in pairwise(steps[:first_below])), steps
    assert first_below >= 3  # the cap held the steps back more than once


def test_a_search_from_the_bottom_up_refuses_a_width_short_of_the_target_in_one_pass():
    """Upward (where the width before lay wholly above the target), the bottom first: one
    pass refuses a width whose bottom lies above the target; a target inside is met by
    steps up, and one above the range is refused with the top measured."""
    curve = _Curve(lambda lmbda: float(np.exp(np.polyval(_HPC_192, np.log(lmbda)))))
    bottom, top = curve.curve(0.002), curve.curve(0.8)
    assert curve.search(0.9 * bottom, upward=True) is None and curve.asked == [0.002]
    for target in np.geomspace(1.05 * bottom, 0.95 * top, 5):
        _, _, bpp, _, used = curve.search(target, upward=True)
        assert abs(math.log(bpp / target)) <= math.log1p(0.01) and used <= 4
        assert curve.asked[0] == 0.002 and 0.8 not in curve.asked
    ends = []
    assert curve.search(1.1 * top, upward=True, ends=ends) is None
    assert curve.asked[-1] == 0.8 and ends == [bottom, top]


def test_a_width_after_one_above_the_target_is_searched_from_its_bottom(codec, image):
    pixels = image[..., 0].size
    bottom = {w: 8 * len(codec.encode_rgb(image, w, lmbda=RANGE[0])) / pixels for w in (16, 8)}
    assert bottom[8] < bottom[16]
    _, search = encode_to_target(codec, image, target_bpp=math.sqrt(bottom[8] * bottom[16]))
    assert search.width == 8
    widest = [lmbda for w, lmbda, _, _ in search.tried if w == 16]
    narrow = [lmbda for w, lmbda, _, _ in search.tried if w == 8]
    assert widest[0] == pytest.approx(RANGE[1]) and widest[-1] == pytest.approx(RANGE[0])
    assert narrow[0] == pytest.approx(RANGE[0])  # its bottom first


def test_quality_maps_monotonically_onto_the_range(codec):
    lambdas = [quality_to_lambda(codec, 16, q) for q in (1, 25, 50, 75, 100)]
    assert lambdas[0] == pytest.approx(RANGE[0]) and lambdas[-1] == pytest.approx(RANGE[1])
    assert all(b > a for a, b in pairwise(lambdas))


def test_eval_samples_lambdas_per_width(codec, image, tmp_path, capsys):
    result = evaluate(codec, [image], progress=False)
    assert len(result["points"]) == 2 * 5 and all("lmbda" in p for p in result["points"])
    Image.fromarray(image).save(tmp_path / "a.png")
    code = main(["eval", str(tmp_path), "--model", codec.name, "--lmbdas", "0.01", "0.05",
                 "--json", str(tmp_path / "r.json"), "-q"])
    capsys.readouterr()
    points = json.loads((tmp_path / "r.json").read_text())["points"]
    assert code == 0 and sorted(p["lmbda"] for p in points) == pytest.approx([0.01] * 2 +
                                                                             [0.05] * 2)


def test_modulation_at_init_is_the_unmodulated_model():
    """Without a gain and with modulations as initialised, the model is the SlimCAE."""
    torch.manual_seed(0)
    plain = SlimCAE((16, 8)).eval()
    modulated = ModulatedSlimCAE((16, 8), lambda_ranges=[RANGE, RANGE], rate_anchors=1).eval()
    modulated.load_state_dict(plain.state_dict(), strict=False)
    x = torch.rand(1, 3, 32, 48)
    for width in (16, 8):
        plain.set_width(width)
        modulated.set_width(width)
        for lmbda in RANGE:
            modulated.set_lambda(lmbda)
            assert torch.equal(modulated.analysis(x), plain.analysis(x))
            y = plain.analysis(x)
            assert torch.equal(modulated.synthesis(y), plain.synthesis(y))


def test_gain_and_modulation_follow_lambda_and_width():
    torch.manual_seed(0)
    model = ModulatedSlimCAE((16, 8), lambda_ranges=[RANGE, RANGE], latent_gain=True).eval()
    x = torch.rand(1, 3, 32, 32)
    with model.using_lambda(RANGE[0]):
        small = model.analysis(x).abs().mean()
    with model.using_lambda(RANGE[1]):
        large = model.analysis(x).abs().mean()
    assert large > 5 * small  # gain (λ ratio)^(1/2) = 10 at the initial slope of 1/2
    assert model.anchor_index(RANGE[0]) == 0 and model.anchor_index(RANGE[1]) == 7
    model.set_width(8)
    assert model.analysis(x).shape[1] == 8


def test_init_from_a_variable_rate_model_of_other_ranges_moves_its_bounds():
    """``--init`` a variable-rate model with a higher top (the widest width's range and the
    bounds widened, their middle kept): every weight is copied and the modulations moved,
    so at every λ of the source's ranges the new model computes what the source did."""
    from slimcodec.training.trainer import init_from

    torch.manual_seed(0)
    source = ModulatedSlimCAE((16, 8), lambda_ranges=[RANGE, (0.001, 0.05)], rate_anchors=1,
                              latent_gain=True).eval()
    with torch.no_grad():
        for modulation in (*source.modulation_a, *source.modulation_s):
            modulation.out.weight.normal_(0, 0.3)  # a new model's are the identity
    lo, hi = source.lambda_bounds
    wider = [(RANGE[0], 0.8), (0.001, 0.05)]
    model = ModulatedSlimCAE((16, 8), lambda_ranges=wider, rate_anchors=1, latent_gain=True,
                             lambda_bounds=(lo * hi / 0.8, 0.8))
    init_from(model, source)
    assert source.lambda_bounds == (lo, hi)  # the source is left as it was
    model.eval()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        for width, (low, high) in zip((16, 8), source.lambda_ranges, strict=True):
            for m in (model, source):
                m.set_width(width)
            for lmbda in (low, high):
                lam = torch.tensor([lmbda])
                y = source.analysis(x, lam)
                torch.testing.assert_close(model.analysis(x, lam), y, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(model.synthesis(y.round(), lam),
                                           source.synthesis(y.round(), lam),
                                           rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="λ ranges"):  # the same bounds: ranges must match
        init_from(ModulatedSlimCAE((16, 8), lambda_ranges=[(RANGE[0], 0.1), (0.001, 0.05)],
                                   rate_anchors=1, latent_gain=True,
                                   lambda_bounds=(lo, hi)), source)
    with pytest.raises(ValueError, match="keep the middle"):  # bounds from the ranges alone
        init_from(ModulatedSlimCAE((16, 8), lambda_ranges=wider, rate_anchors=1,
                                   latent_gain=True), source)
    with pytest.raises(ValueError, match="anchors"):
        init_from(ModulatedSlimCAE((16, 8), lambda_ranges=wider, rate_anchors=2,
                                   latent_gain=True, lambda_bounds=(lo * hi / 0.8, 0.8)),
                  source)
