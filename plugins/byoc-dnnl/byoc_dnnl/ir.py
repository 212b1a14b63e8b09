"""byoc-dnnl's working form of a subgraph: values and ops with use lists.

Where it sits: ``init`` turns the subgraph's JSON graph into this IR
(:func:`from_graph`, which also unfolds the composite bodies our patterns
produced), :mod:`byoc_dnnl.passes` annotates fusions on it, and
:mod:`byoc_dnnl.lowering` turns it into primitives. Support queries build a
one-op IR from a NodeInfo (:func:`from_node_info`) and lower it "dry", so the
capability check and ``init`` share every line of lowering code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import byoc


class Decline(Exception):
    """Raised while checking or lowering: dnnl does not run this (``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class Value:
    """One tensor: static shape, dtype, and its compile-time value if constant."""

    id: int
    shape: tuple[int, ...]
    dtype: str
    const: np.ndarray | None = None
    name: str = ""
    producer: Op | None = None
    users: list[Op] = field(default_factory=list)

    @property
    def is_const(self) -> bool:
        """True for weights and other compile-time values."""
        return self.const is not None

    def __repr__(self) -> str:
        kind = "const" if self.is_const else (self.name or "v")
        return f"%{self.id}<{kind} {self.shape}>"


@dataclass(eq=False)
class Op:
    """One operation (an ONNX op, or a composite turned into a single op)."""

    kind: str
    inputs: list[Value | None]
    outputs: list[Value]
    attrs: Mapping[str, Any]
    label: str = ""
    index: int = 0
    fused: list[Op] = field(default_factory=list)
    """Ops fused into this one as post-ops, in chain order (set by passes)."""
    host: Op | None = None
    """The op this one is fused into, if any."""

    def attr(self, key: str, default: Any = None) -> Any:
        """Attribute ``key`` or ``default``."""
        return self.attrs.get(key, default)

    @property
    def out(self) -> Value:
        """The first output."""
        return self.outputs[0]

    def __repr__(self) -> str:
        return f"{self.kind}#{self.index}({self.label})"


@dataclass
class IR:
    """A subgraph: ops in execution order, its inputs and its heads."""

    ops: list[Op]
    inputs: list[Value]
    heads: list[Value]
    values: list[Value]

    def renumber(self) -> None:
        """Refresh ``Op.index`` after ops were added or removed."""
        for i, op in enumerate(self.ops):
            op.index = i


def static_shape(spec: byoc.TensorSpec | None, what: str) -> tuple[int, ...]:
    """The shape of ``spec`` as ints, or Decline with the reason."""
    if spec is None or spec.shape is None:
        raise Decline(f"{what} has an unknown shape")
    if not all(isinstance(d, int) for d in spec.shape):
        raise Decline(f"{what} has a symbolic shape {list(spec.shape)}")
    return tuple(int(d) for d in spec.shape)


class _Maker:
    def __init__(self) -> None:
        self.values: list[Value] = []
        self.ops: list[Op] = []

    def value(
        self,
        shape: tuple[int, ...],
        dtype: str,
        const: np.ndarray | None = None,
        name: str = "",
    ) -> Value:
        v = Value(len(self.values), shape, dtype, const, name)
        self.values.append(v)
        return v

    def op(
        self,
        kind: str,
        inputs: list[Value | None],
        outputs: list[Value],
        attrs: Mapping[str, Any],
        label: str,
    ) -> Op:
        o = Op(kind, inputs, outputs, attrs, label, len(self.ops))
        for v in inputs:
            if v is not None and o not in v.users:
                v.users.append(o)
        for v in outputs:
            v.producer = o
        self.ops.append(o)
        return o


def from_graph(graph: byoc.Graph, consts: Mapping[str, np.ndarray]) -> IR:
    """The IR of a subgraph; composite bodies become their single op."""
    from .patterns import expand  # patterns imports this module

    mk = _Maker()
    entry: dict[tuple[int, int], Value] = {}
    inputs: list[Value] = []
    for nid, node in enumerate(graph.nodes):
        if node.op == "input":
            v = mk.value(
                static_shape(node.spec(0), f"input {node.name!r}"),
                node.dtypes[0],
                name=node.name,
            )
            inputs.append(v)
            entry[(nid, 0)] = v
        elif node.op == "const":
            arr = consts[node.name]
            entry[(nid, 0)] = mk.value(tuple(arr.shape), node.dtypes[0], const=arr)
        else:
            ins = [
                None if e.absent else entry[(e.node_id, e.index)] for e in node.inputs
            ]
            outs = [
                mk.value(
                    static_shape(node.spec(i), f"output {i} of {node.describe(nid)}"),
                    node.dtypes[i],
                )
                for i in range(node.num_outputs)
            ]
            body = node.attrs.get("body")
            attrs: Mapping[str, Any]
            if isinstance(body, byoc.Graph):
                kind, attrs, ins = expand(node.name, body, ins, consts)
            else:
                kind, attrs = node.name, node.attrs
            mk.op(kind, ins, outs, attrs, node.label or node.name)
            for i, v in enumerate(outs):
                entry[(nid, i)] = v
    heads = [entry[(h.node_id, h.index)] for h in graph.heads]
    return IR(mk.ops, inputs, heads, mk.values)


def from_node_info(info: byoc.NodeInfo) -> IR:
    """A one-op IR for a support query: non-constant inputs become graph inputs."""
    mk = _Maker()
    ins: list[Value | None] = []
    inputs: list[Value] = []
    for i, spec in enumerate(info.inputs):
        if spec is None:
            ins.append(None)
            continue
        shape = static_shape(spec, f"input {i}")
        if i in info.consts:
            arr = np.asarray(info.consts[i])
            ins.append(mk.value(tuple(arr.shape), spec.dtype, const=arr))
        else:
            v = mk.value(shape, spec.dtype, name=f"in{i}")
            inputs.append(v)
            ins.append(v)
    outs = [
        mk.value(static_shape(s, f"output {i}"), s.dtype)
        for i, s in enumerate(info.outputs)
    ]
    mk.op(info.op, ins, outs, info.attrs, info.node.label or info.op)
    return IR(mk.ops, inputs, outs, mk.values)
