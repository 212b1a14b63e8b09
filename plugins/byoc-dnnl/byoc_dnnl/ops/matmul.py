"""Matrix products: MatMul (numpy semantics, batched, broadcast) and Gemm.

Both lower to a fusion host: a product with a constant 2-D weight matrix (every
Linear layer) to oneDNN's inner-product primitive when its kernel is a brgemm
one, otherwise to the matmul primitive. On AVX2 CPUs oneDNN 3.2 has brgemm
kernels only for inner product; its matmul falls back to the jit sgemm, which
measured half as fast on the bench's layer shapes (``bench/README.md``).
When the subgraph runs on the channel-blocked layout (:mod:`byoc_dnnl.layout`),
a Linear layer with enough rows runs as a jit 1x1 convolution instead.
Constant weights use ``format_tag::any`` and are packed once at init.
Transposed operands (Gemm's transA/transB, a Transpose feeding a MatMul) are
strided views, not copies.
A MatMul whose weights are a plain matrix runs on flattened rows
(``[..., M, K] -> [rows, K]``), which gives the kernel one large M.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

import byoc

from .._lib import Alg, Arg, DnnlError, PropKind, Query
from ..handles import Attr, MemoryDesc, PrimitiveDesc, conv_pd
from ..ir import Decline, Op, Value
from ..lowering import INTERNAL, Builder, Epilogue, PostItem, is_jit
from ..tune import arg_ids, candidates
from . import guard, need_f32, op, out_shape, shape_of


def _pad(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    return (1,) * (rank - len(shape)) + tuple(shape)


def matmul_shapes(
    a: tuple[int, ...], w: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(src, weights, dst) dims of ``a @ w`` with rank-1 operands made 2-D."""
    a2 = (1, *a) if len(a) == 1 else a
    w2 = (*w, 1) if len(w) == 1 else w
    r = max(len(a2), len(w2))
    a3, w3 = _pad(a2, r), _pad(w2, r)
    if a3[-1] != w3[-2]:
        raise Decline(f"inner dimensions of {list(a)} and {list(w)} differ")
    batch = []
    for x, y in zip(a3[:-2], w3[:-2], strict=True):
        if x != y and 1 not in (x, y):
            raise Decline(f"batch dims of {list(a)} and {list(w)} do not broadcast")
        batch.append(max(x, y))
    return a3, w3, (*batch, a3[-2], w3[-1])


def _onnx_out(
    a: tuple[int, ...], w: tuple[int, ...], d: tuple[int, ...]
) -> tuple[int, ...]:
    out = list(d)
    if len(w) == 1:
        out.pop(-1)
    if len(a) == 1:
        out.pop(-2 if len(w) != 1 else -1)
    return tuple(out)


@guard
def check_matmul(info: byoc.NodeInfo) -> None:
    """MatMul: float32, numpy broadcasting of batch dims, non-scalar output."""
    need_f32(info)
    a, w, y = shape_of(info, 0), shape_of(info, 1), out_shape(info)
    if not a or not w:
        raise Decline("with a scalar operand is not supported")
    _, _, d = matmul_shapes(a, w)
    if _onnx_out(a, w, d) != y:
        raise Decline(f"output shape {list(y)} does not match {list(a)} @ {list(w)}")


def _operand(b: Builder, v: Value, dims: tuple[int, ...]) -> int:
    s = b.slot(v)
    md = b.md(s)
    if md.dims == dims and md.is_plain:
        return s  # dense or a strided view (e.g. a transpose): the kernel reads it
    if not md.is_plain:
        # Blocked rows (a 1x1 convolution's output): the kernels take them as
        # they are or reorder them; a flat view of them needs no copy.
        if md.dims == dims:
            return s
        try:
            return b.alias(s, md.reshape(dims))
        except DnnlError:
            pass
    return b.view(s, dims)


@op("MatMul", check=check_matmul, host=True)
def lower_matmul(b: Builder, node: Op, ep: Epilogue) -> None:
    """MatMul (+ folded bias in input 2, + post-ops) as one matmul primitive."""
    a, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    assert a is not None and w is not None
    a3, w3, d3 = matmul_shapes(a.shape, w.shape)
    n = d3[-1]
    rows = math.prod(d3[:-1])
    flat = len(w3) > 2 and all(x == 1 for x in w3[:-2]) and ep.operands_fit((rows, n))
    src_dims: tuple[int, ...]
    w_dims: tuple[int, ...]
    dst_dims: tuple[int, ...]
    if flat:
        src_dims, w_dims, dst_dims = (rows, a3[-1]), w3[-2:], (rows, n)
    else:
        src_dims, w_dims, dst_dims = a3, w3, d3
    bias_slot = (
        None if bias is None else b.view(b.slot(bias), _pad((n,), len(dst_dims)))
    )
    _matmul(
        b,
        node,
        ep,
        _operand(b, a, src_dims),
        _operand(b, w, w_dims),
        w.const is not None,
        dst_dims,
        bias_slot,
        [],
    )


def _matmul(
    b: Builder,
    node: Op,
    ep: Epilogue,
    a_slot: int,
    w_slot: int,
    w_const: bool,
    dst_dims: tuple[int, ...],
    bias_slot: int | None,
    prefix: list[PostItem],
) -> None:
    """Shared tail of MatMul and Gemm: pd, packed weights, one step."""
    w_dims = b.md(w_slot).dims
    sum_slot = ep.sum_slot(b, dst_dims)
    dst_md = b.md(sum_slot) if sum_slot is not None else MemoryDesc.any(dst_dims)
    attr, extra = ep.build(b, dst_dims, prefix)
    bias_md = b.md(bias_slot) if bias_slot is not None else None
    w_any = MemoryDesc.any(w_dims) if w_const else None

    def make(mds: list[MemoryDesc], dst: MemoryDesc | None = None) -> PrimitiveDesc:
        wmd = w_any if w_any is not None else mds[1]
        return b.pd(
            "matmul",
            "matmul_primitive_desc_create",
            mds[0].h,
            wmd.h,
            bias_md.h if bias_md is not None else None,
            (dst or dst_md).h,
            attr.h,
        )

    hint = b.hint(ep.result or node.out) if sum_slot is None else None
    if hint is not None and hint.dims != tuple(dst_dims):
        hint = None
    if hint is None and w_const and len(dst_dims) == 2:
        if linear_as_conv(
            b,
            node,
            ep,
            (a_slot, w_slot, bias_slot, sum_slot),
            (attr, extra),
            lambda view: ep.build(b, dst_dims, prefix, view),
        ):
            return
        if _inner_product(
            b, node, ep, a_slot, w_slot, (dst_md, sum_slot), bias_slot, attr, extra
        ):
            return
    pd = None
    if hint is not None:
        # A Transpose reads this result: write it transposed, so the Transpose
        # becomes a view and the next Reshape is free.
        default_dst = dst_md
        dst_md = hint
        try:
            pd, (a_slot, w_slot) = b.best_pd([a_slot, w_slot], make)
            if pd.impl.startswith("ref"):
                pd = None
        except DnnlError:
            pd = None
        if pd is None:
            dst_md = default_dst
    if pd is None:
        pd, (a_slot, w_slot) = b.best_pd([a_slot, w_slot], make)
    fixed = [pd.md(Query.src_md), b.md(w_slot), pd.md(Query.dst_md)]
    ids = arg_ids(bias_slot is not None, extra)
    pd = b.tuned(pd, lambda: make(fixed[:2], fixed[2]), ids)
    args = [
        (Arg.src, a_slot),
        (Arg.weights, b.convert(w_slot, pd.md(Query.weights_md))),
    ]
    if bias_slot is not None:
        args.append((Arg.bias, bias_slot))
    out = b.produce(ep.result or node.out, pd.md(Query.dst_md), inplace=sum_slot)
    args.append((Arg.dst, out))
    args.extend(extra)
    b.add_step(pd, args, node.label)


def _inner_product(
    b: Builder,
    node: Op,
    ep: Epilogue,
    a_slot: int,
    w_slot: int,
    dst: tuple[MemoryDesc, int | None],
    bias_slot: int | None,
    attr: object,
    extra: list[tuple[int, int]],
) -> bool:
    """``a @ w`` with constant (K, N) weights as one inner-product step.

    ``dst`` is the destination desc and, for a sum post-op, the slot the
    result overwrites. Returns False (and adds nothing) unless oneDNN picks a
    brgemm kernel.
    """
    dst_md, sum_slot = dst
    src_md = b.md(a_slot)
    if not src_md.is_plain:  # rows a blocked 1x1 convolution wrote: read them dense
        src_md = MemoryDesc.plain(src_md.dims)
    k, n = b.md(w_slot).dims
    sk, sn = b.md(w_slot).strides
    bias_md = MemoryDesc.plain((n,)) if bias_slot is not None else None
    w_any = MemoryDesc.any((n, k))

    def make(src: MemoryDesc, dst: MemoryDesc) -> PrimitiveDesc:
        return b.pd(
            "inner_product",
            "inner_product_forward_primitive_desc_create",
            PropKind.forward_inference,
            src.h,
            w_any.h,
            bias_md.h if bias_md is not None else None,
            dst.h,
            attr.h,  # type: ignore[attr-defined]
        )

    try:
        pd = make(src_md, dst_md)
    except DnnlError:
        return False
    if not pd.impl.startswith("brgemm"):
        return False
    src_md, dst_md = pd.md(Query.src_md), pd.md(Query.dst_md)
    # With few rows the product streams its weights, which in the model come
    # from memory: timed on hot weights the kernels rank otherwise (1 x 1280
    # by 1280 x 1000: 48 - 61 us hot, 134 - 244 us cold; see the README).
    pd = b.tuned(
        pd,
        lambda: make(src_md, dst_md),
        arg_ids(bias_slot is not None, extra),
        cold=True,
    )
    # Inner product wants (N, K) weights: a transposed view, packed once below.
    w_nk = b.new_slot(b.slots[w_slot].buffer, MemoryDesc.strided((n, k), (sn, sk)))
    args = [
        (Arg.src, b.convert(a_slot, pd.md(Query.src_md))),
        (Arg.weights, b.convert(w_nk, pd.md(Query.weights_md))),
    ]
    if bias_slot is not None:
        args.append((Arg.bias, b.view(bias_slot, (n,))))
    out = b.produce(ep.result or node.out, pd.md(Query.dst_md), inplace=sum_slot)
    args.append((Arg.dst, out))
    args.extend(extra)
    b.add_step(pd, args, node.label)
    return True


_ONE_BY_ONE = ((1, 1), (0, 0), (0, 0), (0, 0))
"""Strides, dilations and pads of a 1x1 convolution."""
CONV_MIN_ROWS = 32
"""Fewer rows: the inner product wins (with 1, 4 and 16 rows it ran 2-60 % faster)."""


def rows_as_image(md: MemoryDesc) -> MemoryDesc:
    """A (rows, C) matrix as the (1, C, 1, rows) image a 1x1 convolution reads.

    Same bytes: a row-major matrix is a channels-last image, and a
    channel-blocked image is a matrix with blocked columns.
    """
    m, c = md.dims
    return md.reshape((1, 1, m, c)).permute((0, 2, 3, 1))


def image_as_rows(md: MemoryDesc) -> MemoryDesc:
    """The inverse of :func:`rows_as_image`."""
    _, c, _, m = md.dims
    return md.permute((0, 3, 1, 2)).reshape((m, c))


def linear_as_conv(
    b: Builder,
    node: Op,
    ep: Epilogue,
    slots: tuple[int, int, int | None, int | None],
    post: tuple[Attr, list[tuple[int, int]]],
    build: Callable[[Callable[[int], int]], tuple[Attr, list[tuple[int, int]]]],
) -> bool:
    """``a @ w`` as a jit 1x1 convolution; ``slots`` are a, w, bias and the
    sum post-op's in-place destination (or None), ``post`` the epilogue's
    attr and extra args for a 2-D destination, ``build`` makes them again
    with each binary operand slot passed through a view function.

    On this repo's AVX2 bench machine oneDNN 3.2's jit 1x1 kernel ran 14-24 %
    faster than the brgemm inner product on the bench's Linear shapes with 32
    or more rows, at 1 and 2 threads, and 36-130 % slower with 1-4 rows (see
    the dnnl README).

    * Native program: plain (rows, C) rows already are a channels-last
      (1, C, 1, rows) image, so the convolution reads and writes them in
      place, sum post-op (residual) included; binary post-op operands are
      seen as images the same way.
    * Blocked program (``b.conv_tag``): consecutive Linear layers pass
      channel-blocked activations along without reorders; the result value
      lives in a (rows, N) view of the blocked image, and consumers that need
      plain rows get one reorder. A residual is plain rows, so no sum or
      binary post-op.

    Returns False (and adds nothing) with fewer than :data:`CONV_MIN_ROWS`
    rows, channels that a blocked layout would pad, a residual that is not
    plain rows, or no jit kernel.
    """
    a_slot, w_slot, bias_slot, sum_slot = slots
    attr, extra = post
    tag = b.conv_tag
    k, n = b.md(w_slot).dims
    m = b.md(a_slot).dims[0]
    if m < CONV_MIN_ROWS or (tag is not None and (sum_slot is not None or extra)):
        return False
    if sum_slot is not None and not b.md(sum_slot).is_dense:
        # The sum adds into the residual where it lies, and the convolution
        # writes plain rows: a residual kept in another layout (a Softmax
        # over axis 0 writes columns) would be read as rows.
        return False
    if tag is None:
        src_md = rows_as_image(MemoryDesc.plain((m, k)))
        dst_md = rows_as_image(MemoryDesc.plain((m, n)))
    else:
        src_md = MemoryDesc.with_tag((1, k, 1, m), tag)
        dst_md = MemoryDesc.with_tag((1, n, 1, m), tag)
        if src_md.nbytes != 4 * m * k or dst_md.nbytes != 4 * m * n:
            return False  # channels not a multiple of the block
    w_any = MemoryDesc.any((n, k, 1, 1))
    bias_md = MemoryDesc.plain((n,)) if bias_slot is not None else None
    result = ep.result or node.out
    try:
        if extra:
            attr, extra = build(lambda s: b.alias(s, rows_as_image(b.md(s))))
        image = rows_as_image(b.md(a_slot))
        found = candidates(
            conv_pd(src_md, w_any, bias_md, dst_md, _ONE_BY_ONE, attr), is_jit
        )
        rows = image_as_rows(dst_md)
        if rows.dims != result.shape:
            rows = rows.reshape(result.shape)
    except DnnlError:
        return False
    if not found:
        return False
    pd = b.tuned(
        next(iter(found.values())),
        lambda: conv_pd(src_md, w_any, bias_md, dst_md, _ONE_BY_ONE, attr),
        arg_ids(bias_slot is not None, extra),
        _ONE_BY_ONE,
        accept=is_jit,  # not brgconv, which oneDNN lists first
    )
    sk, sn = b.md(w_slot).strides
    w_image = MemoryDesc.strided((n, k, 1, 1), (sn, sk, 1, 1))
    args = [
        (Arg.src, b.convert(b.alias(a_slot, image), src_md)),
        (Arg.weights, b.convert(b.alias(w_slot, w_image), pd.md(Query.weights_md))),
    ]
    if bias_slot is not None:
        args.append((Arg.bias, b.view(bias_slot, (n,))))
    if tag is None:
        out = b.alias(b.produce(result, MemoryDesc.plain((m, n)), sum_slot), dst_md)
    else:
        out = b.new_slot(b.buffer(INTERNAL, dst_md.nbytes), dst_md)
        b.bind(result, b.alias(out, rows))
    args.append((Arg.dst, out))
    args.extend(extra)
    b.add_step(pd, args, node.label)
    return True


# -- Gemm ------------------------------------------------------------------------


def _gemm_dims(
    info_attrs: object, a: tuple[int, ...], w: tuple[int, ...]
) -> tuple[int, int, int]:
    get = info_attrs.get  # type: ignore[attr-defined]
    ta, tb = int(get("transA", 0)), int(get("transB", 0))
    m, k = (a[1], a[0]) if ta else a
    k2, n = (w[1], w[0]) if tb else w
    if k != k2:
        raise Decline(
            f"inner dimensions of {list(a)} and {list(w)} differ "
            f"(transA={ta}, transB={tb})"
        )
    return m, k, n


@guard
def check_gemm(info: byoc.NodeInfo) -> None:
    """Gemm: float32 2-D operands; C broadcastable to (M, N)."""
    need_f32(info)
    a, w = shape_of(info, 0), shape_of(info, 1)
    if len(a) != 2 or len(w) != 2:
        raise Decline(f"needs 2-D A and B, got ranks {len(a)} and {len(w)}")
    m, _, n = _gemm_dims(info.attrs, a, w)
    if out_shape(info) != (m, n):
        raise Decline(f"output shape {out_shape(info)} is not ({m}, {n})")
    if len(info.inputs) > 2 and info.inputs[2] is not None:
        c = _pad(shape_of(info, 2), 2)
        if len(c) != 2 or c[0] not in (1, m) or c[1] not in (1, n):
            raise Decline(
                f"C of shape {list(shape_of(info, 2))} does not broadcast to ({m}, {n})"
            )


@op("Gemm", check=check_gemm, host=True)
def lower_gemm(b: Builder, node: Op, ep: Epilogue) -> None:
    """alpha*A'B' + beta*C: alpha folds into constant weights, C into the bias."""
    a, w = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 else None
    assert a is not None and w is not None
    m, k, n = _gemm_dims(node.attrs, a.shape, w.shape)
    ta, tb = int(node.attr("transA", 0)), int(node.attr("transB", 0))
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    w_slot = b.slot(w)
    a_slot = b.slot(a)
    if alpha != 1.0 and w.const is not None:
        w_slot = b.const_slot(np.asarray(w.const, np.float32) * np.float32(alpha))
        alpha = 1.0
    elif alpha != 1.0 and a.const is not None:
        a_slot = b.const_slot(np.asarray(a.const, np.float32) * np.float32(alpha))
        alpha = 1.0
    if ta:
        a_slot = b.strided_view(a_slot, (m, k), (1, m))
    if tb:
        w_slot = b.strided_view(w_slot, (k, n), (1, k))
    prefix: list[PostItem] = []
    bias_slot = None
    if c is not None and beta != 0.0:
        c2 = _pad(c.shape, 2)
        if c.const is not None:
            cval = np.asarray(c.const, np.float32).reshape(c2) * np.float32(beta)
            if alpha == 1.0 and c2[0] == 1:
                bias_slot = b.const_slot(np.broadcast_to(cval, (1, n)))
            else:
                prefix += _alpha(alpha)
                prefix.append(
                    PostItem("binary", Alg.binary_add, slot=b.const_slot(cval))
                )
        else:
            c_slot = b.view(b.slot(c), c2)
            if alpha == 1.0 and beta == 1.0 and c2 == (1, n):
                bias_slot = c_slot
            elif beta == 1.0:
                prefix += _alpha(alpha)
                prefix.append(PostItem("binary", Alg.binary_add, slot=c_slot))
            else:
                prefix += _alpha(alpha / beta)
                prefix.append(PostItem("binary", Alg.binary_add, slot=c_slot))
                prefix.append(PostItem("eltwise", Alg.eltwise_linear, beta, 0.0))
    else:
        prefix += _alpha(alpha)
    _matmul(b, node, ep, a_slot, w_slot, w.const is not None, (m, n), bias_slot, prefix)


def _alpha(alpha: float) -> list[PostItem]:
    return [] if alpha == 1.0 else [PostItem("eltwise", Alg.eltwise_linear, alpha, 0.0)]
