"""Reductions (Reduce*, ArgMax/ArgMin).

ONNX moved Reduce* ``axes`` from an attribute to an optional input (ReduceSum
at opset 13, the others at 18); :func:`._common.axes_of` reads whichever is
present. No axes means "all axes", unless ``noop_with_empty_axes=1`` makes the
op the identity. Reducing an empty set gives the op's identity (0 for sums,
-inf for max...), as the ONNX tests expect.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import byoc

from . import attr, op
from ._common import (
    axes_of,
    highest,
    ints,
    is_float,
    lowest,
    norm_axes,
    norm_axis,
    trunc_div,
    wide,
)


def _reduce(node, x, axes, fn: Callable[..., np.ndarray]) -> tuple[np.ndarray, ...]:
    """Apply ``fn(x, axis=..., keepdims=...)`` with ONNX's axes rules."""
    found = axes_of(node, axes)
    if not found:
        if attr(node, "noop_with_empty_axes", 0):
            return (x,)
        found = range(x.ndim)
    keepdims = bool(attr(node, "keepdims", 1))
    return (np.asarray(fn(x, axis=norm_axes(found, x.ndim), keepdims=keepdims)),)


def _float_only(op_name: str):
    def check(info: byoc.NodeInfo) -> byoc.Support:
        spec = info.inputs[0]
        if spec is not None and not is_float(np.dtype(spec.dtype)):
            return byoc.Support.no(f"ref: {op_name} on {spec.dtype} not supported")
        return byoc.Support.yes()

    return check


@op("ReduceSum")
def reduce_sum(node, x, axes=None):
    # Integer sums wrap in their own dtype, as onnxruntime's do.
    return _reduce(node, x, axes, lambda v, **kw: wide(v).sum(**kw).astype(v.dtype))


@op("ReduceMean")
def reduce_mean(node, x, axes=None):
    def mean(v, axis, keepdims):
        if is_float(v.dtype):
            return wide(v).mean(axis=axis, keepdims=keepdims).astype(v.dtype)
        # Integer mean: exact int64 sum divided with truncation toward zero.
        count = max(int(np.prod([v.shape[a] for a in axis])), 1)
        total = v.astype(np.int64).sum(axis=axis, keepdims=keepdims)
        return trunc_div(total, np.int64(count)).astype(v.dtype)

    return _reduce(node, x, axes, mean)


@op("ReduceMax")
def reduce_max(node, x, axes=None):
    return _reduce(node, x, axes,
                   lambda v, **kw: v.max(initial=lowest(v.dtype), **kw))


@op("ReduceMin")
def reduce_min(node, x, axes=None):
    return _reduce(node, x, axes,
                   lambda v, **kw: v.min(initial=highest(v.dtype), **kw))


@op("ReduceProd")
def reduce_prod(node, x, axes=None):
    return _reduce(node, x, axes, lambda v, **kw: wide(v).prod(**kw).astype(v.dtype))


@op("ReduceL1")
def reduce_l1(node, x, axes=None):
    return _reduce(node, x, axes,
                   lambda v, **kw: np.abs(wide(v)).sum(**kw).astype(v.dtype))


@op("ReduceSumSquare")
def reduce_sum_square(node, x, axes=None):
    return _reduce(node, x, axes,
                   lambda v, **kw: np.square(wide(v)).sum(**kw).astype(v.dtype))


@op("ReduceL2", check=_float_only("ReduceL2"))
def reduce_l2(node, x, axes=None):
    def l2(v, **kw):
        return np.sqrt(np.square(wide(v)).sum(**kw)).astype(v.dtype)

    return _reduce(node, x, axes, l2)


@op("ReduceLogSum", check=_float_only("ReduceLogSum"))
def reduce_log_sum(node, x, axes=None):
    return _reduce(node, x, axes,
                   lambda v, **kw: np.log(wide(v).sum(**kw)).astype(v.dtype))


@op("ReduceLogSumExp", check=_float_only("ReduceLogSumExp"))
def reduce_log_sum_exp(node, x, axes=None):
    def lse(v, axis, keepdims):
        w = wide(v)
        # Shift by the max for stability; an all -inf (or empty) slice shifts by 0.
        top = w.max(axis=axis, keepdims=True, initial=-np.inf)
        top = np.where(np.isfinite(top), top, 0.0)
        y = np.log(np.exp(w - top).sum(axis=axis, keepdims=True)) + top
        return (y if keepdims else np.squeeze(y, axis=axis)).astype(v.dtype)

    return _reduce(node, x, axes, lse)


def _arg(node, x, fn: Callable[..., np.ndarray]) -> tuple[np.ndarray, ...]:
    """ArgMax/ArgMin: first extreme index, or the last with select_last_index=1."""
    axis = norm_axis(attr(node, "axis", 0), x.ndim)
    keepdims = bool(attr(node, "keepdims", 1))
    if attr(node, "select_last_index", 0):
        last = x.shape[axis] - 1
        idx = last - fn(np.flip(x, axis=axis), axis=axis, keepdims=keepdims)
    else:
        idx = fn(x, axis=axis, keepdims=keepdims)
    return (np.asarray(idx, dtype=np.int64),)


@op("ArgMax")
def arg_max(node, x):
    return _arg(node, x, np.argmax)


@op("ArgMin")
def arg_min(node, x):
    return _arg(node, x, np.argmin)


# --------------------------------------------------------------------------
# scans and selection
# --------------------------------------------------------------------------


@op("CumSum")
def cum_sum(node, x, axis):
    """Running sum along ``axis``; ``exclusive`` shifts by one, ``reverse`` runs
    from the end."""
    ax = norm_axis(ints(axis)[0], x.ndim)
    y = np.flip(x, ax) if attr(node, "reverse", 0) else x
    y = np.cumsum(wide(y), axis=ax).astype(x.dtype)
    if attr(node, "exclusive", 0):
        head = np.zeros_like(np.take(y, [0], axis=ax))
        y = np.concatenate([head, np.take(y, range(y.shape[ax] - 1), axis=ax)], axis=ax)
    return (np.flip(y, ax) if attr(node, "reverse", 0) else y,)


@op("TopK")
def top_k(node, x, k):
    """The k largest (or smallest) along ``axis``, equal values by lower index.

    A stable ascending sort of the reversed axis, read backwards, orders
    descending with ties in index order; no negation, so integer minima are safe.
    """
    axis = norm_axis(attr(node, "axis", -1), x.ndim)
    count = int(np.asarray(k).reshape(-1)[0])
    if attr(node, "largest", 1):
        last = x.shape[axis] - 1
        order = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
        order = last - np.flip(order, axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    idx = np.take(order, range(count), axis=axis)
    return (np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64))
