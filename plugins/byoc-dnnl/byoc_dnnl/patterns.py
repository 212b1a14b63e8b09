"""Composite patterns: op chains dnnl runs only as a whole.

Fusions of ops dnnl claims one by one (Conv+BatchNormalization+Relu, residual
Adds, MatMul+bias+activation) happen inside ``init``, where the whole
subgraph is visible (:mod:`byoc_dnnl.passes`). A pattern is only needed where
a piece alone would not be claimed: the exported erf GELU,
``x * 0.5 * (1 + erf(x / sqrt(2)))``, whose Erf dnnl does not run by itself.
The partitioner hands us such a match as one kernel node whose ``body`` holds
the chain; :func:`expand` turns it back into a single IR op.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import byoc

from .ir import Decline, Value

GELU_ERF = "dnnl.gelu_erf"
"""Composite: Div(x, sqrt 2) or Mul(x, 1/sqrt 2), Erf, Add 1, Mul x, Mul 0.5."""

_SQRT2 = math.sqrt(2.0)


def _near(value: float, want: float) -> bool:
    return abs(value - want) <= 1e-6 * abs(want)


def _const_scalar(info: byoc.NodeInfo, i: int) -> float | None:
    arr = info.consts.get(i)
    if arr is None or np.asarray(arr).size != 1:
        return None
    return float(np.asarray(arr).reshape(()))


def _other(infos: Sequence[byoc.NodeInfo], k: int) -> int:
    """Position of the input of chain node ``k`` that is not the previous node."""
    prev = infos[k - 1].node_id
    ins = infos[k].node.inputs
    for i, e in enumerate(ins):
        if e.node_id != prev:
            return i
    return -1  # both inputs are the previous node (e.g. y * y)


def check_gelu_erf(infos: Sequence[byoc.NodeInfo]) -> byoc.Support:
    """Verify the chain computes erf GELU on one float32 tensor."""
    head, erf, add, mul1, mul2 = infos
    for info in infos:
        for spec in (*info.inputs, *info.outputs):
            if spec is not None and spec.dtype != "float32":
                return byoc.Support.no("dnnl: GELU pattern needs float32")
        if info.outputs[0].shape is None:
            return byoc.Support.no("dnnl: GELU pattern needs known ranks")
    cpos = 1 if head.op == "Div" or 1 in head.consts else 0
    xpos = 1 - cpos
    if xpos in head.consts or cpos not in head.consts:
        return byoc.Support.no("dnnl: GELU pattern needs x scaled by a constant")
    x_spec = head.inputs[xpos]
    if x_spec is None or any(i.outputs[0].shape != x_spec.shape for i in infos):
        return byoc.Support.no("dnnl: GELU pattern with broadcasting")
    scale = _const_scalar(head, cpos)
    want = _SQRT2 if head.op == "Div" else 1.0 / _SQRT2
    if scale is None or not _near(scale, want):
        return byoc.Support.no("dnnl: GELU pattern's scale is not sqrt(2)")
    one = _const_scalar(add, _other(infos, 2))
    if one != 1.0:
        return byoc.Support.no("dnnl: GELU pattern does not add 1")
    x_entry = head.node.inputs[xpos]
    o1, o2 = _other(infos, 3), _other(infos, 4)
    if o1 < 0 or o2 < 0:
        return byoc.Support.no("dnnl: GELU pattern squares a value")
    half1, half2 = _const_scalar(mul1, o1), _const_scalar(mul2, o2)
    x1, x2 = mul1.node.inputs[o1] == x_entry, mul2.node.inputs[o2] == x_entry
    if not ((x1 and half2 == 0.5) or (x2 and half1 == 0.5)):
        return byoc.Support.no("dnnl: GELU pattern does not multiply by x and 0.5")
    if erf.op != "Erf":
        return byoc.Support.no("dnnl: GELU pattern needs Erf")
    return byoc.Support.yes()


def patterns() -> tuple[byoc.Pattern, ...]:
    """The composites dnnl claims."""
    return (
        byoc.Pattern(GELU_ERF, ("Div", "Erf", "Add", "Mul", "Mul"), check_gelu_erf),
        byoc.Pattern(GELU_ERF, ("Mul", "Erf", "Add", "Mul", "Mul"), check_gelu_erf),
    )


def expand(
    name: str,
    body: byoc.Graph,
    inputs: list[Value | None],
    consts: Mapping[str, np.ndarray],
) -> tuple[str, dict[str, Any], list[Value | None]]:
    """(op kind, attrs, inputs) of the single IR op a composite becomes."""
    if name == GELU_ERF:
        return "Gelu", {"approximate": "none"}, inputs[:1]
    raise Decline(f"unknown composite {name!r}")
