import math

import pytest

from slimcodec.utils.rd import bd_rate, bpp_span, psnr_at_rate, rd_hull

CURVE = [(0.25, 28.0), (0.5, 31.0), (1.0, 34.0), (2.0, 37.0)]


def test_bd_rate_of_a_uniformly_cheaper_curve():
    # the same PSNR at 80% of the rate everywhere: exactly -20%
    cheaper = [(0.8 * r, p) for r, p in CURVE]
    assert bd_rate(CURVE, cheaper) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(CURVE, CURVE) == pytest.approx(0.0, abs=1e-12)
    assert bd_rate(cheaper, CURVE) == pytest.approx(25.0, abs=1e-9)


def test_bd_rate_uses_only_the_shared_range():
    shifted = [(r * 2, p + 20) for r, p in CURVE]
    assert bd_rate(CURVE, shifted) is None
    assert bd_rate(CURVE, [(0.5, 30.0)]) is None  # a single point spans no range
    # a repeated PSNR (two settings, one file) counts at its cheapest rate
    repeated = [(0.5, 30.0), (0.7, 30.0), (1.0, 33.0)]
    assert bd_rate(CURVE, repeated) == pytest.approx(bd_rate(CURVE, [repeated[0], repeated[2]]))
    assert bd_rate(CURVE, repeated) != pytest.approx(bd_rate(CURVE, repeated[1:]))


def test_rd_hull_drops_dominated_and_inside_points():
    points = [(0.25, 28.0), (0.5, 29.0), (1.0, 34.0), (1.5, 33.0), (2.0, 35.0)]
    # (0.5, 29) lies under the chord from 0.25 to 1.0; (1.5, 33) is dominated by (1.0, 34)
    assert rd_hull(points) == [(0.25, 28.0), (1.0, 34.0), (2.0, 35.0)]
    assert rd_hull(CURVE) == CURVE  # collinear in log terms is not collinear in bpp: kept
    assert math.isclose(bpp_span(CURVE), 8.0)


def test_psnr_at_rate_interpolates_in_log_rate_and_stays_inside_the_curve():
    # CURVE gains 3 dB per doubling of the rate: halfway in log rate is halfway in PSNR
    assert psnr_at_rate(CURVE, 0.5 * math.sqrt(2)) == pytest.approx(32.5, abs=1e-9)
    assert psnr_at_rate(CURVE, 2.0) == pytest.approx(37.0)
    assert psnr_at_rate(CURVE, 0.2) is None and psnr_at_rate(CURVE, 2.5) is None
    assert psnr_at_rate([*CURVE, CURVE[0]], 0.25) == pytest.approx(28.0)  # repeats are fine
    with pytest.raises(ValueError):
        psnr_at_rate([(0.5, 30.0), (0.5, 31.0), (1.0, 33.0)], 0.7)  # one rate, two PSNRs


def test_mean_squared_error_is_numpys_exactly_and_makes_no_whole_image_copy():
    """A band of rows at a time: a float copy of a 48 MP image is 1.2 GB (the gate measures
    three decodes of an image to compare them), and for 8-bit images nothing is rounded."""
    import tracemalloc

    import numpy as np

    from slimcodec.bitstream.rate import rd_loss
    from slimcodec.utils.metrics import BAND_ROWS, mean_squared_error, psnr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (10 * BAND_ROWS + 7, 400, 3), dtype=np.uint8)
    b = rng.integers(0, 256, a.shape, dtype=np.uint8)
    whole = float(np.mean((a.astype(np.float64) - b) ** 2))
    assert mean_squared_error(a, b) == whole
    assert psnr(a, b) == 10 * math.log10(255**2 / whole)
    # the gate's choice as before, bit for bit
    assert rd_loss(a, b, 1000, 0.01) == 0.01 * 255**2 * (whole / 255**2) + 8000 / (2567 * 400)
    tracemalloc.start()
    mean_squared_error(a, b)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3 * 8 * BAND_ROWS * 400 * 3 < 8 * a.size / 2  # a band's, not the image's


def test_ms_ssim_of_a_read_only_image_warns_of_nothing():
    """A decoded image may be a read-only view; torch warns (once per process, so in a
    process of its own here) of a tensor made from one. MS-SSIM takes float64 copies."""
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from slimcodec.utils.metrics import ms_ssim\n"
            "a = np.random.default_rng(0).integers(0, 256, (192, 192, 3), dtype=np.uint8)\n"
            "a.flags.writeable = False\n"
            "assert abs(ms_ssim(a, a) - 1) < 1e-9\n")
    run = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-2000:]
