#!/usr/bin/env bash
# The long training run of the default photo model and its plain twin (both ExDA primitives off), across
# working sessions that each end abruptly: the runs live outside the repository, their resume state is
# packed into training/<run>/ (scripts/run_state.py) and committed. docs/training.md tells the story.
#
#   scripts/long_run.sh start     # once: both runs from step 0, in the background
#   scripts/long_run.sh resume [--set K=V ...]   # each session: pool, unpack the committed state, both runs on
#   scripts/long_run.sh pack      # pack both runs into training/ (then commit training/)
#   scripts/long_run.sh status    # step, s/step and the last validation of each run
#   scripts/long_run.sh stop      # stop both runs (they resume from their last checkpoint)
#
# Each run takes one thread (train.threads=1 in the config), so the two share the 2-core machine equally and
# neither stalls when the other works (benchmarks/results/train_speed.md); everything else on the machine
# should run under `nice -n 19` (and with /proc/sys/kernel/sched_autogroup_enabled at 0, or nice does not
# reach across sessions).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${EXDA_RUNS:-$HOME/exda-runs}"
POOL="${EXDA_POOL:-$HOME/.cache/exda/photo-pool-v2}"
PY="${PYTHON:-.venv/bin/python}"
NAMES=(default_photo default_photo_plain)

PLAIN=(--set "model.kwargs={value_transform: 'off', global_token: 'off'}")  # the twin: both primitives off

launch() {  # $1 run name, then extra flags (--resume)
    local name="$1" out="$RUNS/$1"
    shift
    local extra=()
    [[ "$name" == default_photo_plain ]] && extra=("${PLAIN[@]}")
    mkdir -p "$out"
    nohup "$PY" -m exda train --config default_photo --out "$out" "$@" \
        --set "data.root=$POOL/train" --set "data.val_root=$POOL/heldout" "${extra[@]}" \
        >> "$out/stdout.log" 2>&1 &
    echo "$name: pid $! (log $out/train.log)"
}

start_all() {
    for name in "${NAMES[@]}"; do
        launch "$name" "$@"
    done
}

case "${1:-}" in
    start)
        "$PY" scripts/photo_pool.py "$POOL"
        start_all
        ;;
    resume)
        echo 0 > /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo "note: could not turn off autogroup scheduling"
        "$PY" scripts/photo_pool.py "$POOL"
        for name in "${NAMES[@]}"; do
            if [[ ! -d "$RUNS/$name/checkpoints" ]]; then
                "$PY" scripts/run_state.py unpack "training/$name" "$RUNS/$name"
            fi
        done
        shift
        start_all --resume "$@"
        ;;
    pack)
        for name in "${NAMES[@]}"; do
            "$PY" scripts/run_state.py pack "$RUNS/$name" "training/$name"
        done
        echo "now: git add training && git commit -m 'Long run state at ...'"
        ;;
    status)
        for name in "${NAMES[@]}"; do
            echo "== $name"
            grep "s/step" "$RUNS/$name/train.log" | tail -n 1 || true
            grep "validation, mean PSNR" "$RUNS/$name/train.log" | tail -n 1 || true
        done
        ;;
    stop)
        pkill -f "exda train --config default_photo --out $RUNS/" || true
        ;;
    *)
        sed -n 2,14p "$0"
        exit 2
        ;;
esac
