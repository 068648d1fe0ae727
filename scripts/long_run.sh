#!/usr/bin/env bash
# The long training run of the default photo model and the runs beside it for the paper's claim, across
# working sessions that each end abruptly: the runs live outside the repository, their resume state is
# packed into training/<run>/ (scripts/run_state.py) and committed. docs/training.md tells the story.
#
#   scripts/long_run.sh start     # once: both slots from step 0, in the background
#   scripts/long_run.sh resume [--set K=V ...]   # each session: pool, unpack the committed state, both slots on
#   scripts/long_run.sh pack      # pack every run into training/ (then commit training/)
#   scripts/long_run.sh status    # step, s/step and the last validation of each run
#   scripts/long_run.sh stop      # stop both slots (their runs resume from their last checkpoint)
#
# Two slots, one core each (train.threads=1 in the configs), so neither stalls when the other works
# (benchmarks/results/train_speed.md); everything else on the machine should run under `nice -n 19` (and
# with /proc/sys/kernel/sched_autogroup_enabled at 0, or nice does not reach across sessions).
#   slot A: default_photo, the ExDA default model, seed 0, to train.iters (10,000: constant lr, then a
#           cosine over steps 8,000-10,000).
#   slot B: default_photo_plain, the plain twin (both primitives off, seed 0), the same recipe and schedule.
#   Then both slots take the shared queue in order, one run each at a time: 3,000 steps each of seed 1 of
#   both networks; the default medical model (configs/default_medical.yaml, ~4 h); a second cycle of the
#   shipped photo model (the plain twin's EMA weights at step 10,000 fine-tuned through another 10,000 steps
#   of the same recipe: warmup, constant rate, cosine decay; ~12 h); ExDA on the small pool (the 27 training
#   photos of the old pool's sources: does the wider pool help?); each primitive alone.
#   The short photo runs share default_photo's recipe and its constant learning rate up to their end
#   (optim.schedule_iters=30000: no decay by step 3,000, as the pair's) and keep their EMA weights at step
#   3,000 (train.keep_steps), where they are compared with the pair's.
#   The long pair trains with data.scene_colour (tinted clean scenes) from step 4,600 on, both networks
#   alike; the short runs go without it, as the pair did to step 3,000.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${EXDA_RUNS:-$HOME/exda-runs}"
STATE="${EXDA_STATE:-training}"  # the committed, packed state of every run
POOL="${EXDA_POOL:-$HOME/.cache/exda/photo-pool-v2}"
SMALL_POOL="${EXDA_SMALL_POOL:-$HOME/.cache/exda/photo-pool-small}"
SMALL_SOURCES=(pypi:scikit-image pypi:scikit-learn debian:opencv-doc)  # where the old 32-photo pool came from
MEDICAL_POOL="${EXDA_MEDICAL_POOL:-$HOME/.cache/exda/medical-pool-v2}"
# The shipped photo model as of 2026-12-08: the plain twin's EMA weights at step 10,000 (where cycle 2 starts)
SHIPPED_PHOTO="${EXDA_SHIPPED_PHOTO:-exda/weights/exda_photo.safetensors}"
PY="${PYTHON:-.venv/bin/python}"
# Each slot runs its own run, then takes what is left of the shared queue, in order (a run one slot is
# training, the other skips).
SLOT_A=(default_photo)
SLOT_B=(default_photo_plain)
QUEUE=(default_photo_seed1 default_photo_plain_seed1 default_medical default_photo_plain_cycle2
       default_photo_pool_small default_photo_value_only default_photo_token_only)
KEEP_STATE=(default_photo default_photo_plain_cycle2 default_medical)  # packed with their resume state when finished

run_sets() {  # the config and --set flags of run $1 -> CONFIG, SETS
    local plain="model.kwargs={value_transform: 'off', global_token: 'off'}"
    # The short runs are compared with the long pair's step 3,000, trained before data.scene_colour was on.
    local short=(--set train.iters=3000 --set optim.schedule_iters=30000 --set "train.keep_steps=[3000]"
                 --set data.scene_colour=0)
    CONFIG=default_photo
    SETS=(--set "data.root=$POOL/train" --set "data.val_root=$POOL/heldout")
    case "$1" in
        default_photo) SETS+=(--set "train.keep_steps=[3000, 10000]") ;;
        default_photo_plain) SETS+=(--set "$plain" --set "train.keep_steps=[3000, 10000]") ;;
        default_photo_seed1) SETS+=(--set train.seed=1 --set data.val_seed=0 "${short[@]}") ;;
        default_photo_plain_seed1) SETS+=(--set "$plain" --set train.seed=1 --set data.val_seed=0 "${short[@]}") ;;
        # The shipped model through a second cycle; its steps count from 0 again, with new data (seed 2).
        default_photo_plain_cycle2) SETS+=(--set "$plain" --set train.seed=2 --set data.val_seed=0
                                           --set "train.init_from=$SHIPPED_PHOTO"
                                           --set "train.keep_steps=[10000]") ;;
        default_photo_pool_small) SETS+=(--set "data.root=$SMALL_POOL/train" "${short[@]}") ;;
        default_photo_value_only) SETS+=(--set "model.kwargs={global_token: 'off'}" "${short[@]}") ;;
        default_photo_token_only) SETS+=(--set "model.kwargs={value_transform: 'off'}" "${short[@]}") ;;
        default_medical) CONFIG=default_medical
                         SETS=(--set "data.root=$MEDICAL_POOL/train" --set "data.val_root=$MEDICAL_POOL/heldout") ;;
        *) echo "unknown run $1" >&2; exit 2 ;;
    esac
}

finished() {  # whether run $1 has reached its train.iters (in this machine's run folder or the committed state)
    grep -qs '"finished": true' "$STATE/$1/state.json" || grep -qs "finished at step" "$RUNS/$1/train.log"
}

run_slot() {  # the runs $@ in order, each to its end, in the foreground; extra flags after --
    local names=() extra=() lock
    while (($#)); do [[ "$1" == -- ]] && { shift; extra=("$@"); break; }; names+=("$1"); shift; done
    mkdir -p "$RUNS"
    for name in "${names[@]}"; do
        finished "$name" && continue
        exec {lock}> "$RUNS/$name.lock"
        flock -n "$lock" || { exec {lock}>&-; continue; }  # the other slot is training it
        local out="$RUNS/$name" resume=()
        [[ -f "$out/checkpoints/last.json" ]] && resume=(--resume)
        run_sets "$name"
        mkdir -p "$out"
        echo "$(date -u '+%F %T') $name: starting (${resume[*]:-fresh})" >> "$out/stdout.log"
        "$PY" -m exda train --config "$CONFIG" --out "$out" "${resume[@]}" "${SETS[@]}" "${extra[@]}" \
            >> "$out/stdout.log" 2>&1 || { echo "$name failed: see $out/stdout.log" >&2; return 1; }
        finished "$name" || { echo "$name stopped before its end: see $out/train.log" >&2; return 1; }
        exec {lock}>&-
    done
}

launch_slots() {  # extra flags for every run
    nohup "$0" slot "${SLOT_A[@]}" "${QUEUE[@]}" -- "$@" >> "$RUNS/slot_a.log" 2>&1 &
    echo "slot A (${SLOT_A[*]}, then the queue): pid $!"
    nohup "$0" slot "${SLOT_B[@]}" "${QUEUE[@]}" -- "$@" >> "$RUNS/slot_b.log" 2>&1 &
    echo "slot B (${SLOT_B[*]}, then the queue: ${QUEUE[*]}): pid $!; logs in $RUNS/<run>/train.log"
}

main() {
    case "${1:-}" in
        start)
            mkdir -p "$RUNS"
            "$PY" scripts/photo_pool.py "$POOL"
            "$PY" scripts/photo_pool.py "$SMALL_POOL" --sources "${SMALL_SOURCES[@]}"
            "$PY" scripts/medical_pool.py "$MEDICAL_POOL"
            launch_slots
            ;;
        resume)
            shift
            echo 0 > /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo "note: could not turn off autogroup scheduling"
            mkdir -p "$RUNS"
            "$PY" scripts/photo_pool.py "$POOL"
            "$PY" scripts/photo_pool.py "$SMALL_POOL" --sources "${SMALL_SOURCES[@]}"
            "$PY" scripts/medical_pool.py "$MEDICAL_POOL"
            for name in "${SLOT_A[@]}" "${SLOT_B[@]}" "${QUEUE[@]}"; do
                if [[ -f "$STATE/$name/state.safetensors" && ! -d "$RUNS/$name/checkpoints" ]]; then
                    "$PY" scripts/run_state.py unpack "$STATE/$name" "$RUNS/$name"
                fi
            done
            launch_slots "$@"
            ;;
        slot)  # internal: one slot's runs in order (launch_slots starts it in the background)
            shift
            run_slot "$@"
            ;;
        pack)
            for name in "${SLOT_A[@]}" "${SLOT_B[@]}" "${QUEUE[@]}"; do
                [[ -f "$RUNS/$name/checkpoints/last.json" ]] || continue
                final=()  # a finished side run is over: its logs and kept steps stay, its resume state goes
                [[ " ${KEEP_STATE[*]} " != *" $name "* ]] && grep -qs "finished at step" "$RUNS/$name/train.log" && final=(--final)
                "$PY" scripts/run_state.py pack "${final[@]}" "$RUNS/$name" "$STATE/$name"
            done
            echo "now: git add -A training && git commit -m 'Long run state at ...'"
            ;;
        status)
            for name in "${SLOT_A[@]}" "${SLOT_B[@]}" "${QUEUE[@]}"; do
                [[ -f "$RUNS/$name/train.log" ]] || continue
                echo "== $name$(finished "$name" && echo ' (finished)')"
                grep "s/step" "$RUNS/$name/train.log" | tail -n 1 || true
                grep "validation, mean PSNR" "$RUNS/$name/train.log" | tail -n 1 || true
            done
            ;;
        stop)  # the slot loops first, or slot B would start its next run
            pkill -f "long_run.sh slot" || true
            pkill -f "exda train --config default_[a-z]* --out $RUNS/" || true
            ;;
        *)
            awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"  # the header above
            exit 2
            ;;
    esac
}

# One line, parsed whole before it runs: a slot that runs for hours never reads this file again, so editing
# the script does not disturb the runs.
main "$@"; exit $?
