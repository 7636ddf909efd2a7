"""Deployment (issue 11): bundles, the torch-free edge runtime, parity with PyTorch."""

import io
import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import (
    decode_outcomes,
    natural_like,
    record_argument,
    run_without_torch,
    sliced_slimcae,
)
from PIL import Image
from slimcodec_edge.bundle import Bundle
from slimcodec_edge.edge import EdgeCodec
from slimcodec_edge.edge.cli import main as edge_main
from slimcodec_edge.onnx_export import export_bundle

from slimcodec.bitstream import MAGIC, Bitstream, pack, rans, unpack
from slimcodec.codec import Codec
from slimcodec.errors import BundleError, CorruptBitstreamError, LatentError, ModelMismatchError
from slimcodec.models import ModulatedSlimCAE
from slimcodec.scaling import candidate_name
from slimcodec.training.trainer import init_from
from slimcodec.utils.metrics import psnr
from slimcodec.zoo import save_model_file

KINDS = ["slimcae", "slimcae-vr"]


def tiny(kind):
    model = sliced_slimcae((16, 8))
    if kind == "slimcae-vr":
        vr = ModulatedSlimCAE((16, 8), lambda_ranges=[(0.002, 0.05), (0.001, 0.02)],
                              rate_anchors=3, latent_gain=True)
        init_from(vr, model)
        with torch.no_grad():  # modulations that do something
            for m in [*vr.modulation_a, *vr.modulation_s]:
                m.out.weight.normal_(0, 0.05)
        vr.update(force=True)
        model = vr.eval()
    return model


@pytest.fixture(scope="module", params=KINDS)
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    model = tiny(request.param)
    save_model_file(model, root / "model.pt")
    export_bundle(model, root / "bundle", request.param)
    return model, root


def test_export_leaves_the_model_as_it_was(exported):
    """The exporter traces the transforms through wrapper modules; the model must come out in
    eval mode still, so that a later refined encode (which runs the hyper networks with
    gradients) cannot retune it and change its fingerprint."""
    model, _ = exported
    assert not any(m.training for m in model.modules())


def settings(codec):
    """(width, λ) pairs to try: each width, at two λ for a variable-rate model."""
    if not codec.variable_rate:
        return [(w, None) for w in codec.widths]
    return [(w, v) for w in codec.widths for v in codec.lambda_range(w)]


def test_bundle_manifest_and_graph_parity(exported):
    model, root = exported
    bundle = Bundle.load(root / "bundle")
    assert bundle.widths == (16, 8) and bundle.fingerprint == Codec(model).fingerprint
    codec = Codec(model)
    x = torch.rand(1, 3, 48, 80)
    for width, lmbda in settings(codec):
        extra = {} if lmbda is None else {"lmbda": np.array([lmbda], np.float32)}
        with codec.operating_point(width, lmbda) as m:
            y = m.analysis(x)
            x_hat = m.synthesis(y)
        a = ort.InferenceSession(str(bundle.graph(width, "analysis")))
        s = ort.InferenceSession(str(bundle.graph(width, "synthesis")))
        np.testing.assert_allclose(a.run(None, {"image": x.numpy(), **extra})[0], y.numpy(),
                                   atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(s.run(None, {"latent": y.numpy(), **extra})[0],
                                   x_hat.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", [(37, 50), (64, 17)])
def test_files_cross_between_runtimes(exported, size):
    """Odd sizes, both directions: same symbols from a file, pixels within one level."""
    model, root = exported
    torch_codec, edge = Codec(model), EdgeCodec(root / "bundle")
    rgb = natural_like(*size, seed=size[0])
    for width, lmbda in settings(torch_codec):
        for writer, reader in ((torch_codec, edge), (edge, torch_codec)):
            data = writer.encode_rgb(rgb, width, lmbda=lmbda)
            ours, _ = reader.decode_rgb(data)
            theirs, _ = writer.decode_rgb(data)
            assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
        header = unpack(data).header
        y_hat, _ = edge.decode_latent(data)
        symbols = y_hat  # the shape of the latent, below
        with torch_codec.operating_point(width, lmbda) as m:
            expected = m.latent_coder().decode(unpack(data).strings, y_hat.shape[1:])
        assert np.array_equal(y_hat, expected) and header.width == width
        # The two analyses agree on the symbols but for rare rounding ties.
        a = unpack(torch_codec.encode_rgb(rgb, width, lmbda=lmbda))
        b = unpack(edge.encode_rgb(rgb, width, lmbda=lmbda))
        with torch_codec.operating_point(width, lmbda) as m:
            ta = rans.decode(a.strings[0], m.entropy_tables(), symbols.shape)
            tb = rans.decode(b.strings[0], m.entropy_tables(), symbols.shape)
        assert (ta != tb).mean() < 0.01


@pytest.mark.parametrize("scale, resampling", [(1.5, "lanczos"), (2, "box")])
def test_files_coded_at_a_scale_cross_between_runtimes(exported, scale, resampling):
    """A file coded upsampled (``scale``) by either runtime: the same coded size and
    filter, the latent of that size, and the image's size decoded by both, within one
    level."""
    model, root = exported
    torch_codec, edge = Codec(model), EdgeCodec(root / "bundle")
    rgb = natural_like(37, 50, seed=2)
    width, lmbda = settings(torch_codec)[-1]
    size = {1.5: (56, 75), 2: (74, 100)}[scale]
    for writer, reader in ((torch_codec, edge), (edge, torch_codec)):
        data = writer.encode_rgb(rgb, width, lmbda=lmbda, scale=scale, resampling=resampling)
        header = unpack(data).header
        assert header.coded_size == size and header.resampling == ("lanczos", "box").index(
            resampling)
        ours, _ = reader.decode_rgb(data)
        theirs, _ = writer.decode_rgb(data)
        assert ours.shape == (37, 50, 3)
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
        assert reader.decode_latent(data)[0].shape == (width, *(-(-n // 16) for n in size))
    # the front doors take it too, and write the same file
    for codec in (torch_codec, edge):
        front = codec.encode(rgb, width, lmbda, scale=scale, resampling=resampling)
        assert front == codec.encode_rgb(rgb, width, lmbda=lmbda, scale=scale,
                                         resampling=resampling)
        # and choose the scale unless told, each its candidate of the lowest RD loss (a
        # single-rate model that records no training λ has no loss to choose by: scale 1)
        report = {}
        chosen = codec.encode_rgb(rgb, width, lmbda=lmbda, scale="auto", report=report)
        assert codec.encode(rgb, width, lmbda) == chosen
        losses = report["scale_losses"] or {"1": 0.0}
        assert min(losses.values()) == pytest.approx(
            losses[candidate_name(report["scale"], report["resampling"])])
        assert chosen == codec.encode_rgb(rgb, width, lmbda=lmbda, scale=report["scale"],
                                          resampling=report["resampling"])


def test_a_palette_crosses_between_runtimes(exported):
    """A few-colour image: each runtime's encoder sends a palette, and exact blocks, where
    they lower the loss, as the other's does, and both decoders snap and paint alike
    (slimcodec.palette, slimcodec.index_map)."""
    model, root = exported
    torch_codec, edge = Codec(model), EdgeCodec(root / "bundle")
    rgb = np.full((37, 50, 3), 100, np.uint8)
    rgb[5:9, 10:30] = 255
    rgb[20:22, 3:40] = (200, 30, 30)
    mapped = []
    for width, lmbda in settings(torch_codec):
        files = []
        for writer, reader in ((torch_codec, edge), (edge, torch_codec)):
            report = {}
            data = writer.encode_rgb(rgb, width, lmbda=lmbda, report=report)
            header = unpack(data).header
            assert sorted(header.palette) == [(100, 100, 100), (200, 30, 30), (255, 255, 255)]
            assert report["palette"] == 3
            plain = writer.encode_rgb(rgb, width, lmbda=lmbda, palette=False)
            assert psnr(rgb, reader.decode_rgb(data)[0]) > psnr(rgb, writer.decode_rgb(plain)[0])
            assert (reader.decode_rgb(data)[0] == writer.decode_rgb(data)[0]).all()
            files.append(data)
            mapped.append(report["index_map"] == len(header.index_map) > 0)
        assert unpack(files[0]).header == unpack(files[1]).header
    # a single-rate model has no λ to weigh the map's bits by: none
    assert any(mapped) == torch_codec.variable_rate


def test_a_residual_crosses_between_runtimes(exported):
    """A patch of noise on a flat screen, which the transforms miss: at the top λ each
    runtime's encoder adds a residual, and both decoders add it alike
    (slimcodec.residual); a single-rate model has no λ to weigh its bits by: none."""
    model, root = exported
    torch_codec, edge = Codec(model), EdgeCodec(root / "bundle")
    rgb = np.full((37, 50, 3), 100, np.uint8)
    rgb[4:30, 8:30] = np.random.default_rng(0).integers(0, 256, (26, 22, 3))
    for width in torch_codec.widths:
        lmbda = torch_codec.lambda_range(width)[1] if torch_codec.variable_rate else None
        for writer, reader in ((torch_codec, edge), (edge, torch_codec)):
            report = {}
            data = writer.encode_rgb(rgb, width, lmbda=lmbda, report=report)
            header = unpack(data).header
            assert report["residual"] == len(header.residual)
            assert bool(header.residual) == torch_codec.variable_rate
            decoded = reader.decode_rgb(data)[0]
            assert np.abs(decoded.astype(int) - writer.decode_rgb(data)[0]).max() <= 1
            plain = writer.encode_rgb(rgb, width, lmbda=lmbda, palette=False)
            if header.residual:
                assert psnr(rgb, decoded) > psnr(rgb, reader.decode_rgb(plain)[0]) + 3


def test_synthesis_of_a_latent_checks_its_header_in_both_runtimes(exported):
    """synthesize_rgb (decode_rgb's second half, public) refuses a header its runtime cannot
    decode with the typed error decode_rgb gives, in PyTorch and on the edge."""
    model, root = exported
    torch_codec, edge = Codec(model), EdgeCodec(root / "bundle")
    width, lmbda = settings(torch_codec)[0]
    data = torch_codec.encode_rgb(natural_like(32, 48), width, lmbda=lmbda)
    y_hat, header = edge.decode_latent(data)
    assert edge.synthesize_rgb(y_hat, header).shape == (32, 48, 3)
    unknown_width = replace(header, width=max(torch_codec.widths) + 8)
    with pytest.raises(CorruptBitstreamError, match="no width"):
        edge.synthesize_rgb(y_hat, unknown_width)
    with pytest.raises(CorruptBitstreamError, match="no width"):
        torch_codec.synthesize_rgb(y_hat, unknown_width)


def test_synthesis_refuses_a_latent_its_header_does_not_make_in_both_runtimes(exported):
    """A latent of another width, size or type than the header's file decodes to is a
    typed error in both runtimes, not an image of the wrong size or a failure inside the
    transform."""
    model, root = exported
    torch_codec, edge = Codec(model), EdgeCodec(root / "bundle")
    width, lmbda = settings(torch_codec)[0]
    data = torch_codec.encode_rgb(natural_like(32, 48), width, lmbda=lmbda)
    y_hat, header = edge.decode_latent(data)
    narrower = replace(header, width=min(w for w in torch_codec.widths if w != width))
    wrong = {"another width's header": (y_hat, narrower),
             "a cropped latent": (y_hat[:, :-1], header),
             "a tensor": (torch.from_numpy(y_hat), header),
             "integer symbols": (y_hat.astype(np.int32), header)}
    for runtime in (torch_codec, edge):
        assert runtime.synthesize_rgb(y_hat, header).shape == (32, 48, 3)
        for what, (latent, latent_header) in wrong.items():
            with pytest.raises(LatentError):
                runtime.synthesize_rgb(latent, latent_header)
                pytest.fail(f"{type(runtime).__name__} synthesized {what}")


def test_edge_runtime_never_imports_torch(exported, tmp_path):
    """Nor does it with several files, coded into a folder each as alone, or a folder's."""
    _, root = exported
    Image.fromarray(natural_like(40, 52)).save(tmp_path / "in.png")
    Image.fromarray(natural_like(24, 30, seed=1)).save(tmp_path / "two.png")
    coded, decoded = tmp_path / "coded", tmp_path / "decoded"
    coded.mkdir()
    decoded.mkdir()
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    Image.fromarray(natural_like(40, 52)).save(tmp_path / "tree" / "sub" / "in.png")
    run_without_torch(f"""
from slimcodec_edge.edge.cli import main
assert main(["encode", {str(root / "bundle")!r}, {str(tmp_path / "in.png")!r},
             "-o", {str(tmp_path / "x.slc")!r}]) == 0
assert main(["decode", {str(root / "bundle")!r}, {str(tmp_path / "x.slc")!r},
             "-o", {str(tmp_path / "out.png")!r}]) == 0
assert main(["encode", {str(root / "bundle")!r}, {str(tmp_path / "in.png")!r},
             {str(tmp_path / "two.png")!r}, "-o", {str(coded)!r}]) == 0
assert main(["decode", {str(root / "bundle")!r}, {str(coded / "in.slc")!r},
             {str(coded / "two.slc")!r}, "-o", {str(decoded)!r}]) == 0
assert main(["encode", {str(root / "bundle")!r}, {str(tmp_path / "tree")!r},
             "-o", {str(tmp_path / "tree-coded")!r}]) == 0
assert main(["decode", {str(root / "bundle")!r}, {str(tmp_path / "tree-coded")!r},
             "-o", {str(tmp_path / "tree-decoded")!r}]) == 0
""")
    tree_coded = (tmp_path / "tree-coded" / "sub" / "in.slc").read_bytes()
    assert tree_coded == (coded / "in.slc").read_bytes()
    assert (Image.open(tmp_path / "tree-decoded" / "sub" / "in.png").tobytes()
            == Image.open(decoded / "in.png").tobytes())
    assert Image.open(tmp_path / "out.png").size == (52, 40)
    assert (coded / "in.slc").read_bytes() == (tmp_path / "x.slc").read_bytes()
    assert Image.open(decoded / "in.png").tobytes() == Image.open(tmp_path / "out.png").tobytes()
    assert Image.open(decoded / "two.png").size == (30, 24)


def test_edge_rate_control_is_slimcodecs(exported, tmp_path, capsys):
    """The edge encoder's quality and targets run slimcodec's search (the same code): the
    same width and λ on the same image, the targets met, and the CLI without torch."""
    from slimcodec.errors import RateError
    from slimcodec.rate_control import encode_with_rate

    model, root = exported
    torch_codec, edge = Codec(model), EdgeCodec(root / "bundle")
    rgb = natural_like(64, 96, seed=3)
    if not edge.variable_rate:
        with pytest.raises(RateError, match="single-rate"):
            edge.encode(rgb, quality=50)
        return
    for rate in ({"quality": 30}, {"quality": 90}):
        ours = unpack(edge.encode(rgb, **rate)).header
        theirs = unpack(encode_with_rate(torch_codec, rgb, **rate)[0]).header
        assert (ours.width, ours.rate) == (theirs.width, theirs.rate)
    lo = 8 * len(edge.encode_rgb(rgb, 8, lmbda=edge.lambda_range(8)[0])) / rgb[..., 0].size
    hi = 8 * len(edge.encode_rgb(rgb, 8, lmbda=edge.lambda_range(8)[1])) / rgb[..., 0].size
    target = math.sqrt(lo * hi)
    for prefer in ("quality", "cost"):
        searches = [encode_with_rate(c, rgb, target_bpp=target, prefer=prefer, max_passes=8)
                    for c in (edge, torch_codec)]
        (data, ours), (_, theirs) = searches
        assert ours.width == theirs.width and ours.lmbda == pytest.approx(theirs.lmbda,
                                                                        rel=0.02)
        assert abs(8 * len(data) / rgb[..., 0].size - target) / target <= 0.03
    assert ours.width == 8  # cost: the narrowest width that reaches it
    size = len(data)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    run_without_torch(f"""
from slimcodec_edge.edge.cli import main
assert main(["encode", {str(root / "bundle")!r}, {str(tmp_path / "in.png")!r},
             "-o", {str(tmp_path / "x.slc")!r}, "--target-size", "{size}"]) == 0
""")
    assert abs(len((tmp_path / "x.slc").read_bytes()) - size) / size <= 0.03
    code = edge_main(["encode", str(root / "bundle"), str(tmp_path / "in.png"), "-o",
                      str(tmp_path / "y.slc"), "--target-psnr", "10", "--quality", "5"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "one rate setting" in err
    assert "(--quality)" in err and "(--target-psnr)" in err  # the options, as typed


def test_edge_tile_reaches_the_transforms_and_a_bad_tile_is_refused(exported, tmp_path,
                                                                    capsys, monkeypatch):
    from slimcodec import tiling

    _, root = exported
    Image.fromarray(natural_like(40, 52)).save(tmp_path / "in.png")
    tiles = record_argument(monkeypatch, tiling, "spans", "tile")
    bundle, slc = str(root / "bundle"), str(tmp_path / "x.slc")
    assert edge_main(["encode", bundle, str(tmp_path / "in.png"), "-o", slc, "--tile", "1"]) == 0
    assert tiles and set(tiles) == {1}
    tiles.clear()
    assert edge_main(["decode", bundle, slc, "-o", str(tmp_path / "o.png"), "--tile", "2"]) == 0
    assert tiles and set(tiles) == {2}
    with pytest.raises(SystemExit) as exit_:
        edge_main(["decode", bundle, slc, "-o", str(tmp_path / "p.png"), "--tile", "0"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--tile: '0' is not a positive number" in err
    assert not (tmp_path / "p.png").exists()
    with pytest.raises(ValueError, match="tile must be positive, not 0"):
        EdgeCodec(root / "bundle", tile=0)


def lean_and_full_code_alike(model, root):
    """Export ``model`` lean (shared weights) and full; both must write the same files and
    decode them to the same pixels, the lean one in far fewer bytes. Its manifest."""
    kind = type(model).__name__
    full = export_bundle(model, root / "full", kind, shared_weights=False)
    lean = export_bundle(model, root / "lean", kind)
    manifest = json.loads((lean / "manifest.json").read_text())
    assert manifest["shared_weights"]["file"] == "weights.bin"

    def size(root, suffix=""):
        return sum(f.stat().st_size for f in root.iterdir() if f.name.endswith(suffix))

    widest = sum(f.stat().st_size for f in full.iterdir()
                 if f.name.endswith(f"-{model.widths[0]}.onnx"))
    # The pooled weights of every width take no more than the widest's graphs (the shipped
    # model's whole bundle: benchmarks/bundle_size.py).
    assert size(lean, ".bin") <= widest and size(lean) < size(full)
    rgb = natural_like(48, 80, seed=5)
    a, b = EdgeCodec(full), EdgeCodec(lean)
    for width, lmbda in settings(Codec(model)):
        data = a.encode_rgb(rgb, width, lmbda=lmbda)
        assert b.encode_rgb(rgb, width, lmbda=lmbda) == data
        assert np.array_equal(a.decode_rgb(data)[0], b.decode_rgb(data)[0])
    return manifest


@pytest.mark.parametrize("kind", KINDS)
def test_lean_bundle_codes_byte_for_byte_as_a_full_one(kind, tmp_path):
    """Shared weights stored once (weights.bin): the same files, the same pixels as a
    bundle whose graphs hold their own weights (the hyperprior's: test_hyperprior.py)."""
    lean_and_full_code_alike(tiny(kind), tmp_path)


def test_lean_bundle_refuses_damaged_or_escaping_weights(tmp_path):
    import onnx

    model = tiny("slimcae-vr")
    root = export_bundle(model, tmp_path / "b", "vr")
    rgb = natural_like(32, 48)
    data = EdgeCodec(root).encode_rgb(rgb, 8)
    weights = (root / "weights.bin").read_bytes()
    (root / "weights.bin").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(BundleError, match="damaged shared weights"):
        EdgeCodec(root).decode_rgb(data)
    (root / "weights.bin").write_bytes(weights)
    # A graph that reads weights from outside the bundle, its hash updated to match.
    (tmp_path / "outside.bin").write_bytes(weights)
    manifest = json.loads((root / "manifest.json").read_text())
    entry = manifest["graphs"]["8"]["synthesis"]
    graph = onnx.load(str(root / entry["file"]), load_external_data=False)
    for init in graph.graph.initializer:
        for item in init.external_data:
            if item.key == "location":
                item.value = "../outside.bin"
    onnx.save(graph, str(root / entry["file"]))
    from slimcodec_edge.bundle import file_digest

    entry["sha256"] = file_digest(root / entry["file"])
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not a loadable graph"):
        EdgeCodec(root).decode_rgb(data)


def test_exporting_adapters_never_imports_training(tmp_path):
    """export/ reads bundles and the bitstream, never slimcodec.training: building adapters
    and their mixing graph into a bundle loads the adapters alone."""
    script = f"""
import sys
from slimcodec_edge.onnx_export import export_bundle
from slimcodec.adaptation import DomainAdapter
from slimcodec.models import SlimCAE
model = SlimCAE((16, 8)).eval()
model.update(force=True)  # the tables the export builds, before adapters take its fingerprint
export_bundle(model, {str(tmp_path / "b")!r}, "tiny",
              adapters=[DomainAdapter(model, "bias", "art"), DomainAdapter(model, "extend", "x")])
loaded = [m for m in sys.modules if m.startswith("slimcodec.training")]
assert not loaded, loaded
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
    from slimcodec.adaptation import domain_id

    assert Bundle.load(tmp_path / "b").mixture_domains == (domain_id("art"),)


def test_dash_is_standard_input_and_output(exported, tmp_path, monkeypatch, capsysbinary):
    _, root = exported
    buf = io.BytesIO()
    Image.fromarray(natural_like(24, 40)).save(buf, "PNG")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(buf.getvalue())))
    assert edge_main(["encode", str(root / "bundle"), "-", "-o", "-"]) == 0
    data, err = capsysbinary.readouterr()
    assert data.startswith(MAGIC) and err.startswith(b"-: ")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert edge_main(["decode", str(root / "bundle"), "-", "-o", "-"]) == 0
    assert Image.open(io.BytesIO(capsysbinary.readouterr().out)).size == (40, 24)


def test_bad_bundles_give_one_line(exported, tmp_path, capsys):
    model, root = exported
    Image.fromarray(natural_like(32, 32)).save(tmp_path / "in.png")
    slc = tmp_path / "x.slc"
    slc.write_bytes(Codec(model).encode_rgb(natural_like(32, 32)))
    bundle = root / "bundle"

    def run(*argv):
        code = edge_main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("slimcodec-edge: error:")
        return err

    assert "not a bundle" in run("decode", tmp_path, slc, "-o", tmp_path / "o.png")
    assert "is the input file" in run("decode", bundle, slc, "-o", slc)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in bundle.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    graph = broken / "synthesis-8.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    assert "damaged graph" in run("decode", broken, _file_at_width(model, tmp_path, 8), "-o",
                                  tmp_path / "o.png")
    graph.unlink()
    assert "missing" in run("decode", broken, _file_at_width(model, tmp_path, 8), "-o",
                            tmp_path / "o.png")
    manifest = json.loads((broken / "manifest.json").read_text())
    (broken / "manifest.json").write_text("{not json")
    assert "manifest" in run("encode", broken, tmp_path / "in.png", "-o", slc)
    manifest["fingerprint"] = "00" * 8
    (broken / "manifest.json").write_text(json.dumps(manifest))
    assert "not by" in run("decode", broken, slc, "-o", tmp_path / "o.png")
    with pytest.raises(ModelMismatchError):
        EdgeCodec(broken).decode_rgb(slc.read_bytes())
    with pytest.raises(BundleError):
        Bundle.load(tmp_path / "nowhere")


def _file_at_width(model, tmp_path, width):
    path = tmp_path / f"w{width}.slc"
    codec = Codec(model)
    lmbda = codec.lambda_range(width)[0] if codec.variable_rate else None
    path.write_bytes(codec.encode_rgb(natural_like(32, 32), width, lmbda=lmbda))
    return path


def test_int8_export_reports_its_rd_cost(tmp_path):
    model = tiny("slimcae")
    cal = tmp_path / "cal"
    cal.mkdir()
    for i in range(2):
        Image.fromarray(natural_like(64, 80, seed=i)).save(cal / f"{i}.png")
    export_bundle(model, tmp_path / "b", "tiny", calibration=cal, calibration_images=2)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert set(manifest["int8"]["widths"]) == {"16", "8"}
    for cost in manifest["int8"]["widths"].values():
        assert abs(cost["psnr_change"]) < 1.0 and abs(cost["bpp_change"]) < 0.2
    codec = EdgeCodec(tmp_path / "b", int8=True)
    data = codec.encode_rgb(natural_like(32, 48), 8)
    out, _ = codec.decode_rgb(data)
    assert out.shape == (32, 48, 3)
    # int8 only: the same graphs without the float ones beside them, the same files.
    export_bundle(model, tmp_path / "c", "tiny", calibration=cal, calibration_images=2,
                  int8_only=True)
    names = {f.name for f in (tmp_path / "c").iterdir()}
    assert "analysis-8.int8.onnx" in names and "analysis-8.onnx" not in names
    only = EdgeCodec(tmp_path / "c")
    assert only.bundle.int8_only and only.encode_rgb(natural_like(32, 48), 8) == data
    assert np.array_equal(only.decode_rgb(data)[0], out)
    size = sum(f.stat().st_size for f in (tmp_path / "c").iterdir())
    assert size < sum(f.stat().st_size for f in (tmp_path / "b").iterdir())


@pytest.mark.parametrize("kind", KINDS)
def test_int8_export_quantises_the_adapters_graphs_too(kind, tmp_path):
    from slimcodec.adaptation import DomainAdapter

    model = tiny(kind)
    adapter = DomainAdapter(model, "extend", "screen")
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if not name.endswith("quantiles"):
                p.add_(torch.randn_like(p) * 0.05)
    Image.fromarray(natural_like(64, 80)).save(tmp_path / "cal.png")
    export_bundle(model, tmp_path / "b", "tiny", calibration=tmp_path / "cal.png",
                  calibration_images=1, adapters=[adapter])
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    costs = manifest["int8"]["domains"][str(adapter.domain_id)]["widths"]
    assert set(costs) == {"16", "8"}  # (an untrained model's PSNR says nothing about int8)
    assert all(np.isfinite([c["bpp_change"], c["psnr_change"]]).all() for c in costs.values())
    rgb = natural_like(64, 80)  # the calibration image
    floats, ints = EdgeCodec(tmp_path / "b"), EdgeCodec(tmp_path / "b", int8=True)
    data = ints.encode_rgb(rgb, 8, domain="screen")
    assert unpack(data).header.domain == adapter.domain_id
    quantised, _ = ints.decode_rgb(data)
    reference, _ = floats.decode_rgb(data)
    assert not np.array_equal(quantised, reference)  # the domain's int8 graphs, not float
    # Every int8 graph, the source's and the domain's, quantises convolutions but leaves the
    # GDNs in float (a domain graph's layers are traced under other scope names), and the
    # convolutions at the pixels' side: the analysis's first, the synthesis's last and the
    # adapter's output filter after it.
    import onnx
    from slimcodec_edge.quantize import _GDN_SCOPE, _SYNTHESIS_SCOPE

    for graph in (tmp_path / "b").glob("*.int8.onnx"):
        nodes = onnx.load(str(graph)).graph.node
        dequantised = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
        convs = [n for n in nodes if n.op_type in ("Conv", "ConvTranspose")
                 and not _GDN_SCOPE.match(n.name)]
        quantised = [n.name for n in nodes if n.op_type in ("Conv", "ConvTranspose")
                     and any(i in dequantised for i in n.input)]
        assert quantised and not [q for q in quantised if _GDN_SCOPE.match(q)], graph.name
        if graph.name.startswith("analysis"):
            pixel_side = convs[:1]
        elif graph.name.startswith("synthesis"):
            last = [i for i, n in enumerate(convs) if _SYNTHESIS_SCOPE.match(n.name)][-1]
            pixel_side = convs[last:]
            assert "-d" not in graph.name or len(pixel_side) == 3, graph.name  # + the filter
        else:  # a coder network's: no pixels' side
            pixel_side = []
        assert not {n.name for n in pixel_side} & set(quantised), graph.name
        assert len(quantised) == len(convs) - len(pixel_side), graph.name


def test_int8_export_quantises_the_mixing_graph_too(tmp_path, capsys):
    """--int8 quantises the mixing synthesis too, so that an int8-only bundle of a model
    with decoder adapters holds no float graph (no float decoder beside the int8 one), and
    mixed files decode through the int8 graph, the same with or without the float ones;
    slimcodec export says what it costs a mixed file."""
    from slimcodec.adaptation import DomainAdapter, save_adapter
    from slimcodec.cli import main as cli_main

    model = tiny("slimcae-vr")
    adapters = [DomainAdapter(model, "adapters", name) for name in ("screen", "art")]
    with torch.no_grad():
        for adapter in adapters:
            for p in adapter.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    (tmp_path / "cal").mkdir()
    Image.fromarray(natural_like(64, 80)).save(tmp_path / "cal" / "cal.png")
    save_model_file(model, tmp_path / "m.pt")
    for adapter in adapters:
        save_adapter(adapter, tmp_path / f"{adapter.domain}.adapter")
    assert cli_main(["export", "--model", str(tmp_path / "m.pt"), "-o", str(tmp_path / "b"),
                     "--int8", "--calibration", str(tmp_path / "cal"),
                     *(a for d in ("screen", "art")
                       for a in ("--adapter", str(tmp_path / f"{d}.adapter")))]) == 0
    printed = capsys.readouterr().out
    export_bundle(model, tmp_path / "c", "tiny", calibration=tmp_path / "cal",
                  calibration_images=1, adapters=adapters, int8_only=True)
    names = {f.name for f in (tmp_path / "c").iterdir()}
    assert "synthesis-8-mix.int8.onnx" in names
    # The export's report says what the int8 mixing graph costs a mixed file, per width, at
    # the middle and the top of its λ range.
    report = json.loads((tmp_path / "b" / "manifest.json").read_text())["int8"]["mixture"]
    assert set(report["widths"]) == {str(w) for w in model.widths}
    for cost in report["widths"].values():
        for point in (cost, cost["top"]):
            assert point["weights"] == 0.5 and point["psnr_int8"] != point["psnr_float"]
            assert abs(point["psnr_change"]) < 1
    lines = {line.split(",")[0].strip(): line for line in printed.splitlines()}
    for w in model.widths:
        line = lines[f"int8 mixing graph width {w}"]
        assert "a float file weighing each adapter 0.50, decoded: " in line
        assert "dB; at the top λ " in line
    assert not [n for n in names if n.endswith(".onnx") and not n.endswith(".int8.onnx")]
    # The adapters' kernels are weights like the model's, not constants of the trace: the
    # int8 graphs quantise them per channel (a constant would be quantised as an activation
    # and kept in float), and the lean bundle pools them (large ones) in weights.bin.
    import onnx

    for graph in [*(tmp_path / "b").glob("*.onnx"), *(tmp_path / "c").glob("*.onnx")]:
        nodes = onnx.load(str(graph), load_external_data=False).graph.node
        kernels = [a.t.name or n.name for n in nodes if n.op_type == "Constant"
                   for a in n.attribute if len(a.t.dims) >= 2]
        assert not kernels, (graph.name, kernels)
    codec = Codec(model, adapters=adapters)
    width = codec.widths[0]
    lmbda = codec.lambda_range(width)[0]
    rgb = natural_like(64, 80)
    mixed = codec.encode_rgb(rgb, width, lmbda=lmbda, mixture={"screen": 0.5, "art": 0.25})
    floats, ints = EdgeCodec(tmp_path / "b"), EdgeCodec(tmp_path / "b", int8=True)
    quantised = ints.decode_rgb(mixed)[0]
    assert not np.array_equal(quantised, floats.decode_rgb(mixed)[0])  # the int8 graph
    assert np.array_equal(EdgeCodec(tmp_path / "c").decode_rgb(mixed)[0], quantised)


@pytest.mark.parametrize("method, entropy_models",
                         [("extend", None), ("adapters", None), ("adapters", True)])
@pytest.mark.parametrize("kind", KINDS)
def test_domain_adapters_built_into_a_bundle(kind, method, entropy_models, tmp_path):
    """Files coded with an adapter cross between runtimes; domain-0 files are unchanged.
    A domain with its own entropy models (``extend``, ``adapters --entropy-models``) codes
    with its own tables."""
    from slimcodec.adaptation import DomainAdapter

    model = tiny(kind)
    adapter = DomainAdapter(model, method, "screen", entropy_models=entropy_models)
    with torch.no_grad():  # an adapter that changes the codec, in its transforms and tables
        for name, p in adapter.named_parameters():
            if not name.endswith("quantiles"):
                p.add_(torch.randn_like(p) * 0.05)
    for eb in adapter.bottlenecks:
        eb.update(force=True)
    adapter.eval()
    export_bundle(model, tmp_path / "b", kind, adapters=[adapter])
    export_bundle(model, tmp_path / "plain", kind)
    torch_codec, edge = Codec(model, adapters=[adapter]), EdgeCodec(tmp_path / "b")
    domain = Bundle.load(tmp_path / "b").domains[adapter.domain_id]
    assert domain["name"] == "screen"
    assert domain["own_tables"] == bool(adapter.bottlenecks)
    rgb = natural_like(40, 56, seed=3)
    for width, lmbda in settings(torch_codec):
        for writer, reader in ((torch_codec, edge), (edge, torch_codec)):
            data = writer.encode_rgb(rgb, width, lmbda=lmbda, domain="screen")
            assert unpack(data).header.domain == adapter.domain_id
            ours, _ = reader.decode_rgb(data)
            theirs, _ = writer.decode_rgb(data)
            assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
        plain = torch_codec.encode_rgb(rgb, width, lmbda=lmbda)
        assert not np.array_equal(torch_codec.decode_rgb(data)[0], torch_codec.decode_rgb(plain)[0])
        assert np.array_equal(edge.decode_rgb(plain)[0],
                              EdgeCodec(tmp_path / "plain").decode_rgb(plain)[0])
    with pytest.raises(ModelMismatchError, match="does not hold"):
        EdgeCodec(tmp_path / "plain").decode_rgb(data)
    with pytest.raises(ModelMismatchError, match="no adapter for domain 'art'"):
        edge.encode_rgb(rgb, domain="art")
    with pytest.raises(ModelMismatchError, match="made for the model"):
        export_bundle(tiny("slimcae" if kind != "slimcae" else "slimcae-vr"), tmp_path / "x",
                      kind, adapters=[adapter])


def test_export_cli_builds_adapters_in(exported, tmp_path, capsys):
    from slimcodec.adaptation import DomainAdapter, domain_id, save_adapter
    from slimcodec.cli import main as cli_main

    model, root = exported
    save_adapter(DomainAdapter(model, "bias", "faces"), tmp_path / "faces.adapter")
    assert cli_main(["export", "--model", str(root / "model.pt"), "-o", str(tmp_path / "b"),
                     "--widths", "8", "--adapter", str(tmp_path / "faces.adapter")]) == 0
    assert "domain 'faces'" in capsys.readouterr().out
    Image.fromarray(natural_like(32, 48)).save(tmp_path / "in.png")
    assert edge_main(["encode", str(tmp_path / "b"), str(tmp_path / "in.png"), "-o",
                      str(tmp_path / "x.slc"), "--width", "8", "--domain", "faces"]) == 0
    assert unpack((tmp_path / "x.slc").read_bytes()).header.domain == domain_id("faces")
    assert edge_main(["decode", str(tmp_path / "b"), str(tmp_path / "x.slc"), "-o",
                      str(tmp_path / "out.png")]) == 0
    assert edge_main(["encode", str(tmp_path / "b"), str(tmp_path / "in.png"), "-o",
                      str(tmp_path / "y.slc"), "--width", "8", "--domain", "art"]) == 2
    assert "no adapter for domain 'art'" in capsys.readouterr().err
    # The gate: a variable-rate file's λ weighs it; this single-rate model's file recorded no
    # training λ, so neither did its bundle, and the gate says so.
    for gate in ("auto", "mix"):  # the gate that picks, and the one that weighs
        code = edge_main(["encode", str(tmp_path / "b"), str(tmp_path / "in.png"), "-o",
                          str(tmp_path / "z.slc"), "--width", "8", "--domain", gate])
        err = capsys.readouterr().err
        if isinstance(model, ModulatedSlimCAE):
            assert code == 0 and unpack((tmp_path / "z.slc").read_bytes()).header.width == 8
            assert edge_main(["decode", str(tmp_path / "b"), str(tmp_path / "z.slc"), "-o",
                              str(tmp_path / "z.png")]) == 0
        else:
            assert code == 2 and err.count("\n") == 1 and "records no training λ" in err


@pytest.mark.parametrize("kind", KINDS)
def test_the_edge_gate_keeps_the_lowest_rd_loss(kind, tmp_path, monkeypatch):
    from slimcodec.adaptation import DomainAdapter
    from slimcodec.bitstream.rate import rd_loss
    from slimcodec.scaling import coding_lambda, probe_of

    model = tiny(kind)
    rgb = natural_like(32, 48)
    screen, art = DomainAdapter(model, "adapters", "screen"), DomainAdapter(model, "bias", "art")
    with torch.no_grad():
        for p in screen.parameters():  # an adapter that changes the decoded image
            p.add_(torch.randn_like(p) * 0.05)
        # and one that corrects the untrained decoder's colour cast: better at no extra bits
        codec = Codec(model)
        width = codec.widths[0]
        lmbda = codec.lambda_range(width)[0] if codec.variable_rate else None
        decoded, _ = codec.decode_rgb(codec.encode_rgb(rgb, width, lmbda=lmbda))
        cast = (rgb.astype(np.float64) - decoded).mean(axis=(0, 1)) / 255
        art.decoder_bias[2].copy_(torch.as_tensor(cast, dtype=torch.float32))
    lambdas = [0.01, 0.003] if kind == "slimcae" else None
    export_bundle(model, tmp_path / "b", kind, adapters=[screen, art], rd_lambdas=lambdas)
    edge = EdgeCodec(tmp_path / "b")
    # Both adapters change the decoder alone, so the manifest says that they code the
    # source's strings and the gate analyses and entropy codes the image once.
    assert all(e["codes_as_source"] for e in edge.bundle.domains.values())
    assert edge.gate_keeps_source_strings  # (what a rate target's search relies on)
    domains = record_argument(monkeypatch, EdgeCodec, "_encode", "domain")
    latents = record_argument(monkeypatch, EdgeCodec, "decode_latent", "data")
    report = {}
    data = edge.encode_rgb(rgb, width, lmbda=lmbda, domain="auto", report=report)
    assert domains == ["auto", None] and len(latents) == 1  # one latent, decoded once
    monkeypatch.undo()
    # what the kept file decodes to, from the gate's own decode (a PSNR target needs it)
    assert report["psnr"] == psnr(rgb, edge.decode_rgb(data)[0])
    # with the scale chosen too (the front door's default), the gate codes the probe alone,
    # at the scale the model alone chose, and the image is coded with the domain of the
    # probe's lowest loss, as slimcodec does
    big = natural_like(272, 304, seed=3)
    gated = record_argument(monkeypatch, EdgeCodec, "_gate", "rgb")
    report = {}
    scaled = edge.encode_rgb(big, width, lmbda=lmbda, domain="auto", scale="auto",
                             report=report)
    assert 1 <= len(gated) <= 2 and all(np.array_equal(g, probe_of(big)) for g in gated)
    monkeypatch.undo()
    alone = {}
    edge.encode_rgb(big, width, lmbda=lmbda, scale="auto", report=alone)
    at = report["scale"], report["resampling"]
    # the model alone's scale, or the image's own where an adapter codes that better
    assert at in ((alone["scale"], alone["resampling"]), (1.0, "lanczos"))
    chosen = min(report["gate"], key=report["gate"].get)
    assert (report["domain"] or "source") == chosen and len(report["gate"]) == 3
    coded = lmbda and coding_lambda(lmbda, at[0], edge.lambda_range(width)[0])
    assert scaled == edge.encode_rgb(big, width, lmbda=coded, domain=chosen, scale=at[0],
                                     resampling=at[1])
    weight = edge.bundle.rd_weight(width, lmbda)
    losses = {}
    for adapter in (None, screen, art):
        f = edge.encode_rgb(rgb, width, lmbda=lmbda, domain=adapter and adapter.domain)
        losses[adapter.domain_id if adapter else 0] = rd_loss(rgb, edge.decode_rgb(f)[0],
                                                              len(f), weight)
    assert len(set(losses.values())) == 3 and losses[art.domain_id] < losses[0]
    assert unpack(data).header.domain == min(losses, key=losses.get)
    chosen = {0: None, screen.domain_id: "screen", art.domain_id: "art"}
    assert data == edge.encode_rgb(rgb, width, lmbda=lmbda,  # as coding it anew
                                   domain=chosen[min(losses, key=losses.get)])
    # The weighing gate's files decode through the bundle's mixing graph, the file's weights
    # its input: as slimcodec decodes them, to one level.
    codec = Codec(model, rd_lambdas=lambdas, adapters=[screen, art])
    report = {}
    kept = codec.encode_rgb(rgb, width, lmbda=lmbda, domain="auto", report=report)
    assert report["domain"] == "art" and report["psnr"] == psnr(rgb, codec.decode_rgb(kept)[0])
    mixed = codec.encode_rgb(rgb, width, lmbda=lmbda, mixture={"screen": 0.5, "art": 0.25})
    theirs, ours = codec.decode_rgb(mixed)[0], edge.decode_rgb(mixed)[0]
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    alone = codec.decode_rgb(codec.encode_rgb(rgb, width, lmbda=lmbda, domain="screen"))[0]
    assert np.abs(theirs.astype(int) - alone).max() > 1  # the weights took effect
    assert edge.bundle.mixture_domains == (screen.domain_id, art.domain_id)
    # And the edge runtime searches the weights as slimcodec does: its file is at least as
    # good as the source's and each adapter's alone (all on its grid), and slimcodec reads it.
    searched = edge.encode_rgb(rgb, width, lmbda=lmbda, domain="mix")
    decoded = edge.decode_rgb(searched)[0]
    assert rd_loss(rgb, decoded, len(searched), weight) <= min(losses.values())
    assert np.abs(codec.decode_rgb(searched)[0].astype(int) - decoded).max() <= 1
    export_bundle(model, tmp_path / "one", kind, adapters=[screen], rd_lambdas=lambdas)
    with pytest.raises(ModelMismatchError, match="does not hold"):  # art's adapter is missing
        EdgeCodec(tmp_path / "one").decode_rgb(mixed)
    # An encoder-side adapter is built in but never mixed: a file that mixes it is forged.
    photo = DomainAdapter(model, "extend", "photo")
    export_bundle(model, tmp_path / "ext", kind, adapters=[photo, art], rd_lambdas=lambdas)
    bitstream = unpack(mixed)
    forged = pack(Bitstream(replace(bitstream.header, mixture=(
        (photo.domain_id, 0.5), (art.domain_id, 0.25))), bitstream.strings))
    with pytest.raises(CorruptBitstreamError, match="changes the encoder"):
        EdgeCodec(tmp_path / "ext").decode_rgb(forged)
    export_bundle(model, tmp_path / "ext-only", kind, adapters=[photo], rd_lambdas=lambdas)
    with pytest.raises(ModelMismatchError, match="decodes files of one domain"):
        EdgeCodec(tmp_path / "ext-only").decode_rgb(mixed)
    with pytest.raises(ModelMismatchError, match="no decoder adapters to weigh"):
        EdgeCodec(tmp_path / "ext-only").encode_rgb(rgb, width, lmbda=lmbda, domain="mix")
    if kind == "slimcae":  # a bundle exported without the training λ cannot weigh the gate
        export_bundle(model, tmp_path / "old", kind, adapters=[art])
        with pytest.raises(BundleError, match="records no training λ"):
            EdgeCodec(tmp_path / "old").encode_rgb(rgb, domain="auto")


def test_hostile_files_end_in_typed_errors_on_the_edge(tmp_path):
    """The edge runtime's decoder, adapters and mixing graph built in, on hostile files of
    every kind (a forged mixture among them): a typed error or an image, never a crash (a
    child process, so that a crash fails this test instead of the run)."""
    from slimcodec.adaptation import DomainAdapter
    from slimcodec.bitstream.hostile import KINDS as HOSTILE
    from slimcodec.bitstream.hostile import hostile_files

    model = tiny("slimcae")
    art, photo = DomainAdapter(model, "bias", "art"), DomainAdapter(model, "extend", "photo")
    export_bundle(model, tmp_path / "b", "slimcae", adapters=[art, photo])
    codec = Codec(model, adapters=[art, photo])
    valid = [codec.encode_rgb(natural_like(h, w, seed=h), width, **how)
             for h, w in [(16, 16), (33, 47)] for width in (16, 8)
             for how in ({}, {"domain": "art"}, {"domain": "photo"},
                         {"mixture": {"art": 0.5}})]
    files = tmp_path / "files"
    files.mkdir()
    count = 40 * len(HOSTILE)
    for i, (_, data) in enumerate(hostile_files(valid, count, seed=2)):
        (files / f"{i:05d}.slc").write_bytes(data)
    counts = decode_outcomes("from slimcodec_edge.edge import EdgeCodec\ncodec = EdgeCodec("
                             f"{str(tmp_path / 'b')!r}, threads=1, max_pixels=1 << 20)", files)
    assert sum(counts.values()) == count and counts.get("decoded", 0) < count // 2, counts
