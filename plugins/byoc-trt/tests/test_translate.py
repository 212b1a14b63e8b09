"""GPU-free: the TensorRT translation, run through NumpyNet, matches byoc-ref.

Every case asks TrtBackend.supports about every node first, so these tests also
pin the capability check: a node it claims must translate and compute right.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy_net import run
from onnx import TensorProto, helper, numpy_helper

import byoc
from byoc.demo import demo_cnn
from byoc.onnx_import import import_onnx
from byoc.partition import node_info
from byoc_trt import TrtBackend

RNG = np.random.default_rng(0)


def single(op, shapes, attrs=None, consts=None, out_shape=None, opset=17):
    """One-node model: inputs x0.. with ``shapes``; ``consts`` name -> array."""
    consts = consts or {}
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node(op, names + list(consts), ["y"], **(attrs or {}))
    graph = helper.make_graph(
        [node],
        "t",
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
            for n, s in zip(names, shapes, strict=False)
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


CASES = {
    "add_broadcast": single("Add", [[2, 3, 4]], consts={"b": f32(4)}),
    "mul_same_rank": single("Mul", [[2, 3, 4], [2, 1, 4]]),
    "sub_scalar": single("Sub", [[2, 3]], consts={"b": np.float32(0.5).reshape(())}),
    "div": single("Div", [[2, 3]], consts={"b": np.full((3,), 2.0, np.float32)}),
    "pow": single("Pow", [[2, 3]], consts={"b": np.full((1,), 2.0, np.float32)}),
    "max2": single("Max", [[2, 3], [2, 3]]),
    "relu": single("Relu", [[2, 5]]),
    "leaky": single("LeakyRelu", [[2, 5]], {"alpha": 0.2}),
    "elu": single("Elu", [[2, 5]], {"alpha": 0.7}),
    "sigmoid": single("Sigmoid", [[2, 5]]),
    "tanh": single("Tanh", [[2, 5]]),
    "gelu": single("Gelu", [[2, 5]], opset=20),
    "gelu_tanh": single("Gelu", [[2, 5]], {"approximate": "tanh"}, opset=20),
    "erf": single("Erf", [[2, 5]]),
    "exp_abs": single("Abs", [[2, 5]]),
    "clip_both": single(
        "Clip",
        [[2, 5]],
        consts={"lo": np.float32(-0.3).reshape(()), "hi": np.float32(0.4).reshape(())},
    ),
    "conv_same_upper_strided": single(
        "Conv",
        [[1, 3, 9, 9]],
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        consts={"w": f32(4, 3, 3, 3), "b": f32(4)},
    ),
    "conv_same_lower": single(
        "Conv",
        [[1, 2, 8, 8]],
        {"auto_pad": "SAME_LOWER"},
        consts={"w": f32(2, 2, 4, 4)},
    ),
    "conv_grouped_dilated": single(
        "Conv",
        [[1, 4, 10, 10]],
        {"group": 2, "dilations": [2, 2], "pads": [1, 2, 2, 1]},
        consts={"w": f32(6, 2, 3, 3)},
    ),
    "depthwise": single(
        "Conv",
        [[1, 4, 7, 7]],
        {"group": 4, "pads": [1, 1, 1, 1]},
        consts={"w": f32(4, 1, 3, 3), "b": f32(4)},
    ),
    "conv_transpose": single(
        "ConvTranspose",
        [[1, 3, 5, 5]],
        {"strides": [2, 2], "pads": [1, 1, 1, 1]},
        consts={"w": f32(3, 2, 3, 3), "b": f32(2)},
    ),
    "gemm_all": single(
        "Gemm",
        [[3, 4]],
        {"transB": 1, "alpha": 0.5, "beta": 2.0},
        consts={"w": f32(5, 4), "c": f32(5)},
    ),
    "gemm_transA": single("Gemm", [[4, 3]], {"transA": 1}, consts={"w": f32(4, 5)}),
    "matmul_batched_broadcast": single("MatMul", [[2, 3, 4]], consts={"w": f32(4, 5)}),
    "matmul_two_inputs": single("MatMul", [[2, 3, 4], [2, 4, 6]]),
    "maxpool_ceil": single(
        "MaxPool",
        [[1, 2, 7, 7]],
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    ),
    "avgpool_pads_exclude": single(
        "AveragePool", [[1, 2, 6, 6]], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    ),
    "avgpool_pads_include": single(
        "AveragePool",
        [[1, 2, 6, 6]],
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    ),
    "maxpool_same": single(
        "MaxPool", [[1, 1, 5, 5]], {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER"}
    ),
    "global_avg": single("GlobalAveragePool", [[2, 3, 4, 5]]),
    "global_max": single("GlobalMaxPool", [[2, 3, 4, 5]]),
    "batchnorm": single(
        "BatchNormalization",
        [[2, 3, 4, 4]],
        {"epsilon": 1e-3},
        consts={"g": f32(3), "b": f32(3), "m": f32(3), "v": np.abs(f32(3)) + 0.5},
    ),
    "layernorm_last": single(
        "LayerNormalization",
        [[2, 3, 8]],
        {"epsilon": 1e-5},
        consts={"g": f32(8), "b": f32(8)},
    ),
    "layernorm_two_axes": single(
        "LayerNormalization", [[2, 3, 8]], {"axis": 1}, consts={"g": f32(3, 8)}
    ),
    "softmax_axis1": single("Softmax", [[2, 3, 4]], {"axis": 1}),
    "softmax_last": single("Softmax", [[2, 3, 4]]),
    "concat_neg_axis": single("Concat", [[2, 3], [2, 4]], {"axis": -1}),
    "transpose": single("Transpose", [[2, 3, 4]], {"perm": [2, 0, 1]}),
    "reshape_zero_minus_one": single(
        "Reshape", [[2, 3, 4]], consts={"s": np.array([0, -1], np.int64)}
    ),
    "flatten_axis2": single("Flatten", [[2, 3, 4, 5]], {"axis": 2}),
    "slice_negative_step": single(
        "Slice",
        [[6, 5]],
        consts={
            "s": np.array([-1, 1], np.int64),
            "e": np.array([-7, 4], np.int64),
            "a": np.array([0, 1], np.int64),
            "st": np.array([-2, 1], np.int64),
        },
    ),
    "resize_nearest": single(
        "Resize",
        [[1, 1, 3, 3]],
        {"mode": "nearest"},
        consts={
            "roi": np.zeros(0, np.float32),
            "sc": np.array([1, 1, 2, 2], np.float32),
        },
    ),
    "resize_linear_align": single(
        "Resize",
        [[1, 2, 3, 4]],
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
        consts={
            "roi": np.zeros(0, np.float32),
            "sc": np.zeros(0, np.float32),
            "sz": np.array([1, 2, 5, 7], np.int64),
        },
    ),
    "identity": single("Identity", [[2, 3]]),
}


def _check_all_claimed(imp):
    for nid, node in enumerate(imp.graph.nodes):
        if node.op == "kernel":
            answer = TrtBackend.supports(node_info(imp.graph, nid, imp.consts))
            assert answer.ok, answer.reason


def _compare(model, feeds, rtol=1e-5, atol=1e-5):
    imp = import_onnx(model)
    _check_all_claimed(imp)
    got = run(imp.graph, imp.consts, feeds)
    want = byoc.compile(model, backends=["ref"], quiet=True).run(feeds)
    for name, g in zip(imp.graph.output_names, got, strict=True):
        np.testing.assert_allclose(g, want[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op_translation_matches_ref(case):
    model = CASES[case]
    feeds = {}
    for vi in model.graph.input:
        if vi.name.startswith("x"):
            shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            feeds[vi.name] = f32(*shape)
    _compare(model, feeds)


def test_demo_cnn_translates_whole():
    model = demo_cnn(seed=5)
    _compare(model, {"input": f32(1, 3, 32, 32)}, rtol=1e-4, atol=1e-5)


def test_symbolic_batch_becomes_a_dynamic_input():
    model = demo_cnn(seed=6, batch="n")
    imp = import_onnx(model)
    _check_all_claimed(imp)
    for n in (1, 3):
        x = f32(n, 3, 32, 32)
        (got,) = run(imp.graph, imp.consts, {"input": x})
        want = byoc.compile(model, backends=["ref"], quiet=True).run({"input": x})[
            "probs"
        ]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
