"""A deliberately broken backend: the conformance kit must fail it.

It claims Add but computes ``a - b``, and refuses Sub without giving a reason;
Relu it runs correctly, so a kit that fails *everything* would be caught too.
Installed by ``tests/test_testing.py`` as the distribution ``byoc-kit-broken``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

import byoc

KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "Relu": lambda a: np.maximum(a, np.float32(0)),
    "Add": lambda a, b: a - b,  # wrong on purpose
}


class BrokenBackend(byoc.Backend):
    """Claims float32 Add and Relu; see the module docstring for what is wrong."""

    name = "broken"
    version = "1.0"

    @classmethod
    def supports(cls, node: byoc.NodeInfo) -> byoc.Support:
        if node.op == "Sub":
            return byoc.Support(False, "")  # a refusal without a reason
        if node.op not in KERNELS:
            return byoc.Support.no(f"broken: no kernel for {node.op}")
        if any(s is None or s.dtype != "float32" for s in node.inputs):
            return byoc.Support.no(f"broken: {node.op} runs float32 only")
        return byoc.Support.yes()

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
    """Register the broken backend."""
    register(BrokenBackend)
