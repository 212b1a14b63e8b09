"""Convolutions: Conv (grouped, depthwise, strided, dilated) and ConvTranspose.

Both are fusion hosts: bias, folded BatchNormalization, eltwise activations,
a residual Add (sum post-op, in place) and other binary ops ride on the
primitive. A stride-2 3x3 depthwise Conv (with its activation) rides on the
1x1 Conv before it as oneDNN's ``dw`` post-op (MobileNet's downsampling
blocks): the expanded tensor between them is never written to memory. oneDNN
3.2 has a real fused kernel only for jit 1x1 convolutions on blocked layouts
with a stride-2 depthwise; anything else it would merely run back to back
(``ref_fused_convolution``), so that is refused and the two run apart.
Weights go through ``format_tag::any``, so constant weights are reordered
once at init into the blocked layout the kernel prefers.
"""

from __future__ import annotations

from collections.abc import Callable

import byoc

from .._lib import Arg, DnnlError, FormatKind, Query, refuse
from ..handles import Attr, MemoryDesc, PrimitiveDesc, conv_pd
from ..ir import Decline, Op, Value
from ..lowering import Builder, Epilogue, PostItem
from ..tune import arg_ids
from . import guard, need_f32, op, out_shape, shape_of
from .eltwise import is_activation
from .geometry import Window, forward_window, transposed_window


def good_impl(impl: str) -> bool:
    """False for reference and im2col-gemm kernels (far slower than the jit ones)."""
    return not impl.startswith("ref") and "gemm" not in impl


def choose_pd(
    b: Builder,
    x_shape: tuple[int, ...],
    hint: MemoryDesc | None,
    dst: MemoryDesc,
    make: Callable[[MemoryDesc, MemoryDesc], PrimitiveDesc],
) -> PrimitiveDesc:
    """The kernel's own choice of input layout, writing the layout its consumers want.

    ``hint`` is the layout the convolutions downstream prefer for this output
    (see :func:`byoc_dnnl.lowering.plan_layouts`); writing it directly saves a
    reorder per run. It is used only when a good kernel accepts it.

    With a blocked layout chosen for the subgraph (``b.conv_tag``, see
    :func:`byoc_dnnl.backend.choose_layout`), 2-D convolutions read and write
    that layout whenever a good kernel takes it.
    """
    if b.conv_tag is not None and len(x_shape) == 4:
        blocked = MemoryDesc.with_tag(x_shape, b.conv_tag)
        out = (
            dst
            if dst.format_kind != FormatKind.any
            else MemoryDesc.with_tag(dst.dims, b.conv_tag)
        )
        try:
            pd = make(blocked, out)
            if good_impl(pd.impl):
                return pd
        except DnnlError:
            pass
    src = MemoryDesc.any(x_shape)
    if hint is not None:
        try:
            pd = make(src, hint)
            if good_impl(pd.impl):
                return pd
        except DnnlError:
            pass
    return make(src, dst)


# -- Conv --------------------------------------------------------------------


def _conv_window(
    attrs: object, x: tuple[int, ...], w: tuple[int, ...], y: tuple[int, ...]
) -> Window:
    return forward_window(attrs, x[2:], y[2:], w[2:], allow_extension=False)  # type: ignore[arg-type]


Shape = tuple[int, ...]


def _check_shapes(
    info: byoc.NodeInfo,
    in_channels: Callable[[Shape, int], int],
    out_channels: Callable[[Shape, int], int],
) -> tuple[Shape, Shape, Shape]:
    """What Conv and ConvTranspose check alike: float32, rank 3-5, group,
    kernel_shape, bias and output channels. Their weights differ in which axis
    holds the input and output channels: ``in_channels``/``out_channels`` say,
    given the weight shape and group. Returns (x, w, y)."""
    need_f32(info)
    x, w, y = shape_of(info, 0), shape_of(info, 1), out_shape(info)
    if not 3 <= len(x) <= 5 or len(w) != len(x):
        raise Decline(f"needs rank 3-5 input and weights, got {len(x)} and {len(w)}")
    group = int(info.attrs.get("group", 1))
    if group < 1 or x[1] != in_channels(w, group) or w[0] % group:
        raise Decline(f"group={group} does not match input {x} and weights {w}")
    ks = info.attrs.get("kernel_shape")
    if ks is not None and tuple(ks) != w[2:]:
        raise Decline(f"kernel_shape={list(ks)} does not match weights {w}")
    oc = out_channels(w, group)
    if (
        len(info.inputs) > 2
        and info.inputs[2] is not None
        and shape_of(info, 2) != (oc,)
    ):
        raise Decline(f"bias shape {shape_of(info, 2)} is not ({oc},)")
    if y[:2] != (x[0], oc):
        raise Decline(f"output shape {y} does not match input {x} and weights {w}")
    return x, w, y


@guard
def check_conv(info: byoc.NodeInfo) -> None:
    """Conv: float32, 1-3 spatial dims, consistent group/kernel/output shape."""
    x, w, y = _check_shapes(info, lambda w, g: w[1] * g, lambda w, g: w[0])
    _conv_window(info.attrs, x, w, y)


def dw_fusable(host: Op, dw: Op) -> bool:
    """Whether depthwise Conv ``dw`` can ride on 1x1 Conv ``host`` as a post-op.

    The shape of oneDNN's fused kernel: host 1x1, stride 1, no padding, one
    group, eltwise post-ops only so far; ``dw`` 3x3, stride 2, dilation 1,
    left/top padding 1, one group per channel, constant weights and bias.
    """
    if host.kind != "Conv":  # any host may meet a Conv: a Relu or a pool has one input
        return False
    x, w = host.inputs[0], host.inputs[1]
    if x is None or w is None or len(host.out.shape) != 4:
        return False
    if w.shape[2:] != (1, 1) or int(host.attr("group", 1)) != 1:
        return False
    hwin = _conv_window(host.attrs, x.shape, w.shape, host.out.shape)
    if hwin.strides + hwin.dilations + hwin.pad_l + hwin.pad_r != (1, 1) + (0,) * 6:
        return False
    if not all(is_activation(f.kind) for f in host.fused):
        return False
    dx, dwt = dw.inputs[0], dw.inputs[1]
    bias = dw.inputs[2] if len(dw.inputs) > 2 else None
    c = host.out.shape[1]
    if dx is not (host.fused[-1].out if host.fused else host.out):
        return False
    if dwt is None or dwt.const is None or dwt.shape != (c, 1, 3, 3):
        return False
    if bias is not None and bias.const is None:
        return False
    if int(dw.attr("group", 1)) != c:
        return False
    win = _conv_window(dw.attrs, host.out.shape, dwt.shape, dw.out.shape)
    return win.strides == (2, 2) and win.dilations == (0, 0) and win.pad_l == (1, 1)


def post_dw(b: Builder, node: Op, chain: object, ep: Epilogue) -> None:
    """A depthwise Conv as oneDNN's ``dw`` post-op (see :func:`dw_fusable`)."""
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    ep.items.append(PostItem("dw", 3, 2.0, 1.0, weights=node.inputs[1], bias=bias))


@op(
    "Conv",
    check=check_conv,
    host=True,
    post=post_dw,
    prefers=lambda b, n: prefer_conv(b, n),
)
def lower_conv(b: Builder, node: Op, ep: Epilogue) -> None:
    """Conv (+ bias, + post-ops) as one convolution primitive."""
    x, w = node.inputs[0], node.inputs[1]
    assert x is not None and w is not None
    y = node.out
    win = _conv_window(node.attrs, x.shape, w.shape, y.shape)
    if chain_dw(b, node, ep, win):
        return
    group = int(node.attr("group", 1))
    oc = w.shape[0]
    wshape = w.shape if group == 1 else (group, oc // group, *w.shape[1:])
    _lower_window_op(
        b,
        node,
        ep,
        win,
        wshape,
        oc,
        deconv=False,
        weights=lambda: b.view(b.slot(w), wshape),
    )


def prefer_conv(b: Builder, node: Op) -> MemoryDesc | None:
    """The input layout the Conv's kernel picks on its own (layout planning)."""
    if b.conv_tag is not None and len(node.out.shape) == 4:
        return None  # blocked layout: producers keep whatever they write
    x, w = node.inputs[0], node.inputs[1]
    assert x is not None and w is not None
    win = _conv_window(node.attrs, x.shape, w.shape, node.out.shape)
    group = int(node.attr("group", 1))
    wshape = w.shape if group == 1 else (group, w.shape[0] // group, *w.shape[1:])
    src, wmd, dst = (MemoryDesc.any(s) for s in (x.shape, wshape, node.out.shape))
    pd = conv_pd(src, wmd, None, dst, win.geometry)
    return pd.md(Query.src_md) if good_impl(pd.impl) else None


def _finish(
    b: Builder,
    node: Op,
    ep: Epilogue,
    pd: PrimitiveDesc,
    x_slot: int,
    w_slot: int,
    bias: object,
    sum_slot: int | None,
    extra: list[tuple[int, int]],
) -> None:
    args = [
        (Arg.src, b.convert(x_slot, pd.md(Query.src_md))),
        (Arg.weights, b.convert(w_slot, pd.md(Query.weights_md))),
    ]
    if bias is not None:
        args.append((Arg.bias, b.convert(b.slot(bias), pd.arg_md(Arg.bias))))  # type: ignore[arg-type]
    result = ep.result or node.out
    out = b.produce(result, pd.md(Query.dst_md), inplace=sum_slot)
    args.append((Arg.dst, out))
    args.extend(extra)
    b.add_step(pd, args, node.label)


# -- ConvTranspose -------------------------------------------------------------


@guard
def check_conv_transpose(info: byoc.NodeInfo) -> None:
    """ConvTranspose: float32, 1-3 spatial dims, geometry consistent with the output."""
    x, w, y = _check_shapes(info, lambda w, g: w[0], lambda w, g: w[1] * g)
    transposed_window(info.attrs, x[2:], y[2:], w[2:])


@op("ConvTranspose", check=check_conv_transpose, host=True)
def lower_conv_transpose(b: Builder, node: Op, ep: Epilogue) -> None:
    """ConvTranspose as a deconvolution primitive (output_padding = less right pad)."""
    x, w = node.inputs[0], node.inputs[1]
    assert x is not None and w is not None
    y = node.out
    win = transposed_window(node.attrs, x.shape[2:], y.shape[2:], w.shape[2:])
    group = int(node.attr("group", 1))
    ic, ocg, ks = w.shape[0], w.shape[1], w.shape[2:]
    icg = ic // group
    # ONNX weights are (IC, OC/g, k...); oneDNN wants (g, OC/g, IC/g, k...): a
    # strided view of the dense weights, packed by the reorder into "any".
    inner = 1
    for k in ks:
        inner *= k
    if group == 1:
        wshape = (ocg, ic, *ks)
        wstrides = (inner, ocg * inner, *_dense_strides(ks))
    else:
        wshape = (group, ocg, icg, *ks)
        wstrides = (icg * ocg * inner, inner, ocg * inner, *_dense_strides(ks))
    _lower_window_op(
        b,
        node,
        ep,
        win,
        wshape,
        ocg * group,
        deconv=True,
        weights=lambda: b.strided_view(b.slot(w), wshape, wstrides),
    )


def _lower_window_op(
    b: Builder,
    node: Op,
    ep: Epilogue,
    win: Window,
    wshape: tuple[int, ...],
    oc: int,
    *,
    deconv: bool,
    weights: Callable[[], int],
) -> None:
    """One (de)convolution primitive with bias and post-ops; ``weights`` gives
    the weight slot in oneDNN's (g, OC/g, IC/g, k...) order."""
    x = node.inputs[0]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    assert x is not None
    y = node.out
    w_any = MemoryDesc.any(wshape)
    bias_md = MemoryDesc.plain((oc,)) if bias is not None else None
    sum_slot = ep.sum_slot(b, y.shape)
    dst_md = b.md(sum_slot) if sum_slot is not None else MemoryDesc.any(y.shape)
    attr, extra = ep.build(b, y.shape)
    x_slot = b.slot(x)

    def make(src: MemoryDesc, dst: MemoryDesc) -> PrimitiveDesc:
        return conv_pd(src, w_any, bias_md, dst, win.geometry, attr, deconv=deconv)

    hint = b.hint(ep.result or y) if sum_slot is None and not ep.has_dw else None
    pd = choose_pd(b, x.shape, hint, dst_md, make)
    if split_parts(b, node, ep, pd, win, attr, x_slot, bias, sum_slot, extra):
        return  # the parts run oneDNN's pick for one thread: nothing to time
    if not ep.has_dw:  # the fused depthwise kernel is a single implementation
        src_md, out_md = pd.md(Query.src_md), pd.md(Query.dst_md)
        ids = arg_ids(bias is not None, extra)
        pd = b.tuned(pd, lambda: make(src_md, out_md), ids, (win.geometry, deconv))
    if ep.has_dw:
        result = ep.result or y
        if not pd.impl.startswith("jit") or pd.md(Query.dst_md).dims != result.shape:
            # Not a real fused kernel: refuse, so the two convolutions run apart.
            raise refuse(
                f"no fused depthwise kernel ({pd.impl})", "dnnl_post_ops_append_dw"
            )
        if b.conv_tag is None and not b.md(x_slot).same(pd.md(Query.src_md)):
            # The fused kernel is blocked-only: in the native layout it would
            # cost a reorder on each side, more than the fusion saves.
            raise refuse(
                f"the fused depthwise kernel ({pd.impl}) needs a reorder",
                "dnnl_post_ops_append_dw",
            )
        extra = extra + ep.dw_args(b, pd)
    _finish(b, node, ep, pd, x_slot, weights(), bias, sum_slot, extra)


SPLIT_MAX_PIXELS = 14 * 14
"""The largest output image whose 1x1 convolutions are split by output channels.

oneDNN's jit 1x1 kernel shares pixels among the threads, so every thread
streams all the weights; on small images the weights are most of the bytes.
Split in two halves of the channels, one thread each (a 15-line C prototype,
400 alternating hot runs against the two-thread kernel): 0.83 - 0.86x its time
on MobileNetV2's five 7x7 shapes and ResNet-50's 2048 <-> 512, 0.88 - 0.98x at
14x14, 0.99 - 1.01x at 28x28, 1.10x at 56x56."""


def split_parts(
    b: Builder,
    node: Op,
    ep: Epilogue,
    pd: PrimitiveDesc,
    win: Window,
    attr: Attr,
    x_slot: int,
    bias: Value | None,
    sum_slot: int | None,
    extra: list[tuple[int, int]],
) -> bool:
    """Lower a 1x1 Conv as ``b.team`` convolutions on equal parts of its output
    channels, run side by side, one thread each; False (nothing added) where
    that does not apply.

    Applies to a batch-1, stride-1, unpadded 1x1 Conv with constant weights and
    bias on the channel-blocked layout, with at most ``SPLIT_MAX_PIXELS``
    output pixels, a jit 1x1 kernel, eltwise or sum post-ops only, and whole
    channel blocks per part: each part then writes a contiguous block of the
    output (and reads its own block of the residual a sum post-op adds), so
    the parts are plain convolutions at byte offsets, made for one thread.

    Where a depthwise Conv alone reads the result (:func:`chain_target`), the
    Conv is split into ``b.chain_team`` parts of whole blocks (not always
    equal: 144 channels are 5 + 4 blocks of 16) at any image size, and the
    depthwise Conv joins the team (:func:`chain_dw`).
    """
    parts, y = b.team, node.out
    w = node.inputs[1]
    dw = chain_target(b, node, ep)
    if dw is not None:
        parts = b.chain_team
    if parts < 2 or b.dry or b.conv_tag is None or extra or w is None:
        return False
    if len(y.shape) != 4 or y.shape[0] != 1:
        return False
    if dw is None and y.shape[2] * y.shape[3] > SPLIT_MAX_PIXELS:
        return False
    if w.const is None or (bias is not None and bias.const is None):
        return False
    if w.shape[2:] != (1, 1) or int(node.attr("group", 1)) != 1:
        return False
    if win.strides != (1, 1) or win.pad_l != (0, 0) or win.pad_r != (0, 0):
        return False
    if "1x1" not in pd.impl or any(i.kind not in ("eltwise", "sum") for i in ep.items):
        return False
    if not pd.md(Query.dst_md).same(MemoryDesc.with_tag(y.shape, b.conv_tag)):
        return False
    block = b.block
    oc, ic, height, width = y.shape[1], w.shape[1], y.shape[2], y.shape[3]
    bounds = block_bounds(oc, parts, block, even=dw is None)
    if bounds is None:
        return False
    src_md = pd.md(Query.src_md)
    made: dict[int, PrimitiveDesc] = {}
    for lo, hi in bounds:
        k = hi - lo
        if k in made:
            continue
        part_dst = MemoryDesc.with_tag((1, k, height, width), b.conv_tag)
        try:
            part = _one_thread_conv(
                b, src_md, (k, ic, 1, 1), bias is not None, part_dst, win, attr
            )
        except DnnlError:
            return False
        if "1x1" not in part.impl or not part.md(Query.dst_md).same(part_dst):
            return False
        made[k] = part
    xs = b.convert(x_slot, src_md)
    result = ep.result or y
    out = b.produce(result, pd.md(Query.dst_md), inplace=sum_slot)
    full = b.slots[out]
    parts_args = []
    part_slots = []
    for lo, hi in bounds:
        part = made[hi - lo]
        part_dst = part.md(Query.dst_md)
        wk = b.convert(b.const_slot(w.const[lo:hi]), part.md(Query.weights_md))
        args = [(Arg.src, xs), (Arg.weights, wk)]
        if bias is not None:
            assert bias.const is not None
            bk = b.convert(b.const_slot(bias.const[lo:hi]), part.arg_md(Arg.bias))
            args.append((Arg.bias, bk))
        at = full.offset + lo * height * width * 4
        part_slots.append(b.new_slot(full.buffer, part_dst, at))
        args.append((Arg.dst, part_slots[-1]))
        parts_args.append((part, args))
    b.add_team(parts_args, node.label)
    if dw is not None:
        b.chain_src[result.id] = (len(b.steps) - len(bounds), bounds, part_slots)
    return True


def _one_thread_conv(
    b: Builder,
    src: MemoryDesc,
    w_dims: tuple[int, ...],
    with_bias: bool,
    dst: MemoryDesc,
    win: Window,
    attr: Attr,
) -> PrimitiveDesc:
    """A convolution pd made for one thread (a team member), weights "any"."""
    bias = MemoryDesc.plain((w_dims[0],)) if with_bias else None
    return b.one_thread_pd(
        lambda: conv_pd(src, MemoryDesc.any(w_dims), bias, dst, win.geometry, attr)
    )


def block_bounds(
    channels: int, parts: int, block: int, *, even: bool
) -> list[tuple[int, int]] | None:
    """``parts`` channel ranges of whole blocks covering ``channels``, as equal
    as blocks allow (exactly equal if ``even``); None where that is impossible."""
    if channels % block:
        return None
    blocks = channels // block
    if blocks < parts or (even and blocks % parts):
        return None
    out, lo = [], 0
    for i in range(parts):
        n = blocks // parts + (1 if i < blocks % parts else 0)
        out.append((lo * block, (lo + n) * block))
        lo += n
    return out


def chain_target(b: Builder, node: Op, ep: Epilogue) -> Op | None:
    """The depthwise Conv that alone reads this 1x1 Conv's result, where the
    two can run as one chain per thread (:func:`chain_dw`); else None."""
    if b.chain_team < 2 or b.dry or b.conv_tag is None or ep.has_dw:
        return None
    result = ep.result or node.out
    if len(result.users) != 1 or any(h is result for h in b.ir.heads):
        return None
    dw = result.users[0]
    if dw.kind != "Conv" or dw.inputs[0] is not result or len(dw.out.shape) != 4:
        return None
    c = result.shape[1]
    wd = dw.inputs[1]
    if wd is None or wd.const is None or len(wd.shape) != 4 or wd.shape[:2] != (c, 1):
        return None
    if int(dw.attr("group", 1)) != c:
        return None
    bias = dw.inputs[2] if len(dw.inputs) > 2 else None
    if bias is not None and bias.const is None:
        return None
    if not all(is_activation(f.kind) for f in dw.fused):
        return None
    return dw


def chain_dw(b: Builder, node: Op, ep: Epilogue, win: Window) -> bool:
    """Lower a depthwise Conv as parts that join the split 1x1 Conv before it
    (:func:`split_parts`): each thread runs its expand part, then the depthwise
    part on the same channels, so the expanded tensor never leaves its core."""
    x, tag = node.inputs[0], b.conv_tag
    # Read, not popped: a fused form refused below is retried with the
    # depthwise Conv alone (lowering._lower_group), which may still chain.
    info = b.chain_src.get(x.id) if x is not None else None
    if info is None or x is None or tag is None:
        return False
    if not all(i.kind == "eltwise" for i in ep.items):
        return False
    first, bounds, src_slots = info
    if first + len(bounds) != len(b.steps):
        return False  # a step came in between: the depthwise Conv runs alone
    w = node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    assert w is not None and w.const is not None
    y = node.out
    result = ep.result or y
    attr, extra = ep.build(b, y.shape)
    if extra:
        return False
    _, _, oh, ow = y.shape
    ih, iw = x.shape[2], x.shape[3]
    kernel = w.shape[2:]
    made: dict[int, PrimitiveDesc] = {}
    for lo, hi in bounds:
        k = hi - lo
        if k in made:
            continue
        src = MemoryDesc.with_tag((1, k, ih, iw), tag)
        dst = MemoryDesc.with_tag((1, k, oh, ow), tag)
        try:
            pd = _one_thread_conv(
                b, src, (k, 1, 1, *kernel), bias is not None, dst, win, attr
            )
        except DnnlError:
            return False
        if not good_impl(pd.impl) or not (
            pd.md(Query.src_md).same(src) and pd.md(Query.dst_md).same(dst)
        ):
            return False
        made[k] = pd
    out = b.produce(result, MemoryDesc.with_tag(result.shape, tag))
    full = b.slots[out]
    steps = []
    for (lo, hi), src_slot in zip(bounds, src_slots, strict=True):
        pd = made[hi - lo]
        wk = b.convert(
            b.const_slot(w.const[lo:hi], (hi - lo, 1, 1, *kernel)),
            pd.md(Query.weights_md),
        )
        args = [(Arg.src, src_slot), (Arg.weights, wk)]
        if bias is not None:
            assert bias.const is not None
            args.append(
                (
                    Arg.bias,
                    b.convert(b.const_slot(bias.const[lo:hi]), pd.arg_md(Arg.bias)),
                )
            )
        at = full.offset + lo * oh * ow * 4
        args.append((Arg.dst, b.new_slot(full.buffer, pd.md(Query.dst_md), at)))
        b.add_step(pd, args, node.label)
        steps.append(b.steps.pop())
    team = b.steps[first:]
    chained = [s for pair in zip(team, steps, strict=True) for s in pair]
    for s in chained:
        s.team = 0
    chained[0].team, chained[0].chain = len(chained), 2
    b.steps[first:] = chained
    del b.chain_src[x.id]
    return True


def _dense_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        out[i] = out[i + 1] * shape[i + 1]
    return tuple(out)
