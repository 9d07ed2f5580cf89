#!/usr/bin/env bash
# The suite on every x86 kernel path this CPU can emulate, at 1 and 2 threads: ATen's vector width
# (ATEN_CPU_CAPABILITY), oneDNN's (ONEDNN_MAX_CPU_ISA) and MKL's (MKL_ENABLE_INSTRUCTIONS), capped at
# AVX2 (the widest on many AMD EPYC and older Intel CPUs), at SSE4 ("default"), and left at the CPU's own
# (AVX-512 where it has it). Floats that two paths compute differently must agree within the bound of
# tests/tolerance.py on each of them. Run after `bash scripts/test.sh` has made .venv:
#   bash scripts/test_cpu_paths.sh [pytest arguments]     (default: the whole suite)
# Prints one line per configuration and exits 1 if any failed; each run's log is under $LOGS (a temp dir).
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS="${LOGS:-$(mktemp -d)}"
if [ -z "${TRCE_AUDIT_DATA:-}" ] && [ -d ../shared/data ]; then
  export TRCE_AUDIT_DATA="$(cd ../shared/data && pwd)"
fi
status=0
for isa in native avx2 default; do
  for threads in 1 2; do
    case "$isa" in
      native) env=() ;;
      avx2) env=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2) ;;
      default) env=(ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2) ;;
    esac
    log="$LOGS/$isa-$threads.log"
    env "${env[@]}" OMP_NUM_THREADS="$threads" .venv/bin/python -m pytest -q -p no:cacheprovider "$@" >"$log" 2>&1
    code=$?
    [ "$code" -eq 0 ] || status=1
    echo "$isa, $threads thread(s): exit $code, $(tail -n 1 "$log")"
  done
done
echo "logs: $LOGS"
exit "$status"
