#!/usr/bin/env bash
# Trains the single-width models behind benchmarks/variable_rate.py's continuous-λ penalty
# and entropy-model sections: at one width (96), all from the same start (width 96 cut out
# of the shipped slimcae by tools/single_width.py), with the same steps, patch, batch and
# learning rate:
#   - fixed-λ SlimCAE models at 4 λ (the reference curve),
#   - a continuous-λ slimcae-vr with one entropy model per anchor (ANCHORS, as shipped),
#   - a continuous-λ slimcae-vr with one entropy model shared by all λ (--rate-anchors 1).
#
#   DATA=../shared/data/train_photos bash tools/with-venv.sh bash benchmarks/train_vr_penalty.sh
#
# Knobs (environment): DATA RUNS STEPS PATCH BATCH LR SEED ANCHORS WIDTH LOW HIGH FIXED
# PARALLEL (1: start the six runs at once, on a GPU; else one after the other).
set -euo pipefail
DATA=${DATA:-../shared/data/train_photos}
RUNS=${RUNS:-runs-vr-penalty}
STEPS=${STEPS:-4000}
PATCH=${PATCH:-64}
BATCH=${BATCH:-8}
LR=${LR:-2e-4}
SEED=${SEED:-0}
ANCHORS=${ANCHORS:-8}
WIDTH=${WIDTH:-96}
LOW=${LOW:-0.001}
HIGH=${HIGH:-0.05}
FIXED=${FIXED:-0.0015 0.005 0.015 0.045}
PARALLEL=${PARALLEL:-0}
PY=${PYTHON:-python}

mkdir -p "$RUNS"
[ -f "$RUNS/init.pt" ] || "$PY" tools/single_width.py slimcae "$WIDTH" -o "$RUNS/init.pt"
common=(--data "$DATA" --widths "$WIDTH" --init "$RUNS/init.pt" --steps "$STEPS"
        --patch "$PATCH" --batch "$BATCH" --lr "$LR" --seed "$SEED" --checkpoint-every 200
        --resume)
run() {  # run NAME ARGS...: one training run, in the background when PARALLEL=1
  local name=$1; shift
  if [ "$PARALLEL" = 1 ]; then
    "$PY" -m slimcodec train "${common[@]}" --out "$RUNS/$name" "$@" > "$RUNS/$name.log" 2>&1 &
  else
    "$PY" -m slimcodec train "${common[@]}" --out "$RUNS/$name" "$@"
  fi
}
for lmbda in $FIXED; do
  run "fixed-$lmbda" --lambdas "$lmbda"
done
run "vr-anchors-$ANCHORS" --arch slimcae-vr --lambda-ranges "$LOW" "$HIGH" --rate-anchors "$ANCHORS"
run "vr-anchors-1" --arch slimcae-vr --lambda-ranges "$LOW" "$HIGH" --rate-anchors 1
wait
