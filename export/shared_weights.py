"""Lean bundles: the slimmable weights stored once, in one file every width's graphs slice.

A slimmable model's width ``w`` runs the leading ``w`` channels of shared kernels (Yu et al.,
ICLR 2019; Yang et al., CVPR 2021), so each width's traced graph holds, as initialisers,
leading slices ``P[:a, :b, ...]`` of the widest width's tensors ``P``. Written as they are,
five widths store the shared weights about twice (1 + 0.56 + 0.25 + 0.14 + 0.06 of the
widest's). Here every large float32 or int8 initialiser of the bundle's graphs (int8 ones
included: :mod:`slimcodec_edge.quantize` makes a narrower width's int8 weights slices of
the widest's) goes through one pool:

* a tensor equal to a leading slice of a tensor already pooled (bit for bit, every axis
  from 0) becomes a ``Slice`` node over that tensor, which the graph reads from the pool;
* any other tensor joins the pool (largest first, so the widest width's come in first).

The pool is one file, :data:`SHARED` (``weights.bin``), each tensor at a 64-byte aligned
offset, referenced from the graphs as ONNX external data (``location``, ``offset``,
``length``); its SHA-256 is in the manifest, checked when the bundle loads. The arithmetic
is unchanged: onnxruntime folds each ``Slice`` of a constant into the very tensor the graph
held before, so a lean bundle codes and decodes byte for byte as a bundle without the pool
(``tests/test_edge.py``). Small tensors (biases, per-width scalars) stay inside their graph.

The entropy tables (``entropy.npz``) are pooled the same way (:func:`pool_tables`): a
hyperprior's integer scale network at width ``w`` is the leading slice of the widest's, and
its Gaussian tables are the same at every width, so each is stored once and the manifest's
``table_slices`` maps the other keys to ``{"of": key, "shape": [...]}``
(:func:`slimcodec_edge.bundle.sliced_table` reads one back, checked).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["SHARED", "pool_tables", "share_weights"]

SHARED = "weights.bin"
MIN_BYTES = 4096  # smaller initialisers stay in their graph
MIN_TABLE_BYTES = 1024  # smaller arrays are stored as they are
_ALIGN = 64


class _Pool:
    """The pooled tensors, their offsets in :data:`SHARED`, and a lookup of slices."""

    def __init__(self) -> None:
        self.tensors: list[np.ndarray] = []
        self.offsets: list[int] = []
        self.size = 0

    def find(self, t: np.ndarray) -> int | None:
        """The index of a pooled tensor of which ``t`` is a leading slice, if any."""
        for i, p in enumerate(self.tensors):
            if p.dtype != t.dtype or p.ndim != t.ndim or any(
                    a > b for a, b in zip(t.shape, p.shape, strict=True)):
                continue
            view = p[tuple(slice(0, n) for n in t.shape)]
            if np.array_equal(view.view(np.uint8), np.ascontiguousarray(t).view(np.uint8)):
                return i
        return None

    def add(self, t: np.ndarray) -> int:
        self.size = -(-self.size // _ALIGN) * _ALIGN
        self.tensors.append(np.ascontiguousarray(t))
        self.offsets.append(self.size)
        self.size += t.nbytes
        return len(self.tensors) - 1

    def write(self, path: Path) -> None:
        with open(path, "wb") as f:
            for t, offset in zip(self.tensors, self.offsets, strict=True):
                f.write(b"\0" * (offset - f.tell()))
                f.write(t.tobytes())


def _external(name: str, t: np.ndarray, offset: int) -> TensorProto:
    """An initialiser ``name`` holding ``t`` as external data in :data:`SHARED`."""
    proto = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(t.dtype),
                        dims=list(t.shape), data_location=TensorProto.EXTERNAL)
    for key, value in (("location", SHARED), ("offset", str(offset)),
                       ("length", str(t.nbytes))):
        proto.external_data.add(key=key, value=value)
    return proto


def share_weights(root: Path, files: Sequence[str]) -> dict[str, Any]:
    """Pool the large initialisers of the graphs ``files`` in ``root`` (rewritten in place)
    into ``root / SHARED``; returns the manifest's ``shared_weights`` entry (without its
    hash, which sealing the bundle adds)."""
    models = {f: onnx.load(str(root / f)) for f in files}
    found = [(f, init, numpy_helper.to_array(init)) for f, m in models.items()
             for init in m.graph.initializer]
    large = [(f, init, t) for f, init, t in found
             if t.dtype in (np.float32, np.int8) and t.nbytes >= MIN_BYTES]
    large.sort(key=lambda item: -item[2].nbytes)  # the widest's tensors enter the pool first
    pool = _Pool()
    plan: dict[str, list[tuple[TensorProto, np.ndarray, int]]] = {f: [] for f in files}
    for f, init, t in large:
        index = pool.find(t)
        plan[f].append((init, t, pool.add(t) if index is None else index))
    pool.write(root / SHARED)
    for f, model in models.items():
        graph = model.graph
        slices = []
        for init, t, index in plan[f]:
            full = pool.tensors[index]
            graph.initializer.remove(init)
            if full.shape == t.shape:
                graph.initializer.append(_external(init.name, t, pool.offsets[index]))
                continue
            source = f"{init.name}.shared"
            graph.initializer.append(_external(source, full, pool.offsets[index]))
            bounds = [f"{init.name}.{k}" for k in ("starts", "ends", "axes")]
            for name, values in zip(bounds, ([0] * t.ndim, list(t.shape),
                                             list(range(t.ndim))), strict=True):
                graph.initializer.append(numpy_helper.from_array(
                    np.array(values, np.int64), name))
            slices.append(helper.make_node("Slice", [source, *bounds], [init.name],
                                           name=f"{init.name}.slice"))
        for node in reversed(slices):  # before every node that reads them
            graph.node.insert(0, node)
        onnx.save(model, str(root / f))
        onnx.checker.check_model(str(root / f), full_check=True)
    return {"file": SHARED, "tensors": len(pool.tensors), "bytes": pool.size,
            "sliced": sum(len(v) for v in plan.values()) - len(pool.tensors)}


def pool_tables(tables: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray],
                                                          dict[str, dict[str, Any]]]:
    """The arrays to store, and the manifest's ``table_slices`` for those left out: every
    large array equal to a leading slice of one already kept (largest first)."""
    pool = _Pool()
    keys: list[str] = []
    stored: dict[str, np.ndarray] = {}
    slices: dict[str, dict[str, Any]] = {}
    for key, t in sorted(tables.items(), key=lambda kv: -kv[1].nbytes):
        index = pool.find(t) if t.nbytes >= MIN_TABLE_BYTES else None
        if index is None:
            stored[key] = t
            if t.nbytes >= MIN_TABLE_BYTES:
                pool.add(t)
                keys.append(key)
        else:
            slices[key] = {"of": keys[index], "shape": list(t.shape)}
    return stored, slices

