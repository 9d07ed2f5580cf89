#!/bin/bash
# Erase `nudity` through the CLI from an SD-1.4-shaped random-weight pipeline on a GPU and print the
# seconds each part took (the erasers' SD presets; extra arguments are passed to every erase, e.g.
# `--set iterations=50 --set n_uncond=32` for a shorter TRCE stage 2).
#
#     bash benchmarks/sd14_erase_cli.sh trce [--set key=value ...]
#
# Needs trce-audit importable (PYTHONPATH or an install) and the benchmark data folder in
# TRCE_AUDIT_DATA (TRCE's prior uses coco-3k). Random weights: the numbers are costs, not erasure.
set -o pipefail
eraser=${1:-trce}; shift || true
work=${WORK:-/tmp/trce-sd14-bench}
device=${DEVICE:-cuda}
cli() { python3 -c 'import sys; from trce_audit.cli import main; sys.exit(main())' "$@"; }
if [ ! -f "$work/sd14/model_index.json" ]; then
    python3 -c "import sys; from pathlib import Path; from trce_audit.models.tiny import save_pipeline; save_pipeline(Path(sys.argv[1]), shape='sd14', seed=0)" "$work/sd14" || exit 1
fi
start=$(date +%s)
cli --workspace "$work/ws" erase "$eraser" --concept nudity --model "$work/sd14" --device "$device" --batch-size 16 "$@" --json > "$work/$eraser.json" || exit 1
echo "wall seconds: $(( $(date +%s) - start ))"
python3 - "$work/$eraser.json" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
stats = record["stats"]
print(f"{record['eraser']}: {record['seconds']:.1f} s in erase (model load and save included)")
if "stage1" in stats:
    print(f"  stage 1: {stats['stage1']['seconds']:.1f} s")
if "stage2" in stats:
    stage2, traj = stats["stage2"], stats["stage2"]["trajectories"]
    tuning = stage2["seconds"] - traj["seconds"]
    print(f"  trajectories: {traj['seconds']:.1f} s ({traj['n_malicious']} malicious + {traj['n_uncond']} unconditional)")
    print(f"  stage 2 fine-tuning: {tuning:.1f} s for {stage2['iterations']} iterations ({tuning / stage2['iterations']:.3f} s each)")
PY
