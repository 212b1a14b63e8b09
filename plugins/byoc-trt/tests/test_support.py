"""GPU-free: the capability check refuses exactly what translation cannot do."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_translate import f32, single

from byoc.onnx_import import import_onnx
from byoc.partition import node_info
from byoc_trt import TrtBackend


def answer(model):
    imp = import_onnx(model)
    (nid,) = [i for i, n in enumerate(imp.graph.nodes) if n.op == "kernel"]
    return TrtBackend.supports(node_info(imp.graph, nid, imp.consts))


def int_model():
    node = helper.make_node("Add", ["a", "b"], ["y"])
    graph = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info(n, TensorProto.INT64, [3]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def maxpool_with_indices():
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])
    graph = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("i", TensorProto.INT64, None),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def layernorm_three_outputs():
    node = helper.make_node("LayerNormalization", ["x", "g"], ["y", "m", "s"])
    graph = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "yms"],
        [numpy_helper.from_array(f32(4), "g")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


REFUSED = {
    "int64 tensors": (int_model(), "only float32"),
    "weights that are not constant": (
        single("Conv", [[1, 2, 5, 5], [3, 2, 3, 3]]),
        "input 1 must be a constant",
    ),
    "maxpool indices": (maxpool_with_indices(), "Indices output is not supported"),
    "maxpool dilations": (
        single(
            "MaxPool", [[1, 1, 6, 6]], {"kernel_shape": [2, 2], "dilations": [2, 2]}
        ),
        "dilations are not supported",
    ),
    "auto_pad on a dynamic input": (
        single(
            "Conv",
            [[1, 2, "h", "w"]],
            {"auto_pad": "SAME_UPPER"},
            consts={"w": f32(2, 2, 3, 3)},
        ),
        "needs static spatial dims",
    ),
    "resize cubic": (
        single(
            "Resize",
            [[1, 1, 2, 2]],
            {"mode": "cubic"},
            consts={
                "roi": np.zeros(0, np.float32),
                "sc": np.array([1, 1, 2, 2], np.float32),
            },
        ),
        "mode='cubic' is not supported",
    ),
    "resize fractional scale": (
        single(
            "Resize",
            [[1, 1, 5, 5]],
            {"mode": "nearest"},
            consts={
                "roi": np.zeros(0, np.float32),
                "sc": np.array([1, 1, 0.7, 0.7], np.float32),
            },
        ),
        "whole output sizes",
    ),
    "layernorm extra outputs": (
        layernorm_three_outputs(),
        "with 3 outputs is not supported",
    ),
    "gemm C with a dynamic shape": (
        single("Gemm", [[3, 4], [4, 5], ["n", 5]]),
        "C needs a static shape",
    ),
    "matmul with a vector": (single("MatMul", [[4], [4, 5]]), "rank >= 2"),
    "batchnorm training": (
        single(
            "BatchNormalization",
            [[1, 2, 3, 3]],
            {"training_mode": 1},
            consts={k: f32(2) + 2 for k in "gbmv"},
        ),
        "training_mode=1",
    ),
    "dropout in training": (
        single(
            "Dropout",
            [[2, 3]],
            consts={"r": np.array(0.5, np.float32), "t": np.array(True)},
        ),
        "in training mode",
    ),
    "slice on a dynamic input": (
        single(
            "Slice",
            [["n", 4]],
            consts={"s": np.array([0], np.int64), "e": np.array([2], np.int64)},
        ),
        "needs a static input shape",
    ),
    "unknown op": (single("Softplus", [[2, 3]]), "no TensorRT lowering for Softplus"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refusals_say_why(case):
    model, why = REFUSED[case]
    result = answer(model)
    assert not result.ok
    assert result.reason.startswith("trt: ")
    assert why in result.reason
