#!/usr/bin/env python3
"""The common Python camera pipeline, as the peer of `make bench-scale`: OpenCV's VideoCapture
reads every frame of the clip (grab(): demux + decode, which it cannot skip for non-key frames),
one frame per detection interval (default 2 s of video time) is retrieved, letterboxed and run
through YOLOX-Nano with ONNX Runtime's Python API (one intra-op thread), and its output decoded
and NMS-filtered; as fast as the machine allows. Prints the process's CPU time (user + system,
all threads) per minute of video: CPU-s per camera-minute.

    $STREETWATCH_CACHE/py/bin/python3 scripts/peer_pipeline.py --clip out/bench/camera-1080p.mp4

Pre- and postprocessing follow the shared assets' MANIFEST.md (section 1.1) and the YOLOX ONNX
demo: BGR, float32 0-255 without mean/std; r = min(416/h, 416/w), bilinear resize to
(int(w*r), int(h*r)) pasted top-left on a 416x416 canvas of 114; HWC -> CHW; per anchor
[tx, ty, tw, th, obj, cls...] with strides 8/16/32, score = obj * cls, boxes / r, NMS IoU 0.45,
score 0.3. OpenCV keeps its default thread settings, as a typical deployment does.

The last line is machine-readable: `peer: cpu_s=... video_s=... cpu_s_per_camera_minute=...`.
Needs cv2 (python3-opencv), numpy and onnxruntime (scripts/setup.sh makes $STREETWATCH_CACHE/py).
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 416
STRIDES = (8, 16, 32)
NMS_IOU = 0.45
SCORE = 0.3


def find_model():
    rel = "models/yolox_nano.onnx"
    cache = os.environ.get("STREETWATCH_CACHE") or os.path.join(ROOT, ".cache")
    for root in (os.path.join(cache, "assets"), os.environ.get("STREETWATCH_ASSETS", "")):
        p = os.path.join(root, rel)
        if root and os.path.isfile(p):
            return p
    sys.exit(f"peer_pipeline.py: {rel} not found: run `make setup` or set STREETWATCH_ASSETS")


def grids():
    """Anchor cell offsets and strides, in the model's output order (level by level, row-major)."""
    cells, strides = [], []
    for s in STRIDES:
        n = SIZE // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        cells.append(np.stack((xs, ys), axis=2).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def preprocess(frame):
    h, w = frame.shape[:2]
    r = min(SIZE / h, SIZE / w)
    resized = cv2.resize(frame, (int(w * r), int(h * r)), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((SIZE, SIZE, 3), 114, dtype=np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    x = canvas.transpose(2, 0, 1)[None].astype(np.float32)
    return np.ascontiguousarray(x), r


def nms(boxes, scores, iou):
    order = scores.argsort()[::-1]
    keep = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        o = inter / (area[i] + area[order[1:]] - inter + 1e-9)
        order = order[1:][o <= iou]
    return keep


def postprocess(out, r, cells, strides):
    """Class-aware NMS, as the YOLOX demo's multiclass_nms: [x1, y1, x2, y2, score, class]."""
    p = out[0]
    xy = (p[:, :2] + cells) * strides
    wh = np.exp(p[:, 2:4]) * strides
    boxes = np.concatenate((xy - wh / 2, xy + wh / 2), axis=1) / r
    scores = p[:, 4:5] * p[:, 5:]
    cls = scores.argmax(1)
    best = scores[np.arange(len(cls)), cls]
    m = best > SCORE
    boxes, best, cls = boxes[m], best[m], cls[m]
    dets = []
    for c in np.unique(cls):
        idx = np.nonzero(cls == c)[0]
        for k in nms(boxes[idx], best[idx], NMS_IOU):
            j = idx[k]
            dets.append((*boxes[j], best[j], int(c)))
    return dets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", required=True, help="H.264 clip (the 1080p25 benchmark camera)")
    ap.add_argument("--every", type=float, default=2.0, help="seconds of video between detections")
    ap.add_argument("--plays", type=int, default=1, help="read the clip this many times")
    args = ap.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(find_model(), opts, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    cells, strides = grids()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    frames = detected = objects = 0
    video_s = 0.0
    for _ in range(args.plays):
        cap = cv2.VideoCapture(args.clip)
        if not cap.isOpened():
            sys.exit(f"peer_pipeline.py: OpenCV cannot open {args.clip}")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        n, next_t = 0, 0.0
        while cap.grab():
            t = n / fps
            n += 1
            if t + 1e-6 < next_t:
                continue
            next_t += args.every
            ok, frame = cap.retrieve()
            if not ok:
                continue
            x, r = preprocess(frame)
            dets = postprocess(sess.run(None, {input_name: x})[0], r, cells, strides)
            detected += 1
            objects += len(dets)
        cap.release()
        frames += n
        video_s += n / fps
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    if video_s <= 0:
        sys.exit(f"peer_pipeline.py: no frames read from {args.clip}")
    per_min = cpu / (video_s / 60)
    print(
        f"peer (OpenCV {cv2.__version__} decode of every frame + ONNX Runtime {ort.__version__}, "
        f"1 thread, 1 detection / {args.every:g} s): {frames} frames, {detected} detected "
        f"({objects / max(detected, 1):.1f} objects each), {video_s:.0f} s of video in "
        f"{wall:.1f} s, {cpu:.2f} CPU-s = {per_min:.2f} CPU-s per camera-minute"
    )
    print(
        f"peer: cpu_s={cpu:.3f} wall_s={wall:.3f} video_s={video_s:.2f} frames={frames} "
        f"detections={detected} cpu_s_per_camera_minute={per_min:.3f}"
    )


if __name__ == "__main__":
    main()
