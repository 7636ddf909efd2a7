"""The learned gate over decoder adapters (Presta et al.), on tiny models of every kind."""

import json

import numpy as np
import pytest
import torch
from helpers import natural_like, run_without_torch
from PIL import Image
from slimcodec_edge.bundle import Bundle
from slimcodec_edge.edge import EdgeCodec
from slimcodec_edge.onnx_export import export_bundle
from test_adaptation import KINDS, LAMBDAS, run_adapt
from test_edge import tiny

from slimcodec.adaptation import (
    adapter_fingerprint,
    domain_id,
    load_gate,
    save_gate,
    train_gate,
)
from slimcodec.bitstream import unpack
from slimcodec.cli import main
from slimcodec.codec import Codec
from slimcodec.domains.screen import render_screen, write_screens
from slimcodec.errors import BundleError, ModelFileError, ModelMismatchError
from slimcodec.gating import entropy_domain
from slimcodec.zoo import save_model_file


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Three domains a gate can tell apart: screens, photo-like images (the source's) and
    coarse coloured noise."""
    root = tmp_path_factory.mktemp("gate")
    write_screens(root / "screen", 4, size=(64, 96))
    for name, draw in (("photos", lambda i: natural_like(64, 96, seed=i)),
                       ("noise", lambda i: np.random.default_rng(i).integers(
                           0, 256, (16, 24, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1))):
        (root / name).mkdir()
        for i in range(4):
            Image.fromarray(draw(i)).save(root / name / f"{i}.png")
    return root


def gated(kind, folders, steps=300):
    model = tiny(kind)
    adapters = [run_adapt(model, folders / "screen", "adapters").adapter,
                run_adapt(model, folders / "noise", "bias", domain="noise").adapter]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_gate(model, adapters, {"screen": folders / "screen",
                                          "noise": folders / "noise"},
                        folders / "photos", crops=8, crop=64, steps=steps)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    return model, adapters, result


@pytest.mark.parametrize("kind", KINDS)
def test_the_gate_learns_the_domains_and_the_file_carries_its_weights(kind, folders):
    model, adapters, result = gated(kind, folders)
    assert result.accuracy >= 0.9 and result.crops == 3 * 8 * len(model.widths)
    codec = Codec(model, rd_lambdas=LAMBDAS, adapters=adapters)
    codec.gate = result.gate
    plain = Codec(model, rd_lambdas=LAMBDAS, adapters=adapters)  # no gate: decoders need none
    screen = render_screen(500, (64, 96))  # a screen it never saw
    for width in codec.widths:
        report = {}
        # (the gate weighs the files as the transforms code them, before any palette: so
        # are they compared here)
        data = codec.encode_rgb(screen, width, domain="gate", report=report, palette=False)
        assert report["mixture"].get("screen", 0) > 0.5, report
        decoded, header = plain.decode_rgb(data)
        # The file decodes as the weights the gate chose, given explicitly, or, where that
        # loses to the source codec by RD loss, is the source codec's file.
        weighed = codec.encode_rgb(screen, width, mixture=report["mixture"], palette=False)
        source = codec.encode_rgb(screen, width, palette=False)
        if report["kept"] == "gate":
            assert np.array_equal(decoded, plain.decode_rgb(weighed)[0])
            assert header.domain != 0 or header.mixture
            assert codec.rd_loss(screen, data) < codec.rd_loss(screen, source)
        else:
            assert data == source
            assert codec.rd_loss(screen, source) <= codec.rd_loss(screen, weighed)
    report = {}
    photo = natural_like(64, 96, seed=99)
    codec.encode_rgb(photo, codec.widths[0], domain="gate", report=report)
    assert sum(report["mixture"].values()) < 0.5, report  # mostly the source decoder


def test_a_wrong_gate_never_makes_a_file_worse_than_the_source_codec(folders):
    """A gate sure of a domain whose adapter ruins the image: the encoder keeps the source
    codec's file instead."""
    model, adapters, result = gated("slimcae", folders, steps=1)
    with torch.no_grad():
        adapters[1].decoder_bias[2].fill_(-0.5)  # the noise adapter: a dark cast
        result.gate.net[-1].weight.zero_()
        result.gate.net[-1].bias.copy_(torch.tensor([-20.0, -20.0, 20.0]))
    result.gate.adapter_fingerprints[1] = adapter_fingerprint(adapters[1])
    codec = Codec(model, rd_lambdas=LAMBDAS, adapters=adapters)
    codec.gate = result.gate
    screen = render_screen(501, (64, 96))
    report = {}
    data = codec.encode_rgb(screen, 16, domain="gate", report=report, palette=False)
    assert report == {"mixture": {"noise": 1.0}, "entropy_domain": None, "kept": "source"}
    assert data == codec.encode_rgb(screen, 16, palette=False)


def test_the_gate_codes_with_the_entropy_models_of_the_adapter_it_weighs_most(folders):
    assert entropy_domain({1: 0.75, 2: 0.25}, {1, 2}) == 1
    assert entropy_domain({1: 0.75, 2: 0.25}, {2}) == 0  # the most weighed has none
    assert entropy_domain({1: 0.0, 2: 0.0}, {1, 2}) == 0 and entropy_domain({}, {1}) == 0
    assert entropy_domain({2: 0.5, 1: 0.5}, {1, 2}) == 1  # a tie: the lower id, always
    model = tiny("slimcae")
    adapters = [run_adapt(model, folders / "screen", "adapters", entropy_models=True).adapter,
                run_adapt(model, folders / "noise", "bias", domain="noise").adapter]
    result = train_gate(model, adapters, {"screen": folders / "screen",
                                          "noise": folders / "noise"},
                        folders / "photos", crops=8, crop=64, steps=300)
    codec = Codec(model, rd_lambdas=LAMBDAS, adapters=adapters)
    codec.gate = result.gate
    screen = render_screen(503, (64, 96))
    kept = 0
    for width in codec.widths:
        report = {}
        data = codec.encode_rgb(screen, width, domain="gate", report=report)
        assert report["entropy_domain"] == "screen", report
        if report["kept"] == "gate":
            assert unpack(data).header.domain == adapters[0].domain_id
            explicit = codec.encode_rgb(screen, width, domain="screen",
                                        mixture=report["mixture"])
            assert np.array_equal(codec.decode_rgb(data)[0], codec.decode_rgb(explicit)[0])
            kept += 1
    assert kept


def test_gate_files_and_their_errors(folders, tmp_path):
    model, adapters, result = gated("slimcae", folders, steps=50)
    path = tmp_path / "g.gate"
    save_gate(result.gate, path)
    by_id = {a.domain_id: a for a in adapters}
    loaded = load_gate(path, model, by_id)
    latent = torch.randn(8, 4, 6)
    assert loaded.weights(latent, 16, None) == result.gate.weights(latent, 16, None)
    with pytest.raises(ModelMismatchError, match=r"'noise'.*not loaded"):
        load_gate(path, model, {adapters[0].domain_id: adapters[0]})
    retrained = run_adapt(model, folders / "noise", "bias", domain="noise", steps=4).adapter
    with pytest.raises(ModelMismatchError, match="another adapter for domain 'noise'"):
        load_gate(path, model, {**by_id, retrained.domain_id: retrained})
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        load_gate(path, tiny("slimcae-vr"), by_id)
    damaged = tmp_path / "d.gate"
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["net.0.bias"] += 1
    torch.save(payload, damaged)
    with pytest.raises(ModelFileError, match="damaged"):
        load_gate(damaged, model, by_id)
    (tmp_path / "junk.gate").write_bytes(b"junk")
    with pytest.raises(ModelFileError, match="not a slimcodec gate file"):
        load_gate(tmp_path / "junk.gate", model, by_id)
    extend = run_adapt(model, folders / "screen", "extend", domain="wide").adapter
    with pytest.raises(ValueError, match="changes the encoder"):
        train_gate(model, [extend], {"wide": folders / "screen"}, folders / "photos")
    with pytest.raises(ValueError, match="no images for domain 'noise'"):
        train_gate(model, adapters, {"screen": folders / "screen"}, folders / "photos")
    with pytest.raises(ValueError, match="domain 'typo', which no adapter has"):
        train_gate(model, adapters, {"screen": folders / "screen", "noise": folders / "noise",
                                     "typo": folders / "noise"}, folders / "photos")
    with pytest.raises(ModelMismatchError, match="needs a gate file"):
        Codec(model, adapters=adapters).encode_rgb(natural_like(32, 32), domain="gate")


def test_gate_command_line(folders, tmp_path, capsys):
    model = tiny("slimcae")
    save_model_file(model, tmp_path / "m.pt", meta={"lambdas": LAMBDAS})
    base = ["--model", str(tmp_path / "m.pt")]
    adapter = tmp_path / "s.adapter"
    assert main(["adapt", *base, "--data", str(folders / "screen"), "--domain", "screen",
                 "--method", "adapters", "--steps", "2", "-o", str(adapter)]) == 0
    gate = tmp_path / "g.gate"
    assert main(["gate", *base, "--adapter", str(adapter), "--data",
                 f"screen={folders / 'screen'}", "--source-data", str(folders / "photos"),
                 "--crops", "4", "-o", str(gate)]) == 0
    assert "gate over 'screen'" in capsys.readouterr().out
    image = tmp_path / "in.png"
    Image.fromarray(render_screen(7, (64, 96))).save(image)
    slc = tmp_path / "x.slc"
    assert main(["compress", str(image), "-o", str(slc), *base, "--adapter", str(adapter),
                 "--gate", str(gate)]) == 0
    assert main(["decompress", str(slc), "-o", str(tmp_path / "o.png"), *base, "--adapter",
                 str(adapter)]) == 0
    assert main(["eval", str(folders / "screen"), *base, "--adapter", str(adapter), "--gate",
                 str(gate), "-q", "--json", str(tmp_path / "rd.json")]) == 0
    assert json.loads((tmp_path / "rd.json").read_text())["domain"] == "gate"
    assert main(["export", *base, "-o", str(tmp_path / "bundle"), "--adapter", str(adapter),
                 "--gate", str(gate)]) == 0
    assert Bundle.load(tmp_path / "bundle").gate().domain_ids == (domain_id("screen"),)
    capsys.readouterr()
    for args, words in (
        (["compress", str(image), "-o", str(slc), *base, "--gate", str(gate)], "not loaded"),
        (["gate", *base, "--adapter", str(adapter), "--data", "screen", "--source-data",
          str(folders / "photos"), "-o", str(gate)], "DOMAIN=FOLDER"),
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    assert unpack(slc.read_bytes()).header.width == 16


@pytest.mark.parametrize("kind", KINDS)
def test_the_edge_runtime_runs_the_same_gate_without_torch(kind, folders, tmp_path):
    """`slimcodec export --gate` builds the gate into a bundle; the edge runtime predicts
    the weights slimcodec's encoder does (the same arithmetic, slimcodec.gating), and its
    files decode in either runtime."""
    model, adapters, result = gated(kind, folders)
    lambdas = LAMBDAS if kind == "slimcae" else None
    export_bundle(model, tmp_path / "b", kind, adapters=adapters, rd_lambdas=lambdas,
                  gate=result.gate)
    edge = EdgeCodec(tmp_path / "b")
    ours, theirs = edge.bundle.gate(), result.gate.arrays()
    assert all(np.array_equal(getattr(ours, k), getattr(theirs, k))
               for k in ("w1", "b1", "w2", "b2"))
    assert ours.domain_ids == theirs.domain_ids and ours.widths == theirs.widths
    codec = Codec(model, rd_lambdas=lambdas, adapters=adapters)
    codec.gate = result.gate
    screen = render_screen(502, (64, 96))
    compared = 0
    for width in codec.widths:
        lmbda = codec.lambda_range(width)[0] if codec.variable_rate else None
        report = {}
        codec.encode_rgb(screen, width, lmbda=lmbda, domain="gate", report=report)
        data = edge.encode_rgb(screen, width, lmbda=lmbda, domain="gate")
        header = unpack(data).header
        if report["kept"] == "gate" and (header.domain or header.mixture):
            # Both kept the gate's weights: the same, but where the runtimes' latents,
            # which differ in float rounding only, fall either side of a 64th.
            weights = dict(header.mixture) or {header.domain: 1.0}
            assert all(abs(weights.get(a.domain_id, 0.0) - report["mixture"].get(a.domain, 0.0))
                       <= 1 / 64 for a in adapters)
            compared += 1
        assert codec.decode_rgb(data)[0].shape == (64, 96, 3)
    assert compared
    Image.fromarray(screen).save(tmp_path / "in.png")
    run_without_torch(f"""
from slimcodec_edge.edge.cli import main
assert main(["encode", {str(tmp_path / "b")!r}, {str(tmp_path / "in.png")!r},
             "-o", {str(tmp_path / "x.slc")!r}, "--domain", "gate"]) == 0
""")
    assert unpack((tmp_path / "x.slc").read_bytes()).header.width == codec.widths[0]
    # A bundle without a gate, a gate whose adapters are not built in, a damaged gate.
    export_bundle(model, tmp_path / "plain", kind, adapters=adapters, rd_lambdas=lambdas)
    with pytest.raises(ModelMismatchError, match="no learned gate"):
        EdgeCodec(tmp_path / "plain").encode_rgb(screen, domain="gate")
    with pytest.raises(ModelMismatchError, match="not loaded"):
        export_bundle(model, tmp_path / "half", kind, adapters=adapters[:1], gate=result.gate)
    gate_file = tmp_path / "b" / "gate.npz"
    gate_file.write_bytes(gate_file.read_bytes()[:-8] + b"damaged!")
    with pytest.raises(BundleError, match="damaged gate"):
        Bundle.load(tmp_path / "b").gate()
