"""A working backend that runs float32 Relu, Add and MatMul with numpy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

import byoc

KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "Relu": lambda a: np.maximum(a, np.float32(0)),
    "Add": np.add,
    "MatMul": np.matmul,
}


class GoodBackend(byoc.Backend):
    """Interprets its subgraph node by node."""

    name = "good"
    version = "1.0"
    priority = 10

    @classmethod
    def supports(cls, node: byoc.NodeInfo) -> byoc.Support:
        if node.op in KERNELS:
            return byoc.Support.yes()
        return byoc.Support.no(f"good: no kernel for {node.op}")

    def init(self, consts: Mapping[str, np.ndarray]) -> None:
        self.consts = dict(consts)

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        values: dict[int, np.ndarray] = {}
        for nid, node in enumerate(self.graph.nodes):
            if node.op == "input":
                values[nid] = inputs[node.name]
            elif node.op == "const":
                values[nid] = self.consts[node.name]
            else:
                args = [values[e.node_id] for e in node.inputs]
                values[nid] = np.asarray(KERNELS[node.name](*args), np.float32)
        return [np.array(values[h.node_id]) for h in self.graph.heads]


@byoc.hookimpl
def byoc_register_backends(register: Callable[[type[byoc.Backend]], None]) -> None:
    """Register the good backend."""
    register(GoodBackend)
