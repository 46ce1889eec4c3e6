#!/usr/bin/env python3
"""Reference detections: the models' own preprocessing with OpenCV, run by ONNX Runtime's Python API.

For each model the golden test covers, this runs exactly the reference pipeline that the shared
assets' MANIFEST.md (section 1) describes: `cv2.imread` (BGR, EXIF orientation applied),
`cv2.resize` with the reference's interpolation, numpy for padding and normalisation,
onnxruntime on the CPU with one thread, the reference decoder, then per-class NMS. Thresholds
and the NMS IoU come from our manifests (models/*.toml), so the lists compare with what
`streetwatch detect` reports; boxes are xyxy in original pixels, clipped to the photo.

Before that it checks itself against `models/golden/golden_outputs.json` (the same pipelines
with the golden file's thresholds, on its photo: same labels, IoU > 0.9, |score diff| < 0.03)
and exits with status 1 if it does not reproduce them.

Needs Debian's python3-opencv and python3-numpy and onnxruntime 1.32.0 from PyPI: the venv
scripts/setup.sh makes at $STREETWATCH_CACHE/py.

    STREETWATCH_ASSETS=../shared/assets .cache/py/bin/python3 scripts/reference_detections.py \
        [--models yolox-nano-coco,...] [--photos images] [--no-golden-check] > reference.json

Prints JSON {model: {photo: [{"label", "score", "bbox": [x1, y1, x2, y2]}]}}; photos are named
by their path relative to the assets root (e.g. images/amsterdam_garbage/garbage/....jpg).
"""
import argparse
import json
import os
import sys
import tomllib

import cv2
import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["yolox-nano-coco", "nanodet-m-416-coco", "picodet-s-416-coco", "fastestdet-352-coco"]
# Manifest name -> key in golden_outputs.json.
GOLDEN_KEYS = {
    "yolox-nano-coco": "yolox_nano",
    "nanodet-m-416-coco": "nanodet_m_416",
    "picodet-s-416-coco": "picodet_s_416_coco",
    "fastestdet-352-coco": "fastestdet_352",
}


def asset_roots():
    cache = os.environ.get("STREETWATCH_CACHE") or os.path.join(ROOT, ".cache")
    roots = [os.path.join(cache, "assets")]
    if os.environ.get("STREETWATCH_ASSETS"):
        roots.append(os.environ["STREETWATCH_ASSETS"])
    return roots


def find(rel):
    """An asset by its path relative to the assets root: the cache first, as streetwatch does."""
    for root in asset_roots():
        p = os.path.join(root, rel)
        if os.path.isfile(p):
            return p
    sys.exit(f"reference_detections: {rel} not found in {asset_roots()}: run `make setup` or set STREETWATCH_ASSETS")


def photos(folder):
    """Every JPEG/PNG under `folder` (relative to the assets root) in any root, sorted."""
    found = set()
    for root in asset_roots():
        base = os.path.join(root, folder)
        for dirpath, _, files in os.walk(base):
            for f in files:
                if f.lower().endswith((".jpg", ".jpeg", ".png")):
                    found.add(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(found)


# --- Preprocessing (MANIFEST.md 1.1-1.4); each returns the NCHW tensor and how boxes map back:
# frame = (input - offset) / scale.


def letterbox(img, size, interpolation, pad, centered):
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nw, nh = int(w * r), int(h * r)
    resized = cv2.resize(img, (nw, nh), interpolation=interpolation)
    ox, oy = ((size - nw) // 2, (size - nh) // 2) if centered else (0, 0)
    canvas = np.full((size, size, 3), pad, dtype=np.uint8)
    canvas[oy : oy + nh, ox : ox + nw] = resized
    return canvas, (r, r, ox, oy)


def prep_yolox(bgr):
    # BGR 0-255, INTER_LINEAR keep-ratio resize pasted top-left on 114, no normalisation.
    canvas, t = letterbox(bgr, 416, cv2.INTER_LINEAR, 114, centered=False)
    return canvas.transpose(2, 0, 1)[None].astype(np.float32), t


def prep_nanodet(bgr):
    # BGR, INTER_AREA keep-ratio resize centred on 0, (x - mean) / std in BGR order.
    canvas, t = letterbox(bgr, 416, cv2.INTER_AREA, 0, centered=True)
    mean = np.array([103.53, 116.28, 123.675], dtype=np.float32)
    std = np.array([57.375, 57.12, 58.395], dtype=np.float32)
    x = (canvas.astype(np.float32) - mean) / std
    return x.transpose(2, 0, 1)[None].astype(np.float32), t


def prep_picodet(bgr):
    # RGB, INTER_CUBIC stretch to 416x416, /255, ImageNet mean/std.
    h, w = bgr.shape[:2]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (416, 416), interpolation=cv2.INTER_CUBIC)
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    x = (resized.astype(np.float32) / 255.0 - mean) / std
    return x.transpose(2, 0, 1)[None].astype(np.float32), (416 / w, 416 / h, 0, 0)


def prep_fastestdet(bgr):
    # BGR, INTER_AREA stretch to 352x352, /255.
    h, w = bgr.shape[:2]
    resized = cv2.resize(bgr, (352, 352), interpolation=cv2.INTER_AREA)
    x = resized.astype(np.float32) / 255.0
    return x.transpose(2, 0, 1)[None].astype(np.float32), (352 / w, 352 / h, 0, 0)


# --- Decoders: candidates (class, score, [x1, y1, x2, y2] in input pixels).


def decode_yolox(outs, names, thresholds):
    rows = outs[0][0]  # [3549, 85]
    cands = []
    i = 0
    for s in (8, 16, 32):
        g = 416 // s
        n = g * g
        r = rows[i : i + n]
        i += n
        gy, gx = np.divmod(np.arange(n), g)
        cx = (r[:, 0] + gx) * s
        cy = (r[:, 1] + gy) * s
        w = np.exp(r[:, 2]) * s
        h = np.exp(r[:, 3]) * s
        scores = r[:, 4:5] * r[:, 5:]  # obj * cls, every class
        for a, c in zip(*np.nonzero(scores >= thresholds[None, :])):
            box = [cx[a] - w[a] / 2, cy[a] - h[a] / 2, cx[a] + w[a] / 2, cy[a] + h[a] / 2]
            cands.append((int(c), float(scores[a, c]), box))
    return cands


def softmax_expectation(d):
    e = np.exp(d - d.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return (p * np.arange(d.shape[-1])).sum(axis=-1)


def decode_gfl(levels, thresholds, center):
    """levels: (stride, scores [N, C], distributions [N, 32]); center(x, stride) -> pixels."""
    cands = []
    for s, cls, dis in levels:
        g = -(-416 // s)
        n = cls.shape[0]
        gy, gx = np.divmod(np.arange(n), g)
        cx, cy = center(gx, s), center(gy, s)
        dist = softmax_expectation(dis.reshape(n, 4, -1)) * s  # left, top, right, bottom
        for a, c in zip(*np.nonzero(cls >= thresholds[None, :])):
            box = [cx[a] - dist[a, 0], cy[a] - dist[a, 1], cx[a] + dist[a, 2], cy[a] + dist[a, 3]]
            cands.append((int(c), float(cls[a, c]), box))
    return cands


def decode_nanodet(outs, names, thresholds):
    by = dict(zip(names, outs))
    levels = [(s, by[f"cls_pred_stride_{s}"][0], by[f"dis_pred_stride_{s}"][0]) for s in (8, 16, 32)]
    return decode_gfl(levels, thresholds, lambda x, s: x * s + 0.5 * (s - 1))


def decode_picodet(outs, names, thresholds):
    by = dict(zip(names, outs))
    levels = [
        (s, by[f"save_infer_model/scale_{k}.tmp_1"][0], by[f"save_infer_model/scale_{k + 4}.tmp_1"][0])
        for k, s in enumerate((8, 16, 32, 64))
    ]
    return decode_gfl(levels, thresholds, lambda x, s: (x + 0.5) * s)


def decode_fastestdet(outs, names, thresholds):
    fm = outs[0][0]  # [85, 22, 22]
    _, gh, gw = fm.shape
    cands = []
    for row in range(gh):
        for col in range(gw):
            d = fm[:, row, col]
            c = int(np.argmax(d[5:]))
            score = float(max(d[0], 0.0) ** 0.6 * max(d[5 + c], 0.0) ** 0.4)
            if score < thresholds[c]:
                continue
            cx = (col + np.tanh(d[1])) / gw * 352
            cy = (row + np.tanh(d[2])) / gh * 352
            w = 1 / (1 + np.exp(-d[3])) * 352
            h = 1 / (1 + np.exp(-d[4])) * 352
            cands.append((c, score, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    return cands


PIPELINES = {
    "yolox-nano-coco": (prep_yolox, decode_yolox),
    "nanodet-m-416-coco": (prep_nanodet, decode_nanodet),
    "picodet-s-416-coco": (prep_picodet, decode_picodet),
    "fastestdet-352-coco": (prep_fastestdet, decode_fastestdet),
}


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(cands, threshold):
    """Per-class NMS: the best box among same-class boxes overlapping more than `threshold`."""
    kept = []
    for c in sorted(cands, key=lambda c: -c[1]):
        if not any(k[0] == c[0] and iou(k[2], c[2]) > threshold for k in kept):
            kept.append(c)
    return kept


class Model:
    def __init__(self, name):
        with open(os.path.join(ROOT, "models", f"{name}.toml"), "rb") as f:
            self.manifest = tomllib.load(f)
        with open(find(self.manifest["labels_file"])) as f:
            self.labels = [l.strip() for l in f if l.strip()]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(find(self.manifest["file"]), opts, providers=["CPUExecutionProvider"])
        self.input = self.manifest["input"]["name"]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.prep, self.decode = PIPELINES[name]

    def thresholds(self, score_threshold=None):
        """Per-class thresholds: the manifest's (label_thresholds over score_threshold) or one value."""
        if score_threshold is not None:
            return np.full(len(self.labels), score_threshold, dtype=np.float32)
        per_label = self.manifest.get("label_thresholds", {})
        default = self.manifest.get("score_threshold", 0.5)
        return np.array([per_label.get(l, default) for l in self.labels], dtype=np.float32)

    def detect(self, path, score_threshold=None):
        bgr = cv2.imread(path)
        if bgr is None:
            sys.exit(f"reference_detections: cv2.imread cannot read {path}")
        h, w = bgr.shape[:2]
        x, (sx, sy, ox, oy) = self.prep(bgr)
        outs = self.session.run(None, {self.input: x})
        cands = self.decode(outs, self.outputs, self.thresholds(score_threshold))
        found = []
        for c, score, b in nms(cands, self.manifest.get("nms_iou", 0.45)):
            x1, y1, x2, y2 = ((b[0] - ox) / sx, (b[1] - oy) / sy, (b[2] - ox) / sx, (b[3] - oy) / sy)
            box = [min(max(float(v), 0.0), lim) for v, lim in ((x1, w), (y1, h), (x2, w), (y2, h))]
            found.append({"label": self.labels[c], "score": round(score, 5), "bbox": [round(v, 2) for v in box]})
        return found


def check_golden(models):
    """Reproduces the golden file's photo detections (its thresholds); returns the problems."""
    with open(find("models/golden/golden_outputs.json")) as f:
        golden = json.load(f)
    problems = []
    for name, model in models.items():
        g = golden[GOLDEN_KEYS[name]]["image"]
        ours = model.detect(find(g["path"]), g["score_threshold"])
        ref = g["detections"]
        if sorted(d["label"] for d in ours) != sorted(d["class_name"] for d in ref):
            problems.append(f"{name}: labels {sorted(d['label'] for d in ours)} != golden {sorted(d['class_name'] for d in ref)}")
            continue
        worst_iou, worst_diff = 1.0, 0.0
        for r in ref:
            same = [d for d in ours if d["label"] == r["class_name"]]
            best = max(same, key=lambda d: iou(d["bbox"], r["box_xyxy"]))
            worst_iou = min(worst_iou, iou(best["bbox"], r["box_xyxy"]))
            worst_diff = max(worst_diff, abs(best["score"] - r["score"]))
        ok = worst_iou > 0.9 and worst_diff < 0.03
        print(f"golden {name}: {len(ref)} detections, worst IoU {worst_iou:.3f}, worst |score diff| {worst_diff:.4f}: {'ok' if ok else 'MISMATCH'}", file=sys.stderr)
        if not ok:
            problems.append(f"{name}: worst IoU {worst_iou:.3f}, worst |score diff| {worst_diff:.4f}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated manifest names")
    ap.add_argument("--photos", default="images", help="folder under the assets root")
    ap.add_argument("--no-golden-check", action="store_true", help="skip the check against golden_outputs.json")
    args = ap.parse_args()
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in PIPELINES]
    if unknown:
        sys.exit(f"reference_detections: no reference pipeline for {unknown}; known: {MODELS}")
    print(f"reference_detections: onnxruntime {ort.__version__}, OpenCV {cv2.__version__}, numpy {np.__version__}", file=sys.stderr)
    models = {n: Model(n) for n in names}
    if not args.no_golden_check:
        problems = check_golden(models)
        if problems:
            print("reference_detections: the reference pipelines do not reproduce golden_outputs.json:", file=sys.stderr)
            for p in problems:
                print(f"  {p}", file=sys.stderr)
            sys.exit(1)
    pics = photos(args.photos)
    if not pics:
        sys.exit(f"reference_detections: no photos under {args.photos} in {asset_roots()}")
    result = {n: {p: m.detect(find(p)) for p in pics} for n, m in models.items()}
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
