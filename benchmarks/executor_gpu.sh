#!/usr/bin/env bash
# Images per second with 1 and 2 Ray workers sharing one GPU (--gpus-per-worker 0.5), SD-1.4-shaped
# random weights in fp16, plus whether both give the same image bytes. Prepared for a GPU machine
# with `pip install -e '.[ray]'`; not run on the 2-core CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" benchmarks/executor_throughput.py --model sd14-random --metric none --device cuda \
  --dtype fp16 --n "${N:-64}" --steps "${STEPS:-30}" --batch-size "${BATCH:-16}" --cpus-per-worker 4 \
  --gpus-per-worker 0.5 --modes "${MODES:-local,ray1,ray2}"
