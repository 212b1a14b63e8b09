"""Elementwise ops: activations (eltwise) and Add/Sub/Mul/Div (binary).

Alone, each becomes one primitive that works in whatever layout its input
already has, in place when the input dies here. Fused, each becomes a
post-op of its host (Conv, MatMul, Gemm, another binary op...): an eltwise
post-op, a binary post-op reading the other operand, or, for a residual Add,
a sum post-op that accumulates into the residual's buffer.
"""

from __future__ import annotations

import math

import numpy as np

import byoc

from .._lib import Alg, Arg, PropKind, Query, refuse
from ..handles import MemoryDesc, PrimitiveDesc
from ..ir import Decline, Op, Value
from ..layout import is_standard
from ..lowering import Builder, Epilogue, PostItem
from . import OPS, guard, need_const, need_f32, op, out_shape, shape_of

# -- activations -----------------------------------------------------------------

_SIMPLE = {
    "Relu": (Alg.eltwise_relu, 0.0, 0.0),
    "Sigmoid": (Alg.eltwise_logistic, 0.0, 0.0),
    "Tanh": (Alg.eltwise_tanh, 0.0, 0.0),
}


def _scalar(value: np.ndarray | None, default: float, what: str) -> float:
    if value is None:
        return default
    arr = np.asarray(value)
    if arr.size != 1:
        raise Decline(f"{what} must be a scalar, got shape {list(arr.shape)}")
    return float(arr.reshape(()))


def eltwise_params(
    kind: str, attrs: dict | object, consts: list[np.ndarray | None]
) -> tuple[int, float, float]:
    """(alg, alpha, beta) of an activation; ``consts`` are its constant inputs."""
    get = attrs.get  # type: ignore[union-attr]
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind == "LeakyRelu":
        return Alg.eltwise_relu, float(get("alpha", 0.01)), 0.0
    if kind == "Elu":
        return Alg.eltwise_elu, float(get("alpha", 1.0)), 0.0
    if kind == "Gelu":
        approx = get("approximate", "none")
        if approx == "none":
            return Alg.eltwise_gelu_erf, 0.0, 0.0
        if approx == "tanh":
            return Alg.eltwise_gelu_tanh, 0.0, 0.0
        raise Decline(f"approximate={approx!r} is not supported")
    if kind == "Clip":
        lo = _scalar(consts[1] if len(consts) > 1 else None, -math.inf, "min")
        hi = _scalar(consts[2] if len(consts) > 2 else None, math.inf, "max")
        if math.isnan(lo) or math.isnan(hi):
            raise Decline("with a NaN bound is not supported")
        # clip_v2 computes min(max(x, lo), hi), ONNX's order when lo > hi.
        return Alg.eltwise_clip_v2, lo, hi
    raise AssertionError(kind)


def _op_params(node: Op) -> tuple[int, float, float]:
    consts = [None if v is None else v.const for v in node.inputs]
    return eltwise_params(node.kind, node.attrs, consts)


@guard
def check_eltwise(info: byoc.NodeInfo) -> None:
    """Activations: float32; Clip bounds must be constant scalars."""
    need_f32(info)
    consts: list[np.ndarray | None] = [None]
    if info.op == "Clip":
        consts.append(need_const(info, 1, "min"))
        consts.append(need_const(info, 2, "max"))
    eltwise_params(info.op, info.attrs, consts)


def is_activation(kind: str) -> bool:
    """True for the ops that fuse as an eltwise post-op (shape-preserving)."""
    entry = OPS.get(kind)
    return entry is not None and entry.post is post_eltwise


def post_eltwise(b: Builder, node: Op, chain: Value, ep: Epilogue) -> None:
    """An activation as an eltwise post-op."""
    alg, alpha, beta = _op_params(node)
    ep.items.append(PostItem("eltwise", alg, alpha, beta))


@op(
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Elu",
    "Clip",
    "Gelu",
    check=check_eltwise,
    post=post_eltwise,
    host=True,
    follows=True,
)
def lower_eltwise(b: Builder, node: Op, ep: Epilogue) -> None:
    """One eltwise primitive, in the input's layout, in place when the input dies."""
    x = node.inputs[0]
    assert x is not None
    alg, alpha, beta = _op_params(node)
    result = ep.result or node.out
    attr, extra = ep.build(b, x.shape)

    def make(mds: list[MemoryDesc]) -> PrimitiveDesc:
        return b.pd(
            "eltwise",
            "eltwise_forward_primitive_desc_create",
            PropKind.forward_inference,
            alg,
            mds[0].h,
            mds[0].h,
            alpha,
            beta,
            attr.h,
        )

    pd, (s,) = b.best_pd([b.slot(x)], make)
    inplace = s if b.can_overwrite(x) and ep.sum_value is None else None
    out = b.produce(result, pd.md(Query.dst_md), inplace=inplace)
    b.add_step(pd, [(Arg.src, s), (Arg.dst, out), *extra], node.label)


# -- binary ------------------------------------------------------------------------

_BINARY = {
    "Add": Alg.binary_add,
    "Sub": Alg.binary_sub,
    "Mul": Alg.binary_mul,
    "Div": Alg.binary_div,
}


def broadcast_plan(
    kind: str, a: tuple[int, ...], b_: tuple[int, ...], y: tuple[int, ...]
) -> tuple[bool, bool, tuple[int, ...]]:
    """(swap, negate, padded shape of the broadcast operand), or Decline.

    oneDNN's binary broadcasts only its second source, so the full-shape
    operand goes first: Add/Mul commute, ``a - b`` becomes ``-(b - a)``.
    """
    r = len(y)
    if len(a) > r or len(b_) > r:
        raise Decline(f"input ranks {len(a)}, {len(b_)} exceed the output rank {r}")
    pa = (1,) * (r - len(a)) + a
    pb = (1,) * (r - len(b_)) + b_
    if pa == y:
        full, other, swap = pa, pb, False
    elif pb == y and kind != "Div":
        full, other, swap = pb, pa, True
    else:
        raise Decline(
            f"broadcasting {list(a)} with {list(b_)} is not supported "
            "(only the second operand may broadcast)"
        )
    if any(o not in (1, f) for o, f in zip(other, full, strict=True)):
        raise Decline(f"shapes {list(a)} and {list(b_)} do not broadcast to {list(y)}")
    return swap, swap and kind == "Sub", other


@guard
def check_binary(info: byoc.NodeInfo) -> None:
    """Add/Sub/Mul/Div: float32, one operand may broadcast (numpy rules)."""
    need_f32(info)
    broadcast_plan(info.op, shape_of(info, 0), shape_of(info, 1), out_shape(info))


def post_binary(b: Builder, node: Op, chain: Value, ep: Epilogue) -> None:
    """A binary op reading the chain value: sum (residual Add) or binary post-op."""
    a, c = node.inputs[0], node.inputs[1]
    assert a is not None and c is not None
    other = c if a is chain else a
    negate = a is not chain and node.kind == "Sub"
    if a is not chain and node.kind == "Div":
        raise AssertionError("Div with the chain as divisor cannot be fused")
    full = other.shape == node.out.shape
    if (
        node.kind == "Add"
        and full
        and ep.sum_value is None
        and not ep.items
        and _host(node).kind in SUM_HOSTS
        and b.may_sum_into(_host(node), other)
    ):
        ep.sum_value = other
        ep.items.append(PostItem("sum"))
        return
    if negate:  # other - chain == -(chain - other)
        ep.items.append(
            PostItem(
                "binary",
                Alg.binary_sub,
                operand=other,
                shape=_padded(other.shape, len(node.out.shape)),
            )
        )
        ep.items.append(PostItem("eltwise", Alg.eltwise_linear, -1.0, 0.0))
        return
    ep.items.append(
        PostItem(
            "binary",
            _BINARY[node.kind],
            operand=other,
            shape=_padded(other.shape, len(node.out.shape)),
        )
    )


SUM_HOSTS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
"""Hosts whose lowering writes in place over a sum post-op's operand."""


def _host(node: Op) -> Op:
    assert node.host is not None
    return node.host


def _padded(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    return (1,) * (rank - len(shape)) + tuple(shape)


@op(
    "Add",
    "Sub",
    "Mul",
    "Div",
    check=check_binary,
    post=post_binary,
    host=True,
    follows=True,
)
def lower_binary(b: Builder, node: Op, ep: Epilogue) -> None:
    """One binary primitive in the full operand's layout."""
    a, c = node.inputs[0], node.inputs[1]
    assert a is not None and c is not None
    y = node.out
    swap, negate, other_shape = broadcast_plan(node.kind, a.shape, c.shape, y.shape)
    src0, src1 = (c, a) if swap else (a, c)
    s0 = b.slot(src0)
    if src0.shape != y.shape:  # lower rank than the output: view with leading 1s
        s0 = b.view(s0, y.shape)
    s1 = b.slot(src1)
    if src1.shape != other_shape:
        s1 = b.view(s1, other_shape)
    if other_shape == y.shape:
        s1 = b.convert(s1, b.md(s0))  # same layout as src0 (no per-element gather)
    prefix = [PostItem("eltwise", Alg.eltwise_linear, -1.0, 0.0)] if negate else []
    attr, extra = ep.build(b, y.shape, prefix)

    def make(mds: list[MemoryDesc]) -> PrimitiveDesc:
        return b.pd(
            "binary",
            "binary_primitive_desc_create",
            _BINARY[node.kind],
            mds[0].h,
            mds[1].h,
            mds[0].h,
            attr.h,
        )

    pd, (s0, s1) = b.best_pd([s0, s1], make)
    rows, chans, *space = y.shape if len(y.shape) >= 3 else (1, 1)
    if extra and (
        (rows > 1 and chans > 1 and all(d == 1 for d in space))
        or not is_standard(pd.md(Query.dst_md))
    ):
        # oneDNN 3.2's binary kernel applies a binary post-op at the wrong
        # offsets on (N, C, 1, ...) tensors (a BatchNormalization after a
        # global pooling at batch 2) and on layouts other than the standard
        # ones (a Linear layer's rows on the blocked layout: every block got
        # the first block's bias; a transposed view: every row got the same
        # bias); all fuzzed. Run the ops apart.
        raise refuse(
            f"binary post-ops on a {y.shape} binary op",
            "dnnl_binary_primitive_desc_create",
        )
    inplace = (
        s0
        if b.can_overwrite(src0)
        and ep.sum_value is None
        and b.md(s0).same(pd.md(Query.dst_md))
        else None
    )
    out = b.produce(ep.result or y, pd.md(Query.dst_md), inplace=inplace)
    b.add_step(pd, [(Arg.src, s0), (Arg.src_1, s1), (Arg.dst, out), *extra], node.label)
