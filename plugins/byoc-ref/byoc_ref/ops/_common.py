"""Helpers shared by the op families: axes, precision, and sliding-window geometry.

Kept in one place so Conv, ConvTranspose and the pools agree on ONNX's padding
rules, and every op normalises axes and reads its attributes the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# --------------------------------------------------------------------------
# axes
# --------------------------------------------------------------------------


def norm_axis(axis: int, rank: int) -> int:
    """``axis`` in ``[0, rank)``; ONNX allows negative axes counted from the end."""
    axis = int(axis)
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def norm_axes(axes: Iterable[int], rank: int) -> tuple[int, ...]:
    """Each of ``axes`` normalised with :func:`norm_axis`."""
    return tuple(norm_axis(a, rank) for a in axes)


def ints(values: Any) -> tuple[int, ...]:
    """A 1-D int tensor (or attribute tuple) as a tuple of Python ints."""
    return tuple(int(v) for v in np.asarray(values).reshape(-1))


def axes_of(node: Any, axes_input: np.ndarray | None) -> tuple[int, ...] | None:
    """Axes from the ``axes`` input (newer opsets) or attribute (older ones).

    ONNX moved ``axes`` from an attribute to an input at different opsets for
    different ops; whichever is present wins, so one kernel serves every version.
    None when neither is given.
    """
    if axes_input is not None:
        return ints(axes_input)
    attr_axes = node.attrs.get("axes")
    return None if attr_axes is None else tuple(attr_axes)


# --------------------------------------------------------------------------
# precision
# --------------------------------------------------------------------------


def is_float(dtype: np.dtype) -> bool:
    """True for the floating dtypes byoc stores (float16/32/64)."""
    return np.issubdtype(dtype, np.floating)


def wide(x: np.ndarray) -> np.ndarray:
    """``x`` as float64 when it is a float tensor, else unchanged.

    The oracle computes transcendental functions, reductions and products in
    double precision and rounds once at the end, so its float32/float16 results
    are as close to exact as the output dtype allows.
    """
    if is_float(x.dtype) and x.dtype != np.float64:
        return x.astype(np.float64)
    return x


def unidirectional(
    operand: np.ndarray, shape: tuple[int, ...], what: str
) -> np.ndarray:
    """``operand``, checked to broadcast *to* ``shape`` without growing it.

    ONNX broadcasts Gemm's C, PRelu's slope and LayerNormalization's scale and
    bias one way only; numpy would also stretch the other side, and a symbolic
    dim that changed at run time then gave a result of the wrong shape.
    """
    if np.broadcast_shapes(operand.shape, shape) != tuple(shape):
        raise ValueError(
            f"{what} of shape {operand.shape} does not broadcast to {tuple(shape)} "
            "(ONNX unidirectional broadcasting)"
        )
    return operand


def trunc_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division rounding toward zero (C semantics, as ONNX integer Div).

    numpy's ``//`` floors; going through float64 would lose int64 precision.
    Division by zero (undefined in ONNX) yields 0, as numpy's does.
    """
    q = np.floor_divide(a, b)
    if np.issubdtype(q.dtype, np.signedinteger):
        fix = ((a - q * b) != 0) & ((a < 0) != (b < 0)) & (b != 0)
        q = q + fix.astype(q.dtype)
    return q


def lowest(dtype: np.dtype) -> Any:
    """The smallest value of ``dtype`` (-inf for floats): the identity of max."""
    if is_float(dtype):
        return dtype.type(-np.inf)
    if dtype == np.bool_:
        return False
    return np.iinfo(dtype).min


def highest(dtype: np.dtype) -> Any:
    """The largest value of ``dtype`` (+inf for floats): the identity of min."""
    if is_float(dtype):
        return dtype.type(np.inf)
    if dtype == np.bool_:
        return True
    return np.iinfo(dtype).max


# --------------------------------------------------------------------------
# sliding windows (Conv, ConvTranspose, pools)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Geometry of a strided, dilated sliding window over the spatial dims.

    ``begin``/``end`` are the pads actually applied (after ``auto_pad``);
    ``extra`` is padding past ``end`` that only ceil-mode pools need so the last
    window fits — it never counts as padding for AveragePool.
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begin: tuple[int, ...]
    end: tuple[int, ...]
    out: tuple[int, ...]
    extra: tuple[int, ...]

    @property
    def extents(self) -> tuple[int, ...]:
        """Span of each dilated kernel: ``(k - 1) * d + 1``."""
        pairs = zip(self.kernel, self.dilations, strict=True)
        return tuple((k - 1) * d + 1 for k, d in pairs)


def window(
    node: Any,
    in_shape: Sequence[int],
    kernel: Sequence[int],
    *,
    ceil_mode: bool = False,
) -> Window:
    """Resolve ``auto_pad``/``pads``/``strides``/``dilations`` of a Conv-like node.

    Follows ONNX (and onnxruntime): SAME_* pads so that ``out = ceil(in /
    stride)``, putting the odd pixel at the end (UPPER) or start (LOWER); in
    ceil mode a last window that would start in the end padding is dropped.
    """
    n = len(kernel)
    strides = tuple(node.attrs.get("strides") or (1,) * n)
    dilations = tuple(node.attrs.get("dilations") or (1,) * n)
    auto_pad = node.attrs.get("auto_pad", "NOTSET") or "NOTSET"
    pads = tuple(node.attrs.get("pads") or (0,) * (2 * n))
    for name, values, want in (("strides", strides, n), ("dilations", dilations, n),
                               ("pads", pads, 2 * n)):
        if len(values) != want:  # onnxruntime refuses these too
            raise ValueError(f"{name} has {len(values)} values, {want} expected for "
                             f"{n} spatial axes: {list(values)}")
    if any(p < 0 for p in pads):
        raise ValueError(f"pads must not be negative: {list(pads)}")
    begin, end, out, extra = [], [], [], []
    for i in range(n):
        size, stride = int(in_shape[i]), strides[i]
        span = (kernel[i] - 1) * dilations[i] + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-size // stride)
            total = max(0, (o - 1) * stride + span - size)
            lo = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            b, e = lo, total - lo
        elif auto_pad == "VALID":
            b = e = 0
            o = (size - span) // stride + 1
        else:
            b, e = pads[i], pads[n + i]
            room = size + b + e - span
            if ceil_mode:
                o = -(-room // stride) + 1
                if (o - 1) * stride >= size + b:
                    o -= 1
            else:
                o = room // stride + 1
        if o < 0 and size > 0:
            # Negative: onnxruntime refuses it too, and clamping it to an empty
            # result hid the mistake. (A window that just misses, 0, is empty.)
            raise ValueError(
                f"the window ({kernel[i]} wide, dilation {dilations[i]}) does not "
                f"fit the padded input ({size} + {b} + {e}) along spatial axis {i}"
            )
        o = max(o, 0)
        need = (o - 1) * stride + span if o else 0
        begin.append(b)
        end.append(e)
        out.append(o)
        extra.append(max(0, need - (size + b + e)))
    return Window(tuple(kernel), strides, dilations, tuple(begin), tuple(end),
                  tuple(out), tuple(extra))


def pad_spatial(
    x: np.ndarray, win: Window, value: Any, *, extra_value: Any = None
) -> np.ndarray:
    """``x`` (N, C, *spatial) padded with ``value``, ``extra`` with ``extra_value``."""
    if extra_value is None:
        extra_value = value
    width = [(0, 0), (0, 0)] + [(b, e) for b, e in zip(win.begin, win.end, strict=True)]
    if any(b or e for b, e in width):
        x = np.pad(x, width, constant_values=value)
    if any(win.extra):
        x = np.pad(x, [(0, 0), (0, 0)] + [(0, e) for e in win.extra],
                   constant_values=extra_value)
    return x


def windows(xp: np.ndarray, win: Window) -> np.ndarray:
    """View of padded ``xp`` as (N, C, *out, *kernel): one window per output pixel.

    No data is copied: ``sliding_window_view`` gives every dense window of the
    dilated extent, then strides and dilations are plain slices of that view.
    """
    n = len(win.kernel)
    view = np.lib.stride_tricks.sliding_window_view(
        xp, win.extents, axis=tuple(range(2, 2 + n)))
    index = (slice(None), slice(None))
    steps = zip(win.out, win.strides, strict=True)
    index += tuple(slice(0, (o - 1) * s + 1, s) for o, s in steps)
    index += tuple(slice(None, None, d) for d in win.dilations)
    return view[index]


def prod(values: Iterable[int]) -> int:
    """Product of ints (1 for none)."""
    return math.prod(int(v) for v in values)
