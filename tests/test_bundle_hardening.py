"""Bundles are confined to their folder and checked before use (issue 32): hostile
manifests and side files end in one-line BundleErrors, and no file outside is opened."""

import json
import os
import shutil

import numpy as np
import pytest
from helpers import natural_like, sliced_slimcae
from slimcodec_edge.bundle import MANIFEST, TABLES, Bundle, file_digest
from slimcodec_edge.edge import EdgeCodec
from slimcodec_edge.onnx_export import export_bundle

from slimcodec.errors import BundleError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A bundle whose tables each hold their own arrays (no ``table_slices``: the tests
    below rewrite them)."""
    root = tmp_path_factory.mktemp("b") / "bundle"
    export_bundle(sliced_slimcae((16, 8)), root, "tiny", shared_weights=False)
    return root


@pytest.fixture(scope="module")
def lean(tmp_path_factory):
    root = tmp_path_factory.mktemp("lean") / "bundle"
    export_bundle(sliced_slimcae((16, 8)), root, "tiny")
    return root


@pytest.mark.parametrize("ref", [{"of": "w16_a0_cdfs", "shape": [99, 1]},
                                 {"of": "w16_a0_cdfs", "shape": [8]},
                                 {"of": "no_such_key", "shape": [8, 1]},
                                 {"of": "w16_a0_cdfs", "shape": "8"}])
def test_table_slices_that_do_not_fit_are_refused(lean, tmp_path, ref):
    """A lean bundle's ``table_slices`` (an array stored once for every width) must name a
    stored array and a slice inside it."""
    root = tmp_path / "bundle"
    shutil.copytree(lean, root)
    sliced = json.loads((root / MANIFEST).read_text())["table_slices"]
    assert sliced, "the narrow width's tables are a slice of the wide one's"
    key = next(iter(sliced))
    _edit(root, lambda m: m["table_slices"].update({key: ref}))
    with pytest.raises(BundleError, match="damaged or incomplete entropy tables"):
        EdgeCodec(root).encode_rgb(natural_like(16, 16), int(key[1:].split("_")[0]))


@pytest.fixture
def bundle(exported, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(exported, copy)
    return copy


def _edit(root, change):
    manifest = json.loads((root / MANIFEST).read_text())
    change(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest))


def _graph(manifest):
    return manifest["graphs"]["16"]["synthesis"]


@pytest.mark.parametrize("name", ["../outside.onnx", "/tmp/outside.onnx", "..", "a/b.onnx",
                                  "sub\\x.onnx"])
def test_graph_paths_outside_the_bundle_are_refused_before_anything_is_read(bundle, name):
    # an outside file with the very SHA-256 the manifest names: still never opened
    outside = bundle.parent / "outside.onnx"
    shutil.copy(bundle / _graph(json.loads((bundle / MANIFEST).read_text()))["file"], outside)

    def point_outside(m):
        _graph(m)["file"] = name

    _edit(bundle, point_outside)
    with pytest.raises(BundleError, match="not a plain name inside the bundle"):
        Bundle.load(bundle)


def test_a_symlinked_graph_is_refused(bundle):
    manifest = json.loads((bundle / MANIFEST).read_text())
    graph = bundle / manifest["graphs"]["16"]["analysis"]["file"]
    outside = bundle.parent / "elsewhere.onnx"
    shutil.move(graph, outside)
    graph.symlink_to(outside)  # the very file, hash and all, but outside the folder
    with pytest.raises(BundleError, match="is a link; a bundle's files are in its folder"):
        EdgeCodec(bundle).encode_rgb(natural_like(16, 16), 16)


@pytest.mark.parametrize("change", [
    lambda m: m.pop("downsampling"),
    lambda m: m.update(downsampling=0),
    lambda m: m.update(downsampling="16"),
    lambda m: _graph(m).pop("sha256"),
    lambda m: _graph(m).update(sha256="zz"),
    lambda m: m.update(widths=[200000]),
    lambda m: m.pop("tables_sha256"),
    lambda m: m.update(default_domain="auto"),  # a gate with no adapter to pick
    lambda m: m.update(default_domain="screen"),  # no such adapter built in
])
def test_malformed_manifests_are_one_line_errors_at_load(bundle, change):
    _edit(bundle, change)
    with pytest.raises(BundleError) as info:
        Bundle.load(bundle)
    assert "\n" not in str(info.value)


def test_a_deeply_nested_manifest_is_refused(bundle):
    (bundle / MANIFEST).write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(BundleError, match="unreadable manifest"):
        Bundle.load(bundle)


def test_entropy_tables_are_checked(bundle):
    with np.load(bundle / TABLES) as npz:
        arrays = dict(npz)
    key = next(k for k in arrays if k.endswith("_medians"))
    arrays[key] = arrays[key] + 3  # a consistent edit: a valid npz, silently wrong medians
    np.savez(bundle / TABLES, **arrays)
    with pytest.raises(BundleError, match="SHA-256 mismatch"):
        Bundle.load(bundle)
    data = bytearray((bundle / TABLES).read_bytes())
    data[len(data) // 2] ^= 0x10  # a bit flip
    (bundle / TABLES).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256 mismatch"):
        Bundle.load(bundle)


def test_tables_that_do_not_fit_their_width_are_refused(bundle):
    """With the checksum made to match (a writer's bug, not line noise): the medians and
    CDFs of a width must have its channel count."""
    with np.load(bundle / TABLES) as npz:
        arrays = dict(npz)
    for name in ("cdfs", "lengths", "offsets", "medians"):
        arrays[f"w16_a0_{name}"] = arrays[f"w8_a0_{name}"]
    np.savez(bundle / TABLES, **arrays)
    _edit(bundle, lambda m: m.update(tables_sha256=file_digest(bundle / TABLES)))
    edge = EdgeCodec(bundle)
    with pytest.raises(BundleError, match="tables of width 16 have 8 channels"):
        edge.encode_rgb(natural_like(16, 16), 16)
    arrays["w16_a0_medians"] = arrays["w16_a0_medians"][:3]
    np.savez(bundle / TABLES, **arrays)
    _edit(bundle, lambda m: m.update(tables_sha256=file_digest(bundle / TABLES)))
    with pytest.raises(BundleError, match="medians for"):
        EdgeCodec(bundle).encode_rgb(natural_like(16, 16), 16)
    assert os.path.exists(bundle / TABLES)


def test_tables_that_would_inflate_past_the_limit_are_refused(bundle, monkeypatch):
    """The tables are stored compressed: a small file whose arrays declare more than
    MAX_ARRAY_BYTES (here lowered to keep the test small) is refused before it is read."""
    from slimcodec_edge import bundle as bundle_module

    with np.load(bundle / TABLES) as npz:
        arrays = dict(npz)
    arrays["w16_a0_padding"] = np.zeros(1 << 20, np.uint8)  # 1 MiB of zeros: ~1 KiB zipped
    np.savez_compressed(bundle / TABLES, **arrays)
    assert (bundle / TABLES).stat().st_size < 512 * 1024
    _edit(bundle, lambda m: m.update(tables_sha256=file_digest(bundle / TABLES)))
    EdgeCodec(bundle).encode_rgb(natural_like(16, 16), 16)  # within the limit: read
    monkeypatch.setattr(bundle_module, "MAX_ARRAY_BYTES", 1 << 20)
    with pytest.raises(BundleError, match=r"declare \d+ bytes, over 1048576"):
        EdgeCodec(bundle).encode_rgb(natural_like(16, 16), 16)


@pytest.mark.parametrize("entropy_models, flag", [(True, True), (None, 1), (None, "yes")])
def test_a_domain_claims_the_sources_strings_only_as_a_bool_without_tables(
        tmp_path, entropy_models, flag):
    """The gate relabels the source's file for a ``codes_as_source`` domain: a manifest
    that says so of an adapter with its own entropy tables, or says it in anything but a
    bool, is refused."""
    from slimcodec.adaptation import DomainAdapter

    model = sliced_slimcae((16, 8))
    adapter = DomainAdapter(model, "adapters", "screen", entropy_models=entropy_models)
    for eb in adapter.bottlenecks:
        eb.update(force=True)
    root = tmp_path / "bundle"
    export_bundle(model, root, "tiny", adapters=[adapter.eval()])
    (entry,) = Bundle.load(root).domains.values()
    assert entry["codes_as_source"] is (entropy_models is None)
    _edit(root, lambda m: next(iter(m["domains"].values())).update(codes_as_source=flag))
    with pytest.raises(BundleError, match="bad codes_as_source") as info:
        Bundle.load(root)
    assert "\n" not in str(info.value)


def test_export_refuses_a_default_domain_it_could_not_code_with(tmp_path):
    from slimcodec.adaptation import DomainAdapter

    model = sliced_slimcae((16, 8))
    extend = DomainAdapter(model, "extend", "photo")
    for default, adapters in (("auto", []), ("mix", [extend]), ("gate", [extend]),
                              ("screen", [extend])):
        with pytest.raises(ValueError, match=f"default domain '{default}'"):
            export_bundle(model, tmp_path / "b", "tiny", adapters=adapters,
                          default_domain=default)
    assert not (tmp_path / "b").exists()
    export_bundle(model, tmp_path / "b", "tiny", adapters=[extend], default_domain="photo")
    assert Bundle.load(tmp_path / "b").default_domain == "photo"
