"""Each op the micro executor runs, against the numpy reference backend.

Every case is a one- or two-node ONNX model compiled with ``backends=["micro"]``
(so compile fails unless micro takes every node) and with ``["ref"]``; outputs
must agree to 1e-5. Refusals are checked for their reasons.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import feeds_for, make_model, max_error
from onnx import helper

import byoc

R = np.random.default_rng(7)


def w(*shape: int) -> np.ndarray:
    return R.standard_normal(shape).astype(np.float32)


def node(op: str, inputs: list[str], **attrs: object) -> object:
    return helper.make_node(op, inputs, ["y"], **attrs)


CASES = {
    # Conv: groups, strides, pads, dilations, bias, 1-D, VALID
    "conv": (node("Conv", ["x", "w"], pads=[1, 1, 1, 1]), {"x": [1, 3, 8, 8]},
             {"w": w(4, 3, 3, 3)}),
    "conv_group_stride_bias": (
        node("Conv", ["x", "w", "b"], group=2, strides=[2, 1], pads=[0, 1, 2, 0],
             kernel_shape=[3, 2]),
        {"x": [2, 4, 9, 7]}, {"w": w(6, 2, 3, 2), "b": w(6)}),
    "conv_depthwise_dilated": (
        node("Conv", ["x", "w"], group=4, dilations=[2, 2], pads=[2, 2, 2, 2]),
        {"x": [1, 4, 7, 7]}, {"w": w(4, 1, 3, 3)}),
    "conv_1d": (node("Conv", ["x", "w", "b"], strides=[2], pads=[1, 0]),
                {"x": [2, 3, 11]}, {"w": w(5, 3, 4), "b": w(5)}),
    "conv_valid": (node("Conv", ["x", "w"], auto_pad="VALID"), {"x": [1, 2, 6, 5]},
                   {"w": w(3, 2, 2, 2)}),
    "conv_same_upper": (node("Conv", ["x", "w"], auto_pad="SAME_UPPER", strides=[2, 3]),
                        {"x": [1, 2, 7, 8]}, {"w": w(3, 2, 4, 3)}),
    "conv_same_lower_dilated": (
        node("Conv", ["x", "w"], auto_pad="SAME_LOWER", dilations=[2, 1]),
        {"x": [1, 2, 6, 5]}, {"w": w(2, 2, 2, 2)}),
    # Gemm and MatMul
    "gemm": (node("Gemm", ["x", "w"]), {"x": [5, 7]}, {"w": w(7, 3)}),
    "gemm_trans_alpha_beta_bias": (
        node("Gemm", ["x", "w", "c"], transA=1, transB=1, alpha=0.5, beta=-2.0),
        {"x": [7, 5]}, {"w": w(3, 7), "c": w(3)}),
    "gemm_column_bias": (node("Gemm", ["x", "w", "c"]), {"x": [4, 6]},
                         {"w": w(6, 20), "c": w(4, 1)}),
    "gemm_scalar_bias": (node("Gemm", ["x", "w", "c"], beta=3.0), {"x": [2, 3]},
                         {"w": w(3, 33), "c": w()}),
    "matmul": (node("MatMul", ["x", "w"]), {"x": [3, 17]}, {"w": w(17, 18)}),
    "matmul_batched_broadcast": (node("MatMul", ["x", "w"]), {"x": [2, 1, 3, 4]},
                                 {"w": w(5, 4, 6)}),
    "matmul_vector_matrix": (node("MatMul", ["x", "w"]), {"x": [4]}, {"w": w(4, 6)}),
    "matmul_matrix_vector": (node("MatMul", ["x", "w"]), {"x": [2, 3, 4]},
                             {"w": w(4)}),
    "matmul_dot": (node("MatMul", ["x", "w"]), {"x": [5]}, {"w": w(5)}),
    # element-wise
    "add_broadcast": (node("Add", ["x", "w"]), {"x": [2, 3, 4]}, {"w": w(4)}),
    "add_both_ways": (node("Add", ["x", "w"]), {"x": [2, 1, 4]}, {"w": w(3, 1)}),
    "mul_scalar": (node("Mul", ["x", "w"]), {"x": [3, 5]}, {"w": w()}),
    "mul_same": (node("Mul", ["x", "x"]), {"x": [2, 2, 3, 2, 2]}, {}),
    "relu": (node("Relu", ["x"]), {"x": [4, 5]}, {}),
    "sigmoid": (node("Sigmoid", ["x"]), {"x": [2, 50]}, {}),
    "clip_both": (node("Clip", ["x", "lo", "hi"]), {"x": [3, 7]},
                  {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}),
    "clip_min_only": (node("Clip", ["x", "lo"]), {"x": [10]},
                      {"lo": np.array(0.1, np.float32)}),
    "clip_max_only": (node("Clip", ["x", "", "hi"]), {"x": [10]},
                      {"hi": np.array(0.1, np.float32)}),
    "clip_min_above_max": (node("Clip", ["x", "lo", "hi"]), {"x": [6]},
                           {"lo": np.array(1.0, np.float32),
                            "hi": np.array(-1.0, np.float32)}),
    "clip_none": (node("Clip", ["x"]), {"x": [6]}, {}),
    # pools
    "maxpool": (node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2]),
                {"x": [1, 3, 8, 8]}, {}),
    "maxpool_pads_ceil_dilated": (
        node("MaxPool", ["x"], kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 1, 1],
             ceil_mode=1, dilations=[1, 2]),
        {"x": [2, 2, 9, 10]}, {}),
    "maxpool_same": (node("MaxPool", ["x"], kernel_shape=[2, 3], strides=[2, 2],
                          auto_pad="SAME_LOWER"), {"x": [1, 2, 7, 6]}, {}),
    "avgpool_same": (node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2],
                          auto_pad="SAME_UPPER"), {"x": [1, 2, 7, 6]}, {}),
    "maxpool_1d": (node("MaxPool", ["x"], kernel_shape=[3], strides=[2], pads=[1, 1]),
                   {"x": [1, 2, 9]}, {}),
    "avgpool": (node("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                {"x": [1, 2, 6, 6]}, {}),
    "avgpool_count_pad": (
        node("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
             count_include_pad=1),
        {"x": [1, 2, 6, 6]}, {}),
    "avgpool_ceil": (
        node("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1,
             pads=[0, 0, 1, 0], count_include_pad=1),
        {"x": [1, 1, 5, 5]}, {}),
    "global_avgpool": (node("GlobalAveragePool", ["x"]), {"x": [2, 3, 5, 4]}, {}),
    "global_avgpool_1d": (node("GlobalAveragePool", ["x"]), {"x": [2, 3, 7]}, {}),
    # normalisation, softmax, shape ops
    "batchnorm": (
        node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3),
        {"x": [2, 3, 4, 4]},
        {"s": w(3), "b": w(3), "m": w(3),
         "v": np.abs(w(3)) + np.float32(0.5)}),
    "softmax": (node("Softmax", ["x"]), {"x": [3, 10]}, {}),
    "softmax_middle_axis": (node("Softmax", ["x"], axis=1), {"x": [2, 5, 3]}, {}),
    "softmax_axis0": (node("Softmax", ["x"], axis=0), {"x": [4, 3]}, {}),
    "flatten": (node("Flatten", ["x"]), {"x": [2, 3, 4]}, {}),
    "flatten_axis0": (node("Flatten", ["x"], axis=0), {"x": [2, 3, 4]}, {}),
    "flatten_axis_last": (node("Flatten", ["x"], axis=-1), {"x": [2, 3, 4]}, {}),
    "reshape": (node("Reshape", ["x", "shape"]), {"x": [2, 3, 4]},
                {"shape": np.array([0, -1, 2], np.int64)}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_ref(registry, case):
    op_node, inputs, inits = CASES[case]
    model = make_model([op_node], inputs, {"y": None}, inits)
    micro = byoc.compile(model, backends=["micro"], quiet=True)
    ref = byoc.compile(model, backends=["ref"], quiet=True)
    feeds = feeds_for(model)
    assert max_error(micro.run(feeds), ref.run(feeds)) <= 1e-5


def test_ops_chain_runs_in_place_and_through_views(registry):
    # conv -> relu -> add(residual) -> flatten -> gemm -> softmax: in-place ops,
    # a view of an arena tensor, a head read by a later node
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Add", ["r", "c"], ["a"]),
        helper.make_node("Flatten", ["a"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["g"]),
        helper.make_node("Softmax", ["g"], ["y"]),
        helper.make_node("Sigmoid", ["g"], ["z"]),
    ]
    model = make_model(
        nodes,
        {"x": [1, 2, 4, 4]},
        {"y": None, "g": None, "z": None},
        {"w": w(3, 2, 3, 3), "fc": w(48, 5)},
    )
    micro = byoc.compile(model, backends=["micro"], quiet=True)
    ref = byoc.compile(model, backends=["ref"], quiet=True)
    feeds = feeds_for(model)
    assert max_error(micro.run(feeds), ref.run(feeds)) <= 1e-5
    kinds = [k for k, _ in micro.subgraphs[0].meta["entries"]]
    assert kinds.count("output") == 3


REFUSALS = {
    "maxpool indices": (
        helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2]),
        {"x": [1, 1, 4, 4]},
        {},
        "MaxPool with 2 outputs; micro runs one",
    ),
    "3-d conv": (
        node("Conv", ["x", "w"]),
        {"x": [1, 1, 3, 3, 3]},
        {"w": w(1, 1, 2, 2, 2)},
        "micro runs 1-D and 2-D windows",
    ),
    "training batchnorm": (
        helper.make_node(
            "BatchNormalization",
            ["x", "s", "b", "m", "v"],
            ["y", "rm", "rv"],
            training_mode=1,
        ),
        {"x": [2, 3]},
        {k: np.ones(3, np.float32) for k in "sbmv"},
        "outputs; micro runs one",
    ),
    "no kernel": (node("Tanh", ["x"]), {"x": [3]}, {}, "micro: no kernel for Tanh"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_carry_the_reason(registry, case):
    op_node, inputs, inits, reason = REFUSALS[case]
    outs = {o: None for o in op_node.output}
    model = make_model([op_node], inputs, outs, inits)
    with pytest.raises(byoc.UnsupportedError) as err:
        byoc.compile(model, backends=["micro"], quiet=True)
    assert reason in str(err.value)
    # with ref as the fallback the node moves there and the reason is explained
    mod = byoc.compile(model, backends=["micro", "ref"], quiet=True)
    assert reason in mod.explain()


def test_dynamic_shapes_and_other_dtypes_are_refused(registry):
    dyn = make_model([node("Relu", ["x"])], {"x": ["batch", 4]}, {"y": None})
    with pytest.raises(byoc.UnsupportedError, match="micro needs static shapes"):
        byoc.compile(dyn, backends=["micro"], quiet=True)
    ints = helper.make_model(
        helper.make_graph(
            [node("Add", ["x", "x"])],
            "ints",
            [helper.make_tensor_value_info("x", 7, [3])],
            [helper.make_tensor_value_info("y", 7, [3])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    with pytest.raises(byoc.UnsupportedError, match="micro computes float32 only"):
        byoc.compile(ints, backends=["micro"], quiet=True)
