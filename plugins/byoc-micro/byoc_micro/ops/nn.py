"""Neural-network ops: Conv, the pools, Gemm/MatMul, BatchNormalization, Softmax.

Conv and the pools run 1-D and 2-D windows (input rank 3 or 4) with explicit
pads or any ``auto_pad`` (SAME_* derives the pads as the reference does).
"""

from __future__ import annotations

from collections.abc import Sequence

import byoc

from . import MAX_DIM, attr, no, op

MAX_WINDOW_ATTR = 1 << 20
"""Largest stride, dilation or pad the C kernels accept (keeps spans in int64)."""


def _shape(node: byoc.NodeInfo, i: int) -> tuple[int, ...]:
    spec = node.inputs[i]
    assert spec is not None and spec.shape is not None
    return tuple(int(d) for d in spec.shape)


def _ints(
    node: byoc.NodeInfo, key: str, n: int, lo: int, hi: int
) -> tuple[int, ...] | str | None:
    """The attribute (None when absent) or why it is refused."""
    value = attr(node, key)
    if value is None:
        return None
    if not isinstance(value, tuple) or len(value) != n:
        return f"{key}={value!r}: needs {n} ints"
    if not all(isinstance(v, int) and lo <= v <= hi for v in value):
        return f"{key}={value!r} outside [{lo}, {hi}]"
    return value


def _window_problem(
    node: byoc.NodeInfo, kernel: Sequence[int], *, ceil_mode: bool = False
) -> str | None:
    """Why the sliding window of a Conv or pool cannot run, or None."""
    x = _shape(node, 0)
    nd = len(x) - 2
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER", ""):
        return f"auto_pad={auto_pad} not supported"
    got = []
    for key, lo, default in (("strides", 1, 1), ("dilations", 1, 1), ("pads", 0, 0)):
        n = 2 * nd if key == "pads" else nd
        value = _ints(node, key, n, lo, MAX_WINDOW_ATTR)
        if isinstance(value, str):
            return value
        got.append(value or (default,) * n)
    strides, dilations, pads = got
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return None  # pads are derived so the output is ceil(in / stride)
    if auto_pad == "VALID":
        pads = (0,) * (2 * nd)
    for i in range(nd):
        span = (kernel[i] - 1) * dilations[i] + 1
        if x[2 + i] + pads[i] + pads[nd + i] < span:
            return "window larger than the padded input"
    return None


def _spatial(node: byoc.NodeInfo) -> str | None:
    rank = len(_shape(node, 0))
    if rank not in (3, 4):
        return f"on rank-{rank} input; micro runs 1-D and 2-D windows"
    return None


@op("Conv", inputs=(2, 3))
def conv(node: byoc.NodeInfo) -> byoc.Support:
    if problem := _spatial(node):
        return no(node, problem)
    x, w = _shape(node, 0), _shape(node, 1)
    if len(w) != len(x):
        return no(node, f"weight rank {len(w)} differs from input rank {len(x)}")
    kernel = w[2:]
    ks = _ints(node, "kernel_shape", len(kernel), 1, MAX_DIM - 1)
    if isinstance(ks, str) or (ks is not None and ks != kernel):
        return no(node, f"kernel_shape {attr(node, 'kernel_shape')} != weight {kernel}")
    group = attr(node, "group", 1)
    if (
        not isinstance(group, int)
        or group < 1
        or x[1] % group
        or w[0] % group
        or w[1] * group != x[1]
    ):
        return no(node, f"group={group} does not divide the channels")
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        if _shape(node, 2) != (w[0],):
            return no(node, f"bias shape {_shape(node, 2)} is not ({w[0]},)")
    if problem := _window_problem(node, kernel):
        return no(node, problem)
    return byoc.Support.yes()


def _pool(node: byoc.NodeInfo, extra: tuple[str, ...]) -> byoc.Support:
    if problem := _spatial(node):
        return no(node, problem)
    nd = len(_shape(node, 0)) - 2
    kernel = _ints(node, "kernel_shape", nd, 1, MAX_DIM - 1)
    if kernel is None or isinstance(kernel, str):
        return no(node, f"needs kernel_shape of {nd} ints")
    for key in ("ceil_mode", *extra):
        if not isinstance(attr(node, key, 0), int):
            return no(node, f"{key} must be an int")
    ceil_mode = bool(attr(node, "ceil_mode", 0))
    if problem := _window_problem(node, kernel, ceil_mode=ceil_mode):
        return no(node, problem)
    return byoc.Support.yes()


@op("MaxPool", inputs=(1, 1))
def max_pool(node: byoc.NodeInfo) -> byoc.Support:
    # the Indices output is refused by the shared one-output rule
    return _pool(node, ())


@op("AveragePool", inputs=(1, 1))
def average_pool(node: byoc.NodeInfo) -> byoc.Support:
    return _pool(node, ("count_include_pad",))


@op("GlobalAveragePool", inputs=(1, 1))
def global_average_pool(node: byoc.NodeInfo) -> byoc.Support:
    if len(_shape(node, 0)) < 3:
        return no(node, "needs an (N, C, ...) input of rank >= 3")
    return byoc.Support.yes()


@op("Gemm", inputs=(2, 3))
def gemm(node: byoc.NodeInfo) -> byoc.Support:
    a, b = _shape(node, 0), _shape(node, 1)
    if len(a) != 2 or len(b) != 2:
        return no(node, "needs 2-D A and B")
    for key in ("transA", "transB"):
        if not isinstance(attr(node, key, 0), int):
            return no(node, f"{key} must be an int")
    for key in ("alpha", "beta"):
        if not isinstance(attr(node, key, 1.0), float | int):
            return no(node, f"{key} must be a float")
    m = a[1] if attr(node, "transA", 0) else a[0]
    n = b[0] if attr(node, "transB", 0) else b[1]
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        c = _shape(node, 2)
        rows = c[0] if len(c) == 2 else 1
        cols = c[-1] if c else 1
        if len(c) > 2 or rows not in (1, m) or cols not in (1, n):
            return no(node, f"C of shape {c} does not broadcast to ({m}, {n})")
    return byoc.Support.yes()


@op("MatMul", inputs=(2, 2))
def matmul(node: byoc.NodeInfo) -> byoc.Support:
    if not _shape(node, 0) or not _shape(node, 1):
        return no(node, "on scalars")
    return byoc.Support.yes()


@op("BatchNormalization", inputs=(5, 5))
def batch_norm(node: byoc.NodeInfo) -> byoc.Support:
    if attr(node, "training_mode", 0):
        return no(node, "in training mode not supported")
    if not isinstance(attr(node, "epsilon", 1e-5), float | int):
        return no(node, "epsilon must be a float")
    x = _shape(node, 0)
    if len(x) < 2:
        return no(node, "needs an (N, C, ...) input")
    for i in range(1, 5):
        if _shape(node, i) != (x[1],):
            return no(node, f"input {i} must have shape ({x[1]},)")
    return byoc.Support.yes()


@op("Softmax", inputs=(1, 1))
def softmax(node: byoc.NodeInfo) -> byoc.Support:
    rank = len(_shape(node, 0))
    axis = attr(node, "axis", -1)
    if rank < 1 or not isinstance(axis, int) or not -rank <= axis < rank:
        return no(node, f"axis={axis} out of range for rank {rank}")
    return byoc.Support.yes()
