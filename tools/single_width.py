"""Cut one width out of a slimmable model file: a SlimCAE of that width alone, with the
shared kernels sliced to it and the width's own entropy model and per-width GDN scalars.

The single-width model computes exactly what the slimmable one does at that width, so it is
a fair common start for single-width comparisons (benchmarks/train_vr_penalty.sh).

    python tools/single_width.py MODEL WIDTH -o OUT.pt
"""

import argparse

import torch

from slimcodec.layers import SlimGDNPlus
from slimcodec.models import SlimCAE
from slimcodec.zoo import load_model, save_model_file


def single_width(model: SlimCAE, width: int) -> SlimCAE:
    if type(model) is not SlimCAE or model.gdn != "slim+":
        raise SystemExit("only SlimCAE models with SlimGDN+ are supported")
    k = model.widths.index(width)
    small = SlimCAE((width,), gdn=model.gdn)
    state = {}
    big = model.state_dict()
    for key, target in small.state_dict().items():
        if key.startswith("entropy_bottlenecks."):
            source = big[f"entropy_bottlenecks.{k}." + key.split(".", 2)[2]]
        else:
            source = big[key]
        if key.endswith(("_scale", "_bias")) and "g_" in key and source.dim() == 1 and \
                source.shape[0] == len(model.widths):  # SlimGDN+'s per-width scalars
            state[key] = source[k : k + 1].clone()
        elif source.shape == target.shape or target.numel() == 0:
            state[key] = source.clone()
        else:
            state[key] = source[tuple(slice(0, n) for n in target.shape)].clone()
    small.load_state_dict(state)
    assert all(isinstance(m, SlimGDNPlus) for m in (small.g_a[1], small.g_s[0]))
    with torch.no_grad(), model.using_width(width):  # the same function, checked
        x = torch.rand(1, 3, 64, 64)
        torch.testing.assert_close(small.g_s(small.g_a(x)), model.g_s(model.g_a(x)))
    return small


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("width", type=int)
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args()
    small = single_width(load_model(args.model), args.width)
    save_model_file(small.eval(), args.output,
                    meta={"summary": f"width {args.width} of {args.model}"})
    print(args.output)


if __name__ == "__main__":
    main()
