"""Rate control on the device: `slimcodec-edge`'s `--target-bpp` (the search of
`slimcodec.rate_control`, numpy only) on held-out photos at every width, in a process where
torch cannot be imported; the error of the bpp reached against the target.

For each photo and width, three targets spread inside the rate range that width reaches on
that photo (its λ range's ends, measured), each searched at that width.

    python benchmarks/edge_rate_control.py [--model slimcae-hp] [--images ../shared/data/photos]
        [--count 12] [--crop 768x512]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "compressai"):
            raise ImportError(name + " is not installed on this device")
sys.meta_path.insert(0, NoTorch())
"""


def measure(bundle: str, images: str, count: int, crop: tuple[int, int]) -> dict:
    """In the torch-free child: every photo, width and target; the errors."""
    from slimcodec_edge.edge import EdgeCodec

    from slimcodec.rate_control import encode_with_rate
    from slimcodec.utils.image import find_images, load_rgb

    edge = EdgeCodec(bundle)
    w, h = crop
    errors: dict[int, list[float]] = {width: [] for width in edge.widths}
    passes: list[int] = []
    names = []
    for path in find_images(images)[:count]:
        rgb, _ = load_rgb(path)
        top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
        rgb = np.ascontiguousarray(rgb[top:top + h, left:left + w])
        names.append(Path(path).name)
        for width in edge.widths:
            lo, hi = edge.lambda_range(width)
            ends = [8 * len(edge.encode_rgb(rgb, width, lmbda=v)) / (h * w) for v in (lo, hi)]
            for f in (0.2, 0.5, 0.8):
                target = math.exp(math.log(ends[0]) + f * math.log(ends[1] / ends[0]))
                data, search = encode_with_rate(edge, rgb, width=width, target_bpp=target)
                errors[width].append(abs(8 * len(data) / (h * w) - target) / target)
                passes.append(len(search.tried))
    return {"torch": "torch" in sys.modules, "images": names,
            "errors": {str(k): v for k, v in errors.items()}, "passes": passes}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model")
    p.add_argument("--images", default="../shared/data/photos")
    p.add_argument("--count", type=int, default=12)
    p.add_argument("--crop", default="768x512")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    crop = tuple(int(v) for v in args.crop.split("x"))
    if args.child:
        print(json.dumps(measure(args.child, args.images, args.count, crop)))
        return
    from common import table_head, write_section

    from slimcodec.zoo import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    with tempfile.TemporaryDirectory() as tmp:
        bundle = str(Path(tmp) / "bundle")
        subprocess.run([sys.executable, "-m", "slimcodec", "export", "--model", model, "-o",
                        bundle], check=True, stdout=subprocess.DEVNULL)
        argv = [str(Path(__file__).resolve()), "--child", bundle, "--images",
                str(Path(args.images).resolve()), "--count", str(args.count), "--crop", args.crop]
        code = (NO_TORCH + f"import runpy, sys\nsys.argv = {argv!r}\n"
                "runpy.run_path(sys.argv[0], run_name='__main__')\n")
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               cwd=Path(__file__).parent, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    rows = []
    for width, errs in result["errors"].items():
        rows.append(f"| {width} | {len(errs)} | **{100 * statistics.median(errs):.2f}%** | "
                    f"{100 * max(errs):.2f}% |")
    every = [e for errs in result["errors"].values() for e in errs]
    body = f"""## Rate control on the device (`{model}`, torch absent)

`python benchmarks/edge_rate_control.py --model {model} --count {args.count}`: the edge
runtime's `--target-bpp` search (`slimcodec.rate_control.encode_with_rate`, the code
`slimcodec compress` runs) in a process where torch cannot be imported (imported:
{result['torch']}), {len(result['images'])} held-out photos ({', '.join(result['images'])}),
centre crop {args.crop}; per photo and width three targets at 20%, 50% and 80% of the way
(in log rate) between the rates its λ range's ends give; error = |bpp − target| / target.

{table_head(["width", "targets", "median error", "largest error"])}
{chr(10).join(rows)}

- Over every width: median **{100 * statistics.median(every):.2f}%** (target <= 1%);
  encoder passes per search: median {statistics.median(result['passes']):.0f}, at most
  {max(result['passes'])}."""
    write_section(f"edge-rate-control-{model}", body)
    print(body)


if __name__ == "__main__":
    main()
