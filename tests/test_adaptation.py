"""Domain adaptation without forgetting (issue 13), on tiny models of every kind."""

import json
import os
import random

import numpy as np
import pytest
import torch
from helpers import natural_like
from PIL import Image
from test_edge import tiny

from slimcodec.adaptation import METHODS, adapt, domain_id, load_adapter, save_adapter
from slimcodec.bitstream import unpack
from slimcodec.cli import main
from slimcodec.codec import Codec
from slimcodec.domains.screen import write_screens
from slimcodec.errors import ModelFileError, ModelMismatchError
from slimcodec.zoo import fingerprint, load_model_file, save_model_file

KINDS = ["slimcae", "slimcae-vr"]
LAMBDAS = [0.01, 0.004]


@pytest.fixture(scope="module")
def screens(tmp_path_factory):
    root = tmp_path_factory.mktemp("screens")
    write_screens(root, 3, size=(64, 96))
    return root


def run_adapt(model, screens, method, steps=3, domain="screen", **kwargs):
    lambdas = None if hasattr(model, "lmbda") else LAMBDAS
    return adapt(model, screens, method, domain, lambdas, steps=steps, patch=32, batch=2,
                 progress=False, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_at_every_width_keeps_the_source(kind, method, screens):
    model = tiny(kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fp = fingerprint(model)
    result = run_adapt(model, screens, method)
    for k, v in model.state_dict().items():  # the source, bit for bit
        assert torch.equal(v, before[k]), k
    assert fingerprint(model) == fp
    codec = Codec(model, rd_lambdas=LAMBDAS)
    image = natural_like(32, 48)
    if result.adapter is not None:
        codec.add_adapter(result.adapter)
        assert result.adapter.parameter_count > 0
        moved = any(p.abs().sum() > 0 for n, p in result.adapter.named_parameters()
                    if not n.startswith("bottlenecks"))
        assert moved  # the adapter trained (it starts at zero)
        for width in codec.widths:
            data = codec.encode_rgb(image, width, domain="screen")
            assert unpack(data).header.domain == domain_id("screen")
            assert codec.decode_rgb(data)[0].shape == (32, 48, 3)
    else:
        assert fingerprint(result.model) != fp  # a new model
        adapted = Codec(result.model, rd_lambdas=LAMBDAS)
        for width in adapted.widths:
            assert adapted.decode_rgb(adapted.encode_rgb(image, width))[0].shape == (32, 48, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_extend_trains_its_entropy_models_in_training_mode(kind, screens, monkeypatch):
    """The adapter is not a submodule of the model: adapt() must switch it to training
    mode itself. Eval-mode entropy models round without a gradient, so the encoder
    adapters never saw the rate they spend (a bug that doubled the rate on illustrations)."""
    from slimcodec.adaptation.adapters import DomainAdapter

    modes = []
    original = DomainAdapter.entropy_bottleneck

    def recording(self, model):
        eb = original(self, model)
        modes.append((model.training, eb.training))
        return eb

    monkeypatch.setattr(DomainAdapter, "entropy_bottleneck", recording)
    result = run_adapt(tiny(kind), screens, "extend", steps=2)
    assert modes and all(m == (True, True) for m in modes)
    assert not any(eb.training for eb in result.adapter.bottlenecks)  # handed back in eval


def test_selective_decoder_leaves_the_encoder(screens):
    model = tiny("slimcae")
    result = run_adapt(model, screens, "selective", subset="decoder")
    for (k, a), (_, b) in zip(model.state_dict().items(), result.model.state_dict().items(),
                              strict=True):
        if k.startswith("g_a."):
            assert torch.equal(a, b), k
    assert any(not torch.equal(a, b) for (k, a), (_, b) in
               zip(model.state_dict().items(), result.model.state_dict().items(), strict=True)
               if k.startswith("g_s."))


@pytest.mark.parametrize("kind", KINDS)
def test_old_files_decode_identically_with_adapters_loaded(kind, screens, tmp_path):
    model = tiny(kind)
    codec = Codec(model, rd_lambdas=LAMBDAS)
    image = natural_like(40, 40)
    old = {w: codec.encode_rgb(image, w) for w in codec.widths}
    decoded = {w: codec.decode_rgb(data)[0] for w, data in old.items()}
    paths = []
    for method in ("extend", "adapters", "bias"):
        result = run_adapt(model, screens, method, domain=f"screen-{method}")
        paths.append(tmp_path / f"{method}.adapter")
        save_adapter(result.adapter, paths[-1])
    loaded = Codec(model, rd_lambdas=LAMBDAS,
                   adapters=[load_adapter(p, model) for p in paths])
    assert len(loaded.adapters) == 3
    for w, data in old.items():
        assert np.array_equal(loaded.decode_rgb(data)[0], decoded[w])
        assert loaded.encode_rgb(image, w) == data  # no domain: the source codec


def test_adapter_files_round_trip_and_refuse_what_they_must(screens, tmp_path):
    model = tiny("slimcae")
    result = run_adapt(model, screens, "extend")
    path = tmp_path / "screen.adapter"
    save_adapter(result.adapter, path)
    loaded = load_adapter(path, model)
    for (k, a), (_, b) in zip(result.adapter.state_dict().items(),
                              loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    image = natural_like(32, 32)
    one, two = Codec(model, adapters=[result.adapter]), Codec(model, adapters=[loaded])
    assert one.encode_rgb(image, 16, domain="screen") == two.encode_rgb(image, 16,
                                                                        domain="screen")
    other = tiny("slimcae")
    with torch.no_grad():
        other.g_a[0].bias.add_(1.0)
    with pytest.raises(ModelMismatchError, match="made for the model"):
        load_adapter(path, other)
    damaged = tmp_path / "damaged.adapter"
    damaged.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError):
        load_adapter(damaged, model)


def test_domain_ids_gate_and_errors(screens, tmp_path, capsys):
    model = tiny("slimcae")
    save_model_file(model, tmp_path / "m.pt", meta={"lambdas": LAMBDAS})
    result = run_adapt(model, screens, "adapters", steps=5)
    save_adapter(result.adapter, tmp_path / "a.adapter")
    assert 1 <= domain_id("screen") <= 65535 and domain_id("screen") != domain_id("art")
    Image.fromarray(natural_like(32, 48)).save(tmp_path / "in.png")
    slc = tmp_path / "x.slc"
    base = ["--model", str(tmp_path / "m.pt")]
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(slc), *base, "--adapter",
                 str(tmp_path / "a.adapter")]) == 0
    assert unpack(slc.read_bytes()).header.domain == domain_id("screen")
    capsys.readouterr()
    code = main(["decompress", str(slc), "-o", str(tmp_path / "o.png"), *base])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not hold" in err and "--adapter" in err
    assert main(["decompress", str(slc), "-o", str(tmp_path / "o.png"), *base, "--adapter",
                 str(tmp_path / "a.adapter")]) == 0
    code = main(["compress", str(tmp_path / "in.png"), "-o", str(slc), *base, "--adapter",
                 str(tmp_path / "a.adapter"), "--domain", "art"])
    err = capsys.readouterr().err
    assert code == 2 and "no adapter for domain 'art'" in err
    for option, value in (("--steps", "0"), ("--images", "0"), ("--lr", "-1")):
        code = main(["adapt", *base, "--data", str(screens), "--domain", "x", "--method",
                     "bias", "-o", str(tmp_path / "z.adapter"), option, value])
        err = capsys.readouterr().err
        assert code == 2 and f"{option[2:]} must be positive" in err
        assert not (tmp_path / "z.adapter").exists()
    report = {}
    codec = Codec(model, rd_lambdas=LAMBDAS, adapters=[result.adapter])
    data = codec.encode_rgb(natural_like(32, 48), 16, domain="auto", report=report)
    assert set(report["gate"]) == {"source", "screen"}
    chosen = min(report["gate"], key=report["gate"].get)
    assert unpack(data).header.domain == (0 if chosen == "source" else domain_id("screen"))


def test_adapt_refuses_an_unwritable_output_before_it_trains(screens, tmp_path, capsys,
                                                             monkeypatch):
    """A missing or read-only output folder is reported at once, not after the minutes of
    adaptation whose result it would lose."""
    import slimcodec.adaptation

    def trains(*args, **kwargs):
        raise AssertionError("adaptation ran although its output cannot be written")

    monkeypatch.setattr(slimcodec.adaptation, "adapt", trains)
    save_model_file(tiny("slimcae"), tmp_path / "m.pt", meta={"lambdas": LAMBDAS})
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    outputs = [tmp_path / "missing" / "a.adapter"]
    if not os.access(readonly, os.W_OK):  # root writes anywhere
        outputs.append(readonly / "a.adapter")
    for out in outputs:
        code = main(["adapt", "--model", str(tmp_path / "m.pt"), "--data", str(screens),
                     "--domain", "x", "--method", "bias", "-o", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and str(out) in err and err.count("\n") == 1
    readonly.chmod(0o755)


def test_an_adapter_restored_after_a_block_follows_the_width_set_inside_it(screens):
    model = tiny("slimcae")
    outer = run_adapt(model, screens, "adapters", steps=1).adapter
    inner = run_adapt(model, screens, "bias", steps=1, domain="art").adapter
    model.set_width(model.widths[0])
    model.set_adapter(outer)
    with model.using_adapter(inner):
        model.set_width(model.widths[-1])
    assert model.adapter is outer
    assert outer._width_index == len(model.widths) - 1
    model.set_adapter(None)


def test_version_1_adapter_files_without_an_output_filter_still_load(screens, tmp_path):
    """Adapter files written before the output filter existed keep working: the files
    compressed with them must still decode."""
    from slimcodec.adaptation.adapters import DomainAdapter

    model = tiny("slimcae")
    old = DomainAdapter(model, "adapters", "screen", output_filter=False)
    with torch.no_grad():
        for p in old.parameters():
            p.normal_(0, 0.01)
    path = tmp_path / "v1.adapter"
    save_adapter(old, path)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 1
    del payload["output_filter"]  # a version-1 file does not have the field
    torch.save(payload, path)
    loaded = load_adapter(path, model)
    assert loaded.output_filter is None
    image = natural_like(32, 32)
    data = Codec(model, adapters=[old]).encode_rgb(image, 16, domain="screen")
    assert np.array_equal(Codec(model, adapters=[loaded]).decode_rgb(data)[0],
                          Codec(model, adapters=[old]).decode_rgb(data)[0])
    payload["version"] = 4
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="version 4"):
        load_adapter(path, model)


@pytest.mark.parametrize("kind", KINDS)
def test_adapters_with_their_own_entropy_models(kind, screens, tmp_path):
    """``entropy_models=True`` gives a decoder-adapter domain its own entropy models: they
    train, travel in the file (and a version-2 file, which has no such field, loads without
    them), code the domain's files, and leave the source and its files alone."""
    model = tiny(kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run_adapt(model, screens, "adapters", entropy_models=True)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    own = result.adapter.bottlenecks
    assert len(own) == len(model.entropy_bottlenecks)
    assert any(not torch.equal(a, b) for eb, src in zip(own, model.entropy_bottlenecks,
                                                        strict=True)
               for (n, a), b in zip(eb.named_parameters(), src.parameters(), strict=True)
               if not n.endswith("quantiles"))  # they trained
    path = tmp_path / "screen.adapter"
    save_adapter(result.adapter, path)
    loaded = load_adapter(path, model)
    assert len(loaded.bottlenecks) == len(own)
    image = natural_like(32, 48)
    codec = Codec(model, rd_lambdas=LAMBDAS)
    plain = codec.encode_rgb(image, codec.widths[0])
    one, two = (Codec(model, rd_lambdas=LAMBDAS, adapters=[a]) for a in (result.adapter,
                                                                         loaded))
    for width in codec.widths:
        with model.using_adapter(loaded), model.using_width(width):
            assert any(model.entropy_bottleneck is eb for eb in loaded.bottlenecks)
        data = one.encode_rgb(image, width, domain="screen")
        assert data == two.encode_rgb(image, width, domain="screen")
        assert np.array_equal(one.decode_rgb(data)[0], two.decode_rgb(data)[0])
    assert np.array_equal(two.decode_rgb(plain)[0], codec.decode_rgb(plain)[0])
    assert not run_adapt(model, screens, "adapters", steps=1).adapter.bottlenecks  # default
    with pytest.raises(ValueError, match="adapter methods"):
        run_adapt(model, screens, "finetune", entropy_models=True)
    payload = torch.load(path, weights_only=True)
    del payload["entropy_models"]  # a version-2 "adapters" file
    payload["version"] = 2
    state = payload["state_dict"]
    payload["state_dict"] = {k: v for k, v in state.items() if not k.startswith("bottlenecks")}
    from slimcodec.adaptation.adapters import _digest

    payload["fingerprint"] = _digest(result.adapter, payload["state_dict"])
    torch.save(payload, path)
    assert not load_adapter(path, model).bottlenecks


def test_the_output_filter_starts_as_the_identity_and_trains(screens):
    model = tiny("slimcae")
    result = run_adapt(model, screens, "adapters", steps=3)
    output = result.adapter.output_filter
    assert output is not None and output.project.weight.abs().sum() > 0  # it trained
    without = run_adapt(model, screens, "adapters", steps=1, output_filter=False)
    assert without.adapter.output_filter is None
    from slimcodec.adaptation.adapters import OutputFilter

    fresh = OutputFilter()
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(fresh(x), x)


def test_the_adapt_command_writes_adapter_and_model_files(screens, tmp_path, capsys):
    model = tiny("slimcae")
    save_model_file(model, tmp_path / "m.pt", meta={"lambdas": LAMBDAS})
    common = ["--model", str(tmp_path / "m.pt"), "--data", str(screens), "--domain", "screen",
              "--steps", "2"]
    out = tmp_path / "small.adapter"
    assert main(["adapt", *common, "--method", "adapters", "--no-output-filter",
                 "--entropy-models", "-o", str(out)]) == 0
    adapter = load_adapter(out, model)
    assert adapter.method == "adapters" and adapter.output_filter is None
    assert len(adapter.bottlenecks) == len(model.entropy_bottlenecks)
    assert "adapters adapter for domain 'screen'" in capsys.readouterr().out
    assert main(["adapt", *common, "--method", "selective", "-o", str(tmp_path / "s.pt")]) == 0
    assert fingerprint(load_model_file(tmp_path / "s.pt")) != fingerprint(model)


def test_adapt_is_reproducible_whatever_ran_before(screens):
    """The same call gives the same adapter: its random initialisation is seeded too."""
    model = tiny("slimcae")
    first = run_adapt(model, screens, "adapters", steps=2).adapter.state_dict()
    torch.rand(1000)  # the global generator moves on, as other work in a process would
    second = run_adapt(model, screens, "adapters", steps=2).adapter.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = run_adapt(model, screens, "adapters", steps=2, seed=1).adapter.state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("kind", KINDS)
def test_the_gate_weighs_decoder_adapters(kind, screens):
    """``domain="mix"``: decoder adapters mixed with weights the file carries (Presta et
    al.'s gate). The weights act as the docstring says, the search keeps a file at least as
    good as the source and each adapter alone, and decoders refuse what they cannot mix."""
    from dataclasses import replace

    from slimcodec.adaptation import AdapterMixture
    from slimcodec.bitstream import Bitstream, pack
    from slimcodec.bitstream.checks import check_header
    from slimcodec.bitstream.mixture import weighed_header

    model = tiny(kind)
    screen = run_adapt(model, screens, "adapters", entropy_models=True).adapter
    art = run_adapt(model, screens, "bias", domain="art").adapter
    extend = run_adapt(model, screens, "extend", steps=1, domain="faces").adapter
    codec = Codec(model, rd_lambdas=LAMBDAS, adapters=[screen, art, extend])
    image, width = natural_like(32, 48), codec.widths[-1]
    x = torch.randn(1, width, 4, 4)
    with model.using_width(width), torch.no_grad():
        mixed = AdapterMixture([(art, 0.25)]).decoder_stage(0, x)
        assert torch.allclose(mixed, x + 0.25 * art.decoder_bias[0][:width].view(1, -1, 1, 1))
    with pytest.raises(ValueError, match="cannot be mixed"):
        AdapterMixture([(extend, 0.5)])

    alone = codec.encode_rgb(image, width, domain="screen")
    full = codec.encode_rgb(image, width, domain="screen", mixture={"screen": 1.0})
    assert unpack(full).header.mixture == ((domain_id("screen"), 1.0),)
    assert unpack(full).strings == unpack(alone).strings
    assert np.array_equal(codec.decode_rgb(full)[0], codec.decode_rgb(alone)[0])
    half = codec.encode_rgb(image, width, mixture={"screen": 0.5, "art": 0.25})
    header = unpack(half).header
    assert header.domain == 0 and dict(header.mixture) == {domain_id("screen"): 0.5,
                                                          domain_id("art"): 0.25}
    decoded = codec.decode_rgb(half)[0]
    source = pack(Bitstream(replace(header, mixture=()), unpack(half).strings))
    for other in (source, alone):  # the weights reach the decoder
        assert not np.array_equal(decoded, codec.decode_rgb(other)[0])
    art_on_screen_models = codec.encode_rgb(image, width, domain="screen",
                                            mixture={"art": 0.5})
    assert dict(unpack(art_on_screen_models).header.mixture) == {domain_id("screen"): 0.0,
                                                                domain_id("art"): 0.5}
    assert unpack(art_on_screen_models).strings == unpack(alone).strings  # screen's models
    with pytest.raises(ValueError, match="multiple of 1/64"):
        codec.encode_rgb(image, width, mixture={"screen": 0.3})

    # The search writes each candidate in its shortest form: one adapter at weight 1, coded
    # with its entropy models (the source's, for one that has none), is its plain file.
    source_coded = unpack(codec.encode_rgb(image, width))
    own = {domain_id("screen")}  # the screen adapter has its own entropy models

    def weighed(weights: dict[str, float], coder: int = 0) -> bytes:
        ids = {domain_id(name): w for name, w in weights.items()}
        return pack(Bitstream(weighed_header(source_coded.header, ids, coder, own),
                              source_coded.strings))

    assert weighed({"art": 1.0}) == codec.encode_rgb(image, width, domain="art")
    assert unpack(weighed({"screen": 1.0})).header.mixture  # own models: must say whose
    assert weighed({}) == pack(source_coded)
    assert weighed({"art": 0.0, "screen": 0.0}) == pack(source_coded)
    assert dict(unpack(weighed({"art": 0.5}, domain_id("screen"))).header.mixture) == {
        domain_id("screen"): 0.0, domain_id("art"): 0.5}

    report = {}
    best = codec.encode_rgb(image, width, domain="mix", report=report)
    assert report["candidates"] == 2 * 15  # source's or screen's entropy models x the grid
    assert set(report["mixture"]) <= {"screen", "art"}
    for domain in (None, "screen", "art"):
        assert codec.rd_loss(image, best) <= codec.rd_loss(
            image, codec.encode_rgb(image, width, domain=domain)) + 1e-12
    assert codec.rd_loss(image, best) == pytest.approx(report["loss"])

    lacking = Codec(model, rd_lambdas=LAMBDAS, adapters=[screen])
    with pytest.raises(ModelMismatchError, match="does not hold"):
        lacking.decode_rgb(half)
    with pytest.raises(ModelMismatchError, match="decodes files of one domain"):
        check_header(header, name="edge", fingerprint=header.fingerprint, widths=[width],
                     lambda_bounds=(1e-9, 1e9) if header.rate_kind else None,
                     domains={a.domain_id: a.domain for a in (screen, art)},
                     max_pixels=1 << 20, mixtures=False)
    with pytest.raises(ModelMismatchError, match="none is loaded"):
        Codec(model, rd_lambdas=LAMBDAS, adapters=[extend]).encode_rgb(image, width,
                                                                       domain="mix")


def test_the_weight_grid_holds_the_source_and_each_adapter_alone():
    from slimcodec.bitstream.mixture import MIX_SEARCH_LIMIT, weight_grid

    for n, size in ((1, 5), (2, 15), (4, 70)):  # C(n + 4, 4)
        grid = weight_grid(n)
        assert len(grid) == len(set(grid)) == size and all(sum(w) <= 1 for w in grid)
        assert (0.0,) * n in grid
        assert all(tuple(float(i == k) for i in range(n)) in grid for k in range(n))
    for n in (0, MIX_SEARCH_LIMIT + 1):
        with pytest.raises(ValueError, match="weighs 1 to 4 adapters"):
            weight_grid(n)


def test_compress_and_eval_domain_mix_on_the_command_line(screens, tmp_path, capsys):
    model = tiny("slimcae")
    save_model_file(model, tmp_path / "m.pt", meta={"lambdas": LAMBDAS})
    files = []
    for method, domain in (("adapters", "screen"), ("bias", "art")):
        files += ["--adapter", str(tmp_path / f"{domain}.adapter")]
        save_adapter(run_adapt(model, screens, method, domain=domain).adapter, files[-1])
    Image.fromarray(natural_like(32, 48)).save(tmp_path / "in.png")
    slc, base = tmp_path / "x.slc", ["--model", str(tmp_path / "m.pt")]
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(slc), *base, *files,
                 "--domain", "mix"]) == 0
    capsys.readouterr()
    assert main(["info", str(slc), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["mixture"]) <= {str(domain_id("screen")), str(domain_id("art"))}
    assert main(["decompress", str(slc), "-o", str(tmp_path / "o.png"), *base, *files]) == 0
    assert Image.open(tmp_path / "o.png").size == (48, 32)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(natural_like(32, 48)).save(tmp_path / "imgs" / "a.png")
    for domain, expected in ((["--domain", "mix"], "mix"), ([], "auto"),
                             (["--domain", "art"], "art")):
        assert main(["eval", str(tmp_path / "imgs"), *base, *files, *domain, "-q", "--json",
                     str(tmp_path / "r.json")]) == 0
        assert json.loads((tmp_path / "r.json").read_text())["domain"] == expected


def test_forged_mixtures_end_in_typed_errors(screens):
    """Hostile mixture blocks (valid CRCs) against a codec that holds adapters of every
    method: an extend domain mixed, members repeated or unknown, weights up to 255/64."""
    from slimcodec.bitstream.hostile import forged_mixture
    from slimcodec.errors import SlimcodecError

    model = tiny("slimcae")
    adapters = [run_adapt(model, screens, method, steps=1, domain=method).adapter
                for method in ("adapters", "bias", "extend")]
    codec = Codec(model, rd_lambdas=LAMBDAS, adapters=adapters)
    image = natural_like(16, 32)
    valid = [codec.encode_rgb(image, 16, domain=a.domain) for a in adapters]
    rng = random.Random(5)
    outcomes = {}
    for i in range(600):
        try:
            codec.decode_rgb(forged_mixture(valid[i % 3], rng))
            outcome = "decoded"
        except SlimcodecError as exc:
            outcome = type(exc).__name__
            if "cannot be mixed" in str(exc):
                outcome = "extend refused"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("decoded", 0) > 20 and outcomes.get("extend refused", 0) > 10, outcomes


@pytest.mark.parametrize("kind", KINDS)
def test_an_adapter_of_another_model_is_refused_where_it_is_used(kind, tmp_path):
    """Not only on loading a file: an adapter object made for one model, handed to a codec
    or an export of another (its fingerprint checked by ``check_source``), is refused."""
    from slimcodec_edge.onnx_export import export_bundle

    from slimcodec.adaptation.adapters import DomainAdapter

    model, other = tiny(kind), tiny(kind)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)  # the same architecture, other weights
    adapter = DomainAdapter(model, "bias", "screen")
    with pytest.raises(ModelMismatchError, match="was made for the model with fingerprint"):
        Codec(other, adapters=[adapter])
    with pytest.raises(ModelMismatchError, match="was made for the model with fingerprint"):
        export_bundle(other, tmp_path / "b", "other", adapters=[adapter])
    assert not (tmp_path / "b").exists()
