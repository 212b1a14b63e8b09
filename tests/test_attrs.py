"""Attributes: built-in encodings, symbolic expressions, plugin codecs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import byoc
from byoc import (
    AttrCodec,
    FormatError,
    Graph,
    JSONGraphNode,
    JSONGraphNodeEntry,
    Sym,
    TensorAttr,
)
from byoc.attrs import decode_attr, encode_attr, evaluate


@pytest.mark.parametrize(
    "value",
    [
        True,
        0,
        -7,
        2**62,
        1.5,
        -0.0,
        "héllo",
        b"\x00\xff",
        (1, 2),
        (1.0, 2.5),
        ("a", "b"),
        (),
        (1, "a", 2.0),
        np.dtype("float16"),
        Sym.dim("seq") * 2 - 1,
        TensorAttr.from_array(np.arange(6, dtype=np.int32).reshape(2, 3)),
    ],
)
def test_builtin_values_round_trip(value):
    encoded = encode_attr(value, {})
    assert decode_attr(encoded, {}) == value


def test_non_finite_floats_round_trip_as_json_safe_strings():
    for x in (math.inf, -math.inf):
        assert encode_attr(x, {}) == ["float", repr(x)]
        assert decode_attr(encode_attr(x, {}), {}) == x
    assert math.isnan(decode_attr(encode_attr(math.nan, {}), {}))


def test_lists_must_be_tuples():
    with pytest.raises(TypeError, match="tuples"):
        encode_attr([1, 2], {})


def test_integers_must_fit_in_int64():
    with pytest.raises(ValueError, match="int64"):
        encode_attr(2**63, {})
    with pytest.raises(ValueError, match="int64"):
        encode_attr((1, -(2**64)), {})


def test_unknown_types_ask_for_a_codec():
    with pytest.raises(TypeError, match="register an AttrCodec"):
        encode_attr(object(), {})


def test_sym_arithmetic_folds_and_evaluates():
    seq = Sym.dim("seq")
    assert seq + 0 is seq and seq * 1 is seq
    assert Sym.binary("add", 2, 3) == 5
    expr = (seq - 1) * 2
    assert evaluate(expr, {"seq": 5}) == 8
    assert set(expr.dims()) == {"seq"}
    assert str(expr) == "((seq - 1) * 2)"
    # ONNX integer Div truncates toward zero
    assert evaluate(Sym("div", (Sym.dim("a"), 2)), {"a": -3}) == -1
    with pytest.raises(byoc.InputError, match="needs dim 'seq'"):
        evaluate(seq, {})
    with pytest.raises(byoc.InputError, match="divides by zero"):
        evaluate(Sym("div", (1, Sym.dim("z"))), {"z": 0})


@given(st.integers(-1000, 1000), st.integers(-1000, 1000).filter(bool))
def test_sym_div_matches_c_truncation(a, b):
    assert evaluate(Sym("div", (Sym.dim("a"), Sym.dim("b"))), {"a": a, "b": b}) == int(
        a / b
    )


@pytest.mark.parametrize(
    "bad",
    [
        ["int"],
        ["int", "x"],
        ["ints", [1, "a"]],
        ["float", "zero"],
        ["bytes", "!!"],
        ["tensor", ["float32", [2], "AAAA"]],
        ["expr", ["dim"]],
        ["expr", ["pow", 1, 2]],
        ["list", "nope"],
        "plain",
        ["dtype", "complex64"],
    ],
)
def test_malformed_payloads_raise_format_error(bad):
    with pytest.raises(FormatError):
        decode_attr(bad, {})


def test_deep_nesting_is_refused():
    value = ["int", 1]
    for _ in range(100):
        value = ["list", [value]]
    with pytest.raises(FormatError, match="too deeply"):
        decode_attr(value, {})


@dataclass(frozen=True)
class Tile:
    """A vendor attribute type the core does not know."""

    m: int
    n: int


TILE_CODEC = AttrCodec(
    "acme.tile", Tile, lambda t: {"m": t.m, "n": t.n}, lambda d: Tile(d["m"], d["n"])
)


class CodecPlugin:
    @byoc.hookimpl
    def byoc_register_codecs(self, register):
        register(TILE_CODEC)


def tile_graph() -> Graph:
    return Graph(
        (
            JSONGraphNode("input", "x", shapes=((2,),), dtypes=("float32",)),
            JSONGraphNode(
                "kernel",
                "acme.Op",
                (JSONGraphNodeEntry(0),),
                {"tile": Tile(4, 8)},
                shapes=((2,),),
                dtypes=("float32",),
            ),
        ),
        (JSONGraphNodeEntry(1),),
    )


def test_plugin_codec_round_trips_through_the_registry(empty_registry):
    empty_registry.add_plugin(CodecPlugin(), "acme-codecs")
    codec = empty_registry.codecs()["acme.tile"]
    assert codec.plugin == "acme-codecs"
    g = tile_graph()
    assert g.to_dict()["nodes"][1]["attrs"]["tile"] == ["acme.tile", {"m": 4, "n": 8}]
    assert Graph.from_json(g.to_json()) == g


def test_missing_codec_names_the_plugin_to_install():
    data = tile_graph().to_dict({"acme.tile": TILE_CODEC})
    with pytest.raises(FormatError, match="needs the plugin 'acme-codecs'") as info:
        Graph.from_dict(data, {}, {"acme.tile": "acme-codecs"})
    assert info.value.plugin == "acme-codecs"
    with pytest.raises(FormatError, match="unknown attribute type 'acme.tile'"):
        Graph.from_dict(data, {}, {})


def test_codec_returning_non_plain_data_is_a_plugin_error():
    bad = AttrCodec("acme.bad", Tile, lambda t: object(), lambda d: d, "acme")
    with pytest.raises(byoc.PluginError, match="acme.bad.*non-plain"):
        encode_attr(Tile(1, 2), {"acme.bad": bad})


def test_codec_tags_must_be_namespaced(empty_registry):
    class Bad:
        @byoc.hookimpl
        def byoc_register_codecs(self, register):
            register(AttrCodec("int", Tile, str, str))

    empty_registry.add_plugin(Bad(), "bad-codecs")
    assert "int" not in empty_registry.codecs()
    (row,) = empty_registry.backends()
    assert row.name == "bad-codecs" and not row.available
    assert "tags must contain a dot" in row.reason


class TilingBackend(byoc.Backend):
    """Lowers its subgraphs by tagging every kernel with a vendor Tile attribute."""

    name = "tiling"

    @classmethod
    def supports(cls, node):
        return byoc.Support.yes()

    @classmethod
    def lower(cls, graph, consts):
        from dataclasses import replace

        nodes = tuple(
            replace(n, attrs={**n.attrs, "tile": Tile(4, 8)}) if n.op == "kernel" else n
            for n in graph.nodes
        )
        return Graph(nodes, graph.heads, graph.head_names)

    def init(self, consts):
        assert all(
            n.attrs["tile"] == Tile(4, 8) for n in self.graph.nodes if n.op == "kernel"
        )

    def run(self, inputs):
        (x,) = inputs.values()
        return [np.maximum(x, 0)]


class TilingPlugin(CodecPlugin):
    @byoc.hookimpl
    def byoc_register_backends(self, register):
        register(TilingBackend)


def test_vendor_attributes_travel_through_the_artifact(empty_registry, tmp_path):
    from conftest import make_model
    from onnx import helper

    empty_registry.add_plugin(TilingPlugin(), "acme-tiling")
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [("x", [3])], [("y", [3])]
    )
    path = byoc.compile(model, backends=["tiling"], quiet=True).save(
        tmp_path / "t.byoc"
    )
    loaded = byoc.load(path, eager=True)
    (kernel,) = [n for n in loaded.subgraphs[0].graph.nodes if n.op == "kernel"]
    assert kernel.attrs["tile"] == Tile(4, 8)
    np.testing.assert_array_equal(
        loaded.run({"x": np.array([-1, 0, 2], np.float32)})["y"], [0, 0, 2]
    )
    with byoc.use_registry(byoc.Registry()):  # the plugin is gone
        with pytest.raises(FormatError, match="needs the plugin 'acme-tiling'"):
            byoc.load(path)


class BadLowering(TilingBackend):
    name = "badlower"

    @classmethod
    def lower(cls, graph, consts):
        return Graph(graph.nodes, graph.heads[:0])


def test_lowering_must_keep_the_signature(empty_registry):
    from conftest import Plugin, make_model
    from onnx import helper

    empty_registry.add_plugin(Plugin(BadLowering), "bad")
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [("x", [3])], [("y", [3])]
    )
    with pytest.raises(byoc.BackendError, match="lowered to a graph with other inputs"):
        byoc.compile(model, backends=["badlower"], quiet=True)
