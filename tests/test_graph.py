"""Graph model: invariants, TVM layout fields, exact JSON round trips."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byoc import (
    FormatError,
    Graph,
    GraphError,
    JSONGraphNode,
    JSONGraphNodeEntry,
    Sym,
    TensorAttr,
)
from byoc.graph import GRAPH_FORMAT_VERSION

E = JSONGraphNodeEntry


def small_graph() -> Graph:
    return Graph(
        (
            JSONGraphNode("input", "x", shapes=(("batch", 4),), dtypes=("float32",)),
            JSONGraphNode("const", "w", shapes=((4, 4),), dtypes=("float32",)),
            JSONGraphNode(
                "kernel",
                "Split",
                (E(0),),
                {"axis": 1, "num_outputs": 2},
                shapes=(("batch", 2), ("batch", 2)),
                dtypes=("float32", "float32"),
                label="split",
            ),
            JSONGraphNode(
                "kernel",
                "MatMul",
                (E(0), E(1)),
                shapes=(("batch", 4),),
                dtypes=("float32",),
            ),
        ),
        (E(2, 1), E(3)),
        ("b", "mm"),
    )


def test_tvm_layout_fields():
    g = small_graph()
    assert g.arg_nodes == (0, 1)
    assert g.node_row_ptr == (0, 1, 2, 4, 5)
    assert g.entry_id(E(2, 1)) == 3
    assert g.input_names == ("x",)
    assert g.consumers == ((2, 3), (3,), (), ())
    d = g.to_dict()
    assert d["version"] == GRAPH_FORMAT_VERSION
    assert d["heads"] == [[2, 1, 0], [3, 0, 0]]
    assert d["nodes"][2]["inputs"] == [[0, 0, 0]]


@pytest.mark.parametrize(
    ("nodes", "heads", "match"),
    [
        (
            (
                JSONGraphNode(
                    "kernel", "Relu", (E(1),), shapes=((),), dtypes=("float32",)
                ),
                JSONGraphNode("input", "x", shapes=((),), dtypes=("float32",)),
            ),
            (),
            "earlier node",
        ),
        (
            (
                JSONGraphNode("input", "x", shapes=((),), dtypes=("float32",)),
                JSONGraphNode(
                    "kernel", "Relu", (E(0, 1),), shapes=((),), dtypes=("float32",)
                ),
            ),
            (),
            "no such output",
        ),
        (
            (JSONGraphNode("input", "x", shapes=((),), dtypes=("float32",)),),
            (E(0, 3),),
            "head",
        ),
        (
            (JSONGraphNode("input", "x", shapes=((),), dtypes=()),),
            (),
            "one shape and one dtype",
        ),
        (
            (
                JSONGraphNode("input", "x", shapes=((),), dtypes=("float32",)),
                JSONGraphNode("input", "x", shapes=((),), dtypes=("float32",)),
            ),
            (),
            "duplicate",
        ),
        (
            (JSONGraphNode("const", "c", (E(0),), shapes=((),), dtypes=("float32",)),),
            (),
            "no inputs",
        ),
    ],
)
def test_invalid_graphs_are_rejected(nodes, heads, match):
    with pytest.raises(GraphError, match=match):
        Graph(nodes, heads)


def test_json_round_trip_is_exact():
    g = small_graph()
    text = g.to_json()
    assert Graph.from_json(text) == g
    assert Graph.from_json(text).to_json() == text


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=GRAPH_FORMAT_VERSION + 1),
        lambda d: d.pop("nodes"),
        lambda d: d["nodes"][0].update(op="bogus"),
        lambda d: d["nodes"][2].update(inputs=[[0, 0]]),
        lambda d: d["nodes"][2].update(inputs=[[9, 0, 0]]),
        lambda d: d["nodes"][2]["attrs"].update(axis=["int", "one"]),
        lambda d: d["nodes"][2]["attrs"].update(axis=["nosuchtag", 1]),
        lambda d: d["nodes"][0].update(shape=[[-1]]),
        lambda d: d.update(node_row_ptr=[0, 1]),
        lambda d: d.update(heads="x"),
    ],
)
def test_malformed_graph_dicts_raise_format_error(mutate):
    d = json.loads(small_graph().to_json())
    mutate(d)
    with pytest.raises(FormatError):
        Graph.from_dict(d)


def test_unparseable_json_raises_format_error():
    with pytest.raises(FormatError):
        Graph.from_json("{not json")
    with pytest.raises(FormatError):
        Graph.from_json("[" * 100000)


names = st.text(min_size=1, max_size=8)
dims = st.one_of(st.integers(0, 64), st.sampled_from(["batch", "seq", "n"]))
finite = st.floats(allow_nan=False, width=64)


def sym_exprs():
    leaf = st.one_of(
        st.integers(-5, 50), st.sampled_from(["batch", "seq"]).map(Sym.dim)
    )
    return st.recursive(
        leaf,
        lambda inner: st.builds(
            lambda op, a, b: Sym(op, (a, b)),
            st.sampled_from(["add", "sub", "mul", "div", "max", "min"]),
            inner,
            inner,
        ),
        max_leaves=6,
    ).filter(lambda v: isinstance(v, Sym))


def tensor_attrs():
    return st.builds(
        lambda dt, shape, seed: TensorAttr.from_array(
            np.random.default_rng(seed).integers(0, 100, shape).astype(dt)
        ),
        st.sampled_from(["float32", "int64", "uint8", "bool", "float16"]),
        st.lists(st.integers(0, 3), max_size=3),
        st.integers(0, 1000),
    )


attr_values = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(-(2**62), 2**62),
        finite,
        st.text(max_size=10),
        st.binary(max_size=16),
        st.sampled_from(["float32", "int8"]).map(np.dtype),
        tensor_attrs(),
        sym_exprs(),
        st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=4).map(tuple),
        st.lists(finite, min_size=1, max_size=4).map(tuple),
        st.lists(st.text(max_size=3), min_size=1, max_size=4).map(tuple),
    ),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=8,
)


@st.composite
def graphs(draw, depth=0):
    n_inputs = draw(st.integers(1, 3))
    nodes = []
    for i in range(n_inputs):
        op = draw(st.sampled_from(["input", "const"]))
        shape = tuple(draw(st.lists(dims, max_size=3)))
        nodes.append(JSONGraphNode(op, f"t{i}", shapes=(shape,), dtypes=("float32",)))
    for _ in range(draw(st.integers(0, 5))):
        k = len(nodes)
        ins = tuple(
            draw(st.builds(E, st.integers(0, k - 1), st.just(0), st.integers(0, 2)))
            for _ in range(draw(st.integers(0, 3)))
        )
        ins = tuple(E(e.node_id, 0, e.version) for e in ins)
        attrs = draw(st.dictionaries(names, attr_values, max_size=3))
        if depth == 0 and draw(st.booleans()):
            attrs["body"] = draw(graphs(depth=1))
        outs = draw(st.integers(1, 2))
        nodes.append(
            JSONGraphNode(
                "kernel",
                draw(names),
                ins,
                attrs,
                shapes=tuple(
                    tuple(draw(st.lists(dims, max_size=3))) for _ in range(outs)
                ),
                dtypes=tuple(
                    draw(st.sampled_from(["float32", "int64"])) for _ in range(outs)
                ),
                label=draw(st.text(max_size=5)),
            )
        )
    heads = tuple(
        E(draw(st.integers(0, len(nodes) - 1))) for _ in range(draw(st.integers(0, 3)))
    )
    names_ = tuple(f"o{i}" for i in range(len(heads))) if draw(st.booleans()) else ()
    return Graph(tuple(nodes), heads, names_)


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_random_graphs_round_trip_exactly_through_json(g):
    text = g.to_json()
    back = Graph.from_json(text)
    assert back == g
    assert back.to_json() == text


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_random_graphs_round_trip_through_msgpack(g):
    import msgpack

    packed = msgpack.packb(g.to_dict(), use_bin_type=True)
    assert Graph.from_dict(msgpack.unpackb(packed, raw=False)) == g


def test_bind_dims_reads_symbolic_sizes_from_input_shapes():
    g = small_graph()
    assert g.bind_dims({"x": (3, 4)}) == {"batch": 3}
    with pytest.raises(ValueError, match="axis 1"):
        g.bind_dims({"x": (3, 5)})
    with pytest.raises(ValueError, match="expected"):
        g.bind_dims({"x": (3, 4, 1)})


def test_bind_dims_rejects_one_dim_with_two_sizes():
    g = Graph(
        (
            JSONGraphNode("input", "a", shapes=(("n", 2),), dtypes=("float32",)),
            JSONGraphNode("input", "b", shapes=(("n", 2),), dtypes=("float32",)),
            JSONGraphNode(
                "kernel", "Add", (E(0), E(1)), shapes=(("n", 2),), dtypes=("float32",)
            ),
        ),
        (E(2),),
    )
    assert g.bind_dims({"a": (5, 2), "b": (5, 2)}) == {"n": 5}
    with pytest.raises(ValueError, match="'n' is 5 in one input and 6"):
        g.bind_dims({"a": (5, 2), "b": (6, 2)})


def test_with_dims_specializes_every_shape_and_keeps_the_rest():
    body = Graph(
        (
            JSONGraphNode("input", "i", shapes=(("batch", 4),), dtypes=("float32",)),
            JSONGraphNode(
                "kernel", "Relu", (E(0),), shapes=(("batch", 4),), dtypes=("float32",)
            ),
        ),
        (E(1),),
    )
    g = small_graph()
    nodes = (*g.nodes[:3], dataclasses.replace(g.nodes[3], attrs={"body": body}))
    g = Graph(nodes, g.heads, g.head_names)
    s = g.with_dims({"batch": 3, "unused": 9})
    assert [n.shapes for n in s.nodes] == [
        ((3, 4),),
        ((4, 4),),
        ((3, 2), (3, 2)),
        ((3, 4),),
    ]
    assert s.nodes[3].attrs["body"].nodes[1].shapes == ((3, 4),)
    assert [n.label for n in s.nodes] == [n.label for n in g.nodes]
    assert s.heads == g.heads and s.head_names == g.head_names
    assert g.with_dims({}) == g  # nothing bound: the same graph
    assert Graph.from_json(s.to_json()) == s
