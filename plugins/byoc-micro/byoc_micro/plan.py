"""Static memory planning: where every tensor of a micro subgraph lives.

Runs at compile time (the backend's ``plan`` hook), so the result travels in the
artifact as the subgraph's ``meta`` and a device needs no allocator: it hands the
C executor one arena of ``arena_size`` bytes, and the executor puts each tensor
exactly where this plan says (``micro/bm_exec.c``). The plan, per node:

* ``["input", i]`` -- the i-th caller input buffer; ``["const", 0]`` -- the
  constant table, read in place;
* ``["output", j]`` -- the caller's buffer for head ``j``: results are written
  where the caller wants them, never copied out of the arena;
* ``["alias", 0]`` -- a Flatten/Reshape of something outside the arena: the same
  bytes under a new shape;
* ``["arena", offset]`` -- everything else.

Arena tensors with disjoint lifetimes share memory. Lifetimes are grouped into
*storages*: a reshape joins its input's storage (zero copy), and an element-wise
op whose input dies at that op and has the output's shape writes over it (in
place). Storages are then placed greedily, largest first, each at the lowest
16-byte aligned offset that no storage alive at the same time overlaps -- the
"greedy by size" planner of TFLite Micro.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import byoc

PLAN_FORMAT = 1
"""Version of the plan layout in ``meta``; the C executor rejects others."""
ALIGNMENT = 16
"""Arena offsets are multiples of this (SIMD-friendly on small cores)."""
VIEW_OPS = frozenset({"Flatten", "Reshape"})
"""Ops whose output is their input's bytes under another shape."""
INPLACE_OPS = frozenset(
    {"Add", "BatchNormalization", "Clip", "Mul", "Relu", "Sigmoid", "Softmax"}
)
"""Ops whose kernel reads element i of an input before writing element i."""


@dataclass(frozen=True)
class MemoryPlan:
    """Where each node's output lives, and how big the arena must be."""

    arena_size: int
    entries: tuple[tuple[str, int], ...]
    naive_size: int
    """Arena bytes if no two planned tensors shared memory (for comparison)."""
    alignment: int = ALIGNMENT

    def to_meta(self) -> dict[str, Any]:
        """The plain-data form stored in the artifact (``byoc inspect`` shows it)."""
        return {
            "arena_size": self.arena_size,
            "naive_size": self.naive_size,
            "alignment": self.alignment,
            "format": PLAN_FORMAT,
            "entries": [[kind, value] for kind, value in self.entries],
        }

    @staticmethod
    def from_meta(meta: Mapping[str, Any]) -> MemoryPlan:
        """Inverse of :meth:`to_meta`."""
        return MemoryPlan(
            int(meta["arena_size"]),
            tuple((str(k), int(v)) for k, v in meta["entries"]),
            int(meta["naive_size"]),
            int(meta["alignment"]),
        )


@dataclass
class _Storage:
    """Memory shared by tensors whose lifetimes chain (reshapes, in-place ops)."""

    size: int
    start: int  # node id of the first writer
    end: int  # node id of the last reader of any member
    members: list[int] = field(default_factory=list)
    offset: int = -1


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _nbytes(node: byoc.JSONGraphNode) -> int:
    shape = node.shapes[0]
    dims = [d for d in shape or () if isinstance(d, int)]
    if shape is None or len(dims) != len(shape):
        raise ValueError(f"{node.describe()} has a dynamic shape {shape}")
    return math.prod(dims) * 4


def plan_memory(graph: byoc.Graph) -> MemoryPlan:
    """Plan ``graph`` (single-output, static float32 nodes, as ``supports`` admits)."""
    nodes = graph.nodes
    for nid, node in enumerate(nodes):
        if node.num_outputs != 1:
            raise ValueError(f"{node.describe(nid)} has {node.num_outputs} outputs")
    last_use = list(range(len(nodes)))  # an unread output still must be written
    for nid, node in enumerate(nodes):
        for e in node.inputs:
            if not e.absent:
                last_use[e.node_id] = max(last_use[e.node_id], nid)
    head_of: dict[int, int] = {}
    for j, h in enumerate(graph.heads):
        head_of.setdefault(h.node_id, j)

    storage_of: dict[int, _Storage] = {}
    storages: list[_Storage] = []
    entries: list[tuple[str, int]] = []
    n_inputs = 0

    def join(st: _Storage, nid: int) -> None:
        st.members.append(nid)
        st.end = max(st.end, last_use[nid])
        storage_of[nid] = st

    for nid, node in enumerate(nodes):
        if node.op == "input":
            entries.append(("input", n_inputs))
            n_inputs += 1
            continue
        if node.op == "const":
            entries.append(("const", 0))
            continue
        if nid in head_of:
            entries.append(("output", head_of[nid]))
            continue
        if node.name in VIEW_OPS:
            st = storage_of.get(node.inputs[0].node_id)
            if st is None:  # a view of an input, constant or output buffer
                entries.append(("alias", 0))
                continue
        elif node.name in INPLACE_OPS:
            st = _reusable(graph, nid, storage_of)
        else:
            st = None
        if st is None:
            st = _Storage(_nbytes(node), nid, nid)
            storages.append(st)
        join(st, nid)
        entries.append(("arena", -1))  # offset known once storages are placed

    arena_size = _place(storages)
    for nid, st in storage_of.items():
        entries[nid] = ("arena", st.offset)
    naive = sum(_align(_nbytes(nodes[nid])) for nid in storage_of)
    return MemoryPlan(arena_size, tuple(entries), naive)


def _reusable(
    graph: byoc.Graph, nid: int, storage_of: Mapping[int, _Storage]
) -> _Storage | None:
    """An input storage node ``nid`` may overwrite: dies here, same shape, and no
    other input of the node lives in it (a reshape of it would be read after
    being overwritten)."""
    node = graph.nodes[nid]
    for e in node.inputs:
        st = storage_of.get(e.node_id) if not e.absent else None
        if st is None or st.end != nid:
            continue
        if graph.nodes[e.node_id].shapes[0] != node.shapes[0]:
            continue
        if any(
            not o.absent and o.node_id != e.node_id and storage_of.get(o.node_id) is st
            for o in node.inputs
        ):
            continue
        return st
    return None


def _place(storages: list[_Storage]) -> int:
    """Greedy by size: each storage at the lowest aligned offset that no storage
    alive at the same time overlaps. Returns the arena size."""
    placed: list[_Storage] = []
    for st in sorted(storages, key=lambda s: (-s.size, s.start)):
        offset = 0
        live = [p for p in placed if p.start <= st.end and st.start <= p.end]
        for p in sorted(live, key=lambda p: p.offset):
            if offset + st.size <= p.offset:
                break
            offset = max(offset, _align(p.offset + p.size))
        st.offset = offset
        placed.append(st)
    return max((s.offset + s.size for s in storages), default=0)
