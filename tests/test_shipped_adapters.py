"""Domain adapters that ship with a model: loaded with its weights, coded through the gate by
default, built into its bundles, refused when missing or foreign."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import natural_like, record_argument
from PIL import Image
from test_adaptation import run_adapt, screens  # noqa: F401 (a fixture)
from test_edge import tiny

import slimcodec
from slimcodec.adaptation import DomainAdapter, adapter_fingerprint, save_adapter
from slimcodec.api import codec_for
from slimcodec.bitstream import unpack
from slimcodec.cli import main
from slimcodec.codec import Codec
from slimcodec.errors import ModelFileError
from slimcodec.gating import GATES, SOURCE
from slimcodec.zoo import DEFAULT_MODEL, catalog, fingerprint, load_model_file, save_model_file


def test_the_default_model_loads_its_shipped_adapters_and_codes_through_the_gate(monkeypatch):
    codec = codec_for(DEFAULT_MODEL)
    shipped = catalog.shipped_adapters(DEFAULT_MODEL)
    assert shipped, "the default model ships an adapter"
    assert codec.default_domain == "auto"
    loaded = {a.domain: adapter_fingerprint(a) for a in codec.adapters.values()}
    assert loaded == {e["domain"]: e["fingerprint"] for e in shipped}

    domains = record_argument(monkeypatch, Codec, "_encode", "domain")
    image = natural_like(48, 64)
    gated = slimcodec.compress(image, width=48, scale=1)
    # the front door asked for the gate, which coded the image once: the shipped adapters
    # change the decoder alone, so their candidates are the model's file relabelled (at
    # the image's own size: the scale ``auto`` would code the probe at each candidate too)
    assert domains == ["auto", None]
    domains.clear()
    alone = slimcodec.compress(image, width=48, domain=SOURCE, scale=1)
    assert domains == [SOURCE] and unpack(alone).header.domain == 0
    assert gated in {alone, *(codec.encode_rgb(image, 48, domain=e["domain"]) for e in shipped)}


def test_a_decoder_only_adapters_file_is_the_models_relabelled():
    """What lets the gate code once: through the shipped adapter, the strings are the model
    alone's and the header differs in its domain alone."""
    codec = codec_for(DEFAULT_MODEL)
    image = natural_like(40, 56, seed=3)
    for adapter in codec.adapters.values():
        assert adapter.codes_as_source
        for width in (192, 48):
            alone = unpack(codec.encode_rgb(image, width))
            through = unpack(codec.encode_rgb(image, width, domain=adapter.domain))
            assert through.strings == alone.strings
            assert through.header == replace(alone.header, domain=adapter.domain_id)


def test_info_names_the_shipped_adapter_that_coded_a_file(tmp_path, capsys):
    """`slimcodec info` (no torch) names the domain field's adapter, and a mixture's, where
    they ship with the file's model: what the gate chose."""
    codec = codec_for(DEFAULT_MODEL)
    image = natural_like(32, 48, seed=5)
    names = [e["domain"] for e in catalog.shipped_adapters(DEFAULT_MODEL)]
    files = {"alone": codec.encode_rgb(image, 48),
             "through": codec.encode_rgb(image, 48, domain=names[0]),
             "mixed": codec.encode_rgb(image, 48, mixture=dict.fromkeys(names, 0.25))}
    info = {}
    for label, data in files.items():
        (tmp_path / f"{label}.slc").write_bytes(data)
        assert main(["info", str(tmp_path / f"{label}.slc"), "--json"]) == 0
        info[label] = json.loads(capsys.readouterr().out)
    assert info["alone"]["domain_name"] == "source" and info["alone"]["mixture_names"] == {}
    assert info["through"]["domain_name"] == names[0]
    assert info["mixed"]["mixture_names"] == dict.fromkeys(names, 0.25)


def test_the_gate_decodes_the_shared_latent_once_to_the_same_losses(monkeypatch):
    """The relabelled candidates share one entropy-decoded latent: the gate's losses are
    those of decoding each file anew."""
    codec = codec_for(DEFAULT_MODEL)
    image = natural_like(40, 56, seed=5)
    latents = record_argument(monkeypatch, Codec, "decode_latent", "data")
    report = {}
    codec.encode_rgb(image, 48, domain="auto", report=report)
    assert len(latents) == 1
    assert set(report["gate"]) == {SOURCE, *(a.domain for a in codec.adapters.values())}
    for domain, loss in report["gate"].items():
        assert loss == codec.rd_loss(image, codec.encode_rgb(image, 48, domain=domain))


def test_evaluate_measures_what_compress_does(monkeypatch):
    from slimcodec.evaluate import evaluate

    codec = codec_for(DEFAULT_MODEL)
    domains = record_argument(monkeypatch, Codec, "_encode", "domain")
    result = evaluate(codec, [natural_like(32, 32)], widths=[48], progress=False,
                      lmbdas=[codec.default_lambda(48)])
    assert result["domain"] == "auto" and "auto" in domains
    domains.clear()
    assert evaluate(codec, [natural_like(32, 32)], widths=[48], progress=False,
                    lmbdas=[codec.default_lambda(48)], domain=SOURCE)["domain"] == SOURCE
    assert "auto" not in domains


def test_the_command_line_codes_through_the_gate_unless_told_source(tmp_path, monkeypatch):
    Image.fromarray(natural_like(40, 56)).save(tmp_path / "in.png")
    domains = record_argument(monkeypatch, Codec, "_encode", "domain")
    slc = tmp_path / "out.slc"
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(slc), "--width", "48"]) == 0
    assert domains[0] == "auto"
    domains.clear()
    assert main(["compress", str(tmp_path / "in.png"), "-o", str(slc), "--width", "48",
                 "--domain", "source", "--scale", "1"]) == 0
    assert domains == [SOURCE] and unpack(slc.read_bytes()).header.domain == 0
    assert main(["decompress", str(slc), "-o", str(tmp_path / "out.png")]) == 0


@pytest.fixture
def shipped_tiny(tmp_path, monkeypatch, screens):  # noqa: F811 (the fixture)
    """A tiny model registered as shipping one adapter (the catalog patched)."""
    model = tiny("slimcae-vr")
    weights = tmp_path / "weights"
    weights.mkdir()
    save_model_file(model, weights / "tiny.pt")
    adapter = run_adapt(model, screens, "adapters").adapter
    fp = save_adapter(adapter, weights / "tiny.screen.pt")
    entry = {"weights": "tiny.pt", "fingerprint": fingerprint(model).hex(), "kind": "tiny",
             "widths": list(model.widths), "distribution": "slimcodec-models",
             "adapters": [{"domain": "screen", "weights": "tiny.screen.pt", "fingerprint": fp}]}
    monkeypatch.setitem(catalog.SHIPPED, "tiny", entry)
    monkeypatch.setattr(catalog, "WEIGHTS_DIR", weights)
    return weights, fp


def test_any_copy_of_a_shipped_models_weights_loads_its_adapters(shipped_tiny, tmp_path):
    weights, fp = shipped_tiny
    (tmp_path / "copy.pt").write_bytes((weights / "tiny.pt").read_bytes())
    codec = Codec.load(tmp_path / "copy.pt")  # found by fingerprint, not by name
    assert codec.default_domain == "auto"
    assert [adapter_fingerprint(a) for a in codec.adapters.values()] == [fp]
    image = natural_like(32, 48)
    data = codec.encode_rgb(image, domain="screen")
    assert Codec.load(tmp_path / "copy.pt").decode_rgb(data)[0].shape == (32, 48, 3)


def test_a_missing_or_foreign_shipped_adapter_is_refused(shipped_tiny, screens):  # noqa: F811
    weights, _ = shipped_tiny
    (weights / "tiny.screen.pt").rename(weights / "kept.pt")
    with pytest.raises(ModelFileError, match=r"the 'screen' adapter of tiny is not installed: "
                                             r"it comes with the slimcodec-models"):
        Codec.load(weights / "tiny.pt")
    # another adapter for the same model, in the shipped one's place
    other = run_adapt(load_model_file(weights / "tiny.pt"), screens, "adapters", steps=4)
    save_adapter(other.adapter, weights / "tiny.screen.pt")
    with pytest.raises(ModelFileError, match=r"not the 'screen' adapter that ships with tiny"):
        Codec.load(weights / "tiny.pt")


def test_a_shipped_models_bundle_builds_its_adapters_in(shipped_tiny, tmp_path, monkeypatch):
    from slimcodec_edge.edge import EdgeCodec
    from slimcodec_edge.edge.cli import main as edge_main

    weights, _ = shipped_tiny
    assert main(["export", "--model", str(weights / "tiny.pt"), "-o", str(tmp_path / "b"),
                 "--widths", "8"]) == 0
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [d["name"] for d in manifest["domains"].values()] == ["screen"]
    # and the bundle encodes as the model's codec does: through the gate unless told source
    assert manifest["default_domain"] == "auto"
    Image.fromarray(natural_like(32, 48)).save(tmp_path / "in.png")
    domains = record_argument(monkeypatch, EdgeCodec, "_encode", "domain")
    for told, first in (([], "auto"), (["--domain", SOURCE], SOURCE)):
        domains.clear()
        assert edge_main(["encode", str(tmp_path / "b"), str(tmp_path / "in.png"), "-o",
                          str(tmp_path / "x.slc"), *told]) == 0
        assert domains[0] == first


@pytest.mark.parametrize("name", [SOURCE, *GATES])
def test_the_reserved_domain_values_name_no_adapter(name):
    with pytest.raises(ValueError, match="reserved"):
        DomainAdapter(tiny("slimcae"), "adapters", name)


def test_the_shipped_adapter_files_are_the_catalogs():
    """Every shipped adapter's file is installed beside its model's and holds the adapter
    the catalog names (its fingerprint over the weights, its domain)."""
    for name in catalog.SHIPPED:
        for entry in catalog.shipped_adapters(name):
            path = catalog.weights_path(entry["weights"])
            assert path is not None, entry
            payload = torch.load(path, weights_only=False)
            assert (payload["domain"], payload["fingerprint"]) == (entry["domain"],
                                                                   entry["fingerprint"])
            assert payload["source_fingerprint"] == catalog.SHIPPED[name]["fingerprint"]
            assert np.isfinite([v.float().sum() for v in payload["state_dict"].values()]).all()


def test_adapt_takes_its_crop_size_from_the_command_line(tmp_path, monkeypatch, screens):  # noqa: F811
    import slimcodec.adaptation as adaptation

    save_model_file(tiny("slimcae-vr"), tmp_path / "m.pt")
    patches = record_argument(monkeypatch, adaptation, "adapt", "patch")
    assert main(["adapt", "--model", str(tmp_path / "m.pt"), "--data", str(screens),
                 "--domain", "screen", "--method", "bias", "--steps", "1", "--patch", "48",
                 "-o", str(tmp_path / "a.adapter")]) == 0
    assert patches == [48]
    assert torch.load(tmp_path / "a.adapter", weights_only=False)["meta"]["patch"] == 48


def test_the_models_table_names_the_shipped_adapters(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(r for r in out.splitlines() if r.startswith(f"{DEFAULT_MODEL} (default)"))
    for entry in catalog.shipped_adapters(DEFAULT_MODEL):
        assert f"{entry['domain']} adapter" in line
