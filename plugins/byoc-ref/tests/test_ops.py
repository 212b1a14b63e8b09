"""Focused tests of the tricky ref kernels, called directly through ``OPS``.

Oracles are independent of the kernels: ``math.erf``, naive loop
implementations written here, hand-computed values, and onnxruntime or onnx's
reference evaluator run on one-node models.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import byoc
from byoc_ref.ops import OPS
from byoc_ref.ops.elementwise import erf, erfc

RNG = np.random.default_rng(0)


def make_node(op: str, n_outputs: int = 1, dtypes: tuple[str, ...] | None = None,
              **attrs: Any) -> byoc.JSONGraphNode:
    """A kernel node as the runtime hands it to ops."""
    return byoc.JSONGraphNode(
        "kernel", op, attrs=attrs, shapes=(None,) * n_outputs,
        dtypes=dtypes or ("float32",) * n_outputs,
    )


def run(op: str, *inputs: Any, n_outputs: int = 1, **attrs: Any
        ) -> tuple[np.ndarray, ...]:
    out = OPS[op].fn(make_node(op, n_outputs, **attrs), *inputs)
    assert isinstance(out, tuple)
    return out


def check(op: str, inputs: tuple[np.ndarray | None, ...] = (),
          consts: dict[int, np.ndarray] | None = None, **attrs: Any) -> byoc.Support:
    node = make_node(op, **attrs)
    specs = tuple(None if a is None else byoc.TensorSpec(a.shape, a.dtype.name)
                  for a in inputs)
    info = byoc.NodeInfo(node, specs, (byoc.TensorSpec(None, "float32"),), consts or {})
    entry = OPS[op]
    return byoc.Support.yes() if entry.check is None else entry.check(info)


def onnx_model(op: str, inputs: list[np.ndarray | None], out_types: list[int],
               opset: int = 21, **attrs: Any) -> onnx.ModelProto:
    names = ["" if a is None else f"in{i}" for i, a in enumerate(inputs)]
    outs = [f"out{i}" for i in range(len(out_types))]
    graph = helper.make_graph(
        [helper.make_node(op, names, outs, **attrs)], "one",
        [helper.make_tensor_value_info(
            n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs, strict=True) if a is not None],
        [helper.make_tensor_value_info(o, t, None) for o, t in zip(outs, out_types,
                                                                   strict=True)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def feeds(inputs: list[np.ndarray | None]) -> dict[str, np.ndarray]:
    return {f"in{i}": a for i, a in enumerate(inputs) if a is not None}


def ort(op: str, inputs: list[np.ndarray | None], out_types: list[int] | None = None,
        **attrs: Any) -> list[np.ndarray]:
    """Run one op in onnxruntime."""
    rt = pytest.importorskip("onnxruntime")
    out_types = out_types or [TensorProto.FLOAT]
    model = onnx_model(op, inputs, out_types, **attrs)
    sess = rt.InferenceSession(model.SerializeToString(),
                               providers=["CPUExecutionProvider"])
    return sess.run(None, feeds(inputs))


def reference(op: str, inputs: list[np.ndarray | None],
              out_types: list[int] | None = None, **attrs: Any) -> list[np.ndarray]:
    """Run one op in onnx's reference evaluator (the source of the conformance data)."""
    from onnx.reference import ReferenceEvaluator

    model = onnx_model(op, inputs, out_types or [TensorProto.FLOAT], **attrs)
    return ReferenceEvaluator(model).run(None, feeds(inputs))


def randn(*shape: int, dtype: Any = np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------
# erf
# --------------------------------------------------------------------------

ERF_POINTS = np.concatenate([
    np.linspace(-7.0, 7.0, 28001),
    np.geomspace(1e-300, 0.5, 2000),
    -np.geomspace(1e-300, 0.5, 2000),
    np.linspace(0.46, 0.48, 2001),  # around Cody's first interval edge
    np.linspace(3.99, 4.01, 2001),  # around the second edge
    np.array([0.0, -0.0, 0.46875, 4.0, 6.0, 10.0, 26.0, 30.0, 1e10, 1e300]),
])


def test_erf_matches_math_erf_to_double_precision():
    got = erf(ERF_POINTS)
    want = np.array([math.erf(v) for v in ERF_POINTS])
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
    assert rel.max() < 1e-14, ERF_POINTS[rel.argmax()]


def test_erfc_keeps_relative_precision_in_the_tails():
    x = np.concatenate([np.linspace(-5.0, 26.0, 6201), [-30.0, 0.1, 0.47, 4.0]])
    got = erfc(x)
    want = np.array([math.erfc(v) for v in x])
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
    assert rel.max() < 1e-13, x[rel.argmax()]


def test_erf_special_values():
    got = erf(np.array([np.inf, -np.inf, np.nan, -0.0]))
    assert got[0] == 1.0 and got[1] == -1.0 and np.isnan(got[2])
    assert got[3] == 0.0 and np.signbit(got[3])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_erf_op_rounds_correctly(dtype):
    x = np.linspace(-6, 6, 4001).astype(dtype)
    (y,) = run("Erf", x)
    assert y.dtype == dtype
    want = np.array([math.erf(float(v)) for v in x])
    if dtype == np.float64:  # the rational approximation itself is ~2 ulp
        np.testing.assert_allclose(y, want, rtol=1e-15, atol=0)
    else:  # rounding a double-accurate value gives the correctly rounded result
        np.testing.assert_array_equal(y, want.astype(dtype))


def test_gelu_exact_and_tanh():
    x = np.array([-30.0, -8.0, -1.5, 0.0, 0.7, 3.0], dtype=np.float64)
    (y,) = run("Gelu", x)
    want = [0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x]
    np.testing.assert_allclose(y, want, rtol=1e-14, atol=0)
    assert y[0] < 0  # not cancelled to zero: -30 * erfc(30/sqrt 2) / 2 is tiny
    (t,) = run("Gelu", x, approximate="tanh")
    want_t = [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
              for v in x]
    np.testing.assert_allclose(t, want_t, rtol=1e-14, atol=1e-300)


# --------------------------------------------------------------------------
# Conv against a naive loop
# --------------------------------------------------------------------------


def naive_pads(in_sp, kernel, strides, dilations, pads, auto_pad):
    """Begin/end pads from the ONNX text, written independently of the kernels."""
    n = len(in_sp)
    begin, end = list(pads[:n]), list(pads[n:])
    for i in range(n):
        ext = (kernel[i] - 1) * dilations[i] + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out = math.ceil(in_sp[i] / strides[i])
            total = max(0, (out - 1) * strides[i] + ext - in_sp[i])
            small, big = total // 2, total - total // 2
            upper = auto_pad == "SAME_UPPER"
            begin[i], end[i] = (small, big) if upper else (big, small)
        elif auto_pad == "VALID":
            begin[i] = end[i] = 0
    return begin, end


def naive_conv(x, w, b, strides, dilations, begin, end, group):
    n, c = x.shape[:2]
    m = w.shape[0]
    kernel = w.shape[2:]
    nd = len(kernel)
    pad_width = [(0, 0), (0, 0)] + list(zip(begin, end, strict=True))
    xp = np.pad(x.astype(np.float64), pad_width)
    out_sp = [(xp.shape[2 + i] - (kernel[i] - 1) * dilations[i] - 1) // strides[i] + 1
              for i in range(nd)]
    y = np.zeros((n, m, *out_sp))
    cg, mg = c // group, m // group
    for bi, oc in itertools.product(range(n), range(m)):
        g = oc // mg
        for pos in itertools.product(*(range(o) for o in out_sp)):
            acc = 0.0 if b is None else float(b[oc])
            for ic in range(cg):
                for k in itertools.product(*(range(kk) for kk in kernel)):
                    src = tuple(pos[i] * strides[i] + k[i] * dilations[i]
                                for i in range(nd))
                    acc += xp[(bi, g * cg + ic, *src)] * w[(oc, ic, *k)]
            y[(bi, oc, *pos)] = acc
    return y


CONV_CASES = [
    # (x shape, w shape, attrs)
    ((1, 2, 7), (3, 2, 3), {}),
    ((2, 4, 6, 7), (6, 2, 3, 2), {"group": 2, "strides": (2, 1), "pads": (1, 0, 2, 1)}),
    ((1, 3, 9, 8), (3, 1, 3, 3),
     {"group": 3, "dilations": (2, 3), "pads": (2, 3, 2, 3)}),
    ((1, 2, 7, 6), (4, 2, 3, 3), {"auto_pad": "SAME_UPPER", "strides": (2, 2)}),
    ((1, 2, 7, 6), (4, 2, 2, 2), {"auto_pad": "SAME_LOWER", "strides": (2, 3)}),
    ((1, 2, 6, 6), (2, 2, 2, 4), {"auto_pad": "SAME_UPPER", "dilations": (2, 1)}),
    ((1, 2, 7, 6), (4, 2, 3, 2), {"auto_pad": "VALID", "strides": (3, 2)}),
    ((1, 4, 5, 4, 6), (4, 2, 2, 3, 2),
     {"group": 2, "strides": (1, 2, 2), "dilations": (2, 1, 1),
      "pads": (1, 0, 1, 0, 2, 1)}),
]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(("xs", "ws", "attrs"), CONV_CASES)
def test_conv_matches_naive_loop(xs, ws, attrs, bias):
    x, w = randn(*xs), randn(*ws)
    b = randn(ws[0]) if bias else None
    nd = len(xs) - 2
    strides = attrs.get("strides", (1,) * nd)
    dilations = attrs.get("dilations", (1,) * nd)
    begin, end = naive_pads(xs[2:], ws[2:], strides, dilations,
                            attrs.get("pads", (0,) * 2 * nd),
                            attrs.get("auto_pad", "NOTSET"))
    want = naive_conv(x, w, b, strides, dilations, begin, end, attrs.get("group", 1))
    (got,) = run("Conv", x, w, b, **attrs)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("xs", "ws", "attrs"), CONV_CASES)
def test_conv_matches_onnxruntime(xs, ws, attrs):
    if "auto_pad" in attrs and any(d > 1 for d in attrs.get("dilations", ())):
        pytest.skip("onnxruntime refuses SAME auto_pad with dilation (the naive "
                    "loop test covers it)")
    x, w, b = randn(*xs), randn(*ws), randn(ws[0])
    (got,) = run("Conv", x, w, b, **attrs)
    (want,) = ort("Conv", [x, w, b], **attrs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_conv_float16_stays_float16():
    x, w = randn(1, 2, 5, 5, dtype=np.float16), randn(3, 2, 3, 3, dtype=np.float16)
    (got,) = run("Conv", x, w)
    assert got.dtype == np.float16 and got.shape == (1, 3, 3, 3)


# --------------------------------------------------------------------------
# ConvTranspose against onnxruntime
# --------------------------------------------------------------------------

CONV_T_CASES = [
    ((1, 2, 5), (2, 3, 3), {}),
    ((1, 2, 3, 4), (2, 3, 3, 3), {"strides": (2, 2)}),
    ((2, 2, 3, 3), (2, 2, 3, 2), {"strides": (3, 2), "pads": (1, 0, 2, 1)}),
    ((1, 2, 3, 3), (2, 1, 3, 3), {"strides": (2, 2), "output_padding": (1, 1)}),
    ((1, 4, 3, 4), (4, 2, 2, 3), {"group": 2, "strides": (2, 1), "dilations": (2, 2)}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": (2, 2), "output_shape": (8, 7)}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": (2, 2), "output_shape": (8, 6),
                                  "output_padding": (1, 0)}),
    ((1, 2, 4, 3), (2, 1, 3, 3), {"strides": (2, 2), "auto_pad": "SAME_UPPER"}),
    ((1, 2, 4, 3), (2, 1, 3, 3), {"strides": (2, 2), "auto_pad": "SAME_LOWER"}),
    ((1, 2, 3, 2, 3), (2, 2, 2, 3, 2),
     {"strides": (2, 1, 2), "pads": (1, 0, 0, 0, 1, 1)}),
]


@pytest.mark.parametrize(("xs", "ws", "attrs"), CONV_T_CASES)
def test_conv_transpose_matches_onnxruntime(xs, ws, attrs):
    x, w = randn(*xs), randn(*ws)
    b = randn(ws[1] * attrs.get("group", 1))
    (got,) = run("ConvTranspose", x, w, b, **attrs)
    (want,) = ort("ConvTranspose", [x, w, b], **attrs)
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_conv_transpose_is_the_adjoint_of_conv():
    # <conv(x), y> == <x, conv_transpose(y)> for matching geometry.
    x, w = randn(1, 3, 7, 6).astype(np.float64), randn(4, 3, 3, 2).astype(np.float64)
    attrs = {"strides": (2, 3), "pads": (1, 0, 1, 1), "dilations": (2, 1)}
    (cx,) = run("Conv", x, w, **attrs)
    y = randn(*cx.shape).astype(np.float64)
    (ty,) = run("ConvTranspose", y, w, **attrs, output_shape=x.shape[2:])
    assert ty.shape == x.shape
    np.testing.assert_allclose((cx * y).sum(), (x * ty).sum(), rtol=1e-12)


# --------------------------------------------------------------------------
# pools against onnxruntime
# --------------------------------------------------------------------------

POOL_CASES = [
    ((1, 2, 7, 6), {"kernel_shape": (3, 3)}),
    ((2, 1, 7, 6), {"kernel_shape": (3, 2), "strides": (2, 2), "pads": (1, 0, 1, 1)}),
    ((1, 2, 7, 6), {"kernel_shape": (2, 2), "strides": (2, 2), "ceil_mode": 1}),
    ((1, 1, 8, 7), {"kernel_shape": (3, 3), "strides": (3, 2), "pads": (1, 1, 1, 1),
                    "ceil_mode": 1}),
    ((1, 2, 7, 6), {"kernel_shape": (3, 2), "strides": (2, 2),
                    "auto_pad": "SAME_UPPER"}),
    ((1, 2, 7, 6), {"kernel_shape": (3, 2), "strides": (2, 1),
                    "auto_pad": "SAME_LOWER"}),
    ((1, 2, 7, 6), {"kernel_shape": (2, 2), "auto_pad": "VALID", "strides": (2, 2)}),
    ((1, 1, 9, 8), {"kernel_shape": (2, 3), "dilations": (2, 2), "pads": (1, 1, 0, 2)}),
    ((1, 1, 6), {"kernel_shape": (3,), "strides": (2,), "pads": (1, 1)}),
    ((1, 1, 4, 5, 4), {"kernel_shape": (2, 2, 2), "strides": (2, 2, 1)}),
]


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize(("xs", "attrs"), POOL_CASES)
def test_max_pool_with_indices_matches_onnxruntime(xs, attrs, storage_order):
    x = randn(*xs)
    attrs = dict(attrs, storage_order=storage_order)
    got = run("MaxPool", x, n_outputs=2, **attrs)
    want = ort("MaxPool", [x], [TensorProto.FLOAT, TensorProto.INT64], **attrs)
    assert got[0].dtype == np.float32 and got[1].dtype == np.int64
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_max_pool_int8_pads_never_win():
    x = np.full((1, 1, 3, 3), -128, dtype=np.int8)
    y, idx = run("MaxPool", x, n_outputs=2, kernel_shape=(2, 2), pads=(1, 1, 1, 1))
    assert y.dtype == np.int8 and (y == -128).all()
    assert ((idx >= 0) & (idx < 9)).all()  # every max is a real pixel


@pytest.mark.parametrize("include_pad", [0, 1])
@pytest.mark.parametrize(("xs", "attrs"), POOL_CASES)
def test_average_pool_matches_onnxruntime(xs, attrs, include_pad):
    x = randn(*xs)
    attrs = dict(attrs, count_include_pad=include_pad)
    (got,) = run("AveragePool", x, **attrs)
    (want,) = ort("AveragePool", [x], **attrs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------
# Resize
# --------------------------------------------------------------------------


def test_resize_linear_half_pixel_by_hand():
    x = np.array([[[[1.0, 2.0]]]], dtype=np.float32)
    (y,) = run("Resize", x, None, np.array([1, 1, 1, 2], np.float32), mode="linear")
    np.testing.assert_allclose(y, [[[[1.0, 1.25, 1.75, 2.0]]]])


def test_resize_nearest_modes_by_hand():
    # asymmetric source coordinates of 5 outputs over 2 inputs: 0, .4, .8, 1.2, 1.6
    x = np.array([[10.0, 20.0]], dtype=np.float32)
    scales = np.array([1.0, 2.5], np.float32)
    want = {"round_prefer_floor": [10, 10, 20, 20, 20], "floor": [10, 10, 10, 20, 20],
            "ceil": [10, 20, 20, 20, 20], "round_prefer_ceil": [10, 10, 20, 20, 20]}
    for mode, values in want.items():
        (y,) = run("Resize", x, None, scales, nearest_mode=mode,
                   coordinate_transformation_mode="asymmetric")
        np.testing.assert_array_equal(y, [values], err_msg=mode)


RESIZE_COORDS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                 "align_corners", "asymmetric", "tf_crop_and_resize"]
RESIZE_MODES = [
    {"mode": "nearest", "nearest_mode": m}
    for m in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
] + [
    {"mode": "linear"}, {"mode": "linear", "antialias": 1},
    {"mode": "cubic"}, {"mode": "cubic", "exclude_outside": 1},
    {"mode": "cubic", "antialias": 1, "cubic_coeff_a": -0.5},
]
RESIZE_TARGETS = [
    {"scales": [1.0, 1.0, 2.0, 1.5]},
    {"scales": [1.0, 1.0, 0.6, 0.5]},
    {"sizes": [1, 2, 9, 3]},
    {"sizes": [3, 2], "axes": (2, 3)},
    {"sizes": [3, 9], "axes": (2, 3), "keep_aspect_ratio_policy": "not_larger"},
    {"sizes": [3, 9], "axes": (-2, -1), "keep_aspect_ratio_policy": "not_smaller"},
]


@pytest.mark.parametrize("target", RESIZE_TARGETS, ids=lambda t: str(t))
@pytest.mark.parametrize("mode", RESIZE_MODES,
                         ids=lambda m: "-".join(map(str, m.values())))
@pytest.mark.parametrize("coord", RESIZE_COORDS)
def test_resize_matches_onnx_reference(coord, mode, target):
    x = randn(1, 2, 5, 6)
    attrs = dict(mode, coordinate_transformation_mode=coord,
                 extrapolation_value=-7.0)
    for key in ("axes", "keep_aspect_ratio_policy"):
        if key in target:
            attrs[key] = target[key]
    n_axes = len(target.get("axes", range(4)))
    roi = None
    if coord == "tf_crop_and_resize":
        # Chosen so no source coordinate is a rounding tie: onnx's reference (and
        # onnxruntime) form ``end - start`` in float32, ref in float64.
        roi = np.array([0.0] * (n_axes - 2) + [0.12, -0.2] +
                       [1.0] * (n_axes - 2) + [0.83, 1.3], np.float32)
    scales = np.array(target["scales"], np.float32) if "scales" in target else None
    sizes = np.array(target["sizes"], np.int64) if "sizes" in target else None
    (got,) = run("Resize", x, roi, scales, sizes, **attrs)
    if "axes" in attrs:  # onnx's reference mishandles negative axes
        attrs["axes"] = tuple(a % 4 for a in attrs["axes"])
    (want,) = reference("Resize", [x, roi, scales, sizes], **attrs)
    assert got.dtype == np.float32 and got.shape == want.shape
    # onnx's reference computes cubic weights in float32 (its cubic_coeff_a is a
    # numpy float32 scalar), ref in float64.
    atol = 1e-5 if mode["mode"] == "cubic" else 1e-6
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)


@pytest.mark.parametrize(("mode", "coord"), [
    ("linear", "half_pixel"), ("linear", "align_corners"), ("linear", "asymmetric"),
    ("nearest", "asymmetric"), ("nearest", "half_pixel"), ("cubic", "half_pixel"),
])
def test_resize_matches_onnxruntime(mode, coord):
    x = randn(1, 2, 5, 6)
    sizes = np.array([1, 2, 8, 4], np.int64)
    attrs = {"mode": mode, "coordinate_transformation_mode": coord}
    (got,) = run("Resize", x, None, None, sizes, **attrs)
    (want,) = ort("Resize", [x, None, None, sizes], **attrs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_resize_integer_rounds_and_saturates():
    x = np.array([[0, 255, 255, 0]], dtype=np.uint8)
    (y,) = run("Resize", x, None, np.array([1.0, 2.0], np.float32), mode="cubic")
    assert y.dtype == np.uint8
    (f,) = run("Resize", x.astype(np.float64), None, np.array([1.0, 2.0], np.float32),
               mode="cubic")
    np.testing.assert_array_equal(y, np.clip(np.round(f), 0, 255))
    assert f.max() > 255  # cubic overshoots, so saturation was exercised


def test_resize_check_refuses_unknown_values():
    assert not check("Resize", mode="bicubic")
    assert not check("Resize", mode="nearest", antialias=1)
    assert not check("Resize", coordinate_transformation_mode="tf_half_pixel_for_nn")
    assert "nearest_mode" in check("Resize", nearest_mode="banker").reason
    assert check("Resize", mode="cubic", antialias=1)


# --------------------------------------------------------------------------
# Pad and Slice
# --------------------------------------------------------------------------

PAD_CASES = [
    ([1, 2, 0, 1], None),
    ([2, 0, 2, 3], None),
    ([-1, 2, 1, -2], None),
    ([0, -2, 3, 1], None),
    ([2, 1], [1]),
    ([1, -1, 2, 0], [0, -1]),
]


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize(("pads", "axes"), PAD_CASES)
def test_pad_matches_onnxruntime(mode, pads, axes):
    x = randn(4, 5)
    pads_t = np.array(pads, np.int64)
    value = np.array(2.5, np.float32)
    axes_t = None if axes is None else np.array(axes, np.int64)
    (got,) = run("Pad", x, pads_t, value, axes_t, mode=mode)
    (want,) = ort("Pad", [x, pads_t, value, axes_t], mode=mode)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_pad_by_hand():
    x = np.array([1, 2, 3], dtype=np.int32)
    cases = {"constant": [9, 9, 1, 2, 3, 9], "reflect": [3, 2, 1, 2, 3, 2],
             "edge": [1, 1, 1, 2, 3, 3], "wrap": [2, 3, 1, 2, 3, 1]}
    for mode, want in cases.items():
        (y,) = run("Pad", x, np.array([2, 1]), np.array(9, np.int32), mode=mode)
        np.testing.assert_array_equal(y, want, err_msg=mode)
        assert y.dtype == np.int32


def test_pad_check_refuses_unknown_mode():
    assert not check("Pad", mode="symmetric")
    assert check("Pad", mode="wrap")


BIG = 2**63 - 1


@pytest.mark.parametrize(("start", "end", "step"), [
    (-1, -BIG - 1, -1), (BIG, -BIG - 1, -2), (4, 1, -1), (-2, -6, -3), (10, -10, -1),
    (0, -1, -1), (3, 3, -1), (-100, 100, 2), (1, BIG, 3), (-1, 0, -2), (5, -1, -1),
])
def test_slice_matches_onnxruntime(start, end, step):
    x = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    args = [np.array([start], np.int64), np.array([end], np.int64),
            np.array([0], np.int64), np.array([step], np.int64)]
    (got,) = run("Slice", x, *args)
    (want,) = ort("Slice", [x, *args])
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_slice_negative_step_by_hand():
    x = np.arange(5)
    cases = [((-1, -BIG, -1), [4, 3, 2, 1, 0]), ((3, 0, -2), [3, 1]),
             ((10, -10, -1), [4, 3, 2, 1, 0]), ((0, -1, -1), [])]
    for (s, e, st), want in cases:
        (y,) = run("Slice", x, np.array([s]), np.array([e]), None, np.array([st]))
        np.testing.assert_array_equal(y, want, err_msg=str((s, e, st)))


# --------------------------------------------------------------------------
# version-dependent forms and exact dtypes
# --------------------------------------------------------------------------


def test_split_forms():
    x = np.arange(10)
    assert [len(p) for p in run("Split", x, n_outputs=4, num_outputs=4)] == [3, 3, 3, 1]
    assert [len(p) for p in run("Split", x, np.array([2, 8]), n_outputs=2)] == [2, 8]
    assert [len(p) for p in run("Split", x, n_outputs=2, split=(7, 3))] == [7, 3]
    assert [len(p) for p in run("Split", x, n_outputs=5)] == [2] * 5


def test_reduce_axes_attribute_or_input():
    x = randn(2, 3, 4)
    (a,) = run("ReduceMean", x, axes=(1, -1), keepdims=0)
    (b,) = run("ReduceMean", x, np.array([1, -1]), keepdims=0)
    np.testing.assert_allclose(a, x.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(a, b)
    (same,) = run("ReduceSum", x, np.zeros(0, np.int64), noop_with_empty_axes=1)
    np.testing.assert_array_equal(same, x)
    (total,) = run("ReduceMax", x, np.zeros(0, np.int64), keepdims=0)
    assert total.shape == () and total == x.max()
    (empty,) = run("ReduceMax", np.zeros((2, 0), np.float32), np.array([1]))
    assert empty.shape == (2, 1) and (empty == -np.inf).all()


def test_integer_reduce_mean_and_div_truncate_toward_zero():
    x = np.array([[-7, 2], [7, -2]], dtype=np.int32)
    (m,) = run("ReduceMean", x, np.array([1]), keepdims=0)
    np.testing.assert_array_equal(m, [-2, 2])  # -5/2 and 5/2 truncated
    assert m.dtype == np.int32
    (q,) = run("Div", np.array([-7, 7, -7, 7], np.int64), np.array([2, -2, -2, 2]))
    np.testing.assert_array_equal(q, [-3, -3, 3, 3])


def test_squeeze_unsqueeze_attribute_or_input():
    x = np.zeros((1, 3, 1, 2))
    assert run("Squeeze", x, np.array([0, -2]))[0].shape == (3, 2)
    assert run("Squeeze", x, axes=(2,))[0].shape == (1, 3, 2)
    assert run("Squeeze", x)[0].shape == (3, 2)
    assert run("Unsqueeze", x, np.array([-1, 0]))[0].shape == (1, 1, 3, 1, 2, 1)
    assert run("Unsqueeze", np.zeros(3), axes=(1,))[0].shape == (3, 1)


def test_clip_inputs_and_attributes():
    x = np.array([-3, 0, 5], dtype=np.int8)
    lo, hi = np.int8(-1), np.int8(2)
    np.testing.assert_array_equal(run("Clip", x, lo, hi)[0], [-1, 0, 2])
    np.testing.assert_array_equal(run("Clip", x, None, np.int8(2))[0], [-3, 0, 2])
    np.testing.assert_array_equal(run("Clip", x, min=-2.0)[0], [-2, 0, 5])
    np.testing.assert_array_equal(run("Clip", x, np.int8(4), np.int8(1))[0], [1, 1, 1])


FLOAT_OPS_1 = ["Sqrt", "Exp", "Log", "Erf", "Tanh", "Sigmoid", "Relu", "LeakyRelu",
               "Abs", "Neg", "Reciprocal", "Softplus", "Gelu", "HardSigmoid",
               "HardSwish", "Elu", "Selu", "Softmax", "LogSoftmax", "Identity",
               "GlobalAveragePool", "GlobalMaxPool", "Floor", "Ceil", "Sign"]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("op", FLOAT_OPS_1)
def test_float_ops_keep_dtype(op, dtype):
    x = np.abs(randn(2, 3, 4, dtype=dtype)) + dtype(0.5)
    (y,) = run(op, x)
    assert y.dtype == dtype
    assert y.shape == ((2, 3, 1) if op.startswith("Global") else x.shape)


def test_pow_keeps_base_dtype():
    assert run("Pow", randn(3), np.array([2, 3, 1], np.int64))[0].dtype == np.float32
    (y,) = run("Pow", np.array([2, 3], np.int64), np.array([0.5, 2.0], np.float32))
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [1, 9])


def test_gemm_and_matmul_float16_accumulate_wide():
    a = np.full((1, 4096), 0.1, np.float16)
    b = np.ones((4096, 1), np.float16)
    (y,) = run("MatMul", a, b)
    assert y.dtype == np.float16
    # 4096 * float16(0.1) is 409.5 (rounded to 409.5 in float16); a float16
    # running sum would drift far from it.
    assert y[0, 0] == np.float16(4096 * float(np.float16(0.1)))
    (g,) = run("Gemm", a, b.T, np.float16(1), transB=1, alpha=2.0, beta=3.0)
    assert g.dtype == np.float16 and g[0, 0] == np.float16(2 * 409.5 + 3)


def test_layer_norm_outputs():
    x = randn(2, 3, 4)
    scale, bias = randn(3, 4), randn(3, 4)
    y, mean, inv = run("LayerNormalization", x, scale, bias, n_outputs=3, axis=1)
    xw = x.astype(np.float64)
    mu = xw.mean(axis=(1, 2), keepdims=True)
    sd = np.sqrt(xw.var(axis=(1, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, (xw - mu) / sd * scale + bias, rtol=1e-5, atol=1e-6)
    assert mean.shape == (2, 1, 1) and mean.dtype == np.float32
    np.testing.assert_allclose(inv, 1 / sd, rtol=1e-6)


def test_batch_norm_training_mode_running_stats():
    x = randn(4, 3, 2)
    s, b, m, v = randn(3), randn(3), randn(3), np.abs(randn(3))
    y, rm, rv = run("BatchNormalization", x, s, b, m, v, n_outputs=3,
                    training_mode=1, momentum=0.8)
    bm, bv = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    np.testing.assert_allclose(rm, 0.8 * m + 0.2 * bm, rtol=1e-5)
    np.testing.assert_allclose(rv, 0.8 * v + 0.2 * bv, rtol=1e-5)
    want = (x - bm[:, None]) / np.sqrt(bv[:, None] + 1e-5) * s[:, None] + b[:, None]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_cast_and_dropout_checks():
    assert not check("Cast", to=TensorProto.BFLOAT16)
    assert not check("Cast", to=TensorProto.STRING)
    assert check("Cast", to=TensorProto.FLOAT16)
    x = randn(3)
    ratio, t, f = np.array(0.5, np.float32), np.array(True), np.array(False)
    assert check("Dropout", (x,))
    assert check("Dropout", (x, ratio, f), consts={1: ratio, 2: f})
    assert not check("Dropout", (x, ratio, t), consts={1: ratio, 2: t})
    assert not check("Dropout", (x, ratio, t), consts={1: ratio})  # decided at run time
    zero = np.array(0.0, np.float32)
    assert check("Dropout", (x, zero, t), consts={1: zero, 2: t})
    y, mask = run("Dropout", x, ratio, f, n_outputs=2)
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()


def test_gemm_integer_alpha_is_refused():
    a = np.ones((2, 2), np.int32)
    assert not check("Gemm", (a, a), alpha=2.0)
    assert check("Gemm", (a, a))
    assert check("Gemm", (a.astype(np.float32),) * 2, alpha=2.0)


def test_range_lengths_and_dtypes():
    (r,) = run("Range", np.int32(10), np.int32(-3), np.int32(-4))
    np.testing.assert_array_equal(r, [10, 6, 2, -2])
    assert r.dtype == np.int32
    (f,) = run("Range", np.float32(1), np.float32(2), np.float32(0.3))
    np.testing.assert_allclose(f, [1.0, 1.3, 1.6, 1.9], rtol=1e-6)
    assert f.dtype == np.float32
    assert run("Range", np.int64(5), np.int64(1), np.int64(1))[0].shape == (0,)


# --------------------------------------------------------------------------
# extras against onnxruntime
# --------------------------------------------------------------------------

TIES = np.array([[3, 1, 3, 2, 1, 3], [0, 0, 0, 0, 0, 0]], dtype=np.int64)
EXTRA_CASES = [
    ("CumSum", lambda: [randn(3, 4), np.array(1, np.int64)], {}),
    ("CumSum", lambda: [randn(3, 4), np.array(-1, np.int64)],
     {"exclusive": 1, "reverse": 1}),
    ("CumSum", lambda: [TIES, np.array([0], np.int64)], {"exclusive": 1}),
    ("TopK", lambda: [TIES, np.array([4], np.int64)], {"axis": 1}),
    ("TopK", lambda: [TIES, np.array([3], np.int64)], {"axis": -1, "largest": 0}),
    ("TopK", lambda: [randn(5, 3), np.array([2], np.int64)], {"axis": 0}),
    ("LRN", lambda: [randn(2, 5, 3, 3)], {"size": 3}),
    ("LRN", lambda: [randn(1, 6, 2, 2)], {"size": 5, "alpha": 0.01, "beta": 0.5,
                                           "bias": 2.0}),
    ("Einsum", lambda: [randn(2, 3, 4), randn(2, 4, 5)],
     {"equation": "bij, bjk -> bik"}),
    ("Trilu", lambda: [randn(2, 4, 5), np.array(-1, np.int64)], {"upper": 0}),
    ("OneHot", lambda: [np.array([[0, -1], [5, 2]], np.int64), np.array(4, np.int64),
                        np.array([-2.0, 3.0], np.float32)], {"axis": 1}),
    ("ScatterElements", lambda: [randn(3, 4), np.array([[1, 1], [0, -1]], np.int64),
                                 randn(2, 2)], {"axis": 1, "reduction": "add"}),
    ("ScatterND", lambda: [randn(4, 3), np.array([[1], [3], [1]], np.int64),
                           randn(3, 3)], {"reduction": "mul"}),
    ("GroupNormalization", lambda: [randn(2, 6, 3), randn(6), randn(6)],
     {"num_groups": 3}),
]


@pytest.mark.parametrize(("op", "make", "attrs"), EXTRA_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(EXTRA_CASES)])
def test_extra_ops_match_onnxruntime(op, make, attrs):
    inputs = make()
    n_out = 2 if op == "TopK" else 1
    got = run(op, *inputs, n_outputs=n_out, **attrs)
    types = [helper.np_dtype_to_tensor_dtype(inputs[-1 if op == "OneHot" else 0].dtype)]
    types += [TensorProto.INT64] * (n_out - 1)
    want = ort(op, inputs, types, **attrs)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


# ONNX broadcasts these operands one way only: numpy would stretch the other
# side too (a symbolic dim that changed at run time gave a wrong-shaped result).
ONE_WAY_CASES = [
    ("Gemm", [randn(3, 4), randn(4, 5), randn(1, 5)], {}, True),
    ("Gemm", [randn(3, 4), randn(4, 5), randn(3, 1)], {}, True),
    ("Gemm", [randn(1, 4), randn(4, 5), randn(3, 5)], {}, False),
    ("PRelu", [randn(2, 3, 4), randn(3, 1)], {}, True),
    ("PRelu", [randn(2, 1, 4), randn(3, 1)], {}, False),
    ("LayerNormalization", [randn(2, 5), randn(5), randn(5)], {}, True),
    ("LayerNormalization", [randn(2, 1), randn(5), randn(5)], {}, False),
    ("LayerNormalization", [randn(2, 1), randn(1), randn(5)], {}, False),
]


@pytest.mark.parametrize(("op", "inputs", "attrs", "valid"), ONE_WAY_CASES)
def test_one_way_broadcast_operands(op, inputs, attrs, valid):
    if not valid:
        with pytest.raises(ValueError, match="does not broadcast to"):
            run(op, *inputs, **attrs)
        return
    (got,) = run(op, *inputs, **attrs)
    (want,) = ort(op, inputs, **attrs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_gemm_needs_rank_two_operands():
    # numpy's matmul would broadcast a rank-4 A (a mutated model ran).
    support = check("Gemm", (randn(2, 8, 5, 5), randn(5)))
    assert not support and "rank-2" in support.reason
    assert check("Gemm", (randn(3, 4), randn(4, 5)))


@pytest.mark.parametrize(("op", "inputs", "attrs"), [
    ("Conv", [randn(1, 3, 12, 1), randn(4, 3, 3, 3)], {}),
    ("MaxPool", [randn(1, 3, 12, 1)], {"kernel_shape": [3, 3]}),
    ("AveragePool", [randn(1, 3, 12, 1)], {"kernel_shape": [3, 3]}),
])
def test_a_window_larger_than_the_padded_input_is_an_error(op, inputs, attrs):
    # onnxruntime refuses these (a negative output size); clamping it to an
    # empty result hid the mistake.
    with pytest.raises(ValueError, match="does not fit the padded input"):
        run(op, *inputs, **attrs)
    with pytest.raises(Exception):  # noqa: B017 - its own words, whatever the type
        ort(op, inputs, **attrs)


def test_a_window_that_just_misses_gives_an_empty_result():
    (got,) = run("MaxPool", randn(1, 3, 12, 1), kernel_shape=[2, 2])
    (want,) = ort("MaxPool", [randn(1, 3, 12, 1)], kernel_shape=[2, 2])
    assert got.shape == want.shape == (1, 3, 11, 0)


@pytest.mark.parametrize(("attrs", "complaint"), [
    ({"pads": [0, 0, 0, 0, -3]}, "pads has 5 values, 4 expected"),
    ({"strides": [1]}, "strides has 1 values, 2 expected"),
    ({"dilations": [1, 1, 1]}, "dilations has 3 values, 2 expected"),
    ({"pads": [0, -1, 0, 0]}, "must not be negative"),
])
def test_window_attributes_of_the_wrong_length_are_errors(attrs, complaint):
    # A mutated model's 5-value pads ran with the first four; onnxruntime refuses.
    with pytest.raises(ValueError, match=complaint):
        run("MaxPool", randn(1, 3, 6, 6), kernel_shape=[3, 3], **attrs)
