"""The static memory planner: sharing, in-place ops, views, and soundness.

Soundness is checked by simulating the plan byte by byte: every arena byte
remembers which tensor last wrote it, and every read must find its tensor's
bytes intact. Hypothesis generates random graphs of element-wise, matrix and
shape ops; the same graphs also run through the C executor against numpy.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import byoc
from byoc_micro import MicroBackend, plan_memory
from byoc_micro.plan import ALIGNMENT, VIEW_OPS, MemoryPlan

F32 = "float32"


def E(nid: int) -> byoc.JSONGraphNodeEntry:  # noqa: N802 - TVM's name
    return byoc.JSONGraphNodeEntry(nid)


def kernel(
    op: str, inputs: tuple[int, ...], shape: tuple[int, ...]
) -> byoc.JSONGraphNode:
    return byoc.JSONGraphNode(
        "kernel", op, tuple(E(i) for i in inputs), shapes=(shape,), dtypes=(F32,)
    )


def check_sound(graph: byoc.Graph, plan: MemoryPlan) -> None:
    """Replay the plan: no tensor is overwritten while a later node reads it."""
    nodes = graph.nodes
    owner = np.full(plan.arena_size, -1, np.int64)
    root: dict[int, int] = {}  # arena tensor -> the tensor whose bytes it shares
    ends = []
    for nid, (kind, value) in enumerate(plan.entries):
        node = nodes[nid]
        size = math.prod(node.shapes[0]) * 4
        if kind != "arena":
            if node.op == "kernel" and kind == "alias":
                assert node.name in VIEW_OPS
            continue
        assert value % ALIGNMENT == 0 and 0 <= value <= plan.arena_size - size
        ends.append(value + size)
        reads = [e.node_id for e in node.inputs if not e.absent]
        for r in reads:  # inputs are read before the output is written
            if plan.entries[r][0] == "arena":
                off = plan.entries[r][1]
                rsize = math.prod(nodes[r].shapes[0]) * 4
                assert (owner[off : off + rsize] == root[r]).all(), (
                    f"node {nid} reads node {r}, whose bytes were overwritten"
                )
        src = nodes[nid].inputs[0].node_id if node.inputs else -1
        if node.name in VIEW_OPS and plan.entries[src] == ("arena", value):
            root[nid] = root[src]  # a view: same bytes, no write
        else:
            owner[value : value + size] = nid
            root[nid] = nid
    # heads in output buffers are checked by the executor; arena is tight
    assert plan.arena_size == max(ends, default=0)


def chain(*ops: tuple[str, tuple[int, ...]]) -> byoc.Graph:
    """x[2, 8] then ops, each reading the previous node; the last is the head."""
    nodes = [byoc.JSONGraphNode("input", "x", shapes=((2, 8),), dtypes=(F32,))]
    for op, shape in ops:
        nodes.append(kernel(op, (len(nodes) - 1,), shape))
    return byoc.Graph(tuple(nodes), (E(len(nodes) - 1),))


def test_a_chain_needs_two_buffers_and_in_place_ops_need_none():
    g = chain(("Relu", (2, 8)), ("Sigmoid", (2, 8)), ("Relu", (2, 8)), ("Relu", (2, 8)))
    plan = plan_memory(g)
    # every intermediate runs in place over the first one
    assert plan.entries == (
        ("input", 0),
        ("arena", 0),
        ("arena", 0),
        ("arena", 0),
        ("output", 0),
    )
    assert plan.arena_size == 64 and plan.naive_size == 3 * 64
    check_sound(g, plan)


def test_views_share_bytes_and_outside_views_alias():
    g = chain(
        ("Flatten", (2, 8)), ("Relu", (2, 8)), ("Reshape", (16,)), ("Relu", (16,))
    )
    plan = plan_memory(g)
    assert plan.entries[1] == ("alias", 0)  # a view of the caller's input
    assert plan.entries[2] == ("arena", 0)
    assert plan.entries[3] == ("arena", 0)  # a view of an arena tensor
    check_sound(g, plan)


def test_a_tensor_read_later_is_not_overwritten():
    nodes = (
        byoc.JSONGraphNode("input", "x", shapes=((4,),), dtypes=(F32,)),
        kernel("Relu", (0,), (4,)),  # 1: read again by 3
        kernel("Sigmoid", (1,), (4,)),  # 2: must not run in place over 1
        kernel("Add", (1, 2), (4,)),  # 3: may run in place over 1 or 2
        kernel("Relu", (3,), (4,)),
    )
    g = byoc.Graph(nodes, (E(4),))
    plan = plan_memory(g)
    assert plan.entries[1] != plan.entries[2]
    check_sound(g, plan)


def test_meta_round_trip():
    plan = plan_memory(chain(("Relu", (2, 8))))
    meta = plan.to_meta()
    assert list(meta)[0] == "arena_size"  # what byoc inspect shows first
    assert MemoryPlan.from_meta(meta) == plan
    assert byoc.attrs.is_plain(meta)


# --------------------------------------------------------------------------
# random graphs
# --------------------------------------------------------------------------

UNARY = ("Relu", "Sigmoid", "Softmax", "Flatten", "Reshape")
BINARY = ("Add", "Mul", "MatMul")


@st.composite
def graphs(draw: st.DrawFn) -> tuple[byoc.Graph, dict[str, np.ndarray]]:
    """Random DAGs over a few [rows, n] shapes, with constants and several heads."""
    rows = draw(st.integers(1, 3))
    widths = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    nodes: list[byoc.JSONGraphNode] = []
    consts: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    for i in range(draw(st.integers(1, 2))):
        nodes.append(
            byoc.JSONGraphNode(
                "input", f"x{i}", shapes=((rows, widths[0]),), dtypes=(F32,)
            )
        )
    for _ in range(draw(st.integers(1, 10))):
        tensors = [i for i, nd in enumerate(nodes) if nd.op != "const"]
        a = draw(st.sampled_from(tensors))
        shape_a = nodes[a].shapes[0]
        if draw(st.booleans()):
            op = draw(st.sampled_from(UNARY))
            shape = shape_a
            if op == "Flatten":  # with axis=0, below
                shape = (1, math.prod(shape_a))
            elif op == "Reshape":
                shape = (shape_a[1], shape_a[0])
            inputs: tuple[int, ...] = (a,)
            if op == "Reshape":
                name = f"shape{len(nodes)}"
                consts[name] = np.array(shape, np.int64)
                nodes.append(
                    byoc.JSONGraphNode("const", name, shapes=((2,),), dtypes=("int64",))
                )
                inputs = (a, len(nodes) - 1)
            nodes.append(kernel(op, inputs, shape))
            if op == "Flatten":
                nodes[-1] = dataclasses.replace(nodes[-1], attrs={"axis": 0})
            continue
        op = draw(st.sampled_from(BINARY))
        if op == "MatMul":
            n = draw(st.sampled_from(widths))
            name = f"w{len(nodes)}"
            consts[name] = rng.standard_normal((shape_a[1], n)).astype(np.float32)
            nodes.append(
                byoc.JSONGraphNode(
                    "const", name, shapes=((shape_a[1], n),), dtypes=(F32,)
                )
            )
            nodes.append(kernel(op, (a, len(nodes) - 1), (shape_a[0], n)))
            continue
        same = [i for i in tensors if nodes[i].shapes[0] == shape_a]
        b = draw(st.sampled_from(same))
        nodes.append(kernel(op, (a, b), shape_a))
    kernels = [i for i, nd in enumerate(nodes) if nd.op == "kernel"]
    heads = draw(
        st.lists(st.sampled_from(kernels), min_size=1, max_size=3, unique=True)
    )
    if kernels[-1] not in heads:
        heads.append(kernels[-1])
    return byoc.Graph(tuple(nodes), tuple(E(h) for h in heads)), consts


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_random_plans_are_sound(case):
    graph, _ = case
    check_sound(graph, plan_memory(graph))


def numpy_run(
    graph: byoc.Graph, consts: dict[str, np.ndarray], feeds: dict[str, np.ndarray]
) -> list[np.ndarray]:
    values: list[np.ndarray] = []
    for nd in graph.nodes:
        if nd.op == "input":
            values.append(feeds[nd.name])
            continue
        if nd.op == "const":
            values.append(consts[nd.name])
            continue
        args = [values[e.node_id].astype(np.float64) for e in nd.inputs]
        if nd.name == "Relu":
            y = np.maximum(args[0], 0)
        elif nd.name == "Sigmoid":
            y = 1 / (1 + np.exp(-args[0]))
        elif nd.name == "Softmax":
            e = np.exp(args[0] - args[0].max(-1, keepdims=True))
            y = e / e.sum(-1, keepdims=True)
        elif nd.name in VIEW_OPS:
            y = args[0].reshape(nd.shapes[0])
        elif nd.name == "Add":
            y = args[0] + args[1]
        elif nd.name == "Mul":
            y = args[0] * args[1]
        else:
            y = args[0] @ args[1]
        values.append(y.astype(np.float32))
    return [values[h.node_id] for h in graph.heads]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(graphs())
def test_random_graphs_run_in_c_like_numpy(runtime, case):
    graph, consts = case
    engine = MicroBackend("micro_0", graph)  # no meta: init plans it
    engine.build(consts)
    rng = np.random.default_rng(0)
    feeds = {
        graph.nodes[i].name: rng.standard_normal(graph.nodes[i].shapes[0]).astype(
            np.float32
        )
        for i in graph.input_ids
    }
    got = engine(feeds)
    for name, want in zip(
        graph.output_names, numpy_run(graph, consts, feeds), strict=True
    ):
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-5)


def test_multi_output_nodes_are_refused_by_the_planner():
    nodes = (
        byoc.JSONGraphNode("input", "x", shapes=((4,),), dtypes=(F32,)),
        byoc.JSONGraphNode(
            "kernel", "Split", (E(0),), shapes=((2,), (2,)), dtypes=(F32, F32)
        ),
    )
    with pytest.raises(ValueError, match="2 outputs"):
        plan_memory(byoc.Graph(nodes, (E(1),)))
