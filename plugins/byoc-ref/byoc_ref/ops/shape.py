"""Shape and data-movement ops: reshape, transpose, slicing, gathering, padding,
and the ops that make tensors from nothing (Range, Constant, ConstantOfShape).

Shape operands (``shape``, ``starts``, ``axes``, ``pads``...) are int64 tensors
read at run time, so a kernel works whether or not the importer folded them.
"""

from __future__ import annotations

import numpy as np

import byoc
from byoc.dtypes import DTypeError, dtype_name

from . import attr, op
from ._common import axes_of, ints, is_float, norm_axes, norm_axis, prod

# --------------------------------------------------------------------------
# reshaping
# --------------------------------------------------------------------------


@op("Reshape")
def reshape(node, x, shape):
    """Reshape; a 0 copies the input dim unless ``allowzero=1``, -1 is inferred."""
    dims = list(ints(shape))
    if not attr(node, "allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return (np.reshape(x, dims),)


@op("Flatten")
def flatten(node, x):
    axis = attr(node, "axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return (np.reshape(x, (prod(x.shape[:axis]), prod(x.shape[axis:]))),)


@op("Transpose")
def transpose(node, x):
    perm = attr(node, "perm")
    return (np.transpose(x, None if perm is None else tuple(perm)),)


@op("Squeeze")
def squeeze(node, x, axes=None):
    found = axes_of(node, axes)
    if not found:  # no axes (or an empty list): drop every size-1 dim
        return (np.squeeze(x),)
    return (np.squeeze(x, axis=norm_axes(found, x.ndim)),)


@op("Unsqueeze")
def unsqueeze(node, x, axes=None):
    found = axes_of(node, axes) or ()
    # Axes index the output, whose rank is the input's plus one per axis.
    return (np.expand_dims(x, norm_axes(found, x.ndim + len(found))),)


@op("Shape")
def shape_(node, x):
    # Python slicing clamps start/end exactly as Shape-15 specifies.
    start, end = attr(node, "start", 0), attr(node, "end")
    return (np.array(x.shape[start:end], dtype=np.int64),)


@op("Size")
def size(node, x):
    return (np.array(x.size, dtype=np.int64),)


@op("Expand")
def expand(node, x, shape):
    # Bidirectional broadcast: a 1 in ``shape`` keeps the input dim.
    target = np.broadcast_shapes(x.shape, ints(shape))
    return (np.broadcast_to(x, target).copy(),)


@op("Tile")
def tile(node, x, repeats):
    return (np.tile(x, ints(repeats)),)


@op("DepthToSpace")
def depth_to_space(node, x):
    b = attr(node, "blocksize")
    n, c, h, w = x.shape
    if attr(node, "mode", "DCR") == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:  # CRD
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return (y.reshape(n, c // (b * b), h * b, w * b),)


@op("SpaceToDepth")
def space_to_depth(node, x):
    b = attr(node, "blocksize")
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b)
    if attr(node, "mode", "DCR") == "DCR":
        y = y.transpose(0, 3, 5, 1, 2, 4)
    else:  # CRD (opset 25)
        y = y.transpose(0, 1, 3, 5, 2, 4)
    return (y.reshape(n, c * b * b, h // b, w // b),)


# --------------------------------------------------------------------------
# joining and splitting
# --------------------------------------------------------------------------


@op("Concat")
def concat(node, *xs):
    axis = norm_axis(attr(node, "axis"), xs[0].ndim)
    return (np.concatenate(xs, axis=axis),)


@op("Split")
def split(node, x, sizes=None):
    """Split along ``axis`` by explicit sizes, else into ``num_outputs`` parts.

    Sizes come from the ``split`` input (opset 13+) or attribute (older); without
    them Split-18's ``num_outputs`` gives chunks of ``ceil(dim / n)`` with a
    smaller last one, and older opsets split evenly into the outputs requested.
    """
    axis = norm_axis(attr(node, "axis", 0), x.ndim)
    dim = x.shape[axis]
    if sizes is not None and np.asarray(sizes).size:
        parts = ints(sizes)
    elif attr(node, "split") is not None:
        parts = tuple(attr(node, "split"))
    else:
        n = attr(node, "num_outputs", node.num_outputs)
        chunk = -(-dim // n)
        parts = (chunk,) * (n - 1) + (dim - chunk * (n - 1),)
    bounds = np.cumsum(parts)[:-1]
    return tuple(np.split(x, bounds, axis=axis))


@op("Slice")
def slice_(node, x, starts=None, ends=None, axes=None, steps=None):
    """Slice with ONNX clamping: negative indices count from the end, then
    starts/ends clamp to ``[0, dim]`` (step > 0) or ``[-1, dim-1]`` (step < 0),
    where an end of -1 means "through index 0" — Python's ``None`` stop.
    """
    if starts is None:  # Slice-1 carried these as attributes
        starts, ends = attr(node, "starts"), attr(node, "ends")
        axes = attr(node, "axes")
    starts, ends = ints(starts), ints(ends)
    axes = range(len(starts)) if axes is None else norm_axes(ints(axes), x.ndim)
    steps = (1,) * len(starts) if steps is None else ints(steps)
    index = [slice(None)] * x.ndim
    for a, s, e, step in zip(axes, starts, ends, steps, strict=True):
        dim = x.shape[a]
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if step > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
        index[a] = slice(s, None if e < 0 else e, step)
    return (x[tuple(index)],)


# --------------------------------------------------------------------------
# gathering
# --------------------------------------------------------------------------


def _wrap(indices, dim):
    # ONNX indices may be negative (counted from the end).
    idx = np.asarray(indices).astype(np.int64)
    return np.where(idx < 0, idx + dim, idx)


@op("Gather")
def gather(node, x, indices):
    axis = norm_axis(attr(node, "axis", 0), x.ndim)
    return (np.take(x, _wrap(indices, x.shape[axis]), axis=axis),)


@op("GatherElements")
def gather_elements(node, x, indices):
    axis = norm_axis(attr(node, "axis", 0), x.ndim)
    return (np.take_along_axis(x, _wrap(indices, x.shape[axis]), axis=axis),)


@op("GatherND")
def gather_nd(node, x, indices):
    """Gather slices of ``x`` addressed by the last dim of ``indices``.

    The first ``batch_dims`` dims of both are batch dims, matched pairwise.
    """
    bd = attr(node, "batch_dims", 0)
    k = indices.shape[-1]
    batch = x.shape[:bd]
    idx = _wrap(indices, np.array(x.shape[bd:bd + k]))
    xb = x.reshape(prod(batch), *x.shape[bd:])
    ib = idx.reshape(prod(batch), -1, k)
    rows = np.arange(xb.shape[0])[:, None]
    picked = xb[(rows, *np.moveaxis(ib, -1, 0))]
    return (picked.reshape(*indices.shape[:-1], *x.shape[bd + k:]),)


# --------------------------------------------------------------------------
# padding
# --------------------------------------------------------------------------

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge",
              "wrap": "wrap"}


def _pad_check(info: byoc.NodeInfo) -> byoc.Support:
    mode = attr(info, "mode", "constant")
    if mode not in _PAD_MODES:
        return byoc.Support.no(f"ref: Pad mode={mode!r} not supported")
    return byoc.Support.yes()


@op("Pad", check=_pad_check)
def pad(node, x, pads=None, value=None, axes=None):
    """Pad (or, for negative pads, crop) each axis.

    ``pads`` is ``[begin..., end...]`` over ``axes`` (opset 18) or all axes.
    Negative pads crop first and the rest is padded from what remains, as
    onnxruntime does; reflect/edge/wrap are numpy's modes of the same names.
    """
    if pads is None:  # Pad-2 carried pads and value as attributes
        pads = attr(node, "pads")
    if value is None:
        value = attr(node, "value", 0)
    pads = ints(pads)
    axes = range(x.ndim) if axes is None else norm_axes(ints(axes), x.ndim)
    width = [(0, 0)] * x.ndim
    for i, a in enumerate(axes):
        width[a] = (pads[i], pads[len(axes) + i])
    crop = tuple(slice(max(0, -b), x.shape[a] - max(0, -e))
                 for a, (b, e) in enumerate(width))
    x = x[crop]
    width = [(max(0, b), max(0, e)) for b, e in width]
    mode = _PAD_MODES[attr(node, "mode", "constant")]
    if mode == "constant":
        fill = np.asarray(value).reshape(-1)
        fill = fill[0] if fill.size else 0
        return (np.pad(x, width, mode="constant", constant_values=fill),)
    return (np.pad(x, width, mode=mode),)


# --------------------------------------------------------------------------
# tensors from nothing
# --------------------------------------------------------------------------


@op("Range")
def range_(node, start, limit, delta):
    """``start + i * delta`` for ``i < max(ceil((limit - start) / delta), 0)``."""
    dtype = start.dtype
    if is_float(dtype):
        s, l_, d = (float(v) for v in (start, limit, delta))
        n = max(int(np.ceil((l_ - s) / d)), 0)
        return ((s + np.arange(n, dtype=np.float64) * d).astype(dtype),)
    s, l_, d = (int(v) for v in (start, limit, delta))
    n = max(-((s - l_) // d), 0)  # exact ceil division for Python ints
    return ((s + np.arange(n, dtype=np.int64) * d).astype(dtype),)


_CONSTANT_ATTRS = {"value", "value_float", "value_floats", "value_int", "value_ints"}


def _constant_check(info: byoc.NodeInfo) -> byoc.Support:
    given = set(info.attrs) - _CONSTANT_ATTRS
    if given:
        return byoc.Support.no(f"ref: Constant {sorted(given)[0]} not supported")
    return byoc.Support.yes()


@op("Constant", check=_constant_check)
def constant(node):
    a = node.attrs
    if "value" in a:
        return (np.array(a["value"].array()),)
    if "value_float" in a:
        return (np.array(a["value_float"], dtype=np.float32),)
    if "value_floats" in a:
        return (np.array(a["value_floats"], dtype=np.float32),)
    if "value_int" in a:
        return (np.array(a["value_int"], dtype=np.int64),)
    return (np.array(a["value_ints"], dtype=np.int64),)


@op("ConstantOfShape")
def constant_of_shape(node, shape):
    """A tensor of ``shape`` filled with the one-element ``value`` (float32 0)."""
    value = attr(node, "value")
    fill = np.zeros(1, np.float32) if value is None else value.array().reshape(-1)
    return (np.full(ints(shape), fill[0], dtype=fill.dtype),)


# --------------------------------------------------------------------------
# masks, scatters and selections
# --------------------------------------------------------------------------


@op("Trilu")
def trilu(node, x, k=None):
    # np.triu/np.tril act on the last two dims of a stack, as Trilu does.
    diag = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
    fn = np.triu if attr(node, "upper", 1) else np.tril
    return (fn(x, diag),)


def _eye_like_check(info: byoc.NodeInfo) -> byoc.Support:
    return _known_dtype("EyeLike", attr(info, "dtype"))


def _known_dtype(op_name: str, code: int | None) -> byoc.Support:
    if code is not None:
        try:
            dtype_name(code)
        except DTypeError:
            return byoc.Support.no(f"ref: {op_name} dtype={code} not supported")
    return byoc.Support.yes()


@op("EyeLike", check=_eye_like_check)
def eye_like(node, x):
    code = attr(node, "dtype")
    dtype = x.dtype if code is None else dtype_name(code)
    return (np.eye(x.shape[0], x.shape[1], attr(node, "k", 0), dtype=dtype),)


@op("OneHot")
def one_hot(node, indices, depth, values):
    """One-hot along ``axis``; indices in ``[-depth, depth)`` wrap, others are off."""
    n = int(np.asarray(depth).reshape(-1)[0])
    axis = norm_axis(attr(node, "axis", -1), indices.ndim + 1)
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + n, idx)
    hot = np.expand_dims(idx, axis) == np.arange(n).reshape(
        (-1,) + (1,) * (indices.ndim - axis))
    off, on = values.reshape(-1)[:2]
    return (np.where(hot, on, off).astype(values.dtype),)


@op("NonZero")
def non_zero(node, x):
    if x.ndim == 0:  # the one element is its own index, in zero dims
        return (np.zeros((0, int(bool(x))), dtype=np.int64),)
    return (np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1),)


@op("Compress")
def compress(node, x, condition):
    # A condition shorter than the axis drops the rest, as numpy does.
    axis = attr(node, "axis")
    if axis is None:
        return (np.compress(condition, x.reshape(-1)),)
    return (np.compress(condition, x, axis=norm_axis(axis, x.ndim)),)


@op("ReverseSequence")
def reverse_sequence(node, x, lens):
    """Reverse the first ``lens[b]`` steps of each batch entry along time."""
    t_axis, b_axis = attr(node, "time_axis", 0), attr(node, "batch_axis", 1)
    y = x.copy()
    for b, n in enumerate(ints(lens)):
        src = [slice(None)] * x.ndim
        src[b_axis], src[t_axis] = b, slice(n - 1, None, -1) if n else slice(0, 0)
        dst = [slice(None)] * x.ndim
        dst[b_axis], dst[t_axis] = b, slice(0, n)
        y[tuple(dst)] = x[tuple(src)]
    return (y,)


_SCATTER = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter_check(info: byoc.NodeInfo) -> byoc.Support:
    reduction = attr(info, "reduction", "none")
    if reduction != "none" and reduction not in _SCATTER:
        return byoc.Support.no(f"ref: {info.op} reduction={reduction!r} not supported")
    return byoc.Support.yes()


def _scatter(node, data, index, updates):
    """Write (or, with ``reduction``, combine) updates into a copy of data.

    ``ufunc.at`` applies repeated indices one after another, as the spec does;
    with reduction "none" duplicates are undefined in ONNX and the last wins.
    """
    out = data.copy()
    reduction = attr(node, "reduction", "none")
    if reduction == "none":
        out[index] = updates
    else:
        _SCATTER[reduction].at(out, index, updates)
    return (out,)


@op("ScatterElements", check=_scatter_check)
def scatter_elements(node, data, indices, updates):
    axis = norm_axis(attr(node, "axis", 0), data.ndim)
    grid = list(np.indices(indices.shape, sparse=True))
    grid[axis] = _wrap(indices, data.shape[axis])
    return _scatter(node, data, tuple(grid), updates)


@op("ScatterND", check=_scatter_check)
def scatter_nd(node, data, indices, updates):
    k = indices.shape[-1]
    idx = _wrap(indices, np.array(data.shape[:k]))
    return _scatter(node, data, tuple(np.moveaxis(idx, -1, 0)), updates)
