#!/usr/bin/env bash
# One prepared check on a lent GPU machine (its own python3 with torch; pydicom, nibabel and pypng
# carried as wheels in .whl/): the test suite with CUDA present, the ExDA-vs-backbone training-step
# benchmark at full size, and a short fp16 (GradScaler) training run through the CLI.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "== test suite"
timeout 120 python3 -m pytest tests -q -x -p no:cacheprovider 2>&1 | tail -4
echo "== training-step speed, full size, batch 8, patch 128"
timeout 130 python3 benchmarks/model_speed.py --device cuda --pairs restormer:exda_restormer,promptir:exda_promptir \
  --patch 128 --batch 8 --iters 10 --warmup 3 --out "$OUT/model_speed_cuda.json"
echo "== fp16 training through the CLI"
timeout 90 python3 -m exda train --config configs/tiny_deg3.yaml --set train.iters=200 --set train.device=cuda \
  --set train.precision=fp16 --set data.num_workers=4 --out /tmp/run16 2>&1 | tr '\r' '\n' | grep -v "it/s" | tail -12
