"""Resize (opsets 13-21): nearest, linear and cubic, with antialias.

Interpolation is separable, so the kernel resizes one axis at a time: each
output position along the axis maps to a source coordinate, picks a few
neighbouring input indices (edge-clamped) and sums them with weights. Formulas
follow the ONNX spec and its reference implementation, which generated the
conformance data:

* the output length is ``floor(in * scale)`` for ``scales``; with ``sizes`` the
  scale is ``out / in`` (and ``keep_aspect_ratio_policy`` may change both);
* coordinate modes use the fractional ``output_width = scale * in`` where the
  spec says "length_resized", which only matters when ``in * scale`` is not
  an integer;
* a source coordinate that is exactly an integer reads that pixel;
* integer outputs are rounded half to even and saturated.
"""

from __future__ import annotations

import numpy as np

import byoc

from . import attr, op
from ._common import is_float, norm_axes

_MODES = ("nearest", "linear", "cubic")
_COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                "align_corners", "asymmetric", "tf_crop_and_resize")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_POLICIES = ("stretch", "not_larger", "not_smaller")


def _resize_check(info: byoc.NodeInfo) -> byoc.Support:
    mode = attr(info, "mode", "nearest")
    for name, value, allowed in (
        ("mode", mode, _MODES),
        ("coordinate_transformation_mode",
         attr(info, "coordinate_transformation_mode", "half_pixel"), _COORD_MODES),
        ("nearest_mode", attr(info, "nearest_mode", "round_prefer_floor"),
         _NEAREST_MODES),
        ("keep_aspect_ratio_policy", attr(info, "keep_aspect_ratio_policy", "stretch"),
         _POLICIES),
    ):
        if value not in allowed:
            return byoc.Support.no(f"ref: Resize {name}={value!r} not supported")
    if mode == "nearest" and attr(info, "antialias", 0):
        return byoc.Support.no("ref: Resize antialias with mode='nearest' is not "
                               "defined")
    coord = attr(info, "coordinate_transformation_mode", "half_pixel")
    no_roi = len(info.inputs) < 2 or info.inputs[1] is None
    if coord == "tf_crop_and_resize" and no_roi:
        return byoc.Support.no("ref: Resize tf_crop_and_resize without roi")
    return byoc.Support.yes()


def _given(t: np.ndarray | None) -> bool:
    # Optional inputs may be omitted or passed as empty tensors.
    return t is not None and np.asarray(t).size > 0


@op("Resize", check=_resize_check)
def resize(node, x, roi=None, scales=None, sizes=None):
    rank = x.ndim
    axes = attr(node, "axes")
    axes = tuple(range(rank)) if axes is None else norm_axes(axes, rank)
    scale = [1.0] * rank
    out = list(x.shape)
    if _given(sizes):
        wanted = [int(s) for s in np.asarray(sizes).reshape(-1)]
        for a, s in zip(axes, wanted, strict=True):
            scale[a] = s / x.shape[a]
            out[a] = s
        policy = attr(node, "keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            common = pick(scale[a] for a in axes)
            for a in axes:
                scale[a] = common
                out[a] = int(common * x.shape[a] + 0.5)  # round half up
    else:
        for a, s in zip(axes, np.asarray(scales, dtype=np.float64).reshape(-1),
                        strict=True):
            scale[a] = float(s)
            out[a] = int(np.floor(s * x.shape[a]))
    box = [(0.0, 1.0)] * rank
    if _given(roi):
        r = np.asarray(roi, dtype=np.float64).reshape(-1)
        for i, a in enumerate(axes):
            box[a] = (float(r[i]), float(r[len(axes) + i]))

    coord = attr(node, "coordinate_transformation_mode", "half_pixel")
    y = x.astype(np.float64)
    for a in axes:
        if scale[a] == 1.0 and out[a] == x.shape[a] and box[a] == (0.0, 1.0):
            continue  # identity along this axis
        y = _resize_axis(node, y, a, scale[a], out[a], box[a], coord)
    if is_float(x.dtype):
        return (y.astype(x.dtype),)
    info = np.iinfo(x.dtype)
    return (np.clip(np.round(y), info.min, info.max).astype(x.dtype),)


def _source(coord, out_len, in_len, scale, box):
    """Source coordinate of each output index along one axis, and which of them
    fall outside the input (only tf_crop_and_resize extrapolates)."""
    o = np.arange(out_len, dtype=np.float64)
    width = scale * in_len  # fractional output width, see the module docstring
    outside = None
    if coord == "half_pixel":
        src = (o + 0.5) / scale - 0.5
    elif coord == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / width)
        src = offset + (o + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        src = (o + 0.5) / scale - 0.5 if out_len > 1 else np.zeros(out_len)
    elif coord == "align_corners":
        src = o * (in_len - 1) / (width - 1) if width != 1 else np.zeros(out_len)
    elif coord == "asymmetric":
        src = o / scale
    else:  # tf_crop_and_resize
        lo, hi = box
        if width == 1:
            src = np.full(out_len, (hi - lo) * (in_len - 1) / 2)
        else:
            src = o * (hi - lo) * (in_len - 1) / (width - 1)
        src = src + lo * (in_len - 1)
        outside = (src < 0) | (src > in_len - 1)
    return src, outside


def _cubic(t, a):
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _resize_axis(node, y, axis, scale, out_len, box, coord):
    in_len = y.shape[axis]
    if out_len == 0:
        shape = list(y.shape)
        shape[axis] = 0
        return np.zeros(shape)
    src, outside = _source(coord, out_len, in_len, scale, box)
    mode = attr(node, "mode", "nearest")
    floor = np.floor(src)
    frac = src - floor
    if mode == "nearest":
        nearest_mode = attr(node, "nearest_mode", "round_prefer_floor")
        if nearest_mode == "round_prefer_floor":
            up = frac > 0.5
        elif nearest_mode == "round_prefer_ceil":
            up = frac >= 0.5
        elif nearest_mode == "ceil":
            up = frac > 0
        else:
            up = np.zeros(out_len, dtype=bool)
        index = np.clip(floor + up, 0, in_len - 1).astype(np.intp)
        res = np.take(y, index, axis=axis)
    else:
        # An integral source coordinate reads that pixel: treat it as the right
        # end (ratio 1) of the interval below, as the reference does.
        exact = frac == 0
        floor = np.where(exact, floor - 1, floor)
        ratio = np.where(exact, 1.0, frac)
        shrink = min(scale, 1.0) if attr(node, "antialias", 0) else 1.0
        reach = 1 if mode == "linear" else 2  # half-width of the filter
        first = int(np.floor(-reach / shrink)) + 1  # first tap, relative to floor
        taps = np.arange(first, 1 - first + 1)  # symmetric: first..(1 - first)
        dist = shrink * (taps[None, :] - ratio[:, None])
        if mode == "linear":
            weights = np.clip(1 - np.abs(dist), 0.0, 1.0)
        else:
            weights = _cubic(dist, attr(node, "cubic_coeff_a", -0.75))
        if shrink != 1.0:
            weights = weights / weights.sum(axis=1, keepdims=True)
        index = floor[:, None].astype(np.int64) + taps[None, :]
        if attr(node, "exclude_outside", 0):
            weights = np.where((index < 0) | (index >= in_len), 0.0, weights)
            total = weights.sum(axis=1, keepdims=True)
            weights = weights / np.where(total == 0, 1.0, total)
        picked = np.take(y, np.clip(index, 0, in_len - 1).astype(np.intp), axis=axis)
        shape = (1,) * axis + weights.shape + (1,) * (y.ndim - axis - 1)
        res = (picked * weights.reshape(shape)).sum(axis=axis + 1)
    if outside is not None and outside.any():
        shape = (1,) * axis + (out_len,) + (1,) * (y.ndim - axis - 1)
        res = np.where(outside.reshape(shape), attr(node, "extrapolation_value", 0.0),
                       res)
    return res
