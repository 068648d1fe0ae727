#!/usr/bin/env bash
# Continue the long default-photo run on one CUDA GPU for a few minutes, with a larger batch.
#
#   scripts/train_default_gpu.sh MINUTES POOL_DIR OUT_DIR [STATE_DIR] [BATCH]
#
#   MINUTES    wall-clock minutes of training (train.time_limit_minutes; about 10 on an H100)
#   POOL_DIR   the photo pool with train/ and heldout/ (python scripts/photo_pool.py POOL_DIR)
#   OUT_DIR    where the run folder (OUT_DIR/run) and the packed state (OUT_DIR/state) are written
#   STATE_DIR  the committed state to continue (default training/default_photo)
#   BATCH      batch size on the GPU (default 64; the CPU run uses 8)
#
# The run continues its weights, EMA, optimizer and schedule (train.resume_exact=false: a larger batch and
# another pool path mean a new data order; the step counter goes on, each GPU step seeing BATCH patches).
# Afterwards copy OUT_DIR/state over training/default_photo and commit it; the CPU run then continues from
# it the same way, once: `scripts/long_run.sh resume --set train.resume_exact=false`. DEVICE=cpu tries it
# here (tests/scripts/test_long_run.py does, for a few steps); EXTRA_SETS adds --set overrides.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES="${1:?usage: $0 MINUTES POOL_DIR OUT_DIR [STATE_DIR] [BATCH]}"
POOL="${2:?POOL_DIR missing}"
OUT="${3:?OUT_DIR missing}"
STATE="${4:-training/default_photo}"
BATCH="${5:-64}"
DEVICE="${DEVICE:-cuda}"
PY="${PYTHON:-python}"

if [[ -d "$OUT/run/checkpoints" ]]; then
    echo "$OUT/run already holds checkpoints; continuing it"
else
    "$PY" scripts/run_state.py unpack "$STATE" "$OUT/run"
fi
"$PY" -m exda train --config default_photo --out "$OUT/run" --resume \
    --set "data.root=$POOL/train" --set "data.val_root=$POOL/heldout" --set "data.batch_size=$BATCH" \
    --set data.num_workers=4 --set "train.device=$DEVICE" --set train.threads=0 \
    --set train.resume_exact=false --set "train.time_limit_minutes=$MINUTES" ${EXTRA_SETS:-}
"$PY" scripts/run_state.py pack "$OUT/run" "$OUT/state"
echo "done: copy $OUT/state/* into $STATE and commit it"
