"""The edge runtime: slimcodec files encoded and decoded with onnxruntime, numpy and Pillow.

It never imports torch (``tests/test_edge.py`` checks ``sys.modules``), and it reads and
writes the very container ``slimcodec`` does, with the same bounds-checked entropy coder.
"""

from .runtime import EdgeCodec

__all__ = ["EdgeCodec"]
