"""Training throughput: images a second (every width per image) of the step as it was
(crops cut on the host, one λ per batch, a log line and a host check each step) against the
step built for a GPU (crops cut on the device, one λ per image, no host synchronisation,
optionally bf16 or compiled), side by side in one run on the same model, data and patch size.

    python benchmarks/train_throughput.py --data .device/data --seconds 60      # on a GPU
    python benchmarks/train_throughput.py --data ../shared/data/train_photos \\
        --patch 96 --batch 8 --seconds 30 --configs host device --no-write     # on the CPU

Each configuration trains a fresh ``--arch`` model (throughput does not depend on its
weights) for a warm-up, then for ``--seconds``; the time is taken after the device has
finished its queue. ``--json`` also writes the figures for ``tools/device/train.sh``, which
sizes a run from them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import fmt, table_head, write_section

from slimcodec.training import TrainConfig, Trainer

CONFIGS = {
    # The step of the last GPU run (issue 29: 35 images/s on an H100 at 256²x8).
    "host": {"crops": "host", "lambda_per": "batch", "log_every": 1},
    "device": {"crops": "device", "lambda_per": "image", "log_every": 50},
    "device-bf16": {"crops": "device", "lambda_per": "image", "log_every": 50,
                    "precision": "bf16"},
    "device-compiled": {"crops": "device", "lambda_per": "image", "log_every": 50,
                        "compile": True},
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def host_waits(trainer: Trainer) -> int | None:
    """How many times one step makes the host wait for a GPU (``torch.cuda``'s sync debug
    mode, which warns at each synchronising call); None off a GPU, or if it cannot tell.
    The CPU tests check the same of the operations themselves (test_training_pipeline)."""
    if trainer.device.type != "cuda":
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                trainer.train_step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
    except Exception as e:  # (a diagnostic: the throughput is measured all the same)
        print(f"host waits not counted: {type(e).__name__}: {e}", flush=True)
        return None
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def measure(cfg: TrainConfig, batch: int, warmup: float, seconds: float) -> dict:
    """Steps and images a second of ``cfg``'s training step, after ``warmup`` seconds."""
    trainer = Trainer(cfg)
    chunk = max(1, cfg.log_every)
    started = time.perf_counter()  # the first step: set-up, and compilation if any
    trainer.run(1, checkpoint=False)
    synchronize(trainer.device)
    first_step = time.perf_counter() - started
    waits = host_waits(trainer)

    def run_for(limit: float) -> tuple[int, float]:
        synchronize(trainer.device)
        start, first = time.perf_counter(), trainer.step
        while time.perf_counter() - start < limit:
            trainer.run(trainer.step + chunk, checkpoint=False)
        synchronize(trainer.device)
        return trainer.step - first, time.perf_counter() - start

    run_for(warmup)
    steps, elapsed = run_for(seconds)
    memory = (torch.cuda.max_memory_allocated(trainer.device) / 2**30
              if trainer.device.type == "cuda" else None)
    return {"steps_per_s": steps / elapsed, "images_per_s": steps * batch / elapsed,
            "steps": steps, "seconds": elapsed, "device": str(trainer.device),
            "gpu_memory_gib": memory, "first_step_s": first_step, "host_waits": waits}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="training images")
    p.add_argument("--arch", default="slimcae-hp")
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--batch", type=int, default=32, help="batch of the device configurations")
    p.add_argument("--host-batch", type=int, default=8,
                   help="batch of the host configuration (the last GPU run's)")
    p.add_argument("--seconds", type=float, default=60, help="measured, per configuration")
    p.add_argument("--warmup", type=float, default=10)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--no-write", action="store_true", help="leave RESULTS.md as it is")
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            batch = args.host_batch if name == "host" else args.batch
            cfg = TrainConfig(data=args.data, out=str(Path(tmp) / name), arch=args.arch,
                              patch=args.patch, batch=batch, steps=10**9,
                              checkpoint_every=10**9, **CONFIGS[name])
            try:
                results[name] = {"batch": batch,
                                 **measure(cfg, batch, args.warmup, args.seconds)}
            except Exception as e:  # (a compiler missing on the machine): the others go on
                print(f"{name}: failed: {type(e).__name__}: {e}", flush=True)
                continue
            r = results[name]
            waits = "" if r["host_waits"] is None else f", {r['host_waits']} host waits a step"
            print(f"{name}: {r['images_per_s']:.1f} images/s ({r['steps_per_s']:.2f} steps/s, "
                  f"batch {batch}, {args.patch}², {r['device']}{waits})", flush=True)
    device = next(iter(results.values()))["device"]
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    base = results.get("host", {}).get("images_per_s")
    counted = any(r["host_waits"] is not None for r in results.values())  # (on a GPU)
    rows = "\n".join(
        f"| {k} | {r['batch']} | {r['first_step_s']:.1f} | {r['steps_per_s']:.2f} | "
        f"**{r['images_per_s']:.1f}** | "
        + (f"{r['images_per_s'] / base:.1f}x |" if base else "|")
        + (f" {fmt(r['host_waits'], 'd')} |" if counted else "")
        for k, r in results.items())
    waits_note = (" Host waits: the synchronising calls of one step, counted by "
                  "`torch.cuda`'s sync debug mode." if counted else "")
    body = f"""## Training throughput ({name})

`{args.arch}`, every width per image, {args.patch}² crops, {args.seconds:g} s per
configuration after {args.warmup:g} s of warm-up: `host` is the step as it was (crops cut on
the host, one λ per batch, a host check and log line per step), `device` the step for a GPU
(`--crops device --lambda-per image --log-every 50`), `device-bf16` the same under bf16
autocast (`--precision bf16`), `device-compiled` the same compiled (`--compile`); the first
step (set-up, and compilation) is timed apart.{waits_note}

{table_head(["configuration", "batch", "first step (s)", "steps/s", "images/s",
             "against host", *(["host waits a step"] if counted else [])])}
{rows}"""
    if args.json:
        args.json.write_text(json.dumps({"gpu": name, "patch": args.patch, **results}, indent=1))
    if not args.no_write:
        write_section(f"train-throughput-{'gpu' if name != 'CPU' else 'cpu'}", body)
    print(body)


if __name__ == "__main__":
    main()
