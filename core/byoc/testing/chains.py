"""Multi-op models for the conformance kit: chains of shape-preserving ops.

Part of the kit (``byoc.testing``). A backend's composite pattern (e.g.
MatMul+Add) is checked on a chain model of exactly its ops; the categories
beyond ``ops`` also run one fixed chain split across the backend and byoc-ref.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

MIXED_CHAIN = ("MatMul", "Add", "Relu", "Sigmoid", "Mul", "Softmax", "Tanh", "Abs")
"""The multi-op model the non-op categories run (split across backends)."""

_SPATIAL = frozenset(
    {"Conv", "MaxPool", "AveragePool", "BatchNormalization", "InstanceNormalization"}
)
_UNARY = frozenset(
    "Abs Neg Relu Sigmoid Tanh Exp Erf Sin Cos Atan Floor Ceil Round Sign Softplus "
    "Softsign Mish HardSwish Identity LeakyRelu Elu Selu Celu HardSigmoid "
    "ThresholdedRelu Gelu Sqrt Log Reciprocal".split()
)
_POSITIVE = frozenset({"Sqrt", "Log", "Reciprocal"})
_BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu"})


@dataclass
class Scenario:
    """A model the non-op categories run: a claimed case, a pattern, a chain."""

    name: str
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    backends: tuple[str, ...]

    def variant(self, k: int) -> dict[str, np.ndarray]:
        """Input set ``k``: the feeds rolled and scaled, staying in their domain."""
        out = {}
        for name, value in self.feeds.items():
            v = np.roll(value, k) if value.ndim else value.copy()
            if v.dtype.kind == "f":
                v = (v * (1 + k / 64)).astype(v.dtype)
            out[name] = np.ascontiguousarray(v)
        return out


class _Builder:
    def __init__(self, shape: tuple[int, ...], seed: int) -> None:
        self.shape = shape
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}

    def const(self, name: str, value: Any) -> str:
        self.inits[name] = np.asarray(value, np.float32)
        return name

    def step(self, i: int, op: str, prev: str) -> str | None:
        """Append ``op`` reading ``prev``; its output name, or None if impossible."""
        d, ch = self.shape[-1], self.shape[1]
        rng, w = self.rng, f"w{i}"
        ins = [prev]
        attrs: dict[str, Any] = {}
        if op in _UNARY:
            if op in _POSITIVE:  # keep the chain finite: feed |prev| + 1
                self.nodes.append(helper.make_node("Abs", [prev], [f"abs{i}"]))
                one = self.const(f"one{i}", 1.0)
                self.nodes.append(helper.make_node("Add", [f"abs{i}", one], [f"p{i}"]))
                ins = [f"p{i}"]
        elif op in _BINARY:
            away = op in ("Div", "Pow")
            values = rng.uniform(0.5, 1.5, (d,)) if away else rng.standard_normal(d)
            ins.append(self.const(w, values))
        elif op == "MatMul":
            ins.append(self.const(w, rng.standard_normal((d, d)) / np.sqrt(d)))
        elif op == "Gemm":
            ins.append(self.const(w, rng.standard_normal((d, d)) / np.sqrt(d)))
            ins.append(self.const(w + "c", rng.standard_normal(d)))
        elif op == "Conv":
            ins.append(self.const(w, rng.standard_normal((ch, ch, 3, 3)) / 6))
            attrs = {"pads": [1, 1, 1, 1]}
        elif op in ("MaxPool", "AveragePool"):
            if len(self.shape) != 4:
                return None
            attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
        elif op == "BatchNormalization":
            for part in ("scale", "bias", "mean", "var"):
                positive = part in ("scale", "var")
                size = (ch,)
                v = (
                    rng.uniform(0.5, 1.5, size)
                    if positive
                    else rng.standard_normal(size)
                )
                ins.append(self.const(w + part, v))
        elif op == "InstanceNormalization":
            ins.append(self.const(w + "scale", rng.uniform(0.5, 1.5, (ch,))))
            ins.append(self.const(w + "bias", rng.standard_normal(ch)))
        elif op in ("Softmax", "LogSoftmax"):
            attrs = {"axis": -1}
        elif op == "LayerNormalization":
            ins.append(self.const(w + "scale", rng.uniform(0.5, 1.5, (d,))))
            ins.append(self.const(w + "bias", rng.standard_normal(d)))
            attrs = {"axis": -1}
        elif op == "Clip":
            ins += [self.const(w + "lo", -0.5), self.const(w + "hi", 0.5)]
        else:
            return None
        out = f"t{i}"
        self.nodes.append(
            helper.make_node(op, ins, [out], name=f"{op.lower()}{i}", **attrs)
        )
        return out


def chain_model(
    ops: Sequence[str], name: str
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]] | str:
    """A float32 model applying ``ops`` in a chain, each reading the previous output.

    Every op keeps the shape, so any chain of the supported ops composes; the
    model's input is ``x``. Returns why not when an op has no chain form.
    """
    spatial = any(op in _SPATIAL for op in ops) and "Gemm" not in ops
    builder = _Builder((1, 4, 6, 6) if spatial else (4, 6), len(ops))
    prev = "x"
    for i, op in enumerate(ops):
        out = builder.step(i, op, prev)
        if out is None:
            return f"the kit has no chain form for {op} in {'->'.join(ops)}"
        prev = out
    graph = helper.make_graph(
        builder.nodes,
        name,
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, builder.shape)],
        [onnx.ValueInfoProto(name=prev)],
        [numpy_helper.from_array(v, k) for k, v in builder.inits.items()],
    )
    opset = 20 if "Gelu" in ops else 18
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    feeds = {"x": builder.rng.standard_normal(builder.shape).astype(np.float32)}
    return model, feeds
