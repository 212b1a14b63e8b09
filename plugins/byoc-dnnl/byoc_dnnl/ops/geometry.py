"""Window geometry shared by Conv, ConvTranspose and pooling.

ONNX spells a window as kernel, strides, dilations (1 = dense), pads
``[begin..., end...]`` or ``auto_pad``; oneDNN wants strides, dilations
counted from 0, and left/right padding. The right padding is derived from
the static output shape, which also covers pooling's ``ceil_mode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..ir import Decline


@dataclass(frozen=True)
class Window:
    """A window in oneDNN terms (dilations zero-based)."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pad_l: tuple[int, ...]
    pad_r: tuple[int, ...]
    pad_r_attr: tuple[int, ...]
    """Right padding as the attributes give it (before ceil-mode extension)."""

    @property
    def geometry(
        self,
    ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(strides, dilations, left pads, right pads), as a pd wants them."""
        return (self.strides, self.dilations, self.pad_l, self.pad_r)

    @property
    def extended(self) -> bool:
        """True when ceil mode made the right padding larger than the attrs say."""
        return any(a > b for a, b in zip(self.pad_r, self.pad_r_attr, strict=True))


def _ints(attrs: Mapping[str, Any], key: str, n: int, default: int) -> tuple[int, ...]:
    value = attrs.get(key)
    if value is None:
        return (default,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise Decline(f"{key}={list(value)} does not have {n} entries")
    return value


def forward_window(
    attrs: Mapping[str, Any],
    in_spatial: tuple[int, ...],
    out_spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    *,
    allow_extension: bool,
) -> Window:
    """Geometry of Conv / MaxPool / AveragePool, checked against the output shape."""
    n = len(in_spatial)
    strides = _ints(attrs, "strides", n, 1)
    dil = _ints(attrs, "dilations", n, 1)
    if (
        any(s < 1 for s in strides)
        or any(d < 1 for d in dil)
        or any(k < 1 for k in kernel)
    ):
        raise Decline("has a non-positive stride, dilation or kernel size")
    ext = tuple((k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True))
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        pads = _ints(attrs, "pads", 2 * n, 0)
        pl, pr = pads[:n], pads[n:]
    elif auto_pad == "VALID":
        pl = pr = (0,) * n
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pl_list, pr_list = [], []
        for i in range(n):
            out = -(-in_spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + ext[i] - in_spatial[i])
            small, big = total // 2, total - total // 2
            pl_list.append(small if auto_pad == "SAME_UPPER" else big)
            pr_list.append(big if auto_pad == "SAME_UPPER" else small)
        pl, pr = tuple(pl_list), tuple(pr_list)
    else:
        raise Decline(f"auto_pad={auto_pad!r} is not supported")
    if any(p < 0 for p in (*pl, *pr)):
        raise Decline("has negative pads")
    pr_used = []
    for i in range(n):
        floor_out = (in_spatial[i] + pl[i] + pr[i] - ext[i]) // strides[i] + 1
        if floor_out == out_spatial[i]:
            pr_used.append(pr[i])
            continue
        if not allow_extension:
            raise Decline(
                f"output size {out_spatial[i]} on spatial axis {i} does not "
                f"match the attributes (expected {floor_out})"
            )
        need = (out_spatial[i] - 1) * strides[i] + ext[i] - in_spatial[i] - pl[i]
        if need < pr[i] or floor_out > out_spatial[i]:
            raise Decline(
                f"output size {out_spatial[i]} on spatial axis {i} does not "
                "match the attributes"
            )
        pr_used.append(need)
    if any(o < 1 for o in out_spatial):
        raise Decline("has an empty output")
    return Window(
        tuple(kernel),
        strides,
        tuple(d - 1 for d in dil),
        tuple(pl),
        tuple(pr_used),
        tuple(pr),
    )


def transposed_window(
    attrs: Mapping[str, Any],
    in_spatial: tuple[int, ...],
    out_spatial: tuple[int, ...],
    kernel: tuple[int, ...],
) -> Window:
    """Geometry of ConvTranspose; ``pad_r`` already has output_padding taken off."""
    n = len(in_spatial)
    strides = _ints(attrs, "strides", n, 1)
    dil = _ints(attrs, "dilations", n, 1)
    out_pad = _ints(attrs, "output_padding", n, 0)
    if any(s < 1 for s in strides) or any(d < 1 for d in dil):
        raise Decline("has a non-positive stride or dilation")
    ext = tuple((k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True))
    full = tuple(
        strides[i] * (in_spatial[i] - 1) + out_pad[i] + ext[i] for i in range(n)
    )
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise Decline(f"auto_pad={auto_pad!r} is not supported")
    explicit = attrs.get("output_shape")
    target = tuple(int(v) for v in explicit)[-n:] if explicit is not None else None
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") and attrs.get("pads") is None:
        # Split exactly as ONNX's reference does (floor division).
        target = target or tuple(in_spatial[i] * strides[i] for i in range(n))
        pl_list, pr_list = [], []
        for i in range(n):
            total = full[i] - target[i]
            small, big = total // 2, total - total // 2
            pl_list.append(small if auto_pad == "SAME_UPPER" else big)
            pr_list.append(big if auto_pad == "SAME_UPPER" else small)
        pl, pr = tuple(pl_list), tuple(pr_list)
    else:
        pads = (0,) * (2 * n) if auto_pad == "VALID" else _ints(attrs, "pads", 2 * n, 0)
        pl = pads[:n]
        # With output_shape, the output is cut (or extended) on the right.
        pr = (
            pads[n:]
            if target is None
            else tuple(full[i] - pl[i] - target[i] for i in range(n))
        )
    for i in range(n):
        if full[i] - pl[i] - pr[i] != out_spatial[i]:
            raise Decline(
                f"output size {out_spatial[i]} on spatial axis {i} does not "
                "match the attributes"
            )
    if any(p < 0 for p in pl):
        raise Decline("has negative pads")
    # oneDNN has no output_padding: it is padding taken off the right side.
    pr_eff = tuple(pr[i] - out_pad[i] for i in range(n))
    return Window(
        tuple(kernel), strides, tuple(d - 1 for d in dil), tuple(pl), pr_eff, tuple(pr)
    )
