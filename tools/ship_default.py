"""Install a trained run as the shipped `slimcae` weights and write its model card.

Everything in the card comes from the run's own files (model file metadata, metrics.jsonl,
lambda_schedule.jsonl) and from the `rd` section of benchmarks/RESULTS.md.

Usage: python tools/ship_default.py [--runs runs [runs2 ...]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
from pathlib import Path

from slimcodec.training.run_logs import format_lambdas, round_compute
from slimcodec.training.trainer import saved_config
from slimcodec.zoo import WEIGHTS_DIR, fingerprint, load_model_file, model_meta, save_model_file

ROOT = Path(__file__).resolve().parents[1]
GDN_NAMES = {"switch": "SwitchGDN", "slim": "SlimGDN", "slim+": "SlimGDN+"}


def schedule_summary(run: Path) -> list[str]:
    rows = ["| pair | try | λ tried | slope before | slope after | decision |",
            "|---|---:|---|---:|---:|---|"]
    for line in (run / "lambda_schedule.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["event"] != "try":
            continue
        rows.append(f"| {r['pair'][0]}–{r['pair'][1]} | {r['try']} | "
                    f"{format_lambdas(r['lambdas'])} | "
                    f"{r['slope_before']:.2f} | {r['slope_after']:.2f} | {r['decision']} |")
    return rows


def rd_section(name: str = "rd") -> str | None:
    """The body of a RESULTS.md section written by benchmarks/rd.py, or None if it has none."""
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    m = re.search(rf"<!-- begin {name} -->(.*?)<!-- end {name} -->", text, re.S)
    if not m:
        return None
    body = m.group(1)
    body = re.sub(r"!\[RD plot\]\(figures/", "![RD plot](../../../benchmarks/figures/", body)
    return re.sub(r"^## .*\n", "", body.strip())


def bd_verdict(rd: str, codec: str) -> str:
    """One sentence on the model's BD-rate against ``codec``, read from the rd section."""
    bd = re.search(rf"against {codec}\s+\*\*([^*]+)\*\*", rd).group(1)
    if bd == "n/a":
        return (f"Its curve and {codec}'s share no PSNR range, so there is no BD-rate "
                f"against {codec}; the table's ΔPSNR columns give the gap at equal rate.")
    verb = "saves bits over" if bd.startswith("-") else "needs more bits than"
    return f"Its BD-rate against {codec} is {bd}: it {verb} {codec}."


QUANTIZER = {"noise": "noisy latent", "ste": "rounded latent, straight-through gradient"}


def carried(runs: Path) -> bool:
    """Whether the round ran with CARRY_LAMBDAS=1 (its equal-λ control had its own stage 1)."""
    return (runs / "equal-stage1").is_dir()


def round_command(runs: Path, prev: Path | None, cfg1: dict, cfg2: dict) -> str:
    """The `train_default.sh` invocation that reproduces one round, from its configs."""
    control = model_meta(runs / "equal-lambda" / "model.pt")["config"]
    knobs = {"RUNS": runs, "PREV": prev, "CARRY_LAMBDAS": 1 if carried(runs) else None,
             "STEPS": cfg1["steps"], "LAMBDA": control["lambdas"][0],
             "PATCH": cfg1["patch"], "BATCH": cfg1["batch"], "LR": cfg1["lr"],
             "AUX_LR": cfg1["aux_lr"], "SEED": cfg1["seed"], "GDN": cfg1["gdn"],
             "FT_STEPS": cfg2["finetune_steps"], "FT_LR": cfg2["finetune_lr"],
             "MAX_TRIES": cfg2["max_tries"],
             "QUANT": cfg1["decoder_quantizer"]}
    env = " ".join(f"{k}={v}" for k, v in knobs.items() if v is not None)
    return f"`{env} bash tools/with-venv.sh bash benchmarks/train_default.sh`"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", nargs="+", default=["runs"],
                    help="the RUNS folder of each training round, in order (PREV of each "
                         "is the one before); the last round's default model is shipped")
    ap.add_argument("--note", default="",
                    help="provenance the run files cannot tell (e.g. the code of a round)")
    args = ap.parse_args()
    rounds = [Path(r) for r in args.runs]
    last = rounds[-1] / "default"
    model = load_model_file(last / "model.pt")
    meta_last = model_meta(last / "model.pt")
    lambdas = meta_last["lambdas"]
    hardware = f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU"
    n_photos = len(list((rounds[-1] / "data" / "train").iterdir()))

    fields = [
        ("data", f"`tools/prepare_training_data.py`, {n_photos} photos: 9 of "
                 "`../shared/data/photos` (KDE wallpapers, 1280×800), coffee, chelsea and "
                 "rocket (scikit-image), grace_hopper (matplotlib); 3 more shared photos held "
                 "out for validation and test; astronaut (the demo image) and motorcycle "
                 "(scikit-image) in neither, kept as unseen photos"),
    ]
    steps, seconds, commands = 0, 0.0, []
    for i, runs in enumerate(rounds, 1):
        meta1, meta2 = (model_meta(runs / stage / "model.pt") for stage in ("stage1", "default"))
        cfg, cfg2 = saved_config(meta1["config"]), saved_config(meta2["config"])
        round_steps, round_seconds = round_compute(runs)
        steps, seconds = steps + round_steps, seconds + round_seconds
        start = f"from round {i - 1}'s λ-scheduled model" if cfg["init"] else "from scratch"
        lams = format_lambdas(cfg["lambdas"])
        if carried(runs):
            lams += f" (round {i - 1}'s scheduled λ, carried)"
        fields += [
            (f"round {i}, stage 1", f"{meta1['steps']} steps {start}, every width in every "
                                    f"step, λ = {lams}, patch "
                                    f"{cfg['patch']}², batch {cfg['batch']}, Adam {cfg['lr']} "
                                    f"with cosine decay, aux Adam {cfg['aux_lr']}, decoder "
                                    "input in training: "
                                    + QUANTIZER[cfg["decoder_quantizer"]]),
            (f"round {i}, stage 2", f"λ-scheduling: {meta2['steps']} fine-tune steps kept "
                                    f"({cfg2['finetune_steps']} per try, lr "
                                    f"{cfg2['finetune_lr']}), factor {cfg2['lambda_factor']}, "
                                    f"at most {cfg2['max_tries']} accepted tries per pair, "
                                    "slopes measured on the 3 validation photos; final λ "
                                    + format_lambdas(meta2["lambdas"])),
        ]
        commands.append(round_command(runs, rounds[i - 2] if i > 1 else None, cfg, cfg2))
    fields += [
        ("final λ (192 → 48)", format_lambdas(lambdas)),
        ("wall time", f"{seconds / 60:.0f} min: each stage 1's training steps "
                      "(`metrics.jsonl`) and all of each stage 2 (`lambda_schedule.jsonl`: "
                      "fine-tunes, rolled-back tries and validation measurements)"),
        ("hardware", hardware),
        ("command", "one per round, in order: " + "; ".join(commands) + " (each runs stages "
                    "1–2, then trains the comparison models and runs the benchmarks), then "
                    f"`python tools/ship_default.py --runs {' '.join(args.runs)}"
                    + (" --note ...`" if args.note else "`")),
        ("GDN variant", f"{GDN_NAMES[model.gdn]}, the paper's choice. The screening in "
                        "`benchmarks/RESULTS.md` ('GDN variants': three models trained alike "
                        "at λ 0.005, with the noisy decoder input of rounds 1–2) finds no "
                        "clear winner between SlimGDN+ and SlimGDN, which trade places "
                        "between BD-rate and RD loss, and puts SwitchGDN last by RD loss"),
        ("parameters", f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M, float32"),
    ]
    summary = (f"SlimCAE trained {steps} steps on {n_photos} photos "
               f"({seconds / 3600:.1f} h on {os.cpu_count()} CPU cores), λ-scheduled")
    rd, rd_unseen = rd_section(), rd_section("rd_unseen")
    if rd is None:
        raise SystemExit("run benchmarks/rd.py first: the card quotes its table")
    verdict = " ".join(bd_verdict(rd, codec) for codec in ("JPEG 4:2:0", "WebP"))
    path = WEIGHTS_DIR / "slimcae.pt"
    fp = save_model_file(model, path, meta={**meta_last, "summary": summary, "trained": True})
    assert fp == fingerprint(load_model_file(path))

    table = "\n".join(["| field | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in fields])
    card = f"""# Model card: `slimcae`

SlimCAE (Yang et al., *Slimmable Compressive Autoencoders for Practical Neural Image
Compression*, CVPR 2021) at widths 192, 144, 96, 72, 48 with {GDN_NAMES[model.gdn]},
trained with this project's own `slimcodec train` and λ-scheduling.
Fingerprint `{fp.hex()}`.

**Read this first.** The model was trained for {steps} steps, {seconds / 3600:.1f} hours
on {hardware}: a small fraction of the roughly one million steps of the paper's recipe.
{verdict} It is a working codec, far from converged; what would close the gap to the
paper is the same pipeline with many more steps (another round with `PREV=...`, or a larger
`STEPS`), a GPU, and a large photo collection.
{args.note}

{table}

## λ-scheduling log of the last round

{chr(10).join(schedule_summary(last))}

## Rate-distortion (from `benchmarks/RESULTS.md`)

{rd}
"""
    if rd_unseen is not None:
        card += f"""
## Rate-distortion on photos nothing was tuned on (from `benchmarks/RESULTS.md`)

{rd_unseen}
"""
    (WEIGHTS_DIR / "slimcae.md").write_text(card)
    print(f"wrote {path} ({fp.hex()}) and its model card")


if __name__ == "__main__":
    main()
