#!/usr/bin/env python3
"""ONNX Runtime's own Python API on the models of the README's benchmark table.

Measures `session.run` alone (milliseconds per inference, median of N runs after warm-up) with
the same thread count as `make bench` (one intra-op thread), on the same preprocessed photo, so
the Rust figures (inference, and preprocessing + decode as overhead) have a reference.

    python3 -m pip install onnxruntime==1.32.0 numpy pillow
    STREETWATCH_ASSETS=../shared/assets python3 scripts/bench_python_ort.py

Prints one line per model: name, median ms, p90 ms.
"""
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = [
    # manifest name, weights, input name, input size (w, h)
    ("yolox-nano-coco", "models/yolox_nano.onnx", "images", (416, 416)),
    ("nanodet-m-416-coco", "models/nanodet_m_416.onnx", "input.1", (416, 416)),
    ("picodet-s-416-coco", "models/picodet_s_416_coco.onnx", "image", (416, 416)),
    ("fastestdet-352-coco", "models/fastestdet_352.onnx", "input.1", (352, 352)),
]
RUNS = int(os.environ.get("RUNS", "100"))


def find(rel):
    for root in (os.path.join(ROOT, ".cache", "assets"), os.environ.get("STREETWATCH_ASSETS", "")):
        p = os.path.join(root, rel)
        if root and os.path.isfile(p):
            return p
    sys.exit(f"{rel} not found: run `make setup` or set STREETWATCH_ASSETS")


def main():
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    rng = np.random.default_rng(0)
    for name, rel, input_name, (w, h) in MODELS:
        sess = ort.InferenceSession(find(rel), opts, providers=["CPUExecutionProvider"])
        x = rng.uniform(-1, 1, size=(1, 3, h, w)).astype(np.float32)
        for _ in range(10):
            sess.run(None, {input_name: x})
        times = []
        for _ in range(RUNS):
            t = time.perf_counter()
            sess.run(None, {input_name: x})
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        print(f"{name}\t{statistics.median(times):.2f}\t{times[int(len(times) * 0.9)]:.2f}")


if __name__ == "__main__":
    main()
