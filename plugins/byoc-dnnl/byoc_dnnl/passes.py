"""Fusion passes on the IR, run by ``init`` before lowering.

1. :func:`fold_batchnorm` folds an inference BatchNormalization into the
   constant weights and bias of the Conv feeding it.
2. :func:`fold_bias` turns ``Conv/MatMul/Gemm -> Add(constant vector)`` into
   the primitive's bias.
3. :func:`annotate_post_ops` marks, for each fusion host, the chain of
   single-use eltwise/binary ops that follow it; lowering runs the chain as
   oneDNN post-ops (eltwise, binary, or an in-place sum for residual Adds),
   and falls back to separate primitives if oneDNN refuses the combination.

Passes 1 and 2 rewrite the IR (they cannot fail later: the result is a plain
Conv/MatMul/Gemm with a bias); pass 3 only annotates.
"""

from __future__ import annotations

import numpy as np

from .ir import IR, Op, Value


def fuse(ir: IR) -> None:
    """Run every pass, in order."""
    fold_batchnorm(ir)
    fold_bias(ir)
    ir.renumber()
    annotate_post_ops(ir)


def _sole_user(ir: IR, v: Value) -> Op | None:
    if len(v.users) != 1 or any(h is v for h in ir.heads):
        return None
    return v.users[0]


def _new_const(ir: IR, array: np.ndarray) -> Value:
    v = Value(len(ir.values), tuple(array.shape), "float32", const=array)
    ir.values.append(v)
    return v


def _absorb(ir: IR, host: Op, follower: Op) -> None:
    """Make ``host`` produce ``follower``'s output and drop ``follower``."""
    old = host.outputs[0]
    new = follower.outputs[0]
    for v in follower.inputs:
        if v is not None and follower in v.users:
            v.users.remove(follower)
    host.outputs = [new]
    new.producer = host
    old.users.clear()
    ir.ops.remove(follower)


def _set_input(op: Op, i: int, v: Value) -> None:
    while len(op.inputs) <= i:
        op.inputs.append(None)
    old = op.inputs[i]
    if old is not None and op in old.users and sum(x is old for x in op.inputs) == 1:
        old.users.remove(op)
    op.inputs[i] = v
    if op not in v.users:
        v.users.append(op)


def fold_batchnorm(ir: IR) -> None:
    """Conv (constant weights) -> BatchNormalization (constant params) => Conv;
    any other BatchNormalization with constant params => Mul + Add by
    per-channel constants, which fuse as post-ops like any binary op (into a
    residual Add before it, say) and run as one jit binary kernel alone."""
    for bn in list(ir.ops):
        if bn.kind != "BatchNormalization" or len(bn.outputs) != 1:
            continue
        params = bn.inputs[1:5]
        if any(p is None or p.const is None for p in params):
            continue
        scale, shift, mean, var = (np.asarray(p.const, np.float64) for p in params)  # type: ignore[union-attr]
        eps = float(bn.attr("epsilon", 1e-5))
        k = scale / np.sqrt(var + eps)
        x = bn.inputs[0]
        assert x is not None
        conv = x.producer
        if conv is None or conv.kind != "Conv" or _sole_user(ir, x) is not bn:
            _affine(ir, bn, k, shift - mean * k)
            continue
        w = conv.inputs[1]
        bias = conv.inputs[2] if len(conv.inputs) > 2 else None
        if w is None or w.const is None or (bias is not None and bias.const is None):
            _affine(ir, bn, k, shift - mean * k)
            continue
        wf = np.asarray(w.const, np.float64) * k.reshape(
            (-1,) + (1,) * (w.const.ndim - 1)
        )
        b0 = np.zeros_like(k) if bias is None else np.asarray(bias.const, np.float64)
        bf = (b0 - mean) * k + shift
        _set_input(conv, 1, _new_const(ir, wf.astype(np.float32)))
        _set_input(conv, 2, _new_const(ir, bf.astype(np.float32)))
        _absorb(ir, conv, bn)


def _affine(ir: IR, bn: Op, k: np.ndarray, c: np.ndarray) -> None:
    """Replace ``bn`` by ``x * k + c`` with ``k``, ``c`` broadcast per channel."""
    x, y = bn.inputs[0], bn.out
    assert x is not None
    per_channel = (1, len(k)) + (1,) * (len(x.shape) - 2)
    kv = _new_const(ir, k.reshape(per_channel).astype(np.float32))
    cv = _new_const(ir, c.reshape(per_channel).astype(np.float32))
    mid = Value(len(ir.values), x.shape, "float32")
    ir.values.append(mid)
    mul = Op("Mul", [], [mid], {}, label=bn.label)
    add = Op("Add", [], [y], {}, label=bn.label)
    for v in bn.inputs:
        if v is not None and bn in v.users:
            v.users.remove(bn)
    _set_input(mul, 0, x)
    _set_input(mul, 1, kv)
    _set_input(add, 0, mid)
    _set_input(add, 1, cv)
    mid.producer, y.producer = mul, add
    at = ir.ops.index(bn)
    ir.ops[at : at + 1] = [mul, add]


def _bias_vector(c: np.ndarray, rank: int, axis: int, n: int) -> np.ndarray | None:
    """``c`` as an (n,) vector if it varies only along ``axis`` of the output."""
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    if c.size == 1:
        return np.full((n,), float(c.reshape(())), np.float32)
    if shape[axis] == n and all(d == 1 for i, d in enumerate(shape) if i != axis):
        return np.asarray(c, np.float32).reshape(n)
    return None


def fold_bias(ir: IR) -> None:
    """Conv/MatMul/Gemm -> Add(constant per-channel vector) => host with a bias."""
    for add in list(ir.ops):
        if add.kind != "Add" or add not in ir.ops:
            continue
        for pos in (0, 1):
            x, c = add.inputs[pos], add.inputs[1 - pos]
            if x is None or c is None or c.const is None or x.producer is None:
                continue
            host = x.producer
            if _sole_user(ir, x) is not add or x.shape != add.out.shape:
                continue
            if _fold_into(ir, host, add, np.asarray(c.const)):
                break


def _fold_into(ir: IR, host: Op, add: Op, c: np.ndarray) -> bool:
    rank = len(host.out.shape)
    if host.kind == "Conv" and not host.fused:
        n = host.out.shape[1]
        vec = _bias_vector(c, rank, 1, n)
        old = host.inputs[2] if len(host.inputs) > 2 else None
        if vec is None or (old is not None and old.const is None):
            return False
        if old is not None:
            vec = vec + np.asarray(old.const, np.float32)
        _set_input(host, 2, _new_const(ir, vec))
    elif (
        host.kind == "MatMul"
        and len(host.inputs) == 2
        and host.inputs[1] is not None
        and len(host.inputs[1].shape) >= 2
    ):
        n = host.out.shape[-1]
        vec = _bias_vector(c, rank, rank - 1, n)
        if vec is None:
            return False
        _set_input(host, 2, _new_const(ir, vec))
    elif host.kind == "Gemm" and (len(host.inputs) < 3 or host.inputs[2] is None):
        n = host.out.shape[-1]
        vec = _bias_vector(c, rank, rank - 1, n)
        if vec is None:
            return False
        _set_input(host, 2, _new_const(ir, vec))
        host.attrs = {**host.attrs, "beta": 1.0}
    else:
        return False
    _absorb(ir, host, add)
    return True


def _fusable(ir: IR, host: Op, nxt: Op, chain: Value) -> bool:
    from .ops import OPS

    entry = OPS.get(nxt.kind)
    if entry is None or entry.post is None or nxt.host is not None or nxt.fused:
        return False
    if nxt.kind == "Conv":
        from .ops.conv import dw_fusable

        return dw_fusable(host, nxt)
    if any(f.kind == "Conv" for f in host.fused):
        from .ops.eltwise import is_activation

        # after a fused depthwise conv only activations (the dst changed shape)
        return is_activation(nxt.kind)
    if nxt.kind in ("Add", "Sub", "Mul", "Div"):
        a, c = nxt.inputs[0], nxt.inputs[1]
        if a is None or c is None or (a is chain and c is chain):
            return False
        if nxt.out.shape != chain.shape:
            return False  # the chain value must be the full-shape operand
        if nxt.kind == "Div" and a is not chain:
            return False
        other = c if a is chain else a
        if len(other.shape) > len(chain.shape):
            return False
        padded = (1,) * (len(chain.shape) - len(other.shape)) + other.shape
        return all(o in (1, f) for o, f in zip(padded, chain.shape, strict=True))
    return len(nxt.outputs) == 1


def annotate_post_ops(ir: IR) -> None:
    """Mark each host's chain of single-use followers as its post-ops."""
    from .ops import OPS

    for op in ir.ops:
        entry = OPS.get(op.kind)
        if (
            entry is None
            or not entry.host
            or op.host is not None
            or len(op.outputs) != 1
        ):
            continue
        chain = op.out
        while True:
            nxt = _sole_user(ir, chain)
            if nxt is None or not _fusable(ir, op, nxt, chain):
                break
            op.fused.append(nxt)
            nxt.host = op
            chain = nxt.out
