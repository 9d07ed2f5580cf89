#!/usr/bin/env bash
# Seconds per image, the batched engine against each diffusers pipeline's own loop, on the full-size
# random-weight shapes of SDXL base 1.0 (fp16, 1024 px, 30 steps) and FLUX.1-schnell (bf16, 1024 px,
# 4 steps), in one run each, plus the largest pixel difference between the two paths. Prepared for a
# GPU with about 40 GB (FLUX.1-schnell's transformer and T5-XXL in bf16); not run on the 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
"$py" benchmarks/generation.py --model shape:sdxl-random --device cuda --dtype fp16 --size 1024 \
  --n "${N:-16}" --batch-size "${BATCH:-8}" --steps 30
"$py" benchmarks/generation.py --model shape:flux-schnell-random --device cuda --dtype bf16 --size 1024 \
  --n "${N:-8}" --batch-size "${FLUX_BATCH:-4}" --steps 4
