"""The deployment side of slimcodec (its own wing: it reads ``slimcodec.bitstream`` and bundles,
never ``slimcodec.training``).

* :mod:`export.onnx_export` -- ``slimcodec export``: per-width ONNX bundles (needs torch).
* :mod:`export.bundle` -- reading a bundle (no torch).
* :mod:`export.edge` -- the edge runtime, ``slimcodec-edge`` (onnxruntime, numpy, Pillow).
* :mod:`export.profile` -- ``slimcodec profile``: MACs, parameters, memory, latency.
* :mod:`export.select` -- ``slimcodec select``: the width (and λ) that fits a budget.

Importing this package imports nothing heavy; each module says what it needs.
"""
