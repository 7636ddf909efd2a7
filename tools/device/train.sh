#!/usr/bin/env bash
# On a lent GPU machine, from the repository root: train a variable-rate SlimCAE with
# benchmarks/train_vr.sh on the photos tools/device/pack.py carried. docs/gpu_training.md
# gives the whole procedure (the `device` tool's calls, and what to do with the result here).
#
#   bash tools/device/train.sh start STEPS    install compressai, start the run detached, show
#                                             its first minute (steps per second)
#   bash tools/device/train.sh start auto:MIN the same, STEPS from a 90-second trial's speed so
#                                             that the run ends within MIN minutes
#   bash tools/device/train.sh revive MODEL   tools/revive_latents.py on MODEL, written to
#                                             $RUN/revived.pt (for INIT=)
#   bash tools/device/train.sh watch SECONDS  follow the run for SECONDS, or until it ends
#   bash tools/device/train.sh collect        the run's model file and metrics into $OUT
#
# The run lives in /tmp/slimcodec-run on the machine: it survives between calls only while
# the machine stays warm, so each call must follow the last within the tool's idle time.
# train_vr.sh's knobs pass through the environment (INIT, ANCHORS, PATCH, BATCH, LR, ...);
# DATA and RUNS are set here.
set -euo pipefail
RUN=${RUN:-/tmp/slimcodec-run}
LOG=$RUN/train.log

setup() {
  if ! python3 -c "import compressai" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
  fi
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
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

case ${1:-} in
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
  sed -n '2,20p' "$0"
  exit 2
  ;;
esac
