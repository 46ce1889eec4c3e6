#!/usr/bin/env python3
"""Writes the tiny ONNX test models for the `yolo` and `detr` decoders (and one hostile
FastestDet-shaped graph) into tests/models/.

Requirements: python3 with the `onnx` and `numpy` packages from PyPI
(`pip install onnx numpy`). The generated files are committed, so building and testing the
crate needs neither; run this script only to change the test models:

    python3 scripts/make_test_models.py

No permissively licensed YOLO (Ultralytics, AGPL) or DETR-family model is at hand, so each model
here is a graph whose outputs are constants: we know exactly which boxes they encode, and
tests/decoders.rs checks that the decoders return exactly those boxes. Every graph has one float
input `images` [1, 3, 64, 64] (NCHW) whose values do not matter; each output is
`Add(constant, Mul(ReduceSum(images), 0))` so that it depends on the input. Everything is
deterministic (fixed numbers, no randomness): running the script again gives the same bytes.

For each model NAME the script writes:
  tests/models/NAME.onnx            the graph
  tests/models/NAME.toml            its manifest (`file` is relative to tests/models/;
                                    the test makes it absolute)
  tests/models/NAME.expected.json   the detections the decoder must return: label, class id,
                                    score and box (xyxy in input pixels, which are frame pixels
                                    for a 64x64 frame stretched to the 64x64 input), plus the
                                    encoded rows that must NOT come out and why

Labels (3): 0 stall, 1 tricycle_cart, 2 garbage_bag. Score threshold 0.25, NMS IoU 0.45.

The encoded boxes (input pixels, centre x, centre y, width, height -> x1, y1, x2, y2):

  yolo_v8        [1, 7, 84] channels first (84 = 8x8 + 4x4 + 2x2 grid cells of strides
                 8/16/32), rows: cx, cy, w, h, 3 class probabilities; no labels in the manifest,
                 they come from the ONNX metadata `names` (as Ultralytics exports it).
    row  0  stall          (20, 18, 24, 16) -> ( 8, 10, 32, 26)  0.90  kept
    row 11  stall          (22, 19, 24, 16) -> (10, 11, 34, 27)  0.60  suppressed by NMS
                                              (same class as row 0, IoU 0.75)
    row 30  tricycle_cart  (44, 44, 20, 24) -> (34, 32, 54, 56)  0.80  kept
    row 47  garbage_bag    (46, 46, 20, 20) -> (36, 36, 56, 56)  0.70  kept (overlaps row 30,
                                              IoU 0.69, but another class)
    row 83  garbage_bag    (12, 52,  8,  8) -> ( 8, 48, 16, 56)  0.35  kept
    row 64  tricycle_cart  (52, 14, 12,  8) -> (46, 10, 58, 18)  0.55  kept; its stall score
                                              0.30 also passes but one class per row (the best)
    row 20  tricycle_cart  (50, 30, 10, 10)                      0.20  below threshold
    row 72  stall          (30, 50, 10, 10)  scores 0.20/0.15/0.18   below threshold (the best
                                              counts, not the sum)
    other rows: class scores below 0.1
  yolo_v8_rows   the same numbers transposed, [1, 84, 7]; labels in the manifest.
  yolo_v5        [1, 252, 8] (3 anchors per cell), rows: cx, cy, w, h, objectness, 3 class
                 probabilities; score = objectness x class. The same boxes as yolo_v8 with
    row   0  obj 1.00 x stall 0.90          = 0.90   kept
    row  11  obj 0.80 x stall 0.90          = 0.72   suppressed by NMS (row 0)
    row  30  obj 0.95 x tricycle_cart 0.80  = 0.76   kept
    row  47  obj 0.90 x garbage_bag 0.70    = 0.63   kept
    row 251  obj 0.50 x garbage_bag 0.70    = 0.35   kept
    row 100  obj 0.90 x tricycle_cart 0.55  = 0.495  kept (box of yolo_v8 row 64)
    row 120  obj 0.30 x stall 0.80          = 0.24   below threshold (class alone passes)
    row 200  obj 0.10 x garbage_bag 0.99    = 0.099  below threshold
  detr_logits    `pred_logits` [1, 10, 3] raw logits (a sigmoid applies), then `pred_boxes`
                 [1, 10, 4] centre/size as fractions of the input; no NMS (one box per object).
    query 0  stall          (.25, .25, .375, .25)        -> ( 4,  8, 28, 24)  sig(2.0)  0.8808
    query 3  tricycle_cart  (.6875, .6875, .3125, .375)  -> (34, 32, 54, 56)  sig(1.5)  0.8176
    query 5  garbage_bag    (.71875, .71875, .3125, .3125) -> (36, 36, 56, 56) sig(0.5) 0.6225
    query 6  garbage_bag    (.734375, .71875, .3125, .3125) -> (37, 36, 57, 56) sig(0)  0.5
                            (overlaps query 5, same class: both kept, DETR has no NMS)
    query 9  stall          (.1875, .8125, .125, .125)   -> ( 8, 48, 16, 56)  sig(-0.5) 0.3775
                            (the raw logit is below the threshold, its sigmoid is not)
    query 1  tricycle_cart  logit -1.5, sig 0.18: below threshold; other queries logit <= -3
  detr_labels_scores  `labels` int64 [1, 10], `boxes` [1, 10, 4] corners in input pixels,
                 `scores` [1, 10]; the manifest sets box_format = "xyxy", box_units = "pixels".
    query 0  stall          ( 4,  8, 28, 24)  0.91
    query 2  tricycle_cart  (34, 32, 54, 56)  0.83
    query 5  garbage_bag    (36, 36, 56, 56)  0.64
    query 7  garbage_bag    ( 8, 48, 16, 56)  0.26
    query 8  tricycle_cart  (40,  4, 60, 20)  0.24  below threshold
    query 9  label 5 (no such label)          0.95  dropped
    other queries: stall at scores <= 0.05
  detr_combined  one output [1, 10, 7]: centre/size fractions then 3 class probabilities
                 (Ultralytics RT-DETR); the manifest sets label_thresholds.garbage_bag = 0.5.
    query 1  tricycle_cart  (.6875, .6875, .3125, .375)  -> (34, 32, 54, 56)  0.85
    query 4  stall          (.25, .25, .375, .25)        -> ( 4,  8, 28, 24)  0.75
    query 6  garbage_bag    (.71875, .71875, .3125, .3125) -> (36, 36, 56, 56) 0.55
    query 9  stall          (.1875, .8125, .125, .125)   -> ( 8, 48, 16, 56)  0.30
    query 7  garbage_bag    (.5, .25, .25, .25)          0.45  below its own threshold 0.5
    query 2  stall                                       0.20  below threshold
  no_layout      one output `logits` [1, 10] (an image classifier by mistake): fits no layout,
                 for the manifest error test.
"""
  fastestdet_dyn [1, 10, 4, 4] at run time, declared [1, "channels", 4, 4] (a Reshape by a
                 shape computed at run time hides it from shape inference): two channels more
                 than the 3 labels, so every inference must be refused for that frame.

import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "models")

LABELS = ["stall", "tricycle_cart", "garbage_bag"]
NAMES_METADATA = "{0: 'stall', 1: 'tricycle_cart', 2: 'garbage_bag'}"
SIZE = 64
THRESHOLD = 0.25
NMS_IOU = 0.45
CELLS = (SIZE // 8) ** 2 + (SIZE // 16) ** 2 + (SIZE // 32) ** 2  # 84
QUERIES = 10

f32 = np.float32


def sigmoid32(x):
    x = f32(x)
    return f32(1.0) / (f32(1.0) + np.exp(-x, dtype=np.float32))


def xyxy(cx, cy, w, h):
    cx, cy, w, h = (f32(v) for v in (cx, cy, w, h))
    two = f32(2.0)
    return [float(cx - w / two), float(cy - h / two), float(cx + w / two), float(cy + h / two)]


def det(class_id, score, box, source):
    return {
        "label": LABELS[class_id],
        "class_id": class_id,
        "score": float(f32(score)),
        "box": box,
        "source": source,
    }


# ---------------------------------------------------------------------------------------------
# The graph: constants that depend on the input through Mul(ReduceSum(images), 0).


def build_model(name, outputs, metadata=None):
    """outputs: list of (name, numpy array float32 or int64)."""
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["images_sum"], keepdims=0, name="sum"),
        helper.make_node(
            "Constant", [], ["zero_f"], value=numpy_helper.from_array(np.array(0.0, f32), "zero_f"),
            name="zero_const",
        ),
        helper.make_node("Mul", ["images_sum", "zero_f"], ["zero"], name="times_zero"),
    ]
    if any(a.dtype == np.int64 for _, a in outputs):
        nodes.append(helper.make_node("Cast", ["zero"], ["zero_i64"], to=TensorProto.INT64,
                                      name="zero_to_int"))
    graph_outputs = []
    for out_name, array in outputs:
        integer = array.dtype == np.int64
        value = f"{out_name}_value"
        nodes.append(helper.make_node(
            "Constant", [], [value], value=numpy_helper.from_array(array, value),
            name=f"{out_name}_const",
        ))
        nodes.append(helper.make_node(
            "Add", [value, "zero_i64" if integer else "zero"], [out_name], name=f"{out_name}_add",
        ))
        graph_outputs.append(helper.make_tensor_value_info(
            out_name, TensorProto.INT64 if integer else TensorProto.FLOAT, list(array.shape),
        ))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        graph_outputs,
    )
    model = helper.make_model(
        graph,
        producer_name="streetwatch scripts/make_test_models.py",
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 7
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def manifest(name, description, layout, labels, extra="", decode=""):
    lines = [
        f"# Generated by scripts/make_test_models.py: {description}",
        "# `file` is relative to this folder; tests/decoders.rs makes it absolute.",
        f'name = "{name}"',
        f'description = "{description}"',
        f'file = "{name}.onnx"',
        'license = "Apache-2.0 (streetwatch test data, generated)"',
        f'layout = "{layout}"',
    ]
    if labels:
        lines.append("labels = [" + ", ".join(f'"{l}"' for l in labels) + "]")
    lines += [f"score_threshold = {THRESHOLD}", f"nms_iou = {NMS_IOU}"]
    if extra:
        lines.append(extra)
    lines += [
        "",
        "[input]",
        'name = "images"',
        f"size = [{SIZE}, {SIZE}]",
        'color = "rgb"',
        'resize = "stretch"',
    ]
    if decode:
        lines += ["", "[decode]", decode]
    return "\n".join(lines) + "\n"


def write(name, model, manifest_text, expected=None):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f"{name}.onnx"), "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    with open(os.path.join(OUT, f"{name}.toml"), "w") as f:
        f.write(manifest_text)
    if expected is not None:
        with open(os.path.join(OUT, f"{name}.expected.json"), "w") as f:
            json.dump(expected, f, indent=2)
            f.write("\n")
    print(f"wrote tests/models/{name}.*")


def expected_doc(name, layout, detections, rejected):
    return {
        "model": name,
        "layout": layout,
        "input": [SIZE, SIZE],
        "labels": LABELS,
        "score_threshold": THRESHOLD,
        "nms_iou": NMS_IOU,
        "detections": sorted(detections, key=lambda d: -d["score"]),
        "must_not_appear": rejected,
    }


# ---------------------------------------------------------------------------------------------
# YOLO: rows of (cx, cy, w, h, [obj], classes...).

# (row, box cxcywh, class scores) of the v8 rows that matter.
YOLO_ROWS = [
    (0, (20, 18, 24, 16), (0.90, 0.05, 0.02)),
    (11, (22, 19, 24, 16), (0.60, 0.10, 0.05)),
    (30, (44, 44, 20, 24), (0.03, 0.80, 0.10)),
    (47, (46, 46, 20, 20), (0.05, 0.10, 0.70)),
    (83, (12, 52, 8, 8), (0.01, 0.02, 0.35)),
    (64, (52, 14, 12, 8), (0.30, 0.55, 0.05)),
    (20, (50, 30, 10, 10), (0.05, 0.20, 0.01)),
    (72, (30, 50, 10, 10), (0.20, 0.15, 0.18)),
]
YOLO_KEPT = {0, 30, 47, 83, 64}
YOLO_REJECTED = [
    {"row": 11, "why": "stall 0.60 overlaps row 0 (stall 0.90) with IoU 0.75 > 0.45: NMS"},
    {"row": 64, "label": "stall", "why": "0.30 passes, but a row gives only its best class "
     "(it comes out as tricycle_cart 0.55)"},
    {"row": 20, "why": "tricycle_cart 0.20 < 0.25"},
    {"row": 72, "why": "best class stall 0.20 < 0.25 (the scores sum to 0.53)"},
]


def background(n, width):
    """Deterministic filler rows: boxes somewhere, every class score below 0.1."""
    rows = np.zeros((n, width), f32)
    for i in range(n):
        rows[i, 0] = 4 + (i * 7) % 56
        rows[i, 1] = 4 + (i * 11) % 56
        rows[i, 2] = 4 + i % 9
        rows[i, 3] = 4 + i % 5
        for k in range(4, width):
            rows[i, k] = 0.01 * ((i + 3 * k) % 10)  # 0 .. 0.09
    return rows


def yolo_v8_rows():
    rows = background(CELLS, 7)
    for r, box, cls in YOLO_ROWS:
        rows[r] = [*box, *cls]
    dets = []
    for r, box, cls in YOLO_ROWS:
        if r in YOLO_KEPT:
            c = int(np.argmax(cls))
            dets.append(det(c, cls[c], xyxy(*box), f"row {r}"))
    return rows, dets


def make_yolo_v8():
    rows, dets = yolo_v8_rows()
    channels_first = rows.T.reshape(1, 7, CELLS).copy()
    model = build_model("yolo_v8", [("output0", channels_first)],
                        metadata={"names": NAMES_METADATA, "stride": "32", "task": "detect"})
    write(
        "yolo_v8",
        model,
        manifest("yolo_v8", "YOLOv8-style [1, 4 + 3, 84] channels first, labels from ONNX metadata",
                 "yolo", None),
        expected_doc("yolo_v8", "yolo", dets, YOLO_REJECTED),
    )


def make_yolo_v8_rows():
    rows, dets = yolo_v8_rows()
    model = build_model("yolo_v8_rows", [("output0", rows.reshape(1, CELLS, 7).copy())])
    write(
        "yolo_v8_rows",
        model,
        manifest("yolo_v8_rows", "YOLOv8-style transposed [1, 84, 4 + 3]", "yolo", LABELS),
        expected_doc("yolo_v8_rows", "yolo", dets, YOLO_REJECTED),
    )


# (row, box cxcywh, objectness, class scores)
YOLO_V5_ROWS = [
    (0, (20, 18, 24, 16), 1.00, (0.90, 0.05, 0.02)),
    (11, (22, 19, 24, 16), 0.80, (0.90, 0.10, 0.05)),
    (30, (44, 44, 20, 24), 0.95, (0.03, 0.80, 0.10)),
    (47, (46, 46, 20, 20), 0.90, (0.05, 0.10, 0.70)),
    (251, (12, 52, 8, 8), 0.50, (0.01, 0.02, 0.70)),
    (100, (52, 14, 12, 8), 0.90, (0.30, 0.55, 0.05)),
    (120, (30, 50, 10, 10), 0.30, (0.80, 0.10, 0.05)),
    (200, (50, 30, 10, 10), 0.10, (0.00, 0.00, 0.99)),
]
YOLO_V5_KEPT = {0, 30, 47, 251, 100}
YOLO_V5_REJECTED = [
    {"row": 11, "why": "0.80 x stall 0.90 = 0.72 overlaps row 0 (0.90) with IoU 0.75: NMS"},
    {"row": 120, "why": "0.30 x stall 0.80 = 0.24 < 0.25 (the class score alone passes)"},
    {"row": 200, "why": "objectness 0.10 x garbage_bag 0.99 = 0.099 < 0.25"},
]


def make_yolo_v5():
    n = 3 * CELLS
    rows = background(n, 8)
    rows[:, 4] = 0.5  # objectness of the filler: their class scores stay below threshold
    dets = []
    for r, box, obj, cls in YOLO_V5_ROWS:
        rows[r] = [*box, obj, *cls]
        if r in YOLO_V5_KEPT:
            c = int(np.argmax(cls))
            dets.append(det(c, f32(obj) * f32(cls[c]), xyxy(*box), f"row {r}"))
    model = build_model("yolo_v5", [("output0", rows.reshape(1, n, 8).copy())])
    write(
        "yolo_v5",
        model,
        manifest("yolo_v5", "YOLOv5-style [1, 3 x 84, 5 + 3] with objectness", "yolo", LABELS),
        expected_doc("yolo_v5", "yolo", dets, YOLO_V5_REJECTED),
    )


# ---------------------------------------------------------------------------------------------
# DETR: Q = 10 queries.


def norm_box(cx, cy, w, h):
    """Fractions of the input -> xyxy input pixels (all values are k/64: exact in float32)."""
    return xyxy(f32(cx) * SIZE, f32(cy) * SIZE, f32(w) * SIZE, f32(h) * SIZE)


def detr_filler_boxes():
    boxes = np.zeros((QUERIES, 4), f32)
    for q in range(QUERIES):
        boxes[q] = [0.125 + 0.0625 * (q % 8), 0.5, 0.125, 0.0625 * (1 + q % 3)]
    return boxes


# (query, box cxcywh fractions, class, logit)
DETR_LOGIT_QUERIES = [
    (0, (0.25, 0.25, 0.375, 0.25), 0, 2.0),
    (3, (0.6875, 0.6875, 0.3125, 0.375), 1, 1.5),
    (5, (0.71875, 0.71875, 0.3125, 0.3125), 2, 0.5),
    (6, (0.734375, 0.71875, 0.3125, 0.3125), 2, 0.0),
    (9, (0.1875, 0.8125, 0.125, 0.125), 0, -0.5),
    (1, (0.5, 0.125, 0.25, 0.125), 1, -1.5),
]


def make_detr_logits():
    boxes = detr_filler_boxes()
    logits = np.full((QUERIES, 3), -4.0, f32)
    for q in range(QUERIES):
        logits[q, q % 3] = -3.0
    dets = []
    for q, box, c, logit in DETR_LOGIT_QUERIES:
        boxes[q] = box
        logits[q] = -5.0
        logits[q, c] = logit
        score = sigmoid32(logit)
        if score >= THRESHOLD:
            dets.append(det(c, score, norm_box(*box), f"query {q}"))
    # Logits first, as Hugging Face's RT-DETR export orders them: the boxes are output 1.
    model = build_model("detr_logits", [
        ("pred_logits", logits.reshape(1, QUERIES, 3).copy()),
        ("pred_boxes", boxes.reshape(1, QUERIES, 4).copy()),
    ])
    write(
        "detr_logits",
        model,
        manifest("detr_logits", "DETR-style pred_logits [1, 10, 3] + pred_boxes [1, 10, 4] "
                 "cxcywh normalized", "detr", LABELS),
        expected_doc("detr_logits", "detr", dets, [
            {"query": 1, "why": "tricycle_cart sigmoid(-1.5) = 0.18 < 0.25"},
            {"query": "others", "why": "logits <= -3, sigmoid < 0.05"},
        ]),
    )


# (query, box xyxy pixels, label, score)
DETR_LS_QUERIES = [
    (0, (4, 8, 28, 24), 0, 0.91),
    (2, (34, 32, 54, 56), 1, 0.83),
    (5, (36, 36, 56, 56), 2, 0.64),
    (7, (8, 48, 16, 56), 2, 0.26),
    (8, (40, 4, 60, 20), 1, 0.24),
    (9, (20, 20, 40, 40), 5, 0.95),
]


def make_detr_labels_scores():
    labels = np.zeros(QUERIES, np.int64)
    boxes = np.zeros((QUERIES, 4), f32)
    scores = np.zeros(QUERIES, f32)
    for q in range(QUERIES):
        boxes[q] = [2 * q, 2 * q, 2 * q + 10, 2 * q + 6]
        scores[q] = 0.01 * (1 + q % 5)  # 0.01 .. 0.05
    dets = []
    for q, box, label, score in DETR_LS_QUERIES:
        labels[q], boxes[q], scores[q] = label, box, score
        if label < len(LABELS) and f32(score) >= THRESHOLD:
            dets.append(det(label, score, [float(v) for v in box], f"query {q}"))
    model = build_model("detr_labels_scores", [
        ("labels", labels.reshape(1, QUERIES).copy()),
        ("boxes", boxes.reshape(1, QUERIES, 4).copy()),
        ("scores", scores.reshape(1, QUERIES).copy()),
    ])
    write(
        "detr_labels_scores",
        model,
        manifest("detr_labels_scores", "DETR-style labels int64 [1, 10] + boxes [1, 10, 4] xyxy "
                 "pixels + scores [1, 10]", "detr", LABELS,
                 decode='box_format = "xyxy"\nbox_units = "pixels"'),
        expected_doc("detr_labels_scores", "detr", dets, [
            {"query": 8, "why": "tricycle_cart 0.24 < 0.25"},
            {"query": 9, "why": "label 5: the model names only 3 labels"},
            {"query": "others", "why": "scores <= 0.05"},
        ]),
    )


# (query, box cxcywh fractions, class probabilities)
DETR_COMBINED_QUERIES = [
    (1, (0.6875, 0.6875, 0.3125, 0.375), (0.05, 0.85, 0.10)),
    (4, (0.25, 0.25, 0.375, 0.25), (0.75, 0.05, 0.01)),
    (6, (0.71875, 0.71875, 0.3125, 0.3125), (0.02, 0.30, 0.55)),
    (9, (0.1875, 0.8125, 0.125, 0.125), (0.30, 0.01, 0.02)),
    (7, (0.5, 0.25, 0.25, 0.25), (0.10, 0.05, 0.45)),
    (2, (0.5, 0.5, 0.25, 0.25), (0.20, 0.10, 0.05)),
]
GARBAGE_THRESHOLD = 0.5


def make_detr_combined():
    boxes = detr_filler_boxes()
    probs = np.zeros((QUERIES, 3), f32)
    for q in range(QUERIES):
        probs[q] = [0.01 * (1 + q % 4), 0.02, 0.03]
    dets = []
    for q, box, p in DETR_COMBINED_QUERIES:
        boxes[q], probs[q] = box, p
        c = int(np.argmax(p))
        threshold = GARBAGE_THRESHOLD if LABELS[c] == "garbage_bag" else THRESHOLD
        if f32(p[c]) >= threshold:
            dets.append(det(c, p[c], norm_box(*box), f"query {q}"))
    combined = np.concatenate([boxes, probs], axis=1).reshape(1, QUERIES, 7).copy()
    model = build_model("detr_combined", [("output0", combined)])
    write(
        "detr_combined",
        model,
        manifest("detr_combined", "RT-DETR-style one output [1, 10, 4 + 3] cxcywh normalized + "
                 "probabilities", "detr", LABELS,
                 extra=f"label_thresholds = {{ garbage_bag = {GARBAGE_THRESHOLD} }}"),
        expected_doc("detr_combined", "detr", dets, [
            {"query": 7, "why": "garbage_bag 0.45 < its own threshold 0.5"},
            {"query": 2, "why": "stall 0.20 < 0.25"},
            {"query": "others", "why": "probabilities <= 0.04"},
        ]),
    )


def make_no_layout():
    logits = np.linspace(-1.0, 1.0, 10, dtype=f32).reshape(1, 10)
    model = build_model("no_layout", [("logits", logits)])
    write(
        "no_layout",
        model,
        manifest("no_layout", "an image classifier's [1, 10] output: fits no detection layout",
                 "auto", LABELS),
    )


def make_fastestdet_dyn():
    # A FastestDet-shaped output whose channel axis is dynamic: the values are reshaped by a
    # shape computed at run time (from the input, times zero), so neither the declared shape
    # nor ONNX Runtime's shape inference knows it and the plan accepts it at load. Each run
    # gives 5 + 5 channels for the manifest's 3 labels, and cell 0's best class is the 5th: a
    # decoder that trusted the data would look up a label past the end (it used to panic).
    out = np.zeros((1, 10, 4, 4), dtype=f32)
    out[0, 0, :, :] = 0.9  # objectness
    out[0, 5 + 4, 0, 0] = 0.95  # class 4 of 3
    shape = np.array(out.shape, dtype=f32)
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["images_sum"], keepdims=0, name="sum"),
        helper.make_node("Constant", [], ["zero_f"],
                         value=numpy_helper.from_array(np.array(0.0, f32), "zero_f"), name="zero_const"),
        helper.make_node("Mul", ["images_sum", "zero_f"], ["zero"], name="times_zero"),
        helper.make_node("Constant", [], ["flat"],
                         value=numpy_helper.from_array(out.reshape(-1), "flat"), name="flat_const"),
        helper.make_node("Constant", [], ["shape_f"],
                         value=numpy_helper.from_array(shape, "shape_f"), name="shape_const"),
        helper.make_node("Add", ["shape_f", "zero"], ["shape_run"], name="shape_at_run_time"),
        helper.make_node("Cast", ["shape_run"], ["shape_i64"], to=TensorProto.INT64, name="shape_cast"),
        helper.make_node("Reshape", ["flat", "shape_i64"], ["758"], name="reshape"),
    ]
    graph = helper.make_graph(
        nodes,
        "fastestdet_dyn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("758", TensorProto.FLOAT, [1, "channels", 4, 4])],
    )
    model = helper.make_model(
        graph,
        producer_name="streetwatch scripts/make_test_models.py",
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    write(
        "fastestdet_dyn",
        model,
        manifest("fastestdet_dyn", "a FastestDet-shaped graph with a dynamic channel axis that "
                 "gives two channels more than its labels", "fastestdet", LABELS),
    )


def main():
    make_yolo_v8()
    make_yolo_v8_rows()
    make_yolo_v5()
    make_detr_logits()
    make_detr_labels_scores()
    make_detr_combined()
    make_no_layout()
    make_fastestdet_dyn()


if __name__ == "__main__":
    main()
