"""Layout ops: Concat (a primitive) and Reshape/Flatten/Transpose (mostly views).

Reshape and Flatten of a dense tensor are a new memory desc over the same
buffer; Transpose of a dense tensor is a strided view, which matmul reads
directly (attention's head split) and anything else reorders when it needs a
dense input. Only blocked inputs cost a reorder here.
"""

from __future__ import annotations

import ctypes
import math

import byoc

from .._lib import Arg, Query
from ..handles import MemoryDesc, PrimitiveDesc, c_strides
from ..ir import Decline, Op
from ..layout import standard_layouts
from ..lowering import Builder, Epilogue
from . import guard, need_const, need_f32, norm_axis, op, out_shape, shape_of

# -- Concat ------------------------------------------------------------------------


@guard
def check_concat(info: byoc.NodeInfo) -> None:
    """Concat: float32 inputs of equal rank that agree off the axis."""
    need_f32(info)
    shapes = [shape_of(info, i) for i in range(len(info.inputs))]
    if not shapes:
        raise Decline("without inputs")
    rank = len(shapes[0])
    axis = norm_axis(int(info.attrs.get("axis", 0)), rank)
    for s in shapes:
        if (
            len(s) != rank
            or s[:axis] + s[axis + 1 :] != shapes[0][:axis] + shapes[0][axis + 1 :]
        ):
            raise Decline(
                f"input shapes {[list(x) for x in shapes]} do not concatenate"
            )


@op("Concat", check=check_concat, follows=True)
def lower_concat(b: Builder, node: Op, ep: Epilogue) -> None:
    """One concat primitive over the inputs' layouts."""
    vals = [v for v in node.inputs if v is not None]
    axis = norm_axis(int(node.attr("axis", 0)), len(node.out.shape))
    dst = MemoryDesc.any(node.out.shape)
    attr, _ = ep.build(b, node.out.shape)
    slots = [b.slot(v) for v in vals]

    def make(mds: list[MemoryDesc]) -> PrimitiveDesc:
        arr = (ctypes.c_void_p * len(mds))(*[m.h.value for m in mds])
        return b.pd(
            "concat", "concat_primitive_desc_create", dst.h, len(mds), axis, arr, attr.h
        )

    pd, slots = b.best_pd(slots, make)
    got = pd.md(Query.dst_md)
    for tidy in standard_layouts(node.out.shape):
        # oneDNN 3.2 gives the "any" dst of a batch-1 concat the batch stride
        # of its first input. No element moves, but a binary kernel reading
        # that desc finds its per-channel post-op operands through the
        # stride (every channel block got the first block's; fuzzed). Ask
        # for the standard desc of the same bytes. dnnl_memory_desc_equal
        # calls the two equal, so the strides are compared.
        if tidy.same_bytes_as(got) and tidy.strides != got.strides:
            dst = tidy  # make() reads it
            pd = make([b.md(s) for s in slots])
            got = pd.md(Query.dst_md)
            break
    out = b.produce(node.out, got)
    args = [(Arg.multiple_src + i, s) for i, s in enumerate(slots)]
    b.add_step(pd, [*args, (Arg.dst, out)], node.label)


# -- views -----------------------------------------------------------------------------


@guard
def check_reshape(info: byoc.NodeInfo) -> None:
    """Reshape: float32 data, constant shape, static output of the same size."""
    need_f32(info, [0])
    need_const(info, 1, "shape")
    _same_size(info)


@guard
def check_flatten(info: byoc.NodeInfo) -> None:
    """Flatten: float32, static output of the same size."""
    need_f32(info)
    _same_size(info)


def _same_size(info: byoc.NodeInfo) -> None:
    x, y = shape_of(info, 0), out_shape(info)
    if math.prod(x) != math.prod(y):
        raise Decline(f"output {list(y)} has another size than input {list(x)}")
    if not y:
        raise Decline("with a scalar output is not supported")


@op("Reshape", check=check_reshape)
def lower_reshape(b: Builder, node: Op, ep: Epilogue) -> None:
    """A view of the (dense) input with the output's shape."""
    x = node.inputs[0]
    assert x is not None
    b.bind(node.out, b.view(b.slot(x), node.out.shape))


op("Flatten", check=check_flatten)(lower_reshape)


@guard
def check_transpose(info: byoc.NodeInfo) -> None:
    """Transpose: float32, a permutation of the axes."""
    need_f32(info)
    rank = len(shape_of(info, 0))
    perm = tuple(info.attrs.get("perm", range(rank - 1, -1, -1)))
    if sorted(perm) != list(range(rank)):
        raise Decline(f"perm={list(perm)} is not a permutation of {rank} axes")


def prefer_transposed(b: Builder, node: Op) -> MemoryDesc | None:
    """Ask the producer to store the input so that the Transpose is row-major."""
    x = node.inputs[0]
    assert x is not None
    rank = len(x.shape)
    perm = tuple(int(p) for p in node.attr("perm", range(rank - 1, -1, -1)))
    if (
        x.producer is None
        or x.producer.kind not in ("MatMul", "Gemm")
        or len(x.users) != 1
        or any(h is x for h in b.ir.heads)
    ):
        return None
    strides = [0] * rank
    step = 1
    for axis in reversed(perm):
        strides[axis] = step
        step *= x.shape[axis]
    return MemoryDesc.strided(x.shape, strides)


@op("Transpose", check=check_transpose, prefers=prefer_transposed)
def lower_transpose(b: Builder, node: Op, ep: Epilogue) -> None:
    """A strided view when the input is dense, else one reorder into dense output."""
    x = node.inputs[0]
    assert x is not None
    rank = len(x.shape)
    perm = tuple(int(p) for p in node.attr("perm", range(rank - 1, -1, -1)))
    s = b.slot(x)
    md = b.md(s)
    if md.is_plain:  # row-major or any other permutation of dense strides
        st = md.strides
        b.bind(
            node.out,
            b.new_slot(
                b.slots[s].buffer,
                MemoryDesc.strided(node.out.shape, tuple(st[p] for p in perm)),
            ),
        )
        return
    # Reorder straight from the blocked layout into the transposed dense result:
    # the destination, seen with the input's dims, has permuted strides.
    out_strides = c_strides(node.out.shape)
    inv = [0] * rank
    for i, p in enumerate(perm):
        inv[p] = out_strides[i]
    dst_in_x_dims = MemoryDesc.strided(x.shape, inv)
    out = b.output(node.out, MemoryDesc.plain(node.out.shape))
    view = b.new_slot(b.slots[out].buffer, dst_in_x_dims)
    b.add_step(
        b._reorder_pd(md, dst_in_x_dims), [(Arg.src, s), (Arg.dst, view)], node.label
    )
