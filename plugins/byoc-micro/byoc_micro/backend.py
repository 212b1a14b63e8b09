"""The micro backend: subgraphs run by the C executor, through ctypes.

At compile time ``supports`` admits exactly what the C kernels implement and
``plan`` stores the static memory plan in the artifact. At ``init`` the engine
writes its subgraph as a one-subgraph artifact -- the same bytes a device would
flash -- and opens it with the C reader, so Python runs the very code path a
bare-metal build runs. ``run`` allocates the planned arena per call, which
keeps concurrent runs independent (the C library holds no state).

Engine option: ``arena_size`` hands the executor that many bytes instead of
the planned size (a test of the plan's exactness: one byte less must fail).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

import byoc
from byoc.artifact import Artifact, SubgraphRecord, artifact_bytes
from byoc.partition import CALL_OP, const_names

from . import _lib
from .ops import supports as _supports
from .plan import plan_memory

try:
    _VERSION = version("byoc-micro")
except PackageNotFoundError:  # running from a source tree
    _VERSION = "0.0.0"


def subgraph_artifact(
    symbol: str,
    graph: byoc.Graph,
    meta: Mapping[str, Any],
    consts: Mapping[str, np.ndarray],
    backend_version: str = _VERSION,
) -> bytes:
    """A complete artifact holding only ``graph``: its inputs, one call, its heads."""
    inputs = [graph.nodes[i] for i in graph.input_ids]
    host_inputs = tuple(
        byoc.JSONGraphNode("input", n.name, shapes=n.shapes, dtypes=n.dtypes)
        for n in inputs
    )
    call = byoc.JSONGraphNode(
        "kernel",
        CALL_OP,
        inputs=tuple(byoc.JSONGraphNodeEntry(i) for i in range(len(inputs))),
        attrs={"symbol": symbol},
        shapes=tuple(graph.spec(h).shape for h in graph.heads),
        dtypes=tuple(graph.spec(h).dtype for h in graph.heads),
        label=symbol,
    )
    host = byoc.Graph(
        (*host_inputs, call),
        tuple(byoc.JSONGraphNodeEntry(len(inputs), i) for i in range(len(graph.heads))),
        graph.output_names,
    )
    record = SubgraphRecord(symbol, MicroBackend.name, backend_version, graph, meta)
    used = {n: consts[n] for n in const_names(graph)}
    return artifact_bytes(Artifact(host, (record,), used), {})


class MicroBackend(byoc.Backend):
    """Static-shape fp32 subgraphs on the dependency-free C executor."""

    name = "micro"
    version = _VERSION
    priority = -1  # a deployment target: opt-in (byoc compile --target micro)
    """Above the ``ref`` fallback (0), below accelerator backends."""

    @classmethod
    def available(cls) -> str | None:
        # builds the C runtime on first use (cached per source hash)
        return _lib.unavailable_reason()

    @classmethod
    def supports(cls, node: byoc.NodeInfo) -> byoc.Support:
        return _supports(node)

    @classmethod
    def plan(
        cls, graph: byoc.Graph, consts: Mapping[str, np.ndarray]
    ) -> Mapping[str, Any]:
        return plan_memory(graph).to_meta()

    def init(self, consts: Mapping[str, np.ndarray]) -> None:
        lib = _lib.library()
        # An engine made without compile (a test kit building it directly) has
        # no stored plan; it gets the one compile would have stored.
        meta = self.meta or plan_memory(self.graph).to_meta()
        self._model = lib.open(subgraph_artifact(self.symbol, self.graph, meta, consts))
        info = self._model.info(0)
        self._n_slots = int(info.n_slots)
        self._arena_size = int(self.options.get("arena_size", info.arena_size))
        self._out_shapes = [
            tuple(int(d) for d in self.graph.spec(h).shape or ())
            for h in self.graph.heads
        ]
        self.fills_outputs = all(
            self.graph.spec(h).dtype == "float32" for h in self.graph.heads
        )
        # Every check the C side makes (shapes, plan, arena size) happens now,
        # so a bad plan or a short arena fails at init, not on the first run.
        self._model.check(
            0,
            [_count(self.graph.nodes[i].shapes[0]) for i in self.graph.input_ids],
            [_count(s) for s in self._out_shapes],
            self._arena_size,
            self._n_slots,
        )

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        outs = [np.empty(shape, np.float32) for shape in self._out_shapes]
        self.run_into(inputs, outs)
        return outs

    def run_into(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[np.ndarray]
    ) -> None:
        # The driver allocates the outputs (fills_outputs, set in init), so the
        # C side writes them directly and nothing is checked after the run.
        xs = []
        for name, nid in zip(self.graph.input_names, self.graph.input_ids, strict=True):
            x = np.asarray(inputs[name], order="C")  # keeps 0-d inputs 0-d
            want = tuple(self.graph.nodes[nid].shapes[0] or ())
            if x.dtype != np.float32 or x.shape != want:
                raise byoc.InputError(
                    f"micro: input {name!r} must be float32{list(want)}, got "
                    f"{x.dtype}{list(x.shape)}",
                    input=name,
                )
            xs.append(x)
        arena = _lib.aligned_bytes(self._arena_size, 16)
        self._model.run(0, xs, outputs, arena, self._n_slots)


def _count(shape: Sequence[int | str] | None) -> int:
    return int(np.prod([int(d) for d in shape or ()]))
