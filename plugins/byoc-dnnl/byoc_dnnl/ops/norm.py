"""Normalizations: BatchNormalization (inference), LayerNormalization, Softmax.

A BatchNormalization right after a Conv with constant weights never gets
here: :mod:`byoc_dnnl.passes` folds it into the Conv's weights and bias.
LayerNormalization normalizes the trailing dims from ``axis`` on, which is
oneDNN's layer norm over the rows of a ``[prod(leading), prod(trailing)]``
view; its optional Mean and InvStdDev outputs come from the training-mode
statistics (InvStdDev = (variance + epsilon) ** -0.5, one eltwise step).
"""

from __future__ import annotations

import math

import byoc

from .._lib import Alg, Arg, NormFlags, PropKind, Query
from ..handles import MemoryDesc, PostOp, PrimitiveDesc
from ..ir import Decline, Op
from ..layout import channel_layouts
from ..lowering import Builder, Epilogue
from . import guard, n_outputs, need_f32, norm_axis, op, out_shape, shape_of

# -- BatchNormalization ---------------------------------------------------------


@guard
def check_batchnorm(info: byoc.NodeInfo) -> None:
    """BatchNormalization: inference mode only, float32, (C,) parameters."""
    need_f32(info)
    if int(info.attrs.get("training_mode", 0)):
        raise Decline("training_mode=1 is not supported")
    n_outputs(info, 1, "running statistics")
    x = shape_of(info, 0)
    if not 2 <= len(x) <= 5:
        raise Decline(f"needs a rank 2-5 input, got rank {len(x)}")
    if len(info.inputs) != 5 or any(s is None for s in info.inputs):
        raise Decline("needs scale, B, mean and var")
    for i in range(1, 5):
        if shape_of(info, i) != (x[1],):
            raise Decline(
                f"input {i} has shape {list(shape_of(info, i))}, not [{x[1]}]"
            )


@op("BatchNormalization", check=check_batchnorm, follows=True)
def lower_batchnorm(b: Builder, node: Op, ep: Epilogue) -> None:
    """One batch normalization primitive with global statistics."""
    x = node.inputs[0]
    assert x is not None
    flags = NormFlags.use_global_stats | NormFlags.use_scale | NormFlags.use_shift
    eps = float(node.attr("epsilon", 1e-5))
    attr, _ = ep.build(b, x.shape)

    def make(mds: list[MemoryDesc]) -> PrimitiveDesc:
        return b.pd(
            "batch_normalization",
            "batch_normalization_forward_primitive_desc_create",
            PropKind.forward_inference,
            mds[0].h,
            mds[0].h,
            eps,
            flags,
            attr.h,
        )

    # On plain NCHW oneDNN normalizes with a simple loop (4x onnxruntime's time
    # on 64x56x56): a blocked or channels-last copy gets a jit kernel.
    pd, s = b.jit_pd(b.slot(x), make, channel_layouts(x.shape))
    params = [b.slot(v) for v in node.inputs[1:] if v is not None]
    out = b.produce(node.out, pd.md(Query.dst_md))
    b.add_step(
        pd,
        [
            (Arg.src, s),
            (Arg.dst, out),
            (Arg.scale, params[0]),
            (Arg.shift, params[1]),
            (Arg.mean, params[2]),
            (Arg.variance, params[3]),
        ],
        node.label,
    )


# -- LayerNormalization ----------------------------------------------------------


@guard
def check_layernorm(info: byoc.NodeInfo) -> None:
    """LayerNormalization: float32 stash type; Scale/B sized as the normalized dims."""
    need_f32(info)
    x = shape_of(info, 0)
    axis = norm_axis(int(info.attrs.get("axis", -1)), len(x))
    if int(info.attrs.get("stash_type", 1)) != 1:
        raise Decline("stash_type other than float32 is not supported")
    cols = math.prod(x[axis:])
    for i in (1, 2):
        if i < len(info.inputs) and info.inputs[i] is not None:
            if math.prod(shape_of(info, i)) != cols:
                raise Decline(
                    f"input {i} of shape {list(shape_of(info, i))} is not the "
                    f"size of the normalized dims {list(x[axis:])}"
                )
    stat = x[:axis] + (1,) * (len(x) - axis)
    for i in (1, 2):
        if i < len(info.outputs) and out_shape(info, i) != stat:
            raise Decline(
                f"output {i} shape {list(out_shape(info, i))} is not {list(stat)}"
            )


@op("LayerNormalization", check=check_layernorm)
def lower_layernorm(b: Builder, node: Op, ep: Epilogue) -> None:
    """Layer norm over the rows of a 2-D view; training stats when Mean is wanted."""
    x, scale = node.inputs[0], node.inputs[1]
    shift = node.inputs[2] if len(node.inputs) > 2 else None
    assert x is not None and scale is not None
    axis = norm_axis(int(node.attr("axis", -1)), len(x.shape))
    rows, cols = math.prod(x.shape[:axis]), math.prod(x.shape[axis:])
    eps = float(node.attr("epsilon", 1e-5))
    s = b.view(b.slot(x), (rows, cols))
    md = b.md(s)
    stats = len(node.outputs) > 1
    flags = NormFlags.use_scale | (NormFlags.use_shift if shift is not None else 0)
    stat_md = MemoryDesc.plain((rows,))
    attr, _ = ep.build(b, md.dims)
    prop = PropKind.forward_training if stats else PropKind.forward_inference
    pd = b.pd(
        "layer_normalization",
        "layer_normalization_forward_primitive_desc_create",
        prop,
        md.h,
        md.h,
        stat_md.h,
        eps,
        flags,
        attr.h,
    )
    args = [
        (Arg.src, s),
        (Arg.dst, b.produce(node.out, pd.md(Query.dst_md))),
        (Arg.scale, b.view(b.slot(scale), (cols,))),
    ]
    if shift is not None:
        args.append((Arg.shift, b.view(b.slot(shift), (cols,))))
    if stats:
        mean = b.produce(node.outputs[1], stat_md)
        var = b.new_slot(b.buffer("internal", stat_md.nbytes), stat_md)
        args += [(Arg.mean, mean), (Arg.variance, var)]
    b.add_step(pd, args, node.label)
    if len(node.outputs) > 2:
        # InvStdDev = (var + eps) ** -0.5: a linear step with a pow post-op.
        from ..handles import Attr

        pow_attr = Attr([PostOp("eltwise", Alg.eltwise_pow, 1.0, -0.5)])
        pd2 = b.pd(
            "eltwise",
            "eltwise_forward_primitive_desc_create",
            PropKind.forward_inference,
            Alg.eltwise_linear,
            stat_md.h,
            stat_md.h,
            1.0,
            eps,
            pow_attr.h,
        )
        inv = b.produce(node.outputs[2], stat_md)
        b.add_step(pd2, [(Arg.src, var), (Arg.dst, inv)], f"{node.label} inv_std_dev")


# -- Softmax -------------------------------------------------------------------------


@guard
def check_softmax(info: byoc.NodeInfo) -> None:
    """Softmax (opset >= 13 semantics): float32, any axis."""
    need_f32(info)
    norm_axis(int(info.attrs.get("axis", -1)), len(shape_of(info, 0)))


@op("Softmax", check=check_softmax)
def lower_softmax(b: Builder, node: Op, ep: Epilogue) -> None:
    """One softmax primitive (accurate: max-subtracted)."""
    x = node.inputs[0]
    assert x is not None
    axis = norm_axis(int(node.attr("axis", -1)), len(x.shape))
    attr, _ = ep.build(b, x.shape)

    def make(mds: list[MemoryDesc]) -> PrimitiveDesc:
        return b.pd(
            "softmax",
            "softmax_forward_primitive_desc_create",
            PropKind.forward_inference,
            Alg.softmax_accurate,
            mds[0].h,
            mds[0].h,
            axis,
            attr.h,
        )

    # oneDNN's jit softmax needs the axis innermost; over a strided axis (the
    # channels of NCHW) only its reference kernel runs, 11x onnxruntime's time.
    pd, s = b.jit_pd(b.slot(x), make, [MemoryDesc.innermost(x.shape, axis)])
    out = b.produce(node.out, pd.md(Query.dst_md))
    b.add_step(pd, [(Arg.src, s), (Arg.dst, out)], node.label)
