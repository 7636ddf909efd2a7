"""Re-initialise the latent channels a trained SlimCAE(-VR) no longer uses.

Low-rate training collapses latent channels: the encoder's last conv row goes to zero, the
entropy model's density for that channel becomes a spike at its median, and from then on
no gradient brings the channel back (its rate gradient pushes it to zero, its distortion
gradient is zero because the decoder ignores it). ``benchmarks/latent_capacity.py`` finds
this in ``slimcae-vr``: fewer than 50 of its 192 latent channels carry signal at the widest
width, which caps its quality at about 33 dB whatever λ is. This tool gives dead channels a
fresh start:

* the encoder's last conv (``g_a[4]``) rows and the decoder's first deconv (``g_s[1]``)
  input rows get random weights with a fraction (``--scale``, ``--decoder-scale``) of the
  live rows' mean norm;
* the GDN before the latent (``g_a[5]``) and the IGDN after it (``g_s[0]``) get, for those
  channels, the live channels' median β and γ diagonal and no cross terms (a dead
  channel's β has grown until it divides any input to nothing);
* the λ-modulations on both sides of the latent get the live channels' mean rows;
* every entropy model that codes the channel gives it a live channel's density in place
  of the spike, so that a revived channel is not charged for leaving it.

Channels below ``--keep`` are left alone, so the narrow widths that only use those compute
exactly what they did (the shared weights they read are untouched). The result is an
initialisation for ``slimcodec train --init``, not a usable codec: the revived channels cost
rate before the decoder learns to use them. A first trial on 2 CPU cores (1,100 steps at 96²
patches, batch 8, lr 3e-4) had not yet won back the source's rate-distortion; this is meant
for a long (GPU) run.

    python tools/revive_latents.py MODEL --data DIR -o OUT.pt [--keep 72] [--scale 0.5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from slimcodec.layers import SlimGDN
from slimcodec.models import ModulatedSlimCAE, SlimCAE
from slimcodec.utils.image import find_images, load_rgb
from slimcodec.utils.tensors import to_tensor
from slimcodec.zoo import load_model, save_model_file


def centre_crops(folder: Path, count: int = 16, size: int = 128) -> torch.Tensor:
    """Deterministic probe batch: centre crops of the first ``count`` images."""
    crops = []
    for path in find_images(folder)[:count]:
        rgb, _ = load_rgb(path)
        h, w = rgb.shape[:2]
        crops.append(to_tensor(rgb[(h - size) // 2 : (h + size) // 2,
                                   (w - size) // 2 : (w + size) // 2]))
    if not crops:
        raise SystemExit(f"no images in {folder}")
    return torch.cat(crops)


@torch.no_grad()
def latent_spread(model: SlimCAE, x: torch.Tensor) -> torch.Tensor:
    """Per-channel standard deviation of the widest width's latent (at its highest λ)."""
    model.set_width(max(model.widths))
    if isinstance(model, ModulatedSlimCAE):
        model.set_lambda(model.lambda_range()[1])
    return model.analysis(x).std(dim=(0, 2, 3))


def _random_rows(rows: torch.Tensor, reference: torch.Tensor, scale: float) -> torch.Tensor:
    r = torch.randn_like(rows)
    norm = reference.flatten(1).norm(dim=1).mean()
    return r * (scale * norm / r.flatten(1).norm(dim=1).view(-1, *[1] * (r.dim() - 1)))


def _revive_gdn(norm: SlimGDN, dead: torch.Tensor, live: torch.Tensor) -> None:
    """Dead rows of a (Slim)GDN's shared β, γ: the live median, no coupling to others."""
    if not isinstance(norm, SlimGDN):
        raise SystemExit(f"only SlimGDN and SlimGDN+ models are supported, not {type(norm)}")
    zero = norm.gamma_reparam.init(torch.zeros(()))
    diagonal = norm.gamma.diagonal()[live].median()
    norm.beta[dead] = norm.beta[live].median()
    norm.gamma[dead, :] = zero
    norm.gamma[:, dead] = zero
    norm.gamma[dead, dead] = diagonal


@torch.no_grad()
def revive(model: SlimCAE, dead: torch.Tensor, live: torch.Tensor, scale: float,
           decoder_scale: float) -> None:
    conv3, deconv1 = model.g_a[4], model.g_s[1]
    conv3.weight[dead] = _random_rows(conv3.weight[dead], conv3.weight[live], scale)
    if conv3.bias is not None:
        conv3.bias[dead] = 0.0
    # ConvTranspose2d weights are (in, out, k, k): the latent channel is the first axis.
    # Smaller on the decoder side: the revived latents start as noise to the decoder, and
    # the codec should start close to the source model (training grows what is useful).
    deconv1.weight[dead] = _random_rows(deconv1.weight[dead], deconv1.weight[live],
                                        decoder_scale)
    for norm in (model.g_a[5], model.g_s[0]):
        _revive_gdn(norm, dead, live)
    if isinstance(model, ModulatedSlimCAE):
        for modulation in (model.modulation_a[2], model.modulation_s[0]):
            modulation.out.weight[dead] = modulation.out.weight[live].mean(dim=0)
            modulation.out.bias[dead] = modulation.out.bias[live].mean()
    # A revived channel borrows a live channel's density in every entropy model: one
    # fitted to a latent of similar spread at that model's λ. A fresh (wide) density
    # would charge it several bits per value, and the rate gradient would kill it again.
    donor = int(live[len(live) // 2])
    for bottleneck in model.entropy_bottlenecks:
        channels = bottleneck.quantiles.shape[0]
        rows = dead[dead < channels]
        if len(rows) == 0:
            continue
        for name, tensor in bottleneck.state_dict().items():
            # the density's parameters (the CDF buffers are rebuilt when the file is saved)
            if name.startswith(("matrices.", "biases.", "factors.", "quantiles")):
                tensor[rows] = tensor[donor].clone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model file or registered name")
    parser.add_argument("--data", type=Path, required=True, help="images to probe the latent")
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--keep", type=int, default=72, help="leave channels below this alone")
    parser.add_argument("--scale", type=float, default=0.5,
                        help="encoder rows' norm, as a fraction of the live rows' mean")
    parser.add_argument("--decoder-scale", type=float, default=0.1,
                        help="decoder rows' norm, as a fraction of the live rows' mean")
    parser.add_argument("--threshold", type=float, default=0.1, help="dead: latent std below")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = load_model(args.model).eval()
    x = centre_crops(args.data)
    spread = latent_spread(model, x)
    index = torch.arange(len(spread))
    dead = index[(spread < args.threshold) & (index >= args.keep)]
    live = index[spread >= args.threshold]
    print(f"live latent channels: {len(live)} of {len(spread)}; reviving {len(dead)} "
          f"(index >= {args.keep})")
    revive(model, dead, live, args.scale, args.decoder_scale)
    print(f"live after revival: {int((latent_spread(model, x) >= args.threshold).sum())}")
    save_model_file(model, args.out, {"note": f"{args.model} with {len(dead)} dead latent "
                                              f"channels re-initialised (tools/revive_latents.py)"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
