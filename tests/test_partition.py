"""Partitioner: assignment by priority, convex regions, patterns, golden symbols."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AccelBackend, NumpyBackend, Plugin, make_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

import byoc


def summary(mod: byoc.Module) -> list[tuple[str, list[str]]]:
    """(symbol, [labels of kernels]) per subgraph, composites shown by name."""
    return [
        (
            rec.symbol,
            [
                n.label if "body" not in n.attrs else f"{n.name}({n.label})"
                for n in rec.graph.nodes
                if n.op == "kernel"
            ],
        )
        for rec in mod.subgraphs
    ]


def chain_model(ops_and_inputs, outputs=("y",)):
    nodes = [
        helper.make_node(op, list(ins), [out], name=out)
        for out, op, ins in ops_and_inputs
    ]
    return make_model(nodes, [("x", [2, 3])], [(o, [2, 3]) for o in outputs])


def test_a_path_through_another_backend_keeps_regions_apart(registry):
    # a (accel) -> n (fake) -> b (accel, also reads a): merging a and b would
    # make accel -> fake -> accel a cycle between subgraphs.
    model = chain_model(
        [("a", "Relu", ["x"]), ("n", "Neg", ["a"]), ("y", "Add", ["a", "n"])]
    )
    mod = byoc.compile(model, backends=["accel", "fake"], quiet=True)
    assert summary(mod) == [("accel_0", ["a"]), ("fake_0", ["n"]), ("accel_1", ["y"])]
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    a = np.maximum(x, 0)
    np.testing.assert_array_equal(mod.run({"x": x})["y"], a - a)


def test_independent_branches_fuse_where_they_meet(registry):
    # q, k, v each start at the graph input (no common producer kernel): they
    # must still end in ONE accel region, as in an attention block.
    model = chain_model(
        [
            ("q", "Relu", ["x"]),
            ("k", "Relu", ["x"]),
            ("v", "Relu", ["x"]),
            ("qk", "Add", ["q", "k"]),
            ("y", "Add", ["qk", "v"]),
        ]
    )
    mod = byoc.compile(model, backends=["accel", "fake"], quiet=True)
    assert summary(mod) == [("accel_0", ["q", "k", "v", "qk", "y"])]


def test_golden_partition_of_a_mixed_graph(registry):
    model = chain_model(
        [
            ("r1", "Relu", ["x"]),
            ("e1", "Exp", ["r1"]),
            ("r2", "Relu", ["e1"]),
            ("s1", "Add", ["r2", "r1"]),
            ("n1", "Neg", ["s1"]),
            ("m1", "Mul", ["n1", "x"]),
            ("g1", "Sigmoid", ["m1"]),
            ("y", "Add", ["g1", "s1"]),
        ]
    )
    mod = byoc.compile(model, backends=["accel", "fake"], quiet=True)
    assert summary(mod) == [
        ("accel_0", ["r1"]),
        ("fake_0", ["e1"]),
        ("accel_1", ["r2", "s1"]),
        ("fake_1", ["n1"]),
        ("accel_2", ["accel.mul_sigmoid(g1)", "y"]),
    ]
    assert mod.placement() == (
        "byoc placement: 8 nodes -> accel 6, fake 2; 5 subgraphs: "
        "accel_0(1) fake_0(1) accel_1(2) fake_1(1) accel_2(3)"
    )
    # deterministic: same model and backends -> byte-identical artifact
    again = byoc.compile(model, backends=["accel", "fake"], quiet=True)
    assert again.to_bytes() == mod.to_bytes()
    x = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
    ref = byoc.compile(model, backends=["fake"], quiet=True)
    np.testing.assert_allclose(
        mod.run({"x": x})["y"], ref.run({"x": x})["y"], rtol=1e-6
    )


def test_min_subgraph_size_sends_tiny_regions_to_the_fallback(registry):
    model = chain_model(
        [("a", "Relu", ["x"]), ("n", "Neg", ["a"]), ("y", "Add", ["a", "n"])]
    )
    mod = byoc.compile(
        model, backends=["accel", "fake"], min_subgraph_size=2, quiet=True
    )
    assert summary(mod) == [("fake_0", ["a", "n", "y"])]
    text = mod.explain()
    assert "region smaller than min_subgraph_size" in text


def test_composite_pattern_becomes_one_node_with_a_body(registry):
    model = chain_model([("m", "Mul", ["x", "x"]), ("y", "Sigmoid", ["m"])])
    mod = byoc.compile(model, backends=["accel", "fake"], quiet=True)
    (rec,) = mod.subgraphs
    (node,) = [n for n in rec.graph.nodes if n.op == "kernel"]
    assert node.name == "accel.mul_sigmoid"
    body = node.attrs["body"]
    assert [n.name for n in body.nodes if n.op == "kernel"] == ["Mul", "Sigmoid"]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(mod.run({"x": x})["y"], 1 / (1 + np.exp(-x)), rtol=1e-6)


def test_pattern_is_not_matched_when_an_inner_output_escapes(registry):
    # m is read twice, so Mul+Sigmoid cannot become one kernel; accel runs
    # neither op alone, so both fall back.
    model = chain_model(
        [("m", "Mul", ["x", "x"]), ("s", "Sigmoid", ["m"]), ("y", "Add", ["s", "m"])]
    )
    mod = byoc.compile(model, backends=["accel", "fake"], quiet=True)
    assert summary(mod) == [("fake_0", ["m", "s"]), ("accel_0", ["y"])]


def test_node_nobody_supports_fails_at_compile_time(registry):
    model = chain_model([("a", "Relu", ["x"]), ("y", "Softplus", ["a"])])
    with pytest.raises(byoc.UnsupportedError) as info:
        byoc.compile(model, backends=["accel", "fake"], quiet=True)
    err = info.value
    assert err.op == "Softplus" and err.node == "y"
    assert err.backends == ("accel", "fake")
    assert err.reasons == {
        "accel": "accel: no kernel for Softplus",
        "fake": "fake: no kernel for Softplus",
    }
    assert "Softplus" in str(err) and "accel" in str(err)


class Raising(NumpyBackend):
    name = "raising"
    priority = 20

    @classmethod
    def supports(cls, node):
        raise RuntimeError("support table missing")


class Mute(NumpyBackend):
    name = "mute"
    priority = 20

    @classmethod
    def supports(cls, node):
        return False


def test_broken_support_queries_count_as_declines_with_a_reason(registry):
    registry.add_plugin(Plugin(Raising, Mute), "odd")
    model = chain_model([("y", "Relu", ["x"])])
    mod = byoc.compile(model, backends=["raising", "mute", "fake"], quiet=True)
    assert [r.backend for r in mod.subgraphs] == ["fake"]
    (decision,) = mod.partition.decisions
    assert decision.declined == (
        (
            "raising",
            "raising: support query raised RuntimeError: support table missing",
        ),
        ("mute", "mute: declined without a reason"),
    )


def test_explain_lists_subgraphs_and_fallback_reasons(registry):
    model = chain_model([("a", "Relu", ["x"]), ("y", "Exp", ["a"])])
    mod = byoc.compile(model, backends=["accel", "fake"], quiet=True)
    text = mod.explain()
    assert "subgraph  backend  #nodes  ops" in text
    assert "accel_0   accel    1       Relu" in text
    assert "accel: no kernel for Exp" in text


def test_default_backend_order_is_priority_with_fallback_last(registry):
    assert registry.default_backends() == ["accel", "fake"]
    mod = byoc.compile(chain_model([("y", "Relu", ["x"])]), quiet=True)
    assert [r.backend for r in mod.subgraphs] == ["accel"]


OPS = ["Relu", "Neg", "Add", "Sub", "Identity"]


@st.composite
def random_models(draw):
    """Random DAGs mixing ops accel runs (Relu, Add) with ones it does not."""
    n = draw(st.integers(1, 14))
    tensors = ["x"]
    nodes = []
    for i in range(n):
        op = draw(st.sampled_from(OPS))
        arity = 2 if op in ("Add", "Sub") else 1
        ins = [draw(st.sampled_from(tensors)) for _ in range(arity)]
        nodes.append((f"t{i}", op, ins))
        tensors.append(f"t{i}")
    outs = draw(
        st.lists(st.sampled_from(tensors[1:]), min_size=1, max_size=3, unique=True)
    )
    return nodes, outs


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(spec=random_models(), min_size=st.integers(1, 3))
def test_any_dag_partitions_convexly_and_computes_the_same(registry, spec, min_size):
    nodes, outs = spec
    model = make_model(
        [helper.make_node(op, ins, [out], name=out) for out, op, ins in nodes],
        [("x", [2, 3])],
        [(o, [2, 3]) for o in outs],
    )
    mod = byoc.compile(
        model, backends=["accel", "fake"], min_subgraph_size=min_size, quiet=True
    )
    # every kernel node lands in exactly one subgraph
    placed = sorted(
        n.label for rec in mod.subgraphs for n in rec.graph.nodes if n.op == "kernel"
    )
    used = {d.label for d in mod.partition.decisions}
    assert len(placed) == len(used)
    for rec in mod.subgraphs:
        cls = AccelBackend if rec.backend == "accel" else NumpyBackend
        for node in rec.graph.nodes:
            if node.op == "kernel" and "body" not in node.attrs:
                assert node.name in cls.ops
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    want = byoc.compile(model, backends=["fake"], quiet=True).run({"x": x})
    got = mod.run({"x": x})
    for name in outs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)
