"""The codec's own tiling, at its defaults (issue 32): multi-tile images coded with the
default tile size and halo decode as the whole-image transforms would, to float rounding.
(``tests/test_hardening.py`` tests the tiler's halo arithmetic with explicit settings.)"""

import numpy as np
import torch
from helpers import natural_like, sliced_slimcae

from slimcodec import tiling
from slimcodec.codec import Codec
from slimcodec.utils.tensors import from_tensor, pad_to_multiple, to_tensor


def test_default_halo_multi_tile_decode_matches_the_whole_image():
    """A 1280x800 image is 3x2 tiles of the default 32 latent positions: the codec's
    decode (default halo) against one whole-image synthesis of the same symbols, and its
    latent against one whole-image analysis."""
    model = sliced_slimcae((16, 8))
    codec = Codec(model)
    assert codec.tile == tiling.DEFAULT_TILE
    rgb = natural_like(800, 1280, seed=7)
    data = codec.encode_rgb(rgb, 16)
    decoded, _ = codec.decode_rgb(data)
    with codec.operating_point(16, None) as m, torch.inference_mode():
        y = m.analysis(pad_to_multiple(to_tensor(rgb), 16))
        coder = m.latent_coder()
        whole_latent = coder.decode(coder.encode(y[0].numpy()), y.shape[-2:])
        reference = from_tensor(m.synthesis(torch.from_numpy(whole_latent[None]))[..., :800, :1280])
    diff = np.abs(decoded.astype(int) - reference.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001, (diff.max(), (diff > 0).mean())
