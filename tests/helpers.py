"""Test helpers shared by several test modules."""

import numpy as np

SMALL_WIDTHS = (16, 12, 8)
#: λ ranges for SMALL_WIDTHS, as a variable-rate model takes them.
SMALL_RANGES = ((0.002, 0.2), (0.001, 0.05), (0.0007, 0.02))


def natural_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image with some texture: gradients, a disc and mild noise (uint8 HxWx3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    g = 255 * xx / max(w - 1, 1)
    b = np.where((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(h, w) / 3) ** 2, 220, 40)
    img = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def sliced_slimcae(widths=SMALL_WIDTHS):
    """A small SlimCAE cut from the shipped one: its first channels, as a narrow width of a
    slimmable model uses them. Trained weights (realistic latents) at test-sized cost."""
    import torch

    from slimcodec.models import SlimCAE
    from slimcodec.zoo import create_model

    big = create_model("slimcae", pretrained=True)
    small = SlimCAE(widths, gdn=big.gdn)
    state = {}
    for key, target in small.state_dict().items():
        if key.startswith("entropy_bottlenecks."):
            source = big.state_dict()["entropy_bottlenecks.4." + key.split(".", 2)[2]]
        else:
            source = big.state_dict()[key]
        if source.shape == target.shape:
            state[key] = source.clone()
        elif target.numel() == 0 or source.dim() != target.dim():
            state[key] = target
        else:
            state[key] = source[tuple(slice(0, n) for n in target.shape)].clone()
    small.load_state_dict(state)
    small.update(force=True)
    torch.manual_seed(0)
    return small.eval()


def tiny_variable_rate(widths=SMALL_WIDTHS, ranges=SMALL_RANGES):
    """A small variable-rate SlimCAE (one rate anchor, the latent gain) whose transforms
    are :func:`sliced_slimcae`'s."""
    from slimcodec.models import ModulatedSlimCAE
    from slimcodec.training.trainer import init_from

    model = ModulatedSlimCAE(widths, lambda_ranges=ranges, rate_anchors=1, latent_gain=True)
    init_from(model, sliced_slimcae(widths))
    return model


def tiny_hyperprior(widths=SMALL_WIDTHS, ranges=SMALL_RANGES, seed: int = 0):
    """A small hyperprior model with :func:`tiny_variable_rate`'s transforms, hyper networks
    that predict varied means and scales, and its scale network's activation ranges
    calibrated as training calibrates them; entropy models updated, in eval mode."""
    import torch

    from slimcodec.models import HyperpriorSlimCAE
    from slimcodec.training.trainer import init_from

    torch.manual_seed(seed)
    transforms = tiny_variable_rate(widths, ranges)
    model = HyperpriorSlimCAE(widths=widths, lambda_ranges=ranges)
    init_from(model, transforms)
    with torch.no_grad():
        for p in (*model.h_scale.parameters(), *model.h_mean.parameters()):
            p.normal_(0, 0.15)
        # the sliced transforms' latent is small at 16 channels: a steeper gain makes λ
        # span a range of rates, as a trained model's does
        model.latent_gain.slope.fill_(1.5)
    # The activation ranges, as training tracks them (a running maximum), on symbols like
    # the tests' own.
    model.h_scale.train()
    model.h_scale.momentum = 0.5
    rng = np.random.default_rng(seed)
    for width in widths:
        model.set_width(width)
        for _ in range(20):
            model.h_scale(torch.from_numpy(
                rng.integers(-40, 41, (2, width, 6, 6)).astype(np.float32)))
    model.set_width(widths[0])
    model.h_scale.momentum = 0.01
    aux_trained(model)
    model.update(force=True)
    return model.eval()


def tiny_checkerboard(widths=SMALL_WIDTHS, ranges=SMALL_RANGES, context: float | None = 0.3,
                      seed: int = 0):
    """A small checkerboard model around :func:`tiny_hyperprior`'s, its context's last layer
    drawn with this spread (None: as constructed, untrained); updated, in eval mode."""
    import torch

    from slimcodec.models import CheckerboardSlimCAE
    from slimcodec.training.trainer import init_from

    plain = tiny_hyperprior(widths, ranges, seed)
    model = CheckerboardSlimCAE(widths=widths, lambda_ranges=ranges)
    init_from(model, plain)
    torch.manual_seed(seed + 1)
    if context is not None:
        with torch.no_grad():
            model.mean_context.layers[-1].weight.normal_(0, context)
    model.update(force=True)
    return model.eval()


def peak_bytes(call) -> int:
    """The most memory Python and numpy held at once while ``call()`` ran, above what they
    held before it (tracemalloc: numpy reports its arrays to it; torch's own tensors are not
    counted)."""
    import tracemalloc

    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


_DECODE_CHILD = r"""
import json, sys, pathlib, warnings
warnings.filterwarnings("ignore")
from slimcodec.bitstream.hostile import entropy_decoder_refused
from slimcodec.errors import SlimcodecError
{setup}
counts = {{}}
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.slc")):
    try:
        codec.decode_rgb(path.read_bytes())
        outcome = "decoded"
    except SlimcodecError as exc:
        outcome = type(exc).__name__
        if entropy_decoder_refused(exc):
            outcome = "refused by the entropy decoder"
    counts[outcome] = counts.get(outcome, 0) + 1
print(json.dumps(counts))
"""


def decode_outcomes(setup: str, files, timeout: float = 600) -> dict:
    """Decode every ``*.slc`` in ``files`` in a child process, with the ``codec`` that the
    Python code ``setup`` binds, so that a crash fails the calling test instead of the run.
    Returns how many files ended each way: ``decoded``, a typed error's class name, or
    ``refused by the entropy decoder``."""
    import json
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", _DECODE_CHILD.format(setup=setup),
                            str(files)], capture_output=True, text=True, timeout=timeout)
    assert child.returncode == 0, child.stderr[-2000:]  # a signal (crash) is negative
    return json.loads(child.stdout.strip().splitlines()[-1])


def assert_hostile_files_typed(codec, bundle, tmp_path, seed: int) -> None:
    """Quick fuzz of a variable-rate codec's files (the long run: benchmarks/fuzz.py): files
    of three images at both ends of every width's λ range made hostile, each decoded by a
    model file of ``codec``'s model and by the edge runtime with ``bundle``, in a child
    process; every one must end in a typed error or an image, and the strings reach the
    entropy decoder."""
    from slimcodec.bitstream.hostile import KINDS, hostile_files
    from slimcodec.zoo import save_model_file

    save_model_file(codec.model, tmp_path / "model.pt")
    valid = [codec.encode_rgb(natural_like(h, w, seed=h), width, lmbda=lmbda)
             for h, w in [(16, 16), (33, 47), (64, 20)] for width in codec.widths
             for lmbda in codec.lambda_range(width)]
    files = tmp_path / "files"
    files.mkdir()
    count = 40 * len(KINDS)
    for i, (_, data) in enumerate(hostile_files(valid, count, seed=seed)):
        (files / f"{i:05d}.slc").write_bytes(data)
    setups = [
        "from slimcodec.codec import Codec\nfrom slimcodec.zoo import load_model_file\n"
        f"codec = Codec(load_model_file({str(tmp_path / 'model.pt')!r}), max_pixels=1 << 20)",
        "from slimcodec_edge.edge import EdgeCodec\n"
        f"codec = EdgeCodec({str(bundle)!r}, max_pixels=1 << 20)",
    ]
    for setup in setups:
        counts = decode_outcomes(setup, files)
        assert sum(counts.values()) == count
        assert counts.get("refused by the entropy decoder", 0) > 60, counts
        assert counts.get("decoded", 0) < count // 2, counts


_NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed on this device")
sys.meta_path.insert(0, NoTorch())
"""


def run_without_torch(script: str, timeout: float = 300) -> None:
    """Run the Python code ``script`` in a child process where importing torch fails, as on
    a device with the edge runtime alone; it must end without error and without torch."""
    import subprocess
    import sys

    code = _NO_TORCH + script + '\nassert "torch" not in sys.modules, "torch was imported"\n'
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=timeout)
    assert child.returncode == 0, child.stderr[-3000:]


def aux_trained(model, steps: int = 3):
    """``model`` after a few steps of the entropy models' aux loss, as any training run
    takes from its first step: a codec refuses a model whose entropy models never trained
    (``UntrainedModelError``); the tests' synthetic models are otherwise untrained."""
    import torch

    quantiles = [eb.quantiles for eb in model.entropy_bottlenecks]
    optimizer = torch.optim.Adam(quantiles, lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        sum(eb.loss() for eb in model.entropy_bottlenecks).backward()
        optimizer.step()
    return model


def record_argument(monkeypatch, module, name: str, argument: str) -> list:
    """Wrap ``module.name`` so that every call appends its ``argument`` (given by position
    or keyword) to the list returned, then runs the real function: a spy for what a caller
    passes down."""
    import inspect

    seen = []
    real = getattr(module, name)
    signature = inspect.signature(real)

    def spy(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()  # an argument left to its default is seen as that
        seen.append(bound.arguments[argument])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def few_colours(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Screen-like content: flat panels and lines of "words" (dashes two pixels high) in
    four exact colours on a flat background (uint8 HxWx3, at most five colours)."""
    rng = np.random.default_rng(seed)
    colours = np.array([[250, 250, 245], [20, 20, 30], [200, 40, 40], [30, 90, 200],
                        [240, 200, 60]], np.uint8)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = colours[0]
    for _ in range(3):
        y, x = rng.integers(0, h), rng.integers(0, w)
        img[y:y + rng.integers(8, 24), x:x + rng.integers(8, 32)] = colours[rng.integers(2, 5)]
    for y in range(4, h - 2, 8):
        x = int(rng.integers(2, 8))
        while x < w - 4:
            run = int(rng.integers(3, 9))
            img[y:y + 2, x:x + run] = colours[1]
            x += run + int(rng.integers(2, 5))
    return img
