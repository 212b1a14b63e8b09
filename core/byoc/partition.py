"""Partitioning: decide which backend runs each node and cut the graph into subgraphs.

Second step of the flow (import -> partition -> serialize -> load -> run).

1. *Assign.* Backends are asked in priority order. Each backend first claims the
   matches of its composite patterns, then single nodes; the first "yes" wins and
   every "no, because ..." from a higher-priority backend is kept for ``--explain``.
   A node nobody takes is an :class:`~byoc.UnsupportedError` now, not at ``init``.
2. *Group.* Units (single nodes or pattern matches) are merged, in topological
   order, into maximal convex regions of one backend: a unit joins (and may fuse)
   regions of its producers only when no path leaves the region and comes back,
   so the region graph stays acyclic.
3. *Shrink.* With ``min_subgraph_size``, regions smaller than that go back to the
   fallback (the last backend) and grouping runs again: many tiny subgraphs with
   copies at every boundary are slower than no offload at all.
4. *Lower.* Each region becomes a subgraph :class:`~byoc.graph.Graph` named
   ``<backend>_<n>``; a host graph of ``byoc.call`` nodes ties them together.

Everything iterates in node order, so the same model and backends always give the
same subgraphs and symbols.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .graph import Graph, JSONGraphNode, JSONGraphNodeEntry, TensorSpec
from .onnx_import import SYM_OP
from .runtime import Backend, NodeInfo, Pattern, Support

CALL_OP = "byoc.call"
"""Kernel name of host-graph nodes that call a subgraph (attr ``symbol``)."""
HOST = "host"
"""Pseudo-backend of nodes the driver evaluates itself (``byoc.sym``)."""


@dataclass(frozen=True)
class Decision:
    """Where one kernel node of the imported graph went, and why."""

    node_id: int
    op: str
    label: str
    backend: str
    symbol: str = ""
    pattern: str = ""
    declined: tuple[tuple[str, str], ...] = ()
    """``(backend, reason)`` for each higher-priority backend that said no."""


@dataclass(frozen=True)
class Subgraph:
    """One region: its symbol, backend, JSON graph and source node ids."""

    symbol: str
    backend: str
    graph: Graph
    node_ids: tuple[int, ...]

    @property
    def const_names(self) -> tuple[str, ...]:
        """Constant-table keys this subgraph reads, nested bodies included."""
        return const_names(self.graph)


@dataclass(frozen=True)
class Partition:
    """The result of partitioning: host graph, subgraphs, and per-node decisions."""

    host: Graph
    subgraphs: tuple[Subgraph, ...]
    decisions: tuple[Decision, ...]
    backends: tuple[str, ...]


def const_names(graph: Graph) -> tuple[str, ...]:
    """Every const key ``graph`` uses, including inside composite bodies."""
    seen: dict[str, None] = {}
    for node in graph.nodes:
        if node.op == "const":
            seen[node.name] = None
        body = node.attrs.get("body")
        if isinstance(body, Graph):
            seen.update(dict.fromkeys(const_names(body)))
    return tuple(seen)


def node_info(graph: Graph, nid: int, consts: Mapping[str, np.ndarray]) -> NodeInfo:
    """The support-query view of node ``nid``."""
    node = graph.nodes[nid]
    specs: list[TensorSpec | None] = []
    const_inputs: dict[int, np.ndarray] = {}
    for i, e in enumerate(node.inputs):
        if e.absent:
            specs.append(None)
            continue
        specs.append(graph.spec(e))
        producer = graph.nodes[e.node_id]
        if producer.op == "const":
            const_inputs[i] = consts[producer.name]
    outputs = tuple(node.spec(i) for i in range(node.num_outputs))
    return NodeInfo(node, tuple(specs), outputs, const_inputs, nid)


def ask(backend: type[Backend], info: NodeInfo) -> Support:
    """A backend's support answer; a crashing or reasonless query counts as "no"."""
    try:
        answer = backend.supports(info)
    except Exception as exc:  # a broken plugin must not break partitioning
        return Support.no(
            f"{backend.name}: support query raised {type(exc).__name__}: {exc}"
        )
    if isinstance(answer, Support):
        if not answer.ok and not answer.reason:
            return Support.no(f"{backend.name}: declined without a reason")
        if not answer.ok and not answer.reason.startswith(f"{backend.name}:"):
            # reasons are shown mixed across backends: always say whose they are
            return Support.no(f"{backend.name}: {answer.reason}")
        return answer
    return (
        Support.yes()
        if answer
        else Support.no(f"{backend.name}: declined without a reason")
    )


# --------------------------------------------------------------------------
# 1. assignment
# --------------------------------------------------------------------------


@dataclass
class _Unit:
    """A node, or a pattern match, that must land in one region together."""

    nodes: tuple[int, ...]
    backend: str
    pattern: str = ""


def _match_chain(
    graph: Graph, start: int, ops: Sequence[str], taken: Sequence[bool], heads: set[int]
) -> tuple[int, ...] | None:
    chain = [start]
    for op in ops[1:]:
        cur = chain[-1]
        users = graph.consumers[cur]
        node = graph.nodes[cur]
        if node.num_outputs != 1 or len(users) != 1 or cur in heads:
            return None
        nxt = users[0]
        if graph.nodes[nxt].name != op or taken[nxt]:
            return None
        chain.append(nxt)
    return tuple(chain)


def _assign(
    graph: Graph,
    infos: Mapping[int, NodeInfo],
    backends: Sequence[type[Backend]],
    use_patterns: Sequence[bool],
) -> tuple[list[_Unit], dict[int, tuple[tuple[str, str], ...]]]:
    kernel_ids = [
        i for i, n in enumerate(graph.nodes) if n.op == "kernel" and n.name != SYM_OP
    ]
    taken = [False] * len(graph.nodes)
    heads = {h.node_id for h in graph.heads}
    units: list[_Unit] = []
    declined: dict[int, list[tuple[str, str]]] = {i: [] for i in kernel_ids}
    for bi, backend in enumerate(backends):
        if use_patterns[bi]:
            for pattern in sorted(_patterns(backend), key=lambda p: -len(p.ops)):
                for nid in kernel_ids:
                    if taken[nid] or graph.nodes[nid].name != pattern.ops[0]:
                        continue
                    chain = _match_chain(graph, nid, pattern.ops, taken, heads)
                    if chain is None or not _pattern_ok(
                        backend, pattern, [infos[c] for c in chain]
                    ):
                        continue
                    for c in chain:
                        taken[c] = True
                    units.append(_Unit(chain, backend.name, pattern.name))
        for nid in kernel_ids:
            if taken[nid]:
                continue
            answer = ask(backend, infos[nid])
            if answer.ok:
                taken[nid] = True
                units.append(_Unit((nid,), backend.name))
            else:
                declined[nid].append((backend.name, answer.reason))
    for nid in kernel_ids:
        if not taken[nid]:
            node = graph.nodes[nid]
            reasons = dict(declined[nid])
            detail = "; ".join(reasons.values()) or "no backends selected"
            raise UnsupportedError(
                f"no selected backend runs {node.describe(nid)} (backends asked: "
                f"{', '.join(b.name for b in backends) or 'none'}). Reasons: {detail}. "
                "Install or select a backend that supports it (byoc backends lists "
                "them).",
                op=node.name,
                node=node.label or nid,
                backends=tuple(b.name for b in backends),
                reasons=reasons,
            )
    units.sort(key=lambda u: max(u.nodes))
    return units, {k: tuple(v) for k, v in declined.items()}


def _patterns(backend: type[Backend]) -> Sequence[Pattern]:
    try:
        return tuple(backend.patterns())
    except Exception:  # a broken plugin only loses its patterns
        return ()


def _pattern_ok(
    backend: type[Backend], pattern: Pattern, infos: list[NodeInfo]
) -> bool:
    if pattern.check is None:
        return True
    try:
        return bool(pattern.check(infos))
    except Exception:
        return False


# --------------------------------------------------------------------------
# 2. grouping into convex regions
# --------------------------------------------------------------------------


@dataclass
class _Group:
    backend: str
    units: list[_Unit] = field(default_factory=list)
    anc: int = 0  # bitset of group ids this group depends on (transitively closed)


class _Regions:
    """Regions under construction, with transitively closed ancestor bitsets.

    Invariant: ``groups[g].anc`` holds every region ``g`` depends on through any
    path. Merging ``a`` and ``b`` is convex iff neither reaches the other through
    a third region, which these sets answer directly.
    """

    def __init__(self) -> None:
        self.groups: list[_Group | None] = []
        self.forward: dict[int, int] = {}  # merged-away id -> surviving id

    def live(self, g: int) -> _Group:
        group = self.groups[g]
        assert group is not None
        return group

    def find(self, g: int) -> int:
        while self.groups[g] is None:
            g = self.forward[g]
        return g

    def new(self, unit: _Unit, anc: int) -> int:
        self.groups.append(_Group(unit.backend, [unit], anc))
        return len(self.groups) - 1

    def reached_via_sibling(self, target: int, siblings: Sequence[int]) -> bool:
        """Does some other sibling depend on ``target`` (path target -> h -> unit)?"""
        return any(h != target and self.live(h).anc >> target & 1 for h in siblings)

    def path_via_other(self, src: int, dst: int) -> bool:
        """True when ``dst`` depends on ``src`` through some third region."""
        anc = self.live(dst).anc & ~(1 << src)
        while anc:
            h = anc.bit_length() - 1
            anc &= ~(1 << h)
            mid = self.groups[h]
            if h != dst and mid is not None and mid.anc >> src & 1:
                return True
        return False

    def propagate(self, g: int) -> None:
        """Restore closure after region ``g`` gained ancestors."""
        bit = 1 << g
        add = self.live(g).anc | bit
        for h, other in enumerate(self.groups):
            if other is not None and h != g and other.anc & bit:
                other.anc = (other.anc | add) & ~(1 << h)

    def join(self, g: int, unit: _Unit, anc: int) -> None:
        group = self.live(g)
        group.units.append(unit)
        group.anc |= anc & ~(1 << g)
        self.propagate(g)

    def fuse(self, home: int, g: int) -> None:
        """Merge region ``g`` into ``home`` (caller checked convexity)."""
        group, other = self.live(home), self.live(g)
        group.units.extend(other.units)
        group.anc = (group.anc | other.anc) & ~(1 << home) & ~(1 << g)
        self.groups[g] = None
        self.forward[g] = home
        gbit = 1 << g
        for grp in self.groups:
            if grp is not None and grp.anc & gbit:
                grp.anc = (grp.anc & ~gbit) | (1 << home)
        self.propagate(home)


def _group(graph: Graph, units: Sequence[_Unit]) -> list[_Group]:
    """Merge units into maximal convex single-backend regions (see module docs)."""
    unit_of = {nid: ui for ui, unit in enumerate(units) for nid in unit.nodes}
    regions = _Regions()
    region_of_unit: list[int] = [-1] * len(units)
    for ui, unit in enumerate(units):
        members = set(unit.nodes)
        parents = sorted(
            {
                regions.find(region_of_unit[unit_of[e.node_id]])
                for nid in unit.nodes
                for e in graph.nodes[nid].inputs
                if not e.absent and e.node_id not in members and e.node_id in unit_of
            }
        )
        anc = 0
        for g in parents:
            anc |= regions.live(g).anc | (1 << g)
        same = [g for g in parents if regions.live(g).backend == unit.backend]
        home = next(
            (g for g in same if not regions.reached_via_sibling(g, parents)), -1
        )
        if home < 0:
            region_of_unit[ui] = regions.new(unit, anc)
            continue
        regions.join(home, unit, anc)
        region_of_unit[ui] = home
        # Fuse the other same-backend parents through this unit where convex.
        for g in same:
            if g == home or regions.groups[g] is None:
                continue
            if not (regions.path_via_other(g, home) or regions.path_via_other(home, g)):
                regions.fuse(home, g)
    return [g for g in regions.groups if g is not None]


def _order_groups(graph: Graph, groups: list[_Group]) -> list[_Group]:
    """Topological order of regions, ties broken by the smallest node id."""
    owner: dict[int, int] = {}
    for gi, group in enumerate(groups):
        for unit in group.units:
            for nid in unit.nodes:
                owner[nid] = gi
    deps: list[set[int]] = [set() for _ in groups]
    for gi, group in enumerate(groups):
        for unit in group.units:
            for nid in unit.nodes:
                for e in graph.nodes[nid].inputs:
                    if not e.absent and e.node_id in owner and owner[e.node_id] != gi:
                        deps[gi].add(owner[e.node_id])
    first = [min(n for u in g.units for n in u.nodes) for g in groups]
    done: list[int] = []
    remaining = set(range(len(groups)))
    while remaining:
        ready = [g for g in remaining if deps[g] <= set(done)]
        if not ready:  # cannot happen for convex regions; fail loudly if it does
            raise AssertionError("partition produced a cycle between subgraphs")
        nxt = min(ready, key=lambda g: first[g])
        done.append(nxt)
        remaining.remove(nxt)
    return [groups[g] for g in done]


# --------------------------------------------------------------------------
# 3 + 4. driver of the steps, lowering
# --------------------------------------------------------------------------


def partition(
    graph: Graph,
    consts: Mapping[str, np.ndarray],
    backends: Sequence[type[Backend]],
    *,
    min_subgraph_size: int = 1,
) -> Partition:
    """Partition ``graph`` over ``backends`` (priority order; the last is the "
    "fallback)."""
    infos = {
        nid: node_info(graph, nid, consts)
        for nid, n in enumerate(graph.nodes)
        if n.op == "kernel" and n.name != SYM_OP
    }
    fallback = backends[-1] if backends else None
    forced: set[int] = set()  # nodes sent back to the fallback by min_subgraph_size
    while True:
        units, declined = _assign_with_forced(graph, infos, backends, forced)
        groups = _order_groups(graph, _group(graph, units))
        if min_subgraph_size <= 1 or fallback is None:
            break
        small = {
            nid
            for g in groups
            if g.backend != fallback.name
            and sum(len(u.nodes) for u in g.units) < min_subgraph_size
            for u in g.units
            for nid in u.nodes
            if ask(fallback, infos[nid]).ok
        }
        if not small - forced:
            break
        forced |= small
    return _lower(graph, groups, declined, tuple(b.name for b in backends))


def _assign_with_forced(
    graph: Graph,
    infos: Mapping[int, NodeInfo],
    backends: Sequence[type[Backend]],
    forced: set[int],
) -> tuple[list[_Unit], dict[int, tuple[tuple[str, str], ...]]]:
    units, declined = _assign(graph, infos, backends, [True] * len(backends))
    if not forced:
        return units, declined
    fallback = backends[-1].name
    out: list[_Unit] = []
    for unit in units:
        if any(n in forced for n in unit.nodes) and unit.backend != fallback:
            for nid in unit.nodes:
                reason = f"{unit.backend}: region smaller than min_subgraph_size"
                declined[nid] = (*declined.get(nid, ()), (unit.backend, reason))
                out.append(_Unit((nid,), fallback))
        else:
            out.append(unit)
    out.sort(key=lambda u: max(u.nodes))
    return out, declined


def _tensor_name(graph: Graph, e: JSONGraphNodeEntry) -> str:
    node = graph.nodes[e.node_id]
    if node.op != "kernel":
        return node.name
    return f"{node.label or node.name}:{e.index}"


def _lower(
    graph: Graph,
    groups: list[_Group],
    declined: Mapping[int, tuple[tuple[str, str], ...]],
    backend_names: tuple[str, ...],
) -> Partition:
    counters: dict[str, int] = {}
    host_nodes: list[JSONGraphNode] = []
    host_entry: dict[tuple[int, int], JSONGraphNodeEntry] = {}

    def add_host(node: JSONGraphNode, source: int | None) -> int:
        hid = len(host_nodes)
        host_nodes.append(node)
        if source is not None:
            for i in range(node.num_outputs):
                host_entry[(source, i)] = JSONGraphNodeEntry(hid, i, 0)
        return hid

    for nid in graph.input_ids:
        add_host(graph.nodes[nid], nid)
    for nid, node in enumerate(graph.nodes):
        if node.op == "kernel" and node.name == SYM_OP:
            add_host(node, nid)

    owner: dict[int, int] = {
        nid: gi for gi, g in enumerate(groups) for u in g.units for nid in u.nodes
    }
    outside_users: dict[tuple[int, int], bool] = {}
    for nid, node in enumerate(graph.nodes):
        for e in node.inputs:
            if not e.absent and owner.get(e.node_id, -1) != owner.get(nid, -2):
                outside_users[(e.node_id, e.index)] = True
    for h in graph.heads:
        outside_users[(h.node_id, h.index)] = True

    subgraphs: list[Subgraph] = []
    decisions: dict[int, Decision] = {}
    for gi, group in enumerate(groups):
        n = counters.get(group.backend, 0)
        counters[group.backend] = n + 1
        symbol = f"{group.backend}_{n}"
        sub, sub_inputs, sub_heads = _lower_region(
            graph, group, gi, owner, outside_users
        )
        subgraphs.append(
            Subgraph(
                symbol,
                group.backend,
                sub,
                tuple(sorted(nid for u in group.units for nid in u.nodes)),
            )
        )
        call_inputs = [host_entry[(e.node_id, e.index)] for e in sub_inputs]
        call = JSONGraphNode(
            "kernel",
            CALL_OP,
            inputs=tuple(call_inputs),
            attrs={"symbol": symbol},
            shapes=tuple(graph.spec(h).shape for h in sub_heads),
            dtypes=tuple(graph.spec(h).dtype for h in sub_heads),
            label=symbol,
        )
        hid = add_host(call, None)
        for i, h in enumerate(sub_heads):
            host_entry[(h.node_id, h.index)] = JSONGraphNodeEntry(hid, i, 0)
        for unit in group.units:
            for nid in unit.nodes:
                node = graph.nodes[nid]
                decisions[nid] = Decision(
                    nid,
                    node.name,
                    node.label,
                    group.backend,
                    symbol,
                    unit.pattern,
                    declined.get(nid, ()),
                )
    for nid, node in enumerate(graph.nodes):
        if node.op == "kernel" and node.name == SYM_OP:
            decisions[nid] = Decision(nid, node.name, node.label, HOST)
    heads = []
    for h in graph.heads:
        key = (h.node_id, h.index)
        if key not in host_entry:  # a graph output that is a constant
            host_entry[key] = JSONGraphNodeEntry(
                add_host(graph.nodes[h.node_id], h.node_id), 0, 0
            )
        heads.append(host_entry[key])
    host = Graph(tuple(host_nodes), tuple(heads), graph.output_names)
    return Partition(
        host,
        tuple(subgraphs),
        tuple(decisions[k] for k in sorted(decisions)),
        backend_names,
    )


def _lower_region(
    graph: Graph,
    group: _Group,
    gi: int,
    owner: Mapping[int, int],
    outside_users: Mapping[tuple[int, int], bool],
) -> tuple[Graph, list[JSONGraphNodeEntry], list[JSONGraphNodeEntry]]:
    """Build one subgraph: inputs, consts, kernels (composites folded), heads.

    Returns the subgraph, the source entries feeding its inputs (in input order)
    and the source entries its heads carry out.
    """
    pattern_of = {u.nodes[-1]: u for u in group.units if u.pattern}
    inner = {nid for u in group.units if u.pattern for nid in u.nodes[:-1]}
    # Source ids are topologically ordered; a composite sits at its last node.
    top = sorted(nid for u in group.units for nid in u.nodes if nid not in inner)
    nodes: list[JSONGraphNode] = []
    local: dict[tuple[int, int], JSONGraphNodeEntry] = {}
    ext_inputs: list[JSONGraphNodeEntry] = []

    def sources(nid: int) -> tuple[JSONGraphNodeEntry, ...]:
        unit = pattern_of.get(nid)
        return _composite_inputs(graph, unit.nodes) if unit else graph.nodes[nid].inputs

    # Inputs and constants first, in order of first use.
    for nid in top:
        for e in sources(nid):
            key = (e.node_id, e.index)
            if e.absent or owner.get(e.node_id) == gi or key in local:
                continue
            src = graph.nodes[e.node_id]
            if src.op == "const":
                nodes.append(src)
            else:
                spec = graph.spec(e)
                nodes.append(
                    JSONGraphNode(
                        "input",
                        _tensor_name(graph, e),
                        shapes=(spec.shape,),
                        dtypes=(spec.dtype,),
                    )
                )
                ext_inputs.append(e)
            local[key] = JSONGraphNodeEntry(len(nodes) - 1, 0, 0)
    for nid in top:
        unit = pattern_of.get(nid)
        template = _composite(graph, unit) if unit else graph.nodes[nid]
        inputs = tuple(
            e if e.absent else local[(e.node_id, e.index)] for e in sources(nid)
        )
        nodes.append(replace(template, inputs=inputs))
        for i in range(template.num_outputs):
            local[(nid, i)] = JSONGraphNodeEntry(len(nodes) - 1, i, 0)
    heads = [
        JSONGraphNodeEntry(nid, i, 0)
        for nid in top
        for i in range(graph.nodes[nid].num_outputs)
        if outside_users.get((nid, i))
    ]
    sub = Graph(
        tuple(nodes),
        tuple(local[(h.node_id, h.index)] for h in heads),
        tuple(_tensor_name(graph, h) for h in heads),
    )
    return sub, ext_inputs, heads


def _composite_inputs(
    graph: Graph, chain: Sequence[int]
) -> tuple[JSONGraphNodeEntry, ...]:
    """Non-constant inputs from outside the chain, in order of first use."""
    inside = set(chain)
    seen: dict[tuple[int, int], JSONGraphNodeEntry] = {}
    for nid in chain:
        for e in graph.nodes[nid].inputs:
            if e.absent or e.node_id in inside or graph.nodes[e.node_id].op == "const":
                continue
            seen.setdefault((e.node_id, e.index), e)
    return tuple(seen.values())


def _composite(graph: Graph, unit: _Unit) -> JSONGraphNode:
    """One kernel node standing for a pattern match; its ``body`` is the chain."""
    outer = _composite_inputs(graph, unit.nodes)
    body_nodes: list[JSONGraphNode] = []
    local: dict[tuple[int, int], JSONGraphNodeEntry] = {}
    for pos, e in enumerate(outer):
        spec = graph.spec(e)
        body_nodes.append(
            JSONGraphNode(
                "input", f"in{pos}", shapes=(spec.shape,), dtypes=(spec.dtype,)
            )
        )
        local[(e.node_id, e.index)] = JSONGraphNodeEntry(pos, 0, 0)
    for nid in unit.nodes:
        node = graph.nodes[nid]
        ins = []
        for e in node.inputs:
            if e.absent:
                ins.append(e)
                continue
            key = (e.node_id, e.index)
            if key not in local:  # a constant read by the chain
                body_nodes.append(graph.nodes[e.node_id])
                local[key] = JSONGraphNodeEntry(len(body_nodes) - 1, 0, 0)
            ins.append(local[key])
        body_nodes.append(
            JSONGraphNode(
                node.op,
                node.name,
                tuple(ins),
                node.attrs,
                node.shapes,
                node.dtypes,
                node.label,
            )
        )
        for i in range(node.num_outputs):
            local[(nid, i)] = JSONGraphNodeEntry(len(body_nodes) - 1, i, 0)
    last = graph.nodes[unit.nodes[-1]]
    body = Graph(tuple(body_nodes), (JSONGraphNodeEntry(len(body_nodes) - 1, 0, 0),))
    attrs: dict[str, Any] = {"body": body}
    return JSONGraphNode(
        "kernel", unit.pattern, (), attrs, last.shapes[:1], last.dtypes[:1], last.label
    )
