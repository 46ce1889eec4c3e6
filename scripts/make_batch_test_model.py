#!/usr/bin/env python3
"""Writes tests/models/yolo_v8_dynbatch.onnx: a tiny graph with a DYNAMIC batch axis for the test
of batched inference across cameras (tests/batching.rs).

Requirements: python3 with `onnx` and `numpy` (`pip install onnx numpy`); the generated file is
committed, so the tests need neither.

Input `images` float32 [batch, 3, 64, 64]; output `output0` [batch, 7, 84] in the Ultralytics
YOLO v8 layout (channels first; 84 = grid cells of a 64x64 input over strides 8/16/32). Every row
is zero except row 0, a `stall` (class 0, probability 0.9) centred at (32, 32) whose width and
height are 8 + 40 * m, where m is the mean of THAT batch item's input. With the manifest's
normalization (x / 255):

    frame all 0    -> m = 0.0 -> box 8 x 8   -> (28, 28, 36, 36)
    frame all 255  -> m = 1.0 -> box 48 x 48 -> ( 8,  8, 56, 56)
    frame all 128  -> m = 128/255 -> 8 + 40 * 0.50196 = 28.078 wide

So each camera's answer shows whether the batch was split back to the right camera.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "models")


def main():
    base = np.zeros((1, 7, 84), dtype=np.float32)
    base[0, 0, 0] = 32.0  # cx
    base[0, 1, 0] = 32.0  # cy
    base[0, 2, 0] = 8.0  # w
    base[0, 3, 0] = 8.0  # h
    base[0, 4, 0] = 0.9  # stall
    scale = np.zeros((1, 7, 84), dtype=np.float32)
    scale[0, 2, 0] = 40.0
    scale[0, 3, 0] = 40.0
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Squeeze", ["m4", "sq_axes"], ["m"]),
        helper.make_node("Unsqueeze", ["m", "unsq_axes"], ["m3"]),
        helper.make_node("Mul", ["m3", "scale"], ["grow"]),
        helper.make_node("Add", ["base", "grow"], ["output0"]),
    ]
    inits = [
        numpy_helper.from_array(base, "base"),
        numpy_helper.from_array(scale, "scale"),
        numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "sq_axes"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "unsq_axes"),
    ]
    graph = helper.make_graph(
        nodes,
        "yolo_v8_dynbatch",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 7, 84])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="streetwatch")
    model.ir_version = 7
    onnx.checker.check_model(model)
    path = os.path.join(OUT, "yolo_v8_dynbatch.onnx")
    onnx.save(model, path)
    print(path)


if __name__ == "__main__":
    main()
