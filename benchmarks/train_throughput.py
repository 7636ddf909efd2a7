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

Each eager configuration also counts the operations (aten calls, both passes and the
optimiser) of one step: on a GPU each is at least one kernel launch, and a step launched
from Python one kernel at a time is bound by their number, which this counts on any machine.

``--against DIR`` measures each configuration with another checkout's ``slimcodec`` too (a
commit before a change: ``git worktree add ../before COMMIT``), each side in its own process,
alternating ``--repeats`` times; the table gives both sides' medians and their ratio.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import fmt, table_head, write_section
from torch.utils._python_dispatch import TorchDispatchMode

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


class OperationCount(TorchDispatchMode):
    """Counts the aten operations dispatched while active, and those that are not views
    (a view, such as a slice, computes nothing; every other one runs a kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = self.computing = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        self.computing += not func.is_view
        return func(*args, **(kwargs or {}))


def operations(trainer: Trainer) -> tuple[int | None, int | None]:
    """Aten calls of one step, and those of them that compute (None for a compiled step,
    whose kernels are inductor's)."""
    if trainer.cfg.compile:
        return None, None
    try:
        with OperationCount() as ops:
            trainer.train_step()
    except Exception as e:  # (a diagnostic, as host_waits: the throughput is measured anyway)
        print(f"operations not counted: {type(e).__name__}: {e}", flush=True)
        return None, None
    return ops.count, ops.computing


def measure(cfg: TrainConfig, batch: int, warmup: float, seconds: float) -> dict:
    """Steps and images a second of ``cfg``'s training step, after ``warmup`` seconds."""
    trainer = Trainer(cfg)
    chunk = max(1, cfg.log_every)
    started = time.perf_counter()  # the first step: set-up, and compilation if any
    trainer.run(1, checkpoint=False)
    synchronize(trainer.device)
    first_step = time.perf_counter() - started
    waits = host_waits(trainer)
    ops, computing = operations(trainer)

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
            "gpu_memory_gib": memory, "first_step_s": first_step, "host_waits": waits,
            "operations": ops, "computing_operations": computing}


def measure_config(args: argparse.Namespace, name: str, out: str) -> dict:
    batch = args.host_batch if name == "host" else args.batch
    cfg = TrainConfig(data=args.data, out=out, arch=args.arch, patch=args.patch, batch=batch,
                      steps=10**9, checkpoint_every=10**9, **CONFIGS[name])
    return {"batch": batch, **measure(cfg, batch, args.warmup, args.seconds)}


def in_child(args: argparse.Namespace, name: str, checkout: Path) -> dict:
    """``name`` measured in a fresh process that imports ``checkout``'s ``slimcodec`` (first
    on its path) with this script's measurement."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--data", str(Path(args.data).resolve()),
               "--arch", args.arch, "--patch", str(args.patch), "--batch", str(args.batch),
               "--host-batch", str(args.host_batch), "--seconds", str(args.seconds),
               "--warmup", str(args.warmup), "--configs", name, "--json", str(out),
               "--no-write"]
        env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
        proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
        if proc.returncode or not out.exists():
            raise RuntimeError(proc.stderr[-2000:])
        return json.loads(out.read_text())[name]


def median_of(runs: list[dict]) -> dict:
    """The run whose images a second are the median (the lower one of an even count), with
    every run's images a second, in order, under ``runs``."""
    ranked = sorted(runs, key=lambda r: r["images_per_s"])
    return {**ranked[(len(ranked) - 1) // 2], "runs": [r["images_per_s"] for r in runs]}


def side_by_side(args: argparse.Namespace) -> dict[str, dict[str, dict]]:
    """Each configuration measured in both checkouts, alternating, ``--repeats`` times."""
    here = Path(__file__).resolve().parents[1]
    sides = {"this": here, "against": args.against}
    runs: dict[str, dict[str, list[dict]]] = collections.defaultdict(lambda: {s: [] for s in sides})
    for repeat in range(args.repeats):
        for name in args.configs:
            order = list(sides) if repeat % 2 == 0 else list(sides)[::-1]
            for side in order:
                try:
                    r = in_child(args, name, sides[side])
                except RuntimeError as e:
                    print(f"{name} ({side}): failed: {e}", flush=True)
                    continue
                runs[name][side].append(r)
                print(f"{name} ({side}, run {repeat + 1}): {r['images_per_s']:.2f} images/s, "
                      f"{fmt(r['operations'], 'd')} operations a step "
                      f"({fmt(r['computing_operations'], 'd')} computing)", flush=True)
    return {name: {side: median_of(rs) for side, rs in both.items() if rs}
            for name, both in runs.items()}


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
    p.add_argument("--against", type=Path, help="another checkout to measure side by side")
    p.add_argument("--against-label", help="its name in the table (default: its folder's)")
    p.add_argument("--repeats", type=int, default=1, help="alternations with --against")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--no-write", action="store_true", help="leave RESULTS.md as it is")
    args = p.parse_args()
    if args.against:
        if not (args.against / "slimcodec" / "__init__.py").is_file():
            p.error(f"--against {args.against}: not a slimcodec checkout")
        return write_side_by_side(args, side_by_side(args))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            try:
                results[name] = measure_config(args, name, str(Path(tmp) / name))
            except Exception as e:  # (a compiler missing on the machine): the others go on
                print(f"{name}: failed: {type(e).__name__}: {e}", flush=True)
                continue
            r = results[name]
            waits = "" if r["host_waits"] is None else f", {r['host_waits']} host waits a step"
            print(f"{name}: {r['images_per_s']:.1f} images/s ({r['steps_per_s']:.2f} steps/s, "
                  f"batch {r['batch']}, {args.patch}², {r['device']}{waits})", flush=True)
    if args.json:  # (before the table: a child's parent reads only this)
        args.json.write_text(json.dumps({"gpu": device_name(results), "patch": args.patch,
                                         **results}, indent=1))
    if not results:
        raise SystemExit("no configuration ran")
    name = device_name(results)
    base = results.get("host", {}).get("images_per_s")
    counted = any(r["host_waits"] is not None for r in results.values())  # (on a GPU)
    rows = "\n".join(
        f"| {k} | {r['batch']} | {r['first_step_s']:.1f} | {fmt(r['operations'], ',d')} | "
        f"{fmt(r['computing_operations'], ',d')} | "
        f"{r['steps_per_s']:.2f} | **{r['images_per_s']:.1f}** | "
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
step (set-up, and compilation) is timed apart; operations: the aten calls of one step,
forward, backward and optimiser, each dispatched from Python one by one, and of them those
that compute (not views: each a kernel launch on a GPU); not counted for a compiled
step.{waits_note}

{table_head(["configuration", "batch", "first step (s)", "operations a step", "computing",
             "steps/s",
             "images/s", "against host", *(["host waits a step"] if counted else [])])}
{rows}"""
    if not args.no_write:
        write_section(f"train-throughput-{'gpu' if name != 'CPU' else 'cpu'}", body)
    print(body)


def device_name(results: dict[str, dict]) -> str:
    device = next(iter(results.values()))["device"] if results else "cpu"
    return torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"


def write_side_by_side(args: argparse.Namespace, results: dict[str, dict[str, dict]]) -> None:
    label = args.against_label or args.against.resolve().name
    rows = []
    for name, r in results.items():
        this, other = r.get("this"), r.get("against")
        ratio = (f"**{this['images_per_s'] / other['images_per_s']:.2f}x**"
                 if this and other else "n/a")
        cell = lambda d, k, spec: fmt(d[k] if d else None, spec)  # noqa: E731
        each = lambda d: ", ".join(f"{v:.2f}" for v in d["runs"]) if d else "n/a"  # noqa: E731
        rows.append(f"| {name} | {cell(this, 'batch', 'd')} | {cell(this, 'operations', ',d')} "
                    f"| {cell(other, 'operations', ',d')} "
                    f"| {cell(this, 'computing_operations', ',d')} "
                    f"| {cell(other, 'computing_operations', ',d')} "
                    f"| {cell(this, 'images_per_s', '.2f')} "
                    f"| {cell(other, 'images_per_s', '.2f')} | {ratio} "
                    f"| {each(this)} | {each(other)} |")
    table = "\n".join(rows)
    any_side = next(iter(next(iter(results.values())).values())) if results else None
    device = "CPU" if not any_side or not any_side["device"].startswith("cuda") else "GPU"
    body = f"""## Training throughput against `{label}` ({device})

`{args.arch}`, every width per image, {args.patch}² crops, {args.seconds:g} s per
configuration after {args.warmup:g} s of warm-up, each configuration run in a fresh process
with this checkout's `slimcodec` and with `{label}`'s (`{args.against}`), alternating,
{args.repeats} time(s) each (medians, and each run's images a second in order);
operations: the aten calls of one step, forward, backward and optimiser, each dispatched
from Python one by one; computing: those that are not views, each a kernel launch on a GPU.

{table_head(["configuration", "batch", "operations a step", f"operations ({label})",
             "computing", f"computing ({label})", "images/s", f"images/s ({label})",
             "ratio", "each run", f"each run ({label})"])}
{table}"""
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if not args.no_write:
        write_section(f"train-throughput-against-{label}", body)
    print(body)


if __name__ == "__main__":
    main()
