#!/usr/bin/env bash
# On a lent GPU machine, from the repository root: train a variable-rate SlimCAE with
# benchmarks/train_vr.sh on the photos tools/device/pack.py carried. docs/gpu_training.md
# gives the whole procedure (the `device` tool's calls, and what to do with the result here).
#
#   bash tools/device/train.sh oneshot MIN    everything in one call, for a slot of 15 minutes:
#                                             install compressai, a throughput trial
#                                             (images/s, printed), a run of ARCH
#                                             (slimcae-hpc) from .device/init.pt (pack.py)
#                                             sized to end within MIN minutes of the call's
#                                             start (COMPILE=1: compiled, if the trial
#                                             says it pays), its model file and log into
#                                             $OUT; an earlier call's run is moved aside,
#                                             never resumed
#   bash tools/device/train.sh start STEPS    install compressai, start the run detached, show
#                                             its first minute (steps per second)
#   bash tools/device/train.sh start auto:MIN the same, STEPS from a 90-second trial's speed so
#                                             that the run ends within MIN minutes
#   bash tools/device/train.sh revive MODEL   tools/revive_latents.py on MODEL, written to
#                                             $RUN/revived.pt (for INIT=)
#   bash tools/device/train.sh watch SECONDS  follow the run for SECONDS, or until it ends
#   bash tools/device/train.sh collect        the run's model file and metrics into $OUT
#   bash tools/device/train.sh check          only the set-up, and the imports the run needs
#   bash tools/device/train.sh fresh          only oneshot's moving an earlier run aside
#
# The run lives in /tmp/slimcodec-run on the machine: it survives between calls only while
# the machine stays warm, so each call must follow the last within the tool's idle time.
# train_vr.sh's knobs pass through the environment (INIT, ANCHORS, PATCH, BATCH, LR, ...);
# DATA and RUNS are set here.
set -euo pipefail
RUN=${RUN:-/tmp/slimcodec-run}
LOG=$RUN/train.log

setup() {  # what `pip install -e .` gives here, from the carried wheels and the checkout
  if ! python3 -c "import compressai" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
  fi
  # export/ installs as slimcodec_edge (pyproject's package-dir), which the CLI imports: on a
  # bare machine a link under that name stands in for the install.
  local pkgs=${PKGS:-/tmp/slimcodec-pkgs}
  mkdir -p "$pkgs" && ln -sfn "$PWD/export" "$pkgs/slimcodec_edge"
  export PYTHONPATH=/tmp/site:$PWD:$pkgs${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
  # Fail in seconds, not after the minute's trial, when something the run imports is missing.
  python3 -c "import compressai, slimcodec.commands, slimcodec_edge.select" ||
    { echo "the run cannot import what it needs: see above" >&2; exit 1; }
}

running() { pgrep -f "slimcodec train" >/dev/null; }

progress() {  # the last step's line of metrics.jsonl, and the log's tail
  tail -n 3 "$LOG" | tr '\r' '\n' | tail -n 2
  if [ -f "$RUN/vr/metrics.jsonl" ]; then tail -n 1 "$RUN/vr/metrics.jsonl"; fi
}

steps_for() {  # STEPS that fit in $1 minutes, from a 90 s trial run's own step timing
  local trial=/tmp/slimcodec-trial
  rm -rf "$trial"
  PYTHON=python3 DATA=.device/data RUNS=$trial STEPS=1000000 timeout 90 \
    bash benchmarks/train_vr.sh >"$trial.log" 2>&1 || true
  python3 - "$trial/vr/metrics.jsonl" "$1" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
first, last = rows[len(rows) // 4], rows[-1]  # past the warm-up
rate = (last["step"] - first["step"]) / (last["seconds"] - first["seconds"])
print(int(rate * float(sys.argv[2]) * 60 * 0.95))
PY
}

fresh_run() {  # a oneshot trains afresh: a warm machine keeps /tmp between calls, and an earlier
  # call's run there would be resumed against this call's options, or sent back as this call's
  if [ -e "$RUN/model" ]; then
    local aside
    aside="$RUN/model-before-$(date +%Y%m%d-%H%M%S)-$$"
    mv "$RUN/model" "$aside"
    echo "an earlier call's run moved to $aside (INIT=$aside/model.pt trains on from it)"
  fi
}

oneshot() {  # MINUTES: trial, run, collect, in one call
  local minutes=${1:?usage: train.sh oneshot MINUTES} start=$SECONDS
  : "${OUT:?oneshot writes to \$OUT (the device tool sets it)}"
  setup
  mkdir -p "$RUN"
  fresh_run
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  local batch=${BATCH:-128} patch=${PATCH:-256} init=${INIT:-.device/init.pt}
  [ -f "$init" ] || python3 -c "import slimcodec.zoo as z, sys; z.load_model(sys.argv[1])" \
    "$init" || { echo "no model to start from: run tools/device/pack.py here first" >&2; return 1; }
  # The trial: the steps side by side, 16 s each after their first (benchmarks/
  # train_throughput.py). COMPILE=1 adds the compiled step, whose first step compiles: minutes
  # taken from the run whether or not the run then compiles (docs/gpu_training.md).
  local configs="host device device-bf16"
  [ "${COMPILE:-0}" = 1 ] && configs="$configs device-compiled"
  python3 benchmarks/train_throughput.py --data .device/data --arch "${ARCH:-slimcae-hpc}" \
    --patch "$patch" --batch "$batch" --seconds 12 --warmup 4 --configs $configs \
    --json "$OUT/trial.json" --no-write 2>"$RUN/trial.log" | tee "$OUT/trial.md"
  local config=device
  [ "${PRECISION:-fp32}" = bf16 ] && config=device-bf16
  local left=$((minutes * 60 - (SECONDS - start) - 60))  # a minute for the model file
  if [ "$left" -lt 60 ]; then
    echo "no time left to train after the trial: give oneshot more minutes" >&2
    return 1
  fi
  # Its steps, and whether it compiles its step: if the trial's compilation taken out, the
  # compiled step still makes more steps in the time left (tools/device/plan_run.py).
  local steps compile
  read -r steps compile < <(python3 tools/device/plan_run.py "$OUT/trial.json" "$config" "$left")
  echo "run: $steps steps of batch $batch at ${patch}² in about $((left / 60)) minutes" \
    "$([ "$compile" = 1 ] && echo "(compiled)")"
  # --time-limit stops the run in time with its model file; the timeout is a safety net
  # (then the last checkpoint becomes the model file, below).
  # The default model's λ ranges (its card): an --init must match them, unless BOUNDS gives other
  # λ bounds (keeping their middle, 0.02: e.g. RANGES="0.002 3.2 ..." BOUNDS="0.000125 3.2"
  # for a higher top at width 192), to which the --init model is moved exactly. ARCH
  # slimcae-hpc trains the transforms, the hyperprior and the checkerboard context together:
  # what comes back ships as it is.
  # REVIVE_SHIFT=-2 switches the --init model's dead latent channels back on (docs/training.md).
  timeout $((left + 45)) python3 -m slimcodec train --arch "${ARCH:-slimcae-hpc}" --init "$init" \
    --lambda-ranges ${RANGES:-0.002 0.8 0.0015 0.4 0.001 0.2 0.0007 0.025 0.0005 0.012} \
    ${BOUNDS:+--lambda-bounds $BOUNDS} \
    ${REVIVE_SHIFT:+--revive $REVIVE_SHIFT} \
    --data .device/data ${MIX:+--mix $MIX} --out "$RUN/model" --steps "$steps" \
    --patch "$patch" --batch "$batch" --lr "${LR:-1e-4}" --warmup "${WARMUP:-500}" \
    --seed "${SEED:-0}" --crops device --lambda-per image --log-every 50 \
    --precision "${PRECISION:-fp32}" $([ "$compile" = 1 ] && echo --compile) \
    --checkpoint-every 500 --time-limit $((left - 30)) >"$LOG" 2>&1 \
    || echo "the run stopped early: $?"
  if [ ! -f "$RUN/model/model.pt" ] && [ -f "$RUN/model/checkpoint.pt" ]; then  # stopped by the
    # timeout: its last checkpoint becomes the model file
    python3 - "$RUN/model" <<'PY'
import sys
from slimcodec.training.trainer import checkpoint_model
from slimcodec.zoo import save_model_file
model, step = checkpoint_model(sys.argv[1])
save_model_file(model, f"{sys.argv[1]}/model.pt", meta={"summary": f"step {step} checkpoint"})
PY
  fi
  tail -c 4000 "$LOG" | tr '\r' '\n' >"$OUT/train.log"
  [ -f "$RUN/model/model.pt" ] || { echo "no model file: see train.log" >&2; return 1; }
  split -b 15M -d "$RUN/model/model.pt" "$OUT/model.pt.part-"
  gzip -c "$RUN/model/metrics.jsonl" >"$OUT/metrics.jsonl.gz"
  ls -l "$OUT"
}

case ${1:-} in
check)
  setup
  echo "ready"
  ;;
oneshot)
  oneshot "${2:-}"
  ;;
fresh)  # (oneshot's first step, alone: tests/test_device_tools.py)
  mkdir -p "$RUN"
  fresh_run
  ;;
revive)
  setup
  mkdir -p "$RUN"
  python3 tools/revive_latents.py "${2:?usage: train.sh revive MODEL}" --data .device/data \
    -o "$RUN/revived.pt"
  ;;
start)
  steps=${2:?usage: train.sh start STEPS|auto:MINUTES}
  setup
  mkdir -p "$RUN"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  if [[ $steps == auto:* ]]; then
    steps=$(steps_for "${steps#auto:}")
    echo "trial: $steps steps fit in ${2#auto:} minutes"
  fi
  PYTHON=python3 DATA=.device/data RUNS=$RUN STEPS=$steps setsid nohup bash benchmarks/train_vr.sh \
    >"$LOG" 2>&1 </dev/null &
  sleep 60
  progress
  ;;
watch)
  seconds=${2:?usage: train.sh watch SECONDS}
  end=$((SECONDS + seconds))
  while [ "$SECONDS" -lt "$end" ] && running; do sleep 15; done
  progress
  running && echo "still running" || echo "finished"
  ;;
collect)
  : "${OUT:?collect writes to \$OUT (the device tool sets it)}"
  running && { echo "the run has not finished: watch it first" >&2; exit 1; }
  # $OUT takes files of at most 16 MiB: the model file comes back in parts (cat them here).
  split -b 15M -d "$RUN/vr/model.pt" "$OUT/model.pt.part-"
  gzip -c "$RUN/vr/metrics.jsonl" >"$OUT/metrics.jsonl.gz"
  tail -c 4000 "$LOG" | tr '\r' '\n' >"$OUT/train.log"
  ls -l "$OUT"
  ;;
*)
  sed -n '2,/^set /{/^#/p}' "$0"
  exit 2
  ;;
esac
