"""Core test fixtures: an isolated registry and small numpy backends defined here.

Core tests never depend on which plugins happen to be installed: every test that
needs a backend registers the fakes below into a fresh Registry and removes them
afterwards (the registry fixture does both).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import byoc
from byoc.dtypes import dtype_name

OPS: dict[str, Any] = {
    "Relu": lambda n, x: np.maximum(x, x.dtype.type(0)),
    "Add": lambda n, a, b: a + b,
    "Sub": lambda n, a, b: a - b,
    "Mul": lambda n, a, b: a * b,
    "MatMul": lambda n, a, b: a @ b,
    "Sigmoid": lambda n, x: (0.5 * (1 + np.tanh(0.5 * x))).astype(x.dtype),
    "Tanh": lambda n, x: np.tanh(x),
    "Neg": lambda n, x: -x,
    "Exp": lambda n, x: np.exp(x),
    "Identity": lambda n, x: x,
    "Range": lambda n, a, b, c: np.arange(a, b, c, dtype=np.result_type(a)),
    "Cast": lambda n, x: x.astype(dtype_name(n.attrs["to"])),
}


class NumpyBackend(byoc.Backend):
    """A tiny interpreter over OPS; the fallback in core tests."""

    name = "fake"
    version = "1.0"
    priority = 0
    ops: frozenset[str] = frozenset(OPS)
    init_calls = 0

    @classmethod
    def supports(cls, node: byoc.NodeInfo) -> byoc.Support:
        if node.op in cls.ops:
            return byoc.Support.yes()
        return byoc.Support.no(f"{cls.name}: no kernel for {node.op}")

    def init(self, consts: Mapping[str, np.ndarray]) -> None:
        type(self).init_calls += 1
        self.consts = consts

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        graph = self.graph
        values: dict[tuple[int, int], Any] = {}
        for nid, node in enumerate(graph.nodes):
            if node.op == "input":
                values[(nid, 0)] = inputs[node.name]
            elif node.op == "const":
                values[(nid, 0)] = self.consts[node.name]
            else:
                args = [values[(e.node_id, e.index)] for e in node.inputs]
                out = self.kernel(node, args)
                values[(nid, 0)] = np.asarray(out).astype(node.dtypes[0], copy=False)
        return [np.array(values[(h.node_id, h.index)]) for h in graph.heads]

    def kernel(self, node: byoc.JSONGraphNode, args: list[Any]) -> Any:
        body = node.attrs.get("body")
        if isinstance(body, byoc.Graph):  # a composite: interpret its body
            sub = type(self)(self.symbol, body)
            sub.consts = self.consts
            return sub.run({f"in{i}": a for i, a in enumerate(args)})[0]
        return OPS[node.name](node, *args)


class AccelBackend(NumpyBackend):
    """A higher-priority backend that runs only a few ops, plus one pattern."""

    name = "accel"
    priority = 10
    ops = frozenset({"Relu", "Add", "MatMul"})

    @classmethod
    def patterns(cls) -> Sequence[byoc.Pattern]:
        return (byoc.Pattern("accel.mul_sigmoid", ("Mul", "Sigmoid")),)


class Plugin:
    """A plugin object registering the given backend classes."""

    def __init__(self, *classes: type[byoc.Backend]) -> None:
        self.classes = classes

    @byoc.hookimpl
    def byoc_register_backends(self, register: Any) -> None:
        for cls in self.classes:
            register(cls)


@pytest.fixture
def registry() -> Iterator[byoc.Registry]:
    """A fresh registry holding the fake and accel backends, made the global one."""
    reg = byoc.Registry()
    reg.add_plugin(Plugin(NumpyBackend, AccelBackend), "fake-plugins")
    NumpyBackend.init_calls = 0
    with byoc.use_registry(reg):
        yield reg


@pytest.fixture
def empty_registry() -> Iterator[byoc.Registry]:
    """A fresh registry with nothing registered, made the global one."""
    reg = byoc.Registry()
    with byoc.use_registry(reg):
        yield reg


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: list[tuple[str, Any]],
    outputs: list[tuple[str, Any]],
    inits: dict[str, np.ndarray] | None = None,
    opset: int = 17,
    dtype: int = TensorProto.FLOAT,
) -> onnx.ModelProto:
    """An ONNX model from nodes, (name, shape) inputs/outputs and initializers."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, dtype, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, dtype, s) for n, s in outputs],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.fixture
def mlp_model() -> onnx.ModelProto:
    """The small MLP of :func:`build_mlp`."""
    return build_mlp()


def build_mlp() -> onnx.ModelProto:
    """x[batch,8] -> MatMul -> Add -> Relu -> MatMul -> Mul -> Sigmoid -> Add."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.standard_normal((8, 16)).astype(np.float32),
        "b1": rng.standard_normal(16).astype(np.float32),
        "w2": rng.standard_normal((16, 4)).astype(np.float32),
        "s": rng.standard_normal(4).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="add1"),
        helper.make_node("Relu", ["hb"], ["r"], name="relu1"),
        helper.make_node("MatMul", ["r", "w2"], ["o"], name="mm2"),
        helper.make_node("Mul", ["o", "s"], ["m"], name="mul"),
        helper.make_node("Sigmoid", ["m"], ["sg"], name="sig"),
        helper.make_node("Add", ["sg", "o"], ["y"], name="add2"),
    ]
    return make_model(nodes, [("x", ["batch", 8])], [("y", ["batch", 4])], inits)


def mlp_reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """numpy forward pass of :func:`mlp_model`."""
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    o = np.maximum(x @ w["w1"] + w["b1"], 0) @ w["w2"]
    return 1 / (1 + np.exp(-(o * w["s"]))) + o
