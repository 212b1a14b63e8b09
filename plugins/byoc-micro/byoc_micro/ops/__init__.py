"""The micro target's op table: which nodes the C executor runs, exactly.

One check per ONNX op, registered with :func:`op` and keyed by the op name. A
check sees a node that already passed the checks every kernel shares (float32,
static, non-empty tensors of rank <= 6, one output, the right input count) and
refuses, with the reason, any attribute value the C kernel in
``micro/bm_ops.c`` does not implement. The C side re-checks the same rules on
the file it is given, so an artifact the checks accept is one it runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import byoc

CheckFn = Callable[[byoc.NodeInfo], byoc.Support]

MAX_RANK = 6
"""Highest tensor rank the executor handles (BM_MAX_RANK)."""
MAX_DIM = 1 << 31
"""Dims must stay below this (BM_MAX_DIM), so index arithmetic fits in int64."""


@dataclass(frozen=True)
class OpEntry:
    """One op the executor runs: its check, input counts, and unread inputs."""

    check: CheckFn
    min_inputs: int
    max_inputs: int
    unread: frozenset[int] = frozenset()
    """Input positions the kernel never reads (their dtype is free)."""


OPS: dict[str, OpEntry] = {}


def op(
    name: str, inputs: tuple[int, int], unread: tuple[int, ...] = ()
) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as the check of op ``name`` taking ``inputs`` (min, max)."""

    def deco(fn: CheckFn) -> CheckFn:
        if name in OPS:
            raise RuntimeError(f"byoc-micro op {name} registered twice")
        OPS[name] = OpEntry(fn, inputs[0], inputs[1], frozenset(unread))
        return fn

    return deco


def no(node: byoc.NodeInfo, why: str) -> byoc.Support:
    """A refusal naming the target and the op: ``micro: Conv <why>``."""
    return byoc.Support.no(f"micro: {node.op} {why}")


def attr(node: byoc.NodeInfo, key: str, default: object = None) -> object:
    """Attribute ``key`` of the node, or ``default``."""
    return node.attrs.get(key, default)


def _tensor_problem(spec: byoc.TensorSpec, what: str) -> str | None:
    if spec.dtype != "float32":
        return f"{what} is {spec.dtype}; micro computes float32 only"
    if not spec.is_static:
        return f"{what} has shape {spec.shape}; micro needs static shapes"
    assert spec.shape is not None
    if len(spec.shape) > MAX_RANK:
        return f"{what} has rank {len(spec.shape)}; micro handles rank <= {MAX_RANK}"
    if any(d == 0 for d in spec.shape):
        return f"{what} is empty; micro does not run zero-size tensors"
    if any(int(d) >= MAX_DIM for d in spec.shape):
        return f"{what} has a dim >= 2**31"
    if math.prod(int(d) for d in spec.shape) * 4 >= 1 << 62:
        return f"{what} is too large"
    return None


def supports(node: byoc.NodeInfo) -> byoc.Support:
    """The micro backend's answer for one node: yes, or no with the reason."""
    entry = OPS.get(node.op)
    if entry is None:
        return byoc.Support.no(f"micro: no kernel for {node.op}")
    if len(node.outputs) != 1:
        return no(node, f"with {len(node.outputs)} outputs; micro runs one")
    n = len(node.inputs)
    if not entry.min_inputs <= n <= entry.max_inputs:
        return no(node, f"with {n} inputs")
    problem = _tensor_problem(node.outputs[0], "the output")
    for i, spec in enumerate(node.inputs):
        if problem:
            break
        if spec is None:
            if i < entry.min_inputs:
                problem = f"omits required input {i}"
        elif i not in entry.unread:
            problem = _tensor_problem(spec, f"input {i}")
        elif not spec.is_static:  # unread, but its node must still be static
            problem = f"input {i} has shape {spec.shape}; micro needs static shapes"
    if problem:
        return no(node, problem)
    return entry.check(node)


def _load_families() -> None:
    # Importing a family module fills OPS through the decorator.
    from . import elementwise, nn, shape  # noqa: F401


_load_families()
