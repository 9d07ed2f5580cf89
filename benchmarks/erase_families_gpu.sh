#!/usr/bin/env bash
# Seconds per erase of UCE, ESD-x and TRCE (each with its family preset) on the full-size random-weight
# shapes of SDXL base 1.0 (bf16: Adam's eps of 1e-8 is zero in fp16, so an fp16 fine-tune
# turns its weights to inf on the first step; the CLI erases in fp32), and UCE and TRCE (both stages) on FLUX.1-schnell (bf16), one run each, on
# a GPU; the stand-in concept has PAIRS synthetic pairs and the captions are COCO's when ../shared/data is
# there. SDXL fits a GPU with about 40 GB; TRCE's stage 2 on FLUX holds three transformers (about 72 GB in
# bf16 before activations: an H200-class GPU). Not run on the 2-core CPU (`bash benchmarks/erase_families_gpu.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
"$py" benchmarks/erase_presets.py --model shape:sdxl-random --device cuda --dtype bf16 --erasers uce,esd-x,trce \
  --pairs "${PAIRS:-10}" --captions "${CAPTIONS:-1000}" --threads 16
"$py" benchmarks/erase_presets.py --model shape:flux-schnell-random --device cuda --dtype bf16 --erasers uce,trce \
  --pairs "${PAIRS:-10}" --captions "${CAPTIONS:-1000}" --threads 16
