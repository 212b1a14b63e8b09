"""Every claimed op, alone, against onnxruntime and byoc-ref."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import byoc

from .helpers import (
    assert_close,
    check_model,
    claims,
    engine_steps,
    feeds_for,
    run_ort,
    single_node,
)

R = np.random.default_rng(42)


def w(*shape: int) -> np.ndarray:
    return (R.standard_normal(shape) * 0.5).astype(np.float32)


def f32(value: float | list[float]) -> np.ndarray:
    return np.asarray(value, np.float32)


CASES: dict[str, Callable[[], onnx.ModelProto]] = {
    # Conv
    "conv_3x3_pad_bias": lambda: single_node(
        "Conv",
        [("x", (1, 8, 10, 10)), ("w", w(16, 8, 3, 3)), ("b", w(16))],
        pads=[1, 1, 1, 1],
    ),
    "conv_stride2_asym": lambda: single_node(
        "Conv",
        [("x", (2, 3, 11, 9)), ("w", w(5, 3, 3, 2))],
        strides=[2, 2],
        pads=[1, 0, 2, 1],
    ),
    "conv_dilated": lambda: single_node(
        "Conv",
        [("x", (1, 4, 12, 12)), ("w", w(6, 4, 3, 3)), ("b", w(6))],
        dilations=[2, 3],
    ),
    "conv_group2": lambda: single_node(
        "Conv", [("x", (1, 8, 7, 7)), ("w", w(12, 4, 3, 3))], group=2, pads=[1, 1, 1, 1]
    ),
    "conv_depthwise": lambda: single_node(
        "Conv",
        [("x", (1, 32, 14, 14)), ("w", w(32, 1, 3, 3)), ("b", w(32))],
        group=32,
        strides=[2, 2],
        pads=[1, 1, 1, 1],
    ),
    "conv_same_upper": lambda: single_node(
        "Conv",
        [("x", (1, 3, 9, 8)), ("w", w(4, 3, 4, 3))],
        auto_pad="SAME_UPPER",
        strides=[2, 2],
    ),
    "conv_same_lower": lambda: single_node(
        "Conv",
        [("x", (1, 3, 9, 8)), ("w", w(4, 3, 4, 3))],
        auto_pad="SAME_LOWER",
        strides=[2, 2],
    ),
    "conv_valid": lambda: single_node(
        "Conv", [("x", (1, 3, 9, 8)), ("w", w(4, 3, 3, 3))], auto_pad="VALID"
    ),
    "conv_1d": lambda: single_node(
        "Conv", [("x", (2, 4, 20)), ("w", w(8, 4, 5)), ("b", w(8))], pads=[2, 2]
    ),
    "conv_3d": lambda: single_node(
        "Conv", [("x", (1, 2, 6, 7, 5)), ("w", w(4, 2, 3, 3, 3))], pads=[1] * 6
    ),
    "conv_runtime_weights": lambda: single_node(
        "Conv",
        [("x", (1, 3, 8, 8)), ("w", (4, 3, 3, 3)), ("b", (4,))],
        pads=[1, 1, 1, 1],
    ),
    "conv_1x1_large": lambda: single_node(
        "Conv", [("x", (1, 64, 14, 14)), ("w", w(128, 64, 1, 1))]
    ),
    # ConvTranspose
    "deconv_basic": lambda: single_node(
        "ConvTranspose", [("x", (1, 4, 5, 5)), ("w", w(4, 6, 3, 3)), ("b", w(6))]
    ),
    "deconv_stride_outpad": lambda: single_node(
        "ConvTranspose",
        [("x", (1, 4, 5, 6)), ("w", w(4, 3, 3, 3))],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        output_padding=[1, 1],
    ),
    "deconv_group": lambda: single_node(
        "ConvTranspose",
        [("x", (2, 6, 4, 4)), ("w", w(6, 2, 2, 2))],
        group=3,
        strides=[2, 2],
    ),
    "deconv_1d": lambda: single_node(
        "ConvTranspose", [("x", (1, 3, 7)), ("w", w(3, 2, 4))], strides=[3]
    ),
    "deconv_dilated_runtime_w": lambda: single_node(
        "ConvTranspose", [("x", (1, 2, 5, 5)), ("w", (2, 3, 3, 3))], dilations=[2, 2]
    ),
    # Gemm
    "gemm_transB_bias": lambda: single_node(
        "Gemm", [("a", (4, 6)), ("b", w(5, 6)), ("c", w(5))], transB=1
    ),
    "gemm_transA_alpha_beta": lambda: single_node(
        "Gemm",
        [("a", (6, 4)), ("b", w(6, 5)), ("c", w(4, 5))],
        transA=1,
        alpha=0.5,
        beta=2.0,
    ),
    "gemm_runtime_all": lambda: single_node(
        "Gemm",
        [("a", (3, 6)), ("b", (5, 6)), ("c", (3, 5))],
        transB=1,
        alpha=0.25,
        beta=0.35,
    ),
    "gemm_runtime_row_bias": lambda: single_node(
        "Gemm", [("a", (3, 6)), ("b", (6, 5)), ("c", (1, 5))]
    ),
    "gemm_col_bias": lambda: single_node(
        "Gemm", [("a", (3, 6)), ("b", w(6, 5)), ("c", w(3, 1))]
    ),
    "gemm_scalar_bias": lambda: single_node(
        "Gemm", [("a", (3, 6)), ("b", w(6, 5)), ("c", f32(0.75))], beta=0.5
    ),
    "gemm_no_bias_alpha_runtime": lambda: single_node(
        "Gemm", [("a", (3, 6)), ("b", (6, 5))], alpha=3.0
    ),
    # MatMul
    "matmul_2d": lambda: single_node("MatMul", [("a", (7, 9)), ("b", w(9, 4))]),
    "matmul_3d_const": lambda: single_node(
        "MatMul", [("a", (2, 7, 9)), ("b", w(9, 4))]
    ),
    "matmul_batched_runtime": lambda: single_node(
        "MatMul", [("a", (3, 5, 6)), ("b", (3, 6, 4))]
    ),
    "matmul_broadcast": lambda: single_node(
        "MatMul", [("a", (2, 1, 5, 6)), ("b", (3, 6, 4))]
    ),
    "matmul_1d_left": lambda: single_node("MatMul", [("a", (6,)), ("b", (2, 6, 4))]),
    "matmul_1d_right": lambda: single_node("MatMul", [("a", (2, 3, 6)), ("b", (6,))]),
    # activations
    "relu": lambda: single_node("Relu", [("x", (2, 3, 4, 5))]),
    "leakyrelu": lambda: single_node("LeakyRelu", [("x", (3, 7))], alpha=0.2),
    "sigmoid": lambda: single_node("Sigmoid", [("x", (4, 9))]),
    "tanh": lambda: single_node("Tanh", [("x", (4, 9))]),
    "elu": lambda: single_node("Elu", [("x", (4, 9))], alpha=0.7),
    "clip": lambda: single_node(
        "Clip", [("x", (4, 9)), ("lo", f32(-0.5)), ("hi", f32(0.8))]
    ),
    "clip_max_only": lambda: single_node(
        "Clip", [("x", (4, 9)), ("", ()), ("hi", f32(0.3))]
    ),
    "clip_none": lambda: single_node("Clip", [("x", (4, 9))]),
    "gelu": lambda: single_node("Gelu", [("x", (4, 9))], opset=20),
    "gelu_tanh": lambda: single_node(
        "Gelu", [("x", (4, 9))], opset=20, approximate="tanh"
    ),
    # binary
    "add_same": lambda: single_node("Add", [("a", (2, 3, 4)), ("b", (2, 3, 4))]),
    "add_bcast_const": lambda: single_node("Add", [("a", (2, 3, 4)), ("b", w(3, 1))]),
    "add_bcast_first": lambda: single_node("Add", [("a", (4,)), ("b", (2, 3, 4))]),
    "sub_bcast_first": lambda: single_node("Sub", [("a", (3, 1)), ("b", (2, 3, 4))]),
    "sub_scalar": lambda: single_node("Sub", [("a", (2, 3)), ("b", f32(0.5))]),
    "mul_bcast": lambda: single_node("Mul", [("a", (2, 3, 4, 5)), ("b", (1, 3, 1, 1))]),
    "div_bcast": lambda: single_node(
        "Div", [("a", (2, 3, 4)), ("b", f32([2.0, -4.0, 8.0, 0.5]))]
    ),
    # pooling
    "maxpool_pads": lambda: single_node(
        "MaxPool",
        [("x", (1, 3, 9, 9))],
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
    ),
    "maxpool_ceil": lambda: single_node(
        "MaxPool",
        [("x", (1, 3, 8, 8))],
        kernel_shape=[3, 3],
        strides=[2, 2],
        ceil_mode=1,
    ),
    "maxpool_dilated_1d": lambda: single_node(
        "MaxPool", [("x", (1, 3, 12))], kernel_shape=[3], dilations=[2]
    ),
    "maxpool_3d_same": lambda: single_node(
        "MaxPool",
        [("x", (1, 2, 5, 6, 7))],
        kernel_shape=[2, 3, 2],
        auto_pad="SAME_UPPER",
    ),
    "avgpool_exclude": lambda: single_node(
        "AveragePool",
        [("x", (1, 3, 9, 9))],
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
    ),
    "avgpool_include": lambda: single_node(
        "AveragePool",
        [("x", (1, 3, 9, 9))],
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
        count_include_pad=1,
    ),
    "avgpool_ceil_exclude": lambda: single_node(
        "AveragePool",
        [("x", (1, 3, 8, 8))],
        kernel_shape=[3, 3],
        strides=[2, 2],
        ceil_mode=1,
    ),
    "global_avgpool": lambda: single_node("GlobalAveragePool", [("x", (2, 5, 7, 3))]),
    # normalization
    "batchnorm_4d": lambda: single_node(
        "BatchNormalization",
        [
            ("x", (2, 4, 5, 5)),
            ("s", w(4)),
            ("b", w(4)),
            ("m", w(4)),
            ("v", np.abs(w(4)) + 0.5),
        ],
        epsilon=1e-3,
    ),
    "batchnorm_2d": lambda: single_node(
        "BatchNormalization",
        [
            ("x", (6, 4)),
            ("s", w(4)),
            ("b", w(4)),
            ("m", w(4)),
            ("v", np.abs(w(4)) + 0.5),
        ],
    ),
    "layernorm_last": lambda: single_node(
        "LayerNormalization", [("x", (2, 5, 16)), ("g", w(16)), ("b", w(16))]
    ),
    "layernorm_axis1_nobias": lambda: single_node(
        "LayerNormalization", [("x", (2, 3, 4)), ("g", w(3, 4))], axis=1, epsilon=1e-3
    ),
    "layernorm_stats": lambda: single_node(
        "LayerNormalization", [("x", (3, 4, 6)), ("g", w(6)), ("b", w(6))], n_outputs=3
    ),
    "softmax_last": lambda: single_node("Softmax", [("x", (2, 3, 10))]),
    "softmax_axis0": lambda: single_node("Softmax", [("x", (4, 3, 5))], axis=0),
    "softmax_axis1": lambda: single_node("Softmax", [("x", (2, 6, 5))], axis=1),
    # layout ops
    "concat_axis1_const": lambda: single_node(
        "Concat", [("a", (2, 3, 4)), ("b", w(2, 2, 4)), ("c", (2, 1, 4))], axis=1
    ),
    "concat_axis_neg": lambda: single_node(
        "Concat", [("a", (2, 3)), ("b", (2, 5))], axis=-1
    ),
    "transpose_default": lambda: single_node("Transpose", [("x", (2, 3, 4))]),
    "transpose_perm": lambda: single_node(
        "Transpose", [("x", (2, 3, 4, 5))], perm=[0, 2, 3, 1]
    ),
    "reshape": lambda: single_node(
        "Reshape", [("x", (2, 3, 4)), ("s", np.array([4, -1], np.int64))]
    ),
    "flatten": lambda: single_node("Flatten", [("x", (2, 3, 4, 5))], axis=2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op(case: str) -> None:
    check_model(CASES[case]())


# -- property tests: whatever dnnl claims must compute the right thing ------------


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    n=st.integers(1, 2),
    c=st.sampled_from([1, 3, 8, 16]),
    oc=st.sampled_from([4, 8, 16]),
    hw=st.integers(3, 12),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    dil=st.integers(1, 2),
    pad=st.integers(0, 2),
    group=st.sampled_from([1, 2, 4, "dw"]),
)
def test_conv_geometries(
    n: int,
    c: int,
    oc: int,
    hw: int,
    k: int,
    stride: int,
    dil: int,
    pad: int,
    group: int | str,
) -> None:
    g = c if group == "dw" else group
    if c % g or (group == "dw" and oc % c):
        return
    oc = c if group == "dw" else oc
    if oc % g or (hw + 2 * pad - (k - 1) * dil - 1) < 0:
        return
    model = single_node(
        "Conv",
        [("x", (n, c, hw, hw)), ("w", w(oc, c // g, k, k)), ("b", w(oc))],
        strides=[stride, stride],
        dilations=[dil, dil],
        pads=[pad] * 4,
        group=g,
    )
    _check_if_claimed(model)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    op=st.sampled_from(["Add", "Sub", "Mul", "Div"]),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    mask=st.lists(st.booleans(), min_size=4, max_size=4),
    drop=st.integers(0, 3),
    swap=st.booleans(),
)
def test_binary_broadcasting(
    op: str, shape: list[int], mask: list[bool], drop: int, swap: bool
) -> None:
    other = [1 if m else d for d, m in zip(shape, mask, strict=False)][
        min(drop, len(shape)) :
    ]
    a, b = (other, shape) if swap else (shape, other)
    _check_if_claimed(single_node(op, [("a", tuple(a)), ("b", tuple(b))]))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    hw=st.integers(2, 10),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    pad=st.integers(0, 2),
    ceil=st.integers(0, 1),
    kind=st.sampled_from(["MaxPool", "AveragePool0", "AveragePool1"]),
)
def test_pool_geometries(
    hw: int, k: int, stride: int, pad: int, ceil: int, kind: str
) -> None:
    if hw + 2 * pad < k:
        return
    attrs: dict = {
        "kernel_shape": [k, k],
        "strides": [stride, stride],
        "pads": [pad] * 4,
        "ceil_mode": ceil,
    }
    op = kind[:-1] if kind.startswith("Average") else kind
    if op == "AveragePool":
        attrs["count_include_pad"] = int(kind[-1])
    model = single_node(op, [("x", (1, 3, hw, hw))], **attrs)
    _check_if_claimed(model)


@pytest.mark.parametrize(
    ("op", "attrs"),
    [
        ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4}),
        ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
        ("GlobalAveragePool", {}),
    ],
)
def test_pooling_a_plain_input_runs_a_jit_kernel(op: str, attrs: dict) -> None:
    # A subgraph that starts with a pooling gets NCHW data, which oneDNN pools
    # only with a simple loop (MaxPool here: 8 ms against 0.3 ms).
    mod = check_model(single_node(op, [("x", (1, 16, 20, 20))], **attrs))
    impls = {label: impl for label, impl, _ in engine_steps(mod)}
    pool = [impl for label, impl in impls.items() if label.startswith(op)]
    assert pool and pool[0].startswith("jit"), impls


@pytest.mark.parametrize("shape", [(1, 4, 9), (1, 4, 5, 6, 7)])
def test_pooling_plain_inputs_of_other_ranks(shape: tuple[int, ...]) -> None:
    k = len(shape) - 2
    check_model(
        single_node("MaxPool", [("x", shape)], kernel_shape=[2] * k, strides=[2] * k)
    )


def test_softmax_over_channels_of_nchw_runs_a_jit_kernel() -> None:
    # Over a strided axis oneDNN has only its reference softmax (11x
    # onnxruntime's time on 64x56x56): the channels are made innermost first.
    mod = check_model(single_node("Softmax", [("x", (2, 16, 6, 7))], axis=1))
    steps = [(label, impl) for label, impl, _ in engine_steps(mod)]
    softmax = [impl for label, impl in steps if label.startswith("Softmax")]
    assert len(softmax) == 1 and softmax[0].startswith("jit"), steps


def _bn_params(c: int) -> list[tuple[str, np.ndarray]]:
    r = np.random.default_rng(3)
    return [
        ("s", r.standard_normal(c).astype(np.float32)),
        ("b", r.standard_normal(c).astype(np.float32)),
        ("m", r.standard_normal(c).astype(np.float32)),
        ("v", (r.random(c) + 0.5).astype(np.float32)),
    ]


@pytest.mark.parametrize("shape", [(2, 8), (1, 8, 5, 6), (1, 8, 3, 4, 5)])
def test_batchnorm_alone_is_one_jit_binary_step(shape: tuple[int, ...]) -> None:
    # x * k + c with per-channel constants: one binary kernel on any layout
    # (oneDNN's own batch norm on NCHW is a simple loop, 4x onnxruntime's time).
    mod = check_model(
        single_node("BatchNormalization", [("x", shape), *_bn_params(8)], epsilon=1e-3)
    )
    steps = [s for s in engine_steps(mod) if not s[0].startswith("output")]
    assert [(s[1], s[2]) for s in steps] == [("jit:uni", ("binary",))], steps


def test_batchnorm_with_runtime_params_runs_a_jit_kernel() -> None:
    # Params that are inputs cannot become constants: oneDNN's batch norm,
    # on a blocked copy of the NCHW input (on NCHW itself: a simple loop).
    inputs = [("x", (1, 8, 5, 6))] + [(n, (8,)) for n in ("s", "b", "m")]
    model = single_node("BatchNormalization", [*inputs, ("v", np.ones(8, np.float32))])
    mod = check_model(model)
    bn = [i for label, i, _ in engine_steps(mod) if label.startswith("Batch")]
    assert len(bn) == 1 and "jit" in bn[0].split(":")[0], bn


def _check_if_claimed(model: onnx.ModelProto) -> None:
    try:
        mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
    except byoc.ByocError:
        return  # not a model anyone runs (e.g. ONNX shape inference rejects it)
    if claims(mod):
        return  # declined with a reason: that is allowed, failing later is not
    feeds = feeds_for(model)
    got = list(mod.run(feeds).values())
    for i, want in enumerate(run_ort(model, feeds)):
        assert_close(got[i], want, 1e-4, f"output {i}")
