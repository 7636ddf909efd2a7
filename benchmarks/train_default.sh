#!/usr/bin/env bash
# Trains the shipped default `slimcae` and the models its benchmarks compare it with, then
# runs the benchmarks. Every stage resumes: re-running the script continues where it stopped.
#
#   bash tools/with-venv.sh bash benchmarks/train_default.sh        # from the repository root
#
# Knobs (environment): STEPS PATCH BATCH LR AUX_LR LAMBDA FT_STEPS FT_LR MAX_TRIES SEED GDN QUANT
# (--decoder-quantizer) RUNS,
# and PREV: the RUNS folder of an earlier round to continue from. With PREV set, the joint
# model starts from $PREV/default/model.pt and each single-width model from its own
# $PREV/single-W/model.pt, so both sides of the slimming comparison keep having had the same
# steps. The shipped model's card gives the rounds it was trained in. A GPU is used when torch
# sees one.
#
# CARRY_LAMBDAS=1 (needs PREV) consolidates instead of restarting from one λ: stage 1 trains at
# $PREV's scheduled λ vector, so the narrow widths get thousands of steps at a real learning
# rate at their own λ (a λ-schedule try is only a short, low-rate fine-tune), and stage 2
# continues the schedule from that vector. The equal-λ control then keeps its own line: it
# continues from $PREV/equal-lambda through a stage 1 of its own at LAMBDA ($RUNS/equal-stage1),
# so it has had as many steps, at the same learning rates, as the scheduled model.
set -euo pipefail
STEPS=${STEPS:-4500}
PATCH=${PATCH:-64}
BATCH=${BATCH:-16}
LR=${LR:-1e-3}
LAMBDA=${LAMBDA:-0.013}
FT_STEPS=${FT_STEPS:-150}
FT_LR=${FT_LR:-1e-4}
MAX_TRIES=${MAX_TRIES:-5}
AUX_LR=${AUX_LR:-1e-3}
SEED=${SEED:-0}
GDN=${GDN:-slim+}
QUANT=${QUANT:-ste}
RUNS=${RUNS:-runs}
PREV=${PREV:-}
CARRY_LAMBDAS=${CARRY_LAMBDAS:-0}
WIDTHS=(192 144 96 72 48)
common=(--data "$RUNS/data/train" --patch "$PATCH" --batch "$BATCH" --checkpoint-every 250
        --aux-lr "$AUX_LR" --seed "$SEED" --gdn "$GDN" --decoder-quantizer "$QUANT")
init() {  # init RUN_NAME -> the --init option continuing PREV's run of that name, if any
  if [ -n "$PREV" ]; then echo "--init $PREV/$1/model.pt"; fi
}

[ -d "$RUNS/data/train" ] || python tools/prepare_training_data.py --out "$RUNS/data"

meta() {  # meta MODEL_FILE KEY -> a value from the model file's metadata
  python -c "import sys, json; from slimcodec.zoo import model_meta; \
print(json.dumps(model_meta(sys.argv[1])[sys.argv[2]]))" "$1" "$2"
}

# 1. All widths jointly, at one λ or (CARRY_LAMBDAS=1) at PREV's scheduled λ vector.
start=("$LAMBDA")
if [ "$CARRY_LAMBDAS" = 1 ]; then
  [ -n "$PREV" ] || { echo "train_default.sh: CARRY_LAMBDAS=1 needs PREV" >&2; exit 2; }
  read -r -a start <<< "$(meta "$PREV/default/model.pt" lambdas | tr -d '[],')"
fi
# shellcheck disable=SC2046
slimcodec train "${common[@]}" --out "$RUNS/stage1" $(init default) --widths "${WIDTHS[@]}" \
  --steps "$STEPS" --lr "$LR" --lambdas "${start[@]}" --resume

# 2. λ-scheduling from the stage-1 model and its λ: the shipped default.
slimcodec train "${common[@]}" --out "$RUNS/default" --init "$RUNS/stage1/model.pt" \
  --widths "${WIDTHS[@]}" --steps 0 --lambdas "${start[@]}" --schedule lambda \
  --val "$RUNS/data/val" --finetune-steps "$FT_STEPS" --finetune-lr "$FT_LR" \
  --max-tries "$MAX_TRIES" --resume
extra=$(meta "$RUNS/default/model.pt" steps)
read -r -a lambdas <<< "$(meta "$RUNS/default/model.pt" lambdas | tr -d '[],')"

# 3. Control: the stage-1 model fine-tuned as long (one cosine decay from FT_LR), with λ left
#    equal. With CARRY_LAMBDAS=1 it has a stage 1 of its own, continuing PREV's control.
control_base="$RUNS/stage1"
if [ "$CARRY_LAMBDAS" = 1 ]; then
  control_base="$RUNS/equal-stage1"
  slimcodec train "${common[@]}" --out "$control_base" --init "$PREV/equal-lambda/model.pt" \
    --widths "${WIDTHS[@]}" --steps "$STEPS" --lr "$LR" --lambdas "$LAMBDA" --resume
fi
slimcodec train "${common[@]}" --out "$RUNS/equal-lambda" --init "$control_base/model.pt" \
  --widths "${WIDTHS[@]}" --steps "$extra" --lr "$FT_LR" \
  --lambdas "$LAMBDA" --resume

# 4. Single-width models at the scheduled λ, as many steps as the SlimCAE had in all.
for i in "${!WIDTHS[@]}"; do
  # shellcheck disable=SC2046
  slimcodec train "${common[@]}" --out "$RUNS/single-${WIDTHS[$i]}" $(init "single-${WIDTHS[$i]}") \
    --widths "${WIDTHS[$i]}" \
    --steps $((STEPS + extra)) --lr "$LR" --lambdas "${lambdas[$i]}" --resume
done

# 5. Benchmarks (on the held-out photos).
python benchmarks/rd.py --images "$RUNS/data/val" --model "$RUNS/default/model.pt" --label slimcae
if [ -d "$RUNS/data/unseen" ]; then  # photos neither training nor the λ-scheduler saw
  python benchmarks/rd.py --images "$RUNS/data/unseen" --crop 512x480 --section rd_unseen \
    --model "$RUNS/default/model.pt" --label "slimcae, unseen photos"
fi
python benchmarks/lambda_scheduling.py --images "$RUNS/data/val" \
  --scheduled "$RUNS/default/model.pt" --equal "$RUNS/equal-lambda/model.pt"
singles=()
for w in "${WIDTHS[@]}"; do singles+=("$RUNS/single-$w/model.pt"); done
python benchmarks/slimming_penalty.py --images "$RUNS/data/val" --slim "$RUNS/default/model.pt" \
  --single "${singles[@]}"
