"""The deployment side of slimcodec (its own wing: it reads ``slimcodec.bitstream`` and bundles,
never ``slimcodec.training``).

* :mod:`slimcodec_edge.onnx_export` -- ``slimcodec export``: per-width ONNX bundles (needs torch).
* :mod:`slimcodec_edge.bundle` -- reading a bundle (no torch).
* :mod:`slimcodec_edge.edge` -- the edge runtime, ``slimcodec-edge`` (onnxruntime, numpy, Pillow).
* :mod:`slimcodec_edge.profile` -- ``slimcodec profile``: MACs, parameters, memory, latency.
* :mod:`slimcodec_edge.select` -- ``slimcodec select``: the width (and λ) that fits a budget.

Importing this package imports nothing heavy; each module says what it needs.
"""
