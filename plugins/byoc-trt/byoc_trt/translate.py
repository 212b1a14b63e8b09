"""Subgraph JSON graph -> a network, through the :class:`~byoc_trt.net.Net` seam.

Translation is direct (JSON graph to network-definition calls), not an ONNX round
trip: byoc already holds the graph, its constants and its shapes, and going
through the ONNX parser would re-derive all of that and hide which node failed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

import byoc

from .net import Net
from .ops import OPS, Lowering


def translate(graph: byoc.Graph, consts: Mapping[str, np.ndarray], net: Net) -> None:
    """Add every node of ``graph`` to ``net`` and mark its heads as outputs."""
    lo = Lowering(graph, consts, net)
    for nid, node in enumerate(graph.nodes):
        if node.op == "input":
            shape = tuple(d if isinstance(d, int) else -1 for d in node.shapes[0] or ())
            lo.values[(nid, 0)] = net.input(node.name, shape)
        elif node.op == "kernel":
            entry = OPS.get(node.name)
            if entry is None:
                raise byoc.UnsupportedError(
                    f"trt cannot translate {node.describe(nid)}", op=node.name
                )
            outs = entry.lower(lo, node)
            for i, out in enumerate(outs):
                lo.values[(nid, i)] = out
    for name, head in zip(graph.output_names, graph.heads, strict=True):
        net.output(lo.tensor(head), name)
