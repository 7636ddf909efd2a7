#!/usr/bin/env bash
# Trains the shipped variable-rate model `slimcae-vr` (issue 12) with `slimcodec train`.
#
#   DATA=../shared/data/train_photos bash tools/with-venv.sh bash benchmarks/train_vr.sh
#
# Every step samples one λ per width, log-uniform in that width's range (the architecture's
# default ranges, widest first: 0.002-0.2, 0.0015-0.1, 0.001-0.05, 0.0007-0.025,
# 0.0005-0.012), and trains all widths jointly. The transforms start from the shipped
# `slimcae`; the modulations start as the identity. The run resumes (--resume): re-running
# the same command continues from RUNS/vr/checkpoint.pt. A GPU is used when torch sees one.
#
# Knobs (environment): DATA RUNS STEPS PATCH BATCH LR AUX_LR SEED ANCHORS INIT
set -euo pipefail
DATA=${DATA:-../shared/data/train_photos}
RUNS=${RUNS:-runs-vr}
STEPS=${STEPS:-12000}
PATCH=${PATCH:-256}
BATCH=${BATCH:-8}
LR=${LR:-3e-4}
AUX_LR=${AUX_LR:-1e-3}
SEED=${SEED:-0}
ANCHORS=${ANCHORS:-8}  # as slimcae-vr shipped; the vr_penalty benchmark now favours 1
INIT=${INIT:-slimcae}
PY=${PYTHON:-python}

"$PY" -m slimcodec train --arch slimcae-vr --init "$INIT" --rate-anchors "$ANCHORS" \
  --data "$DATA" --out "$RUNS/vr" --steps "$STEPS" --patch "$PATCH" --batch "$BATCH" \
  --lr "$LR" --aux-lr "$AUX_LR" --seed "$SEED" --checkpoint-every 250 --resume
