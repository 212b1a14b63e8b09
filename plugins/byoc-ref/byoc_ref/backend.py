"""The reference backend: runs a subgraph node by node with numpy.

It defines semantics for every other backend (the conformance kit compares them
against it), so kernels favour clarity and exactness over speed; only Conv-like
ops are vectorised (im2col), because a pixel loop would make the oracle useless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version

import numpy as np

import byoc

from .ops import OPS, OpFn

try:
    _VERSION = version("byoc-ref")
except PackageNotFoundError:  # running from a source tree
    _VERSION = "0.0.0"

_Step = tuple[OpFn, byoc.JSONGraphNode, tuple[int, ...], int]


class RefBackend(byoc.Backend):
    """numpy reference backend; the fallback (lowest priority)."""

    name = "ref"
    version = _VERSION
    priority = 0

    @classmethod
    def supports(cls, node: byoc.NodeInfo) -> byoc.Support:
        entry = OPS.get(node.op)
        if entry is None:
            return byoc.Support.no(f"ref: no kernel for {node.op}")
        for spec in (*node.inputs, *node.outputs):
            if spec is not None and spec.dtype == "unknown":
                return byoc.Support.no(f"ref: {node.op} has a tensor of unknown dtype")
        if entry.check is not None:
            return entry.check(node)
        return byoc.Support.yes()

    def init(self, consts: Mapping[str, np.ndarray]) -> None:
        graph = self.graph
        ptr = graph.node_row_ptr
        self._consts = [
            (ptr[nid], consts[graph.nodes[nid].name])
            for nid in graph.arg_nodes
            if graph.nodes[nid].op == "const"
        ]
        self._inputs = [(ptr[nid], graph.nodes[nid].name) for nid in graph.input_ids]
        steps: list[_Step] = []
        for nid, node in enumerate(graph.nodes):
            if node.op != "kernel":
                continue
            entry = OPS.get(node.name)
            if entry is None:
                raise byoc.UnsupportedError(
                    f"ref has no kernel for {node.name}", op=node.name
                )
            args = tuple(
                -1 if e.absent else ptr[e.node_id] + e.index for e in node.inputs
            )
            steps.append((entry.fn, node, args, ptr[nid]))
        self._steps = steps
        self._heads = [graph.entry_id(h) for h in graph.heads]
        self._size = ptr[-1]

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        values: list[np.ndarray | None] = [None] * self._size
        for eid, array in self._consts:
            values[eid] = array
        for eid, name in self._inputs:
            values[eid] = inputs[name]
        for fn, node, args, out in self._steps:
            results = fn(node, *[None if a < 0 else values[a] for a in args])
            for i, (res, dtype) in enumerate(zip(results, node.dtypes, strict=True)):
                res = np.asarray(res)
                if dtype != "unknown" and res.dtype.name != dtype:
                    res = res.astype(dtype)
                values[out + i] = res
        # Callers own what run returns: copy any head that is, or is a view of
        # (Reshape, Identity, Slice...), a constant or an input.
        borrowed = [a for _, a in self._consts] + [inputs[n] for _, n in self._inputs]
        outs = []
        for h in self._heads:
            value = values[h]
            if any(np.may_share_memory(value, b) for b in borrowed):
                value = np.array(value)
            outs.append(value)
        return outs
