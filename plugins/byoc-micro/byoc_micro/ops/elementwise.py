"""Element-wise ops: Add and Mul (numpy broadcasting), Relu, Sigmoid, Clip."""

from __future__ import annotations

import byoc

from . import no, op


@op("Add", inputs=(2, 2))
@op("Mul", inputs=(2, 2))
@op("Relu", inputs=(1, 1))
@op("Sigmoid", inputs=(1, 1))
def plain(node: byoc.NodeInfo) -> byoc.Support:
    # no attributes; broadcasting is valid by construction of the shapes
    return byoc.Support.yes()


@op("Clip", inputs=(1, 3))
def clip(node: byoc.NodeInfo) -> byoc.Support:
    if "min" in node.attrs or "max" in node.attrs:
        return no(node, "with min/max attributes (opset < 11) not supported")
    for i in (1, 2):
        spec = node.inputs[i] if i < len(node.inputs) else None
        if spec is not None and spec.shape and any(d != 1 for d in spec.shape):
            return no(node, f"bound {i} must be a scalar, got shape {spec.shape}")
    return byoc.Support.yes()
