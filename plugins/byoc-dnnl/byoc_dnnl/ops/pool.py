"""Pooling: MaxPool, AveragePool and GlobalAveragePool as pooling primitives.

They run in the input's layout (blocked activations stay blocked), except
plain inputs, which oneDNN pools only with slow loops: those are reordered
to a layout a jit kernel reads. ceil_mode is expressed as extra right
padding; for an average that counts padding, oneDNN would count that
extension too, so that one combination is declined.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import byoc

from .._lib import Alg, Arg, PropKind, Query, dims, refuse
from ..handles import MemoryDesc, PrimitiveDesc
from ..ir import Decline, Op
from ..layout import channel_layouts
from ..lowering import Builder, Epilogue
from . import guard, n_outputs, need_f32, op, out_shape, shape_of
from .geometry import Window, forward_window


def _window(
    kind: str, attrs: Mapping[str, Any], x: tuple[int, ...], y: tuple[int, ...]
) -> Window:
    get = attrs.get
    ks = get("kernel_shape")
    if ks is None:
        raise Decline("needs kernel_shape")
    kernel = tuple(int(k) for k in ks)
    if len(kernel) != len(x) - 2:
        raise Decline(f"kernel_shape={list(kernel)} does not match rank {len(x)}")
    win = forward_window(
        attrs,
        x[2:],
        y[2:],
        kernel,
        allow_extension=bool(get("ceil_mode", 0)),
    )
    if kind == "AveragePool" and int(get("count_include_pad", 0)) and win.extended:
        raise Decline(
            "with ceil_mode=1 and count_include_pad=1 extending past the pads "
            "is not supported"
        )
    ext = [(k - 1) * (d + 1) + 1 for k, d in zip(kernel, win.dilations, strict=True)]
    if any(
        max(pl, pr) >= e for pl, pr, e in zip(win.pad_l, win.pad_r, ext, strict=True)
    ):
        # A window lying wholly in padding has no ONNX-defined value to match.
        raise Decline("with padding as large as the window is not supported")
    return win


@guard
def check_pool(info: byoc.NodeInfo) -> None:
    """MaxPool/AveragePool: float32, 1-3 spatial dims, no Indices output."""
    need_f32(info)
    n_outputs(info, 1, "Indices")
    x, y = shape_of(info, 0), out_shape(info)
    if not 3 <= len(x) <= 5:
        raise Decline(f"needs a rank 3-5 input, got rank {len(x)}")
    if y[:2] != x[:2]:
        raise Decline(f"output shape {list(y)} does not match input {list(x)}")
    if info.op == "MaxPool" and int(info.attrs.get("storage_order", 0)) not in (0, 1):
        raise Decline("storage_order must be 0 or 1")
    _window(info.op, info.attrs, x, y)


def _alg(node: Op) -> int:
    if node.kind == "MaxPool":
        return Alg.pooling_max
    if int(node.attr("count_include_pad", 0)):
        return Alg.pooling_avg_include_padding
    return Alg.pooling_avg_exclude_padding


@op("MaxPool", "AveragePool", check=check_pool, host=True, follows=True)
def lower_pool(b: Builder, node: Op, ep: Epilogue) -> None:
    """One pooling primitive in the input's layout."""
    x = node.inputs[0]
    assert x is not None
    win = _window(node.kind, node.attrs, x.shape, node.out.shape)
    _pool(b, node, ep, _alg(node), win)


def _pool(b: Builder, node: Op, ep: Epilogue, alg: int, win: Window) -> None:
    x = node.inputs[0]
    assert x is not None
    y = node.out
    attr, extra = ep.build(b, y.shape)
    dst = MemoryDesc.any(y.shape)

    def make(mds: list[MemoryDesc]) -> PrimitiveDesc:
        return b.pd(
            "pooling",
            "pooling_forward_primitive_desc_create",
            PropKind.forward_inference,
            alg,
            mds[0].h,
            dst.h,
            dims(win.strides),
            dims(win.kernel),
            dims(win.dilations),
            dims(win.pad_l),
            dims(win.pad_r),
            attr.h,
        )

    # Plain NCHW (a subgraph that starts with a pooling) gets a simple loop: a
    # 3x3/2 MaxPool on 64x112x112 took 8 ms, 0.28-0.36 ms reordered to nChw8c.
    pd, s = b.jit_pd(b.slot(x), make, channel_layouts(x.shape))
    dst_md = pd.md(Query.dst_md)
    for _, slot in extra:
        md = b.md(slot)
        per_channel = all(d == 1 for i, d in enumerate(md.dims) if i != 1)
        if not per_channel:
            # oneDNN 3.2's jit pooling misreads an operand that varies over
            # anything but channels (space, or batch and channels): at the
            # blocked dst's offsets on AVX2 (two fuzzed models), and even in
            # the shared plain layout the AVX-512 kernel picks for plain
            # sources. Run the ops apart.
            raise refuse(
                f"binary post-op operand {md} varies over more than channels "
                f"(pooling dst {dst_md})",
                "dnnl_pooling_forward_primitive_desc_create",
            )
    out = b.produce(ep.result or y, dst_md)
    b.add_step(pd, [(Arg.src, s), (Arg.dst, out), *extra], node.label)


@guard
def check_global_pool(info: byoc.NodeInfo) -> None:
    """GlobalAveragePool: float32, rank 3-5."""
    need_f32(info)
    x = shape_of(info, 0)
    if not 3 <= len(x) <= 5:
        raise Decline(f"needs a rank 3-5 input, got rank {len(x)}")


@op("GlobalAveragePool", check=check_global_pool, host=True, follows=True)
def lower_global_pool(b: Builder, node: Op, ep: Epilogue) -> None:
    """An average pooling whose window is the whole spatial extent."""
    x = node.inputs[0]
    assert x is not None
    n = len(x.shape) - 2
    win = Window(tuple(x.shape[2:]), (1,) * n, (0,) * n, (0,) * n, (0,) * n, (0,) * n)
    _pool(b, node, ep, Alg.pooling_avg_exclude_padding, win)
