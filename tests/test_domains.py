"""The screen-content generator (issue 13's domain data)."""

import numpy as np
import pytest

from slimcodec.domains.screen import KINDS, render_screen, write_screens


def test_screens_are_deterministic_and_varied(tmp_path):
    a, b = render_screen(7, (128, 192)), render_screen(7, (128, 192))
    assert a.shape == (128, 192, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(render_screen(8, (128, 192)), a)
    paths = write_screens(tmp_path, 4, seed=100, size=(64, 96))
    assert [p.name for p in paths] == [f"screen-{i:05d}.png" for i in range(100, 104)]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_screen_like(kind):
    """Flat colours and sharp edges: few distinct colours, most pixels in flat runs."""
    image = render_screen(3, (256, 384), kind)
    colors = np.unique(image.reshape(-1, 3), axis=0)
    assert 2 < len(colors) < 5000
    flat = (np.abs(np.diff(image.astype(int), axis=1)).sum(-1) == 0).mean()
    assert flat > 0.6
    with pytest.raises(ValueError, match="unknown screen kind"):
        render_screen(0, kind="photo")
