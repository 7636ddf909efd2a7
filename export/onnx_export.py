"""``slimcodec export``: a model's widths as ONNX graphs, with a manifest and entropy tables.

Each width gets its own analysis and synthesis graph, with dynamic height and width (any
multiple of 16); a variable-rate model's graphs take λ as a second input, shape ``(1,)``,
through the same tensor computation the model runs eagerly
(:meth:`~slimcodec.models.ModulatedSlimCAE.conditions`). Slicing the shared weights to the
width is folded into each graph's initialisers, so a device loads only the width it runs.
Every graph passes ``onnx.checker``. The layout is in :mod:`slimcodec_edge.bundle`.

``int8``: onnxruntime's static quantisation (:mod:`slimcodec_edge.quantize`: QDQ, int8 weights,
16-bit activations) calibrated on a folder of images, one graph pair per width, and the RD
cost of each width's int8 graphs measured against its float ones on the folder's next
images (on those calibrated on where it has no more).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from slimcodec.codec import prepare_model
from slimcodec.errors import SlimcodecError
from slimcodec.models import ModulatedSlimCAE, SlimCAE
from slimcodec.utils.image import find_images, load_rgb
from slimcodec.utils.io import atomic_write_bytes
from slimcodec.zoo.checkpoint import arch_name

from .bundle import (
    FORMAT,
    GATE,
    MANIFEST,
    TABLES,
    VERSION,
    file_digest,
    graph_tables,
    table_key,
)
from .shared_weights import pool_tables, share_weights

__all__ = ["export_bundle", "graph_modules", "traceable_adapter"]

OPSET = 17


class _Analysis(nn.Module):
    def __init__(self, model: SlimCAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, lmbda: Tensor | None = None) -> Tensor:
        if lmbda is None:
            return self.model.analysis(image)
        return self.model.analysis(image, lmbda)


class _Synthesis(nn.Module):
    def __init__(self, model: SlimCAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, latent: Tensor, lmbda: Tensor | None = None) -> Tensor:
        if lmbda is None:
            return self.model.synthesis(latent)
        return self.model.synthesis(latent, lmbda)


class _MixedSynthesis(nn.Module):
    """The synthesis with decoder adapters mixed by weights that are a graph input, one per
    adapter, as :class:`~slimcodec.adaptation.AdapterMixture` mixes them in slimcodec."""

    def __init__(self, model: SlimCAE, adapters: Sequence[Any]) -> None:
        super().__init__()
        self.model = model
        self.adapters = list(adapters)  # frozen copies, not submodules: traced as constants

    def forward(self, latent: Tensor, weights: Tensor, lmbda: Tensor | None = None) -> Tensor:
        from slimcodec.adaptation import AdapterMixture

        mixture = AdapterMixture([(a, weights[k]) for k, a in enumerate(self.adapters)])
        with self.model.using_adapter(mixture):
            if lmbda is None:
                return self.model.synthesis(latent)
            return self.model.synthesis(latent, lmbda)


def graph_modules(model: SlimCAE) -> tuple[nn.Module, nn.Module]:
    """The analysis and synthesis transforms as modules with the graphs' signatures."""
    return _Analysis(model), _Synthesis(model)


def _export(module: nn.Module, args: tuple[Tensor, ...], names: list[str], output: str,
            path: Path) -> None:
    axes = {names[0]: {2: "height", 3: "width"}, output: {2: "out_height", 3: "out_width"}}
    # The exporter puts the module back in *its* mode, recursively: a wrapper made for the
    # export (in training mode, as every new module) would leave the model it wraps in
    # training mode, where a later refinement would retune the model's scale calibration
    # and change its fingerprint. So every submodule gets its own mode back.
    modes = [(m, m.training) for m in module.modules()]
    try:
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=False, input_names=names,
                              output_names=[output], dynamic_axes=axes, opset_version=OPSET,
                              do_constant_folding=True)
    finally:
        for m, training in modes:
            m.training = training
    graph = onnx.load(str(path))
    _constants_as_initializers(graph.graph)
    onnx.save(graph, str(path))
    onnx.checker.check_model(graph, full_check=True)


def _constants_as_initializers(graph: onnx.GraphProto) -> None:
    """Make each ``Constant`` node that holds a kernel (a float tensor of 2 or more axes)
    an initialiser of the same name. A domain adapter's weights enter the trace as
    constants (it is not a submodule of the model, :func:`traceable_adapter`); as
    initialisers they are weights like the model's: the lean bundle pools the large ones
    (:mod:`slimcodec_edge.shared_weights`) and ``--int8`` quantises them per channel to
    int8 (a constant would be quantised as an activation, and kept in float beside it).
    The same tensors, so the same arithmetic."""
    for node in [n for n in graph.node if n.op_type == "Constant"]:
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if value is None or len(value.dims) < 2 or value.data_type != onnx.TensorProto.FLOAT:
            continue
        value.name = node.output[0]
        graph.initializer.append(value)
        graph.node.remove(node)


def _coder_arrays(model: SlimCAE, width: int, domain: int = 0) -> dict[str, np.ndarray]:
    """The latent coder's arrays (:meth:`slimcodec.latent.FactorizedCoder.arrays` and its
    kin) of ``width`` at every rate anchor, by bundle key, with the active adapter (its own
    entropy models, where it has them) for ``domain``."""
    arrays = {}
    model.set_width(width)
    anchors = model.anchors() if isinstance(model, ModulatedSlimCAE) else [None]
    for a, lmbda in enumerate(anchors):
        with model.using_lambda(lmbda) if lmbda is not None else nullcontext():
            coder = model.latent_coder()
        arrays.update({table_key(width, a, k, domain): v for k, v in coder.arrays().items()})
    return arrays


def _export_width(model: SlimCAE, width: int, root: Path, suffix: str = ""
                  ) -> dict[str, dict[str, str]]:
    """Export the active configuration's graphs of ``width``; their manifest entries."""
    variable = isinstance(model, ModulatedSlimCAE)
    model.set_width(width)
    args = (torch.full((1,), model.lmbda),) if variable else ()
    names = ["lmbda"] if variable else []
    analysis, synthesis = graph_modules(model)
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        latent = model.analysis(image)
    files = {"analysis": f"analysis-{width}{suffix}.onnx",
             "synthesis": f"synthesis-{width}{suffix}.onnx"}
    _export(analysis, (image, *args), ["image", *names], "latent", root / files["analysis"])
    _export(synthesis, (latent, *args), ["latent", *names], "image", root / files["synthesis"])
    x = latent  # the coder's networks, each on the output of the one before
    for kind, module in model.coder_networks().items():
        files[kind] = f"{kind}-{width}{suffix}.onnx"
        _export(module, (x,), ["input"], "output", root / files[kind])
        with torch.no_grad():
            x = module(x)
    return {k: {"file": f} for k, f in files.items()}


def traceable_adapter(adapter: Any) -> Any:
    """A frozen copy of a domain adapter to trace the model with: not a submodule of the
    traced transforms, its tensors enter the trace as constants, which must not ask for
    gradients."""
    return copy.deepcopy(adapter).requires_grad_(False).eval()


def _export_domains(model: SlimCAE, adapters: Sequence[Any], widths: Sequence[int],
                    root: Path, tables: dict[str, np.ndarray]) -> dict[str, Any]:
    """Graphs (and own entropy tables) of each domain adapter; the manifest's ``domains``."""
    domains: dict[str, Any] = {}
    for adapter in adapters:
        adapter.check_source(model)  # ModelMismatchError for another model's adapter
        if str(adapter.domain_id) in domains:
            raise ValueError(f"two adapters for domain id {adapter.domain_id}")
        own = bool(len(adapter.bottlenecks))
        graphs = {}
        frozen = traceable_adapter(adapter)
        with model.using_adapter(frozen):
            for w in widths:
                graphs[str(w)] = _export_width(model, w, root, f"-d{adapter.domain_id}")
                if own:
                    tables.update(_coder_arrays(model, w, adapter.domain_id))
        domains[str(adapter.domain_id)] = {"name": adapter.domain, "method": adapter.method,
                                           "own_tables": own, "graphs": graphs,
                                           "codes_as_source": adapter.codes_as_source}
    return domains


def _check_default_domain(default_domain: str | None, adapters: Sequence[Any], gate: Any
                          ) -> None:
    """Refuse a default domain the bundle could not code with: the gates need adapters
    (``mix`` a decoder-side one, ``gate`` a learned gate), a name a built-in adapter."""
    from slimcodec.adaptation import MIXABLE_METHODS

    can = [a.domain for a in adapters]
    can += ["auto"] * bool(adapters) + ["gate"] * (gate is not None)
    can += ["mix"] * any(a.method in MIXABLE_METHODS for a in adapters)
    if default_domain is not None and default_domain not in can:
        raise ValueError(f"default domain {default_domain!r}: the bundle can code with "
                         f"{', '.join(map(repr, can)) or 'the model alone'}")


def _export_mixture(model: SlimCAE, adapters: Sequence[Any], widths: Sequence[int],
                    root: Path) -> dict[str, Any] | None:
    """One synthesis graph per width that mixes the decoder-side adapters (``bias``,
    ``adapters``) with weights given at run time: what decodes ``--domain mix`` files. The
    manifest's ``mixture``: the member ids, in the order of the ``weights`` input, and the
    graphs. None when no adapter can be mixed."""
    from slimcodec.adaptation import MIXABLE_METHODS

    mixable = [a for a in adapters if a.method in MIXABLE_METHODS]
    if not mixable:
        return None
    module = _MixedSynthesis(model, [traceable_adapter(a) for a in mixable])
    variable = isinstance(model, ModulatedSlimCAE)
    graphs = {}
    for w in widths:
        model.set_width(w)
        args = (torch.full((1,), model.lmbda),) if variable else ()
        with torch.no_grad():
            latent = model.analysis(torch.rand(1, 3, 64, 96))
        file = f"synthesis-{w}-mix.onnx"
        _export(module, (latent, torch.full((len(mixable),), 0.5), *args),
                ["latent", "weights", *(["lmbda"] if variable else [])], "image", root / file)
        graphs[str(w)] = {"synthesis": {"file": file}}
    return {"domains": [a.domain_id for a in mixable], "graphs": graphs}


def export_bundle(
    model: SlimCAE,
    out: str | os.PathLike,
    name: str,
    widths: Sequence[int] | None = None,
    calibration: str | os.PathLike | None = None,
    calibration_images: int = 8,
    adapters: Sequence[Any] = (),
    rd_lambdas: Sequence[float] | None = None,
    gate: Any = None,
    shared_weights: bool = True,
    int8_only: bool = False,
    default_domain: str | None = None,
) -> Path:
    """Write ``model``'s bundle to the folder ``out`` (replaced as a whole, atomically);
    with ``calibration``, int8 graphs too (of the source and of each adapter). ``adapters``: loaded
    domain adapters of this model (:func:`slimcodec.adaptation.load_adapter`), each built
    in with float graphs of its own, so the bundle codes and decodes that domain's files;
    the decoder-side ones (``bias``, ``adapters``) also in one mixing synthesis graph per
    width, which decodes the weighing gate's files (``--domain mix``).
    ``rd_lambdas``: a single-rate model's training λ, one per model width (its file's
    metadata), recorded so that the edge runtime's gate can weigh rate against distortion.
    ``gate``: a learned gate over some of ``adapters``
    (:func:`slimcodec.adaptation.load_gate`), written as ``gate.npz`` for the edge runtime's
    ``domain="gate"``. ``shared_weights``: the float graphs' weights pooled in one file that
    every width's graphs slice (:mod:`slimcodec_edge.shared_weights`; False: each graph
    holds its own, about twice the bytes; int8 graphs too). ``int8_only`` (with
    ``calibration``): the int8 graphs (transforms, the latent coder's networks, the mixing
    synthesis) in place of the float ones, which are left out.
    ``default_domain``: what ``slimcodec-edge encode`` codes with where it is told no
    ``--domain`` (as :attr:`slimcodec.codec.Codec.default_domain`): a gate the bundle can
    run or a built-in adapter's name; None, the model alone. Returns ``out``."""
    out = Path(out)
    widths = list(model.widths if widths is None else widths)
    for w in widths:
        if w not in model.widths:
            raise ValueError(f"width {w} is not one of {list(model.widths)}")
    if rd_lambdas is not None and len(rd_lambdas) != len(model.widths):
        raise ValueError(f"give one training λ per width {list(model.widths)}")
    if gate is not None:  # its adapters must be built in: ModelMismatchError if one is not
        gate.check_adapters({a.domain_id: a for a in adapters})
    if int8_only and calibration is None:
        raise ValueError("an int8-only bundle needs calibration images")
    _check_default_domain(default_domain, adapters, gate)
    fp = prepare_model(model)  # CDF tables that match the weights, as the codec uses them
    variable = isinstance(model, ModulatedSlimCAE)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        graphs: dict[str, dict[str, Any]] = {}
        tables: dict[str, np.ndarray] = {}
        for w in widths:
            graphs[str(w)] = _export_width(model, w, work)
            tables.update(_coder_arrays(model, w))
        domains = _export_domains(model, adapters, widths, work, tables)
        mixture = _export_mixture(model, adapters, widths, work)
        model.set_width(model.widths[0])
        stored, table_slices = pool_tables(tables) if shared_weights else (tables, {})
        np.savez_compressed(work / TABLES, **stored)  # CDFs compress about 25x
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "model": name,
            "arch": arch_name(model),
            "fingerprint": fp.hex(),
            "widths": widths,
            "downsampling": model.downsampling,
            "opset": OPSET,
            "latent": model.latent_kind,
            "variable_rate": {
                "lambda_bounds": list(model.lambda_bounds),
                "rate_anchors": model.rate_anchors,
                "lambda_ranges": [list(model.lambda_range(w)) for w in widths],
            } if variable else None,
            "graphs": graphs,
        }
        if table_slices:
            manifest["table_slices"] = table_slices
        if domains:
            manifest["domains"] = domains
        if mixture:
            manifest["mixture"] = mixture
        if gate is not None:
            manifest["gate"] = _export_gate(gate, work)
        if default_domain is not None:
            manifest["default_domain"] = default_domain
        if rd_lambdas is not None and not variable:
            manifest["rd_lambdas"] = {str(w): float(rd_lambdas[model.widths.index(w)])
                                      for w in widths}
        _seal(work, manifest)
        if calibration is not None:
            from .quantize import quantize_bundle

            manifest["int8"] = quantize_bundle(work, manifest, calibration, calibration_images)
            if int8_only:
                _drop_float_transforms(work, manifest)
            _seal(work, manifest)
        if shared_weights:  # after quantising, which reads each float graph whole
            manifest["shared_weights"] = share_weights(work, _graph_files(manifest))
            _seal(work, manifest)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)  # mkdtemp made it private
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def _export_gate(gate: Any, root: Path) -> dict[str, Any]:
    """The learned gate's arrays in ``gate.npz``; the manifest's ``gate``."""
    arrays = gate.arrays()
    np.savez(root / GATE, w1=arrays.w1, b1=arrays.b1, w2=arrays.w2, b2=arrays.b2)
    return {"file": GATE, "domains": list(arrays.domain_ids), "channels": arrays.channels,
            "widths": list(arrays.widths),
            "lambda_bounds": list(arrays.lambda_bounds) if arrays.lambda_bounds else None}


def _drop_float_transforms(root: Path, manifest: dict[str, Any]) -> None:
    """An int8-only bundle: each width's int8 graphs (analysis, synthesis, the coder's
    networks, the mixing synthesis) become its graphs, the float ones are deleted (the
    manifest's ``int8.only``)."""
    for graphs in graph_tables(manifest):
        for entry in graphs.values():
            for kind in [k for k in entry if f"{k}_int8" in entry]:
                (root / entry[kind]["file"]).unlink()
                entry[kind] = entry.pop(f"{kind}_int8")
    manifest["int8"]["only"] = True


def _graph_files(manifest: dict[str, Any]) -> list[str]:
    """Every graph's file name: the source's, each domain's, the mixing ones, int8 ones."""
    return [g["file"] for graphs in graph_tables(manifest) for entry in graphs.values()
            for g in entry.values()]


def _seal(root: Path, manifest: dict[str, Any]) -> None:
    """Record the SHA-256 of every graph (and of the gate's arrays) and write the
    manifest."""
    for graphs in graph_tables(manifest):
        for entry in graphs.values():
            for graph in entry.values():
                graph["sha256"] = file_digest(root / graph["file"])
    for extra in ("gate", "shared_weights"):
        if extra in manifest:
            manifest[extra]["sha256"] = file_digest(root / manifest[extra]["file"])
    manifest["tables_sha256"] = file_digest(root / TABLES)
    atomic_write_bytes(root / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


def calibration_tiles(folder: str | os.PathLike, images: int, size: int = 256
                      ) -> Iterator[np.ndarray]:
    """Centre crops (up to ``size`` pixels a side, multiples of 16) of the first ``images``
    readable images in ``folder``, as ``(1, 3, h, w)`` float32."""
    found = 0
    for path in find_images(folder):
        try:
            rgb, _ = load_rgb(path)
        except SlimcodecError:  # an unreadable calibration image is skipped
            continue
        h, w = (min(size, s) // 16 * 16 for s in rgb.shape[:2])
        if not h or not w:
            continue
        top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
        crop = rgb[top : top + h, left : left + w]
        yield np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32) / 255
        found += 1
        if found == images:
            return
