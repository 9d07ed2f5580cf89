"""Peak memory of the Ray mini-cluster tests (tests/test_distributed.py: two 1-CPU nodes on this
machine, pocket evals with 1 and 2 workers, kills, a removed node, an attack, an erase).

    python benchmarks/minicluster_memory.py                      # the whole module
    python benchmarks/minicluster_memory.py -- -k killed        # pytest arguments after --

Sampled every ``--interval`` seconds while pytest runs, two ways: the summed proportional set size
(PSS, so shared libraries count once) of pytest and every process under it (Ray's GCS, raylets and
worker actors are its descendants); and the machine's used memory (MemTotal - MemAvailable) above
its level before the start, which also holds Ray's shared-memory object store. Run it on an idle
machine: the second figure counts every process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1024 ** 3


def _meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, rest = line.split(":", 1)
        values[name] = int(rest.split()[0]) * 1024
    return values


def _used() -> int:
    info = _meminfo()
    return info["MemTotal"] - info["MemAvailable"]


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    args = parser.parse_args()
    baseline = _used()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_distributed.py", *args.pytest_args]
    started = time.perf_counter()
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a long failing run must not block on a full one
    proc = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1], stdout=log, stderr=subprocess.STDOUT, text=True)
    peak_pss = peak_used = peak_processes = 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak_pss = max(peak_pss, sum(_pss(pid) for pid in pids))
        peak_used = max(peak_used, _used() - baseline)
        peak_processes = max(peak_processes, len(pids))
        time.sleep(args.interval)
    log.seek(0)
    output = log.read()
    print(json.dumps({
        "command": " ".join(command[1:]),
        "returncode": proc.returncode,
        "pytest": output.strip().splitlines()[-1] if output.strip() else "",
        "seconds": round(time.perf_counter() - started, 1),
        "peak_pss_gib": round(peak_pss / GIB, 2),
        "peak_used_above_baseline_gib": round(peak_used / GIB, 2),
        "peak_processes": peak_processes,
    }, indent=2))
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
