"""Neural-network ops: matrix products, convolutions, pools and normalisations.

Convolutions and pools are vectorised over pixels: a strided view holds one
window per output pixel (:func:`._common.windows`) and one batched matmul or
reduction consumes it. Float math runs in float64 and rounds once at the end.
"""

from __future__ import annotations

import numpy as np

import byoc
from byoc.dtypes import dtype_name

from . import attr, op
from ._common import (
    is_float,
    norm_axis,
    pad_spatial,
    prod,
    unidirectional,
    wide,
    window,
    windows,
)

# --------------------------------------------------------------------------
# matrix products
# --------------------------------------------------------------------------


@op("MatMul")
def matmul(node, a, b):
    # numpy.matmul has ONNX's (i.e. numpy's) 1-D promotion and batch broadcasting.
    return (np.matmul(wide(a), wide(b)).astype(a.dtype),)


def _gemm_check(info: byoc.NodeInfo) -> byoc.Support:
    ranks = [len(s.shape) for s in info.inputs[:2] if s and s.shape is not None]
    if any(r != 2 for r in ranks):
        return byoc.Support.no(f"ref: Gemm needs rank-2 A and B, got ranks {ranks}")
    spec = info.inputs[0]
    scaled = attr(info, "alpha", 1.0) != 1.0 or attr(info, "beta", 1.0) != 1.0
    if spec is not None and not is_float(np.dtype(spec.dtype)) and scaled:
        return byoc.Support.no(
            f"ref: Gemm on {spec.dtype} with alpha/beta other than 1 not supported")
    return byoc.Support.yes()


@op("Gemm", check=_gemm_check)
def gemm(node, a, b, c=None):
    """``alpha * A' @ B' + beta * C`` with C broadcast to the result."""
    if attr(node, "transA", 0):
        a = a.T
    if attr(node, "transB", 0):
        b = b.T
    y = wide(a) @ wide(b)
    if c is not None:
        c = unidirectional(c, y.shape, "Gemm's C")
    alpha, beta = attr(node, "alpha", 1.0), attr(node, "beta", 1.0)
    if is_float(a.dtype):
        y = alpha * y
        if c is not None:
            y = y + beta * wide(c)
    elif c is not None:  # integers: the check guarantees alpha == beta == 1
        y = y + c
    return (y.astype(a.dtype),)


# --------------------------------------------------------------------------
# convolutions
# --------------------------------------------------------------------------


@op("Conv")
def conv(node, x, w, b=None):
    """N-d grouped, strided, dilated convolution as one batched im2col matmul.

    The window view (N, C, *out, *k) is regrouped to (G, N*P, C/G*K) columns —
    the only copy — and multiplied by the (G, C/G*K, M/G) weights.
    """
    n_batch, channels = x.shape[:2]
    kernel = w.shape[2:]
    groups = attr(node, "group", 1)
    m = w.shape[0]
    cg, mg = channels // groups, m // groups
    win = window(node, x.shape[2:], kernel)
    out_shape = (n_batch, m, *win.out)
    if prod(out_shape) == 0:
        return (np.zeros(out_shape, dtype=x.dtype),)
    nd = len(kernel)
    cols = windows(pad_spatial(wide(x), win, 0.0), win)
    cols = cols.reshape(n_batch, groups, cg, *win.out, *kernel)
    # (N, G, Cg, *out, *k) -> (G, N, *out, Cg, *k)
    perm = (1, 0, *range(3, 3 + nd), 2, *range(3 + nd, 3 + 2 * nd))
    cols = cols.transpose(perm).reshape(groups, n_batch * prod(win.out), -1)
    wt = wide(w).reshape(groups, mg, cg * prod(kernel)).transpose(0, 2, 1)
    y = cols @ wt  # (G, N*P, Mg)
    y = y.reshape(groups, n_batch, *win.out, mg)
    y = y.transpose(1, 0, nd + 2, *range(2, 2 + nd)).reshape(out_shape)
    if b is not None:
        y = y + wide(b).reshape(m, *(1,) * nd)
    return (y.astype(x.dtype),)


def _conv_transpose_pads(node, in_shape, kernel):
    """Begin/end pads and output size of each spatial dim of a ConvTranspose.

    With ``output_shape`` (or SAME auto_pad, whose output is ``in * stride``)
    the pads are derived from the wanted size; SAME_UPPER puts the odd pad at
    the end of the output, anything else at the start, as the ONNX spec says.
    """
    nd = len(kernel)
    strides = tuple(attr(node, "strides") or (1,) * nd)
    dilations = tuple(attr(node, "dilations") or (1,) * nd)
    out_pad = tuple(attr(node, "output_padding") or (0,) * nd)
    pads = tuple(attr(node, "pads") or (0,) * (2 * nd))
    auto_pad = attr(node, "auto_pad", "NOTSET") or "NOTSET"
    out_shape = attr(node, "output_shape")
    if out_shape is not None:
        out_shape = tuple(out_shape)[-nd:]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = tuple(int(i) * s for i, s in zip(in_shape, strides, strict=True))
    begin, end, sizes = [], [], []
    for i in range(nd):
        full = strides[i] * (int(in_shape[i]) - 1) + out_pad[i] \
            + (kernel[i] - 1) * dilations[i] + 1
        if out_shape is not None:
            total = full - out_shape[i]
            if auto_pad == "SAME_UPPER":
                b = total // 2
            else:
                b = total - total // 2
            begin.append(b)
            end.append(total - b)
            sizes.append(out_shape[i])
        else:
            b, e = (0, 0) if auto_pad == "VALID" else (pads[i], pads[nd + i])
            begin.append(b)
            end.append(e)
            sizes.append(full - b - e)
    return strides, dilations, begin, end, sizes


@op("ConvTranspose")
def conv_transpose(node, x, w, b=None):
    """Transposed convolution: one matmul to columns, then col2im scatter-adds.

    ``cols[n, i, m, k] = sum_c x[n, c, i] * w[c, m, k]``; output pixel
    ``i * stride + k * dilation - pad_begin`` accumulates ``cols[..., i, m, k]``,
    done as one strided add per kernel position.
    """
    n_batch, channels = x.shape[:2]
    kernel = w.shape[2:]
    nd = len(kernel)
    groups = attr(node, "group", 1)
    cg, mg = channels // groups, w.shape[1]
    m = mg * groups
    in_sp = x.shape[2:]
    strides, dilations, begin, _, sizes = _conv_transpose_pads(node, in_sp, kernel)
    out_shape = (n_batch, m, *sizes)
    if prod(out_shape) == 0 or prod(in_sp) == 0:
        return (np.zeros(out_shape, dtype=x.dtype),)
    # (N, G, Cg, P) -> (G, N*P, Cg)
    xs = wide(x).reshape(n_batch, groups, cg, prod(in_sp)).transpose(1, 0, 3, 2)
    xs = xs.reshape(groups, n_batch * prod(in_sp), cg)
    ws = wide(w).reshape(groups, cg, mg * prod(kernel))
    cols = (xs @ ws).reshape(groups, n_batch, *in_sp, mg, *kernel)
    # -> (N, G, Mg, *k, *in)
    cols = cols.transpose(1, 0, 2 + nd, *range(3 + nd, 3 + 2 * nd), *range(2, 2 + nd))
    cols = cols.reshape(n_batch, m, *kernel, *in_sp)
    # Accumulate into a buffer that also holds what the pads crop away (and any
    # negative pad, i.e. zeros the output_shape asks for beyond the full size).
    lead = [max(0, -bg) for bg in begin]
    span = [
        max(strides[i] * (in_sp[i] - 1) + (kernel[i] - 1) * dilations[i] + 1,
            begin[i] + sizes[i]) + lead[i]
        for i in range(nd)
    ]
    buf = np.zeros((n_batch, m, *span))
    for k in np.ndindex(*kernel):
        dst = tuple(
            slice(lead[i] + k[i] * dilations[i],
                  lead[i] + k[i] * dilations[i] + strides[i] * (in_sp[i] - 1) + 1,
                  strides[i])
            for i in range(nd)
        )
        buf[(slice(None), slice(None), *dst)] += cols[(slice(None), slice(None), *k)]
    crop = tuple(slice(lead[i] + begin[i], lead[i] + begin[i] + sizes[i])
                 for i in range(nd))
    y = buf[(slice(None), slice(None), *crop)]
    if b is not None:
        y = y + wide(b).reshape(m, *(1,) * nd)
    return (y.astype(x.dtype),)


# --------------------------------------------------------------------------
# pools
# --------------------------------------------------------------------------


@op("MaxPool")
def max_pool(node, x):
    """Max over each window; padding never wins (it is -inf).

    The optional Indices output holds the flat index of the max in the unpadded
    input (N, C, *spatial), row-major or, with ``storage_order=1``, column-major
    over the spatial dims; ties pick the first element in window order.
    """
    kernel = tuple(attr(node, "kernel_shape"))
    win = window(node, x.shape[2:], kernel, ceil_mode=bool(attr(node, "ceil_mode", 0)))
    out_shape = (*x.shape[:2], *win.out)
    # float64 holds every int8/uint8/float value exactly, and has -inf for pads.
    xp = pad_spatial(x.astype(np.float64), win, -np.inf)
    flat = windows(xp, win).reshape(*out_shape, -1) if prod(out_shape) else \
        np.zeros((*out_shape, 1))
    y = flat.max(axis=-1).astype(x.dtype)
    if node.num_outputs < 2:
        return (y,)
    nd = len(kernel)
    taps = np.unravel_index(flat.argmax(axis=-1), kernel)
    coords = []
    for i in range(nd):
        o = np.arange(win.out[i]).reshape((-1,) + (1,) * (nd - 1 - i))
        coords.append(o * win.strides[i] - win.begin[i] + taps[i] * win.dilations[i])
    order = "F" if attr(node, "storage_order", 0) else "C"
    spatial = np.ravel_multi_index(tuple(coords), x.shape[2:], order=order)
    plane = np.arange(x.shape[0] * x.shape[1]).reshape(*x.shape[:2], *(1,) * nd)
    return (y, (plane * prod(x.shape[2:]) + spatial).astype(np.int64))


@op("AveragePool")
def average_pool(node, x):
    """Mean over each window.

    Divides by the number of real input pixels in the window, or with
    ``count_include_pad=1`` by the pixels inside the padded input; the extra
    room a ceil-mode last window needs never counts.
    """
    kernel = tuple(attr(node, "kernel_shape"))
    win = window(node, x.shape[2:], kernel, ceil_mode=bool(attr(node, "ceil_mode", 0)))
    out_shape = (*x.shape[:2], *win.out)
    if prod(out_shape) == 0:
        return (np.zeros(out_shape, dtype=x.dtype),)
    axes = tuple(range(-len(kernel), 0))
    total = windows(pad_spatial(wide(x), win, 0.0), win).sum(axis=axes)
    ones = np.ones((1, 1, *x.shape[2:]))
    pad_counts = 1.0 if attr(node, "count_include_pad", 0) else 0.0
    mask = pad_spatial(ones, win, pad_counts, extra_value=0.0)
    count = windows(mask, win).sum(axis=axes)
    return ((total / count).astype(x.dtype),)


@op("GlobalAveragePool")
def global_average_pool(node, x):
    axes = tuple(range(2, x.ndim))
    return (wide(x).mean(axis=axes, keepdims=True).astype(x.dtype),)


@op("GlobalMaxPool")
def global_max_pool(node, x):
    return (x.max(axis=tuple(range(2, x.ndim)), keepdims=True),)


# --------------------------------------------------------------------------
# normalisations
# --------------------------------------------------------------------------


def _per_channel(v, ndim):
    # A (C,) parameter shaped to broadcast along axis 1 of an (N, C, ...) tensor.
    return wide(v).reshape(-1, *(1,) * (ndim - 2))


@op("BatchNormalization")
def batch_norm(node, x, scale, bias, mean, var):
    """Inference normalisation with the running stats, or training mode.

    In training mode (opset 14+) the batch statistics normalise ``x`` and the
    running mean/var outputs are ``running * momentum + batch * (1 - momentum)``,
    with the population variance, as the spec defines them.
    """
    eps = attr(node, "epsilon", 1e-5)
    xw = wide(x)
    if not attr(node, "training_mode", 0):
        y = (xw - _per_channel(mean, x.ndim)) / np.sqrt(_per_channel(var, x.ndim) + eps)
        y = y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)
        return (y.astype(x.dtype),)
    axes = (0, *range(2, x.ndim))
    batch_mean, batch_var = xw.mean(axis=axes), xw.var(axis=axes)
    y = (xw - _per_channel(batch_mean, x.ndim)) / np.sqrt(
        _per_channel(batch_var, x.ndim) + eps)
    y = y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)
    momentum = attr(node, "momentum", 0.9)
    run_mean = wide(mean) * momentum + batch_mean * (1 - momentum)
    run_var = wide(var) * momentum + batch_var * (1 - momentum)
    outs = (y.astype(x.dtype), run_mean.astype(mean.dtype), run_var.astype(var.dtype))
    return outs[: node.num_outputs]


@op("InstanceNormalization")
def instance_norm(node, x, scale, bias):
    axes = tuple(range(2, x.ndim))
    xw = wide(x)
    mu = xw.mean(axis=axes, keepdims=True)
    var = ((xw - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (xw - mu) / np.sqrt(var + attr(node, "epsilon", 1e-5))
    y = y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)
    return (y.astype(x.dtype),)


def _layer_norm_check(info: byoc.NodeInfo) -> byoc.Support:
    stash = attr(info, "stash_type", 1)
    try:
        dtype_name(stash)
    except byoc.ByocError:
        return byoc.Support.no(f"ref: LayerNormalization stash_type={stash} "
                               "not supported")
    return byoc.Support.yes()


@op("LayerNormalization", check=_layer_norm_check)
def layer_norm(node, x, scale, bias=None):
    """Normalise over axes ``axis..rank-1``; optional Mean and InvStdDev outputs.

    Mean and InvStdDev keep the reduced dims as 1 and have the ``stash_type``
    dtype (float32 by default) whatever the input dtype.
    """
    axis = norm_axis(attr(node, "axis", -1), x.ndim)
    axes = tuple(range(axis, x.ndim))
    xw = wide(x)
    mu = xw.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(((xw - mu) ** 2).mean(axis=axes, keepdims=True)
                            + attr(node, "epsilon", 1e-5))
    normalized = x.shape[axis:]
    y = (xw - mu) * inv_std * wide(unidirectional(scale, normalized, "the scale"))
    if bias is not None:
        y = y + wide(unidirectional(bias, normalized, "the bias"))
    stash = dtype_name(attr(node, "stash_type", 1))
    outs = (y.astype(x.dtype), mu.astype(stash), inv_std.astype(stash))
    return outs[: node.num_outputs]


# --------------------------------------------------------------------------
# softmax family
# --------------------------------------------------------------------------


@op("Softmax")
def softmax(node, x):
    axis = norm_axis(attr(node, "axis", -1), x.ndim)
    xw = wide(x)
    e = np.exp(xw - xw.max(axis=axis, keepdims=True))
    return ((e / e.sum(axis=axis, keepdims=True)).astype(x.dtype),)


@op("LogSoftmax")
def log_softmax(node, x):
    axis = norm_axis(attr(node, "axis", -1), x.ndim)
    xw = wide(x)
    shifted = xw - xw.max(axis=axis, keepdims=True)
    y = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return (y.astype(x.dtype),)


@op("Hardmax")
def hardmax(node, x):
    """One-hot of the first maximum along ``axis``."""
    axis = norm_axis(attr(node, "axis", -1), x.ndim)
    first = np.expand_dims(np.argmax(x, axis=axis), axis)
    y = np.zeros_like(x)
    np.put_along_axis(y, first, 1, axis=axis)
    return (y,)


@op("Einsum")
def einsum(node, *xs):
    # numpy's subscripts are ONNX's, minus the spaces ONNX tolerates.
    equation = attr(node, "equation").replace(" ", "")
    return (np.einsum(equation, *(wide(x) for x in xs)).astype(xs[0].dtype),)


# --------------------------------------------------------------------------
# more normalisations
# --------------------------------------------------------------------------


@op("GroupNormalization")
def group_norm(node, x, scale, bias):
    """Normalise each group of ``C / num_groups`` channels per instance.

    Opset 21 takes per-channel scale/bias; opset 18 took one per group, so a
    scale with ``num_groups`` entries (and C != num_groups) is expanded.
    """
    groups = attr(node, "num_groups")
    n, c = x.shape[:2]
    xg = wide(x).reshape(n, groups, -1)
    mu = xg.mean(axis=2, keepdims=True)
    var = ((xg - mu) ** 2).mean(axis=2, keepdims=True)
    y = ((xg - mu) / np.sqrt(var + attr(node, "epsilon", 1e-5))).reshape(x.shape)
    scale, bias = wide(scale), wide(bias)
    if scale.size == groups != c:
        scale, bias = np.repeat(scale, c // groups), np.repeat(bias, c // groups)
    y = y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)
    return (y.astype(x.dtype),)


@op("LpNormalization")
def lp_norm(node, x):
    """``x / ||x||_p`` along ``axis`` (p is 1 or 2); a zero norm gives 0."""
    axis = norm_axis(attr(node, "axis", -1), x.ndim)
    xw = wide(x)
    if attr(node, "p", 2) == 1:
        norm = np.abs(xw).sum(axis=axis, keepdims=True)
    else:
        norm = np.sqrt((xw * xw).sum(axis=axis, keepdims=True))
    return (np.where(norm == 0, 0.0, xw / norm).astype(x.dtype),)


@op("MeanVarianceNormalization")
def mean_variance_norm(node, x):
    # The ONNX function body: (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9).
    axes = tuple(attr(node, "axes", (0, 2, 3)))
    xw = wide(x)
    mu = xw.mean(axis=axes, keepdims=True)
    std = np.sqrt((xw * xw).mean(axis=axes, keepdims=True) - mu * mu)
    return (((xw - mu) / (std + 1e-9)).astype(x.dtype),)


@op("LRN")
def lrn(node, x):
    """Local response normalisation across channels (a window of ``size``)."""
    size = attr(node, "size")
    alpha, beta = attr(node, "alpha", 1e-4), attr(node, "beta", 0.75)
    xw = wide(x)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = np.pad(xw * xw, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    # Window sums along C as differences of a cumulative sum.
    csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
    window = csum[:, size:] - csum[:, :-size]
    y = xw / (attr(node, "bias", 1.0) + alpha / size * window) ** beta
    return (y.astype(x.dtype),)
