"""The dnnl op table: one entry per ONNX op, keyed by op name.

Each entry has

* ``check(info) -> Support``: the static part of the capability check
  (attributes, dtypes, ranks, which inputs must be constant), with a reason
  for every refusal. The backend then lowers the node "dry" so oneDNN itself
  confirms it has an implementation (see :mod:`byoc_dnnl.backend`);
* ``lower(builder, op, epilogue)``: build the primitive(s) for ``op`` at init,
  carrying ``epilogue`` (fused post-ops) when the op is a fusion host;
* ``post(builder, op, chain, epilogue)`` for ops that can ride on a host's
  primitive as a post-op (eltwise and binary ops).

Families live in sibling modules and fill the table through :func:`op`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import byoc

from ..ir import Decline, Op, Value, static_shape
from ..lowering import Builder, Epilogue, LowerFn

CheckFn = Callable[[byoc.NodeInfo], byoc.Support]
PostFn = Callable[[Builder, Op, Value, Epilogue], None]
PreferFn = Callable[[Builder, Op], Any]


@dataclass(frozen=True)
class OpEntry:
    """One registered op."""

    lower: LowerFn
    check: CheckFn
    post: PostFn | None = None
    host: bool = False
    """True when the op's primitive accepts post-ops (a fusion host)."""
    follows: bool = False
    """True when the op runs in whatever layout its input has (layout planning)."""
    prefers: PreferFn | None = None
    """The input layout the op's kernel picks by itself (layout planning)."""


OPS: dict[str, OpEntry] = {}


def op(
    *names: str,
    check: CheckFn,
    post: PostFn | None = None,
    host: bool = False,
    follows: bool = False,
    prefers: PreferFn | None = None,
) -> Callable[[LowerFn], LowerFn]:
    """Register a lowering function for each ONNX op in ``names``."""

    def deco(fn: LowerFn) -> LowerFn:
        for name in names:
            if name in OPS:
                raise RuntimeError(f"byoc-dnnl op {name} registered twice")
            OPS[name] = OpEntry(fn, check, post, host, follows, prefers)
        return fn

    return deco


# -- shared check helpers ----------------------------------------------------


def no(reason: str) -> byoc.Support:
    """A refusal carrying the ``dnnl:`` prefix."""
    return byoc.Support.no(f"dnnl: {reason}")


def guard(fn: Callable[[byoc.NodeInfo], None]) -> CheckFn:
    """Turn a checker that raises :class:`Decline` into one returning Support."""

    def check(info: byoc.NodeInfo) -> byoc.Support:
        try:
            fn(info)
        except Decline as exc:
            return no(f"{info.op} {exc.reason}")
        return byoc.Support.yes()

    check.__doc__ = fn.__doc__
    check.__name__ = fn.__name__
    return check


def need_f32(info: byoc.NodeInfo, positions: Sequence[int] | None = None) -> None:
    """Inputs at ``positions`` (default: all present) and all outputs are float32."""
    idx = range(len(info.inputs)) if positions is None else positions
    for i in idx:
        spec = info.inputs[i] if i < len(info.inputs) else None
        if spec is not None and spec.dtype != "float32":
            raise Decline(f"input {i} is {spec.dtype}; only float32 is supported")
    for i, o in enumerate(info.outputs):
        if o.dtype != "float32":
            raise Decline(f"output {i} is {o.dtype}; only float32 is supported")


def need_const(info: byoc.NodeInfo, i: int, what: str) -> Any:
    """The constant value of input ``i``, or Decline."""
    if i >= len(info.inputs) or info.inputs[i] is None:
        return None
    if i not in info.consts:
        raise Decline(f"{what} (input {i}) must be a constant")
    return info.consts[i]


def shape_of(info: byoc.NodeInfo, i: int) -> tuple[int, ...]:
    """Static shape of input ``i``, or Decline."""
    return static_shape(info.inputs[i], f"input {i}")


def out_shape(info: byoc.NodeInfo, i: int = 0) -> tuple[int, ...]:
    """Static shape of output ``i``, or Decline."""
    return static_shape(info.outputs[i], f"output {i}")


def n_outputs(info: byoc.NodeInfo, allowed: int, what: str = "") -> None:
    """Decline nodes with more outputs than the ``allowed`` count."""
    if len(info.outputs) > allowed:
        extra = f" ({what})" if what else ""
        raise Decline(f"with {len(info.outputs)} outputs{extra} is not supported")


def norm_axis(axis: int, rank: int) -> int:
    """``axis`` in ``[0, rank)``, or Decline."""
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise Decline(f"axis {axis} is out of range for rank {rank}")
    return a


def _load_families() -> None:
    # Importing a family module fills OPS through the decorator.
    from . import conv, eltwise, matmul, norm, pool, shape  # noqa: F401


_load_families()
