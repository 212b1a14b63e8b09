"""Symbolic dims: dnnl claims batch- and sequence-polymorphic subgraphs and
builds one engine per input shape at run time (byoc_dnnl.dynamic)."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import byoc
from byoc_dnnl import dynamic, tune

from .helpers import assert_close, graph_model, run_ort

R = np.random.default_rng(11)


def w(*shape: int) -> np.ndarray:
    return (R.standard_normal(shape) * 0.3).astype(np.float32)


def _cnn():  # noqa: ANN202 - batch "N": conv blocks, a residual, pooling, a head
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "r"], ["sum"]),
        helper.make_node(
            "MaxPool", ["sum"], ["p"], kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    inits = {
        "w1": w(8, 3, 3, 3),
        "s": w(8),
        "b": w(8),
        "m": w(8),
        "v": np.abs(w(8)) + 0.5,
        "w2": w(8, 8, 3, 3),
        "fw": w(5, 8),
        "fb": w(5),
    }
    return graph_model(nodes, {"x": ("N", 3, 12, 12)}, ["y"], inits)


def _block():  # noqa: ANN202 - (B, S, 16) rows: linear, softmax, layer norm
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("Add", ["q", "bq"], ["qb"]),
        helper.make_node("Softmax", ["qb"], ["sm"], axis=-1),
        helper.make_node("Add", ["sm", "x"], ["res"]),
        helper.make_node(
            "LayerNormalization", ["res", "g", "be"], ["y"], axis=-1, epsilon=1e-5
        ),
    ]
    inits = {"wq": w(16, 16), "bq": w(16), "g": w(16), "be": w(16)}
    return graph_model(nodes, {"x": ("B", "S", 16)}, ["y"], inits)


def _x(*shape: int) -> dict[str, np.ndarray]:
    return {"x": R.standard_normal(shape).astype(np.float32)}


def _shapes(mod: byoc.Module) -> dynamic.Specializations:
    engine = mod.get_function(mod.symbols[0]).engine()
    shapes = engine._shapes  # type: ignore[attr-defined]
    assert shapes is not None
    return shapes


def test_symbolic_batch_runs_on_dnnl_for_every_batch() -> None:
    model = _cnn()
    mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
    assert [r.backend for r in mod.subgraphs] == ["dnnl"], mod.placement()
    for n in (1, 3, 2, 3):
        feeds = _x(n, 3, 12, 12)
        assert_close(mod.run(feeds)["y"], run_ort(model, feeds)[0], 1e-4, f"N={n}")
    shapes = _shapes(mod)
    assert shapes.builds == 3  # N=3 again reuses its engine
    assert [dict(k)["N"] for k, _ in shapes.built.values()] == [1, 2, 3]  # LRU order
    # Outputs of symbolic shape: the engine allocates them (run, not run_into).
    assert not mod.get_function(mod.symbols[0]).engine().fills_outputs


def test_symbolic_batch_and_sequence() -> None:
    model = _block()
    mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
    assert [r.backend for r in mod.subgraphs] == ["dnnl"], mod.placement()
    for b, s in ((1, 5), (2, 7), (1, 1)):
        feeds = _x(b, s, 16)
        assert_close(mod.run(feeds)["y"], run_ort(model, feeds)[0], 1e-4, f"{b}x{s}")
    assert _shapes(mod).builds == 3


def test_max_shapes_keeps_the_most_recent_engines() -> None:
    model = _cnn()
    opts = {"dnnl": {"max_shapes": 2, "tune": False, "conv_layout": "native"}}
    mod = byoc.compile(model, backends=["dnnl"], quiet=True, options=opts)
    for n in (1, 2, 3, 1):
        feeds = _x(n, 3, 12, 12)
        assert_close(mod.run(feeds)["y"], run_ort(model, feeds)[0], 1e-4, f"N={n}")
    shapes = _shapes(mod)
    assert [dict(k)["N"] for k, _ in shapes.built.values()] == [3, 1]
    assert shapes.builds == 4  # N=1 was evicted by N=3, then built again


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "4"])
def test_bad_max_shapes_option_fails_init(bad: object) -> None:
    mod = byoc.compile(
        _cnn(), backends=["dnnl"], quiet=True, options={"dnnl": {"max_shapes": bad}}
    )
    with pytest.raises(byoc.BackendError, match="max_shapes"):
        mod.init()


def test_concurrent_runs_of_different_shapes_are_correct() -> None:
    model = _cnn()
    mod = byoc.compile(model, backends=["dnnl"], quiet=True, options={"dnnl": {}})
    cases = {n: _x(n, 3, 12, 12) for n in (1, 2, 3, 4)}
    want = {n: run_ort(model, f)[0] for n, f in cases.items()}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for _ in range(3):
                assert_close(mod.run(cases[n])["y"], want[n], 1e-4, f"N={n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2, 3, 4) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert _shapes(mod).builds == 4  # each shape built once, under the lock


def test_saved_engines_carry_every_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _cnn()
    opts = {"dnnl": {"cache": False}}
    mod = byoc.compile(model, backends=["dnnl"], quiet=True, options=opts)
    feeds = {n: _x(n, 3, 12, 12) for n in (1, 2)}
    first = {n: mod.run(f)["y"] for n, f in feeds.items()}
    path = mod.save(tmp_path / "m.byoc", engines=True)

    def no_timing(runs: object) -> dict[str, float]:
        raise AssertionError("an imported shape was timed again")

    monkeypatch.setattr(tune, "time_runs", no_timing)
    loaded = byoc.load(path, options=opts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unusable blob would warn
        for n, f in feeds.items():
            np.testing.assert_array_equal(loaded.run(f)["y"], first[n])
    for _, engine in _shapes(loaded).built.values():
        assert engine.layout_choice.prebuilt


def test_an_engine_blob_for_other_shapes_is_refused(tmp_path: Path) -> None:
    static = byoc.compile(
        graph_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (2, 3)}, ["y"], {}),
        backends=["dnnl"],
        quiet=True,
    )
    symbolic = byoc.compile(
        graph_model(
            [helper.make_node("Relu", ["x"], ["y"])], {"x": ("N", 3)}, ["y"], {}
        ),
        backends=["dnnl"],
        quiet=True,
    )
    static_blob = static.get_function(static.symbols[0]).engine().export_engine()
    engine = symbolic.get_function(symbolic.symbols[0]).engine()
    assert engine.export_engine() is not None  # nothing built yet: an empty list
    fresh = type(engine)(engine.symbol, engine.graph, {}, {})
    with pytest.raises(ValueError, match="other shapes"):
        fresh.import_engine(static_blob, {})


def test_describe_before_any_run_says_why() -> None:
    mod = byoc.compile(_cnn(), backends=["dnnl"], quiet=True)
    engine = mod.get_function(mod.symbols[0]).engine()
    with pytest.raises(LookupError, match="built per input shape"):
        engine.describe()  # type: ignore[attr-defined]
    mod.run(_x(2, 3, 12, 12))
    assert engine.describe()  # type: ignore[attr-defined]


@pytest.mark.parametrize("target", [[-1, 8 * 6 * 6], [0, -1], [-1, 8, 36]])
def test_a_reshape_to_a_constant_shape_is_sized_at_run_time(target: list[int]) -> None:
    """ONNX names the Reshape's new dim unk__0; the engine computes its size."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["a", "shape"], ["r"]),
        helper.make_node("Relu", ["r"], ["y"]),
    ]
    inits = {"w1": w(8, 3, 3, 3), "shape": np.array(target, np.int64)}
    model = graph_model(nodes, {"x": ("N", 3, 6, 6)}, ["y"], inits)
    mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
    assert [r.backend for r in mod.subgraphs] == ["dnnl"], mod.explain()
    for n in (1, 3):
        feeds = _x(n, 3, 6, 6)
        assert_close(mod.run(feeds)["y"], run_ort(model, feeds)[0], 1e-4, f"N={n}")


def test_a_concat_along_a_symbolic_dim_is_declined_with_the_reason() -> None:
    model = graph_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Concat", ["a", "z"], ["y"], axis=0),
        ],
        {"x": ("N", 4), "z": ("M", 4)},
        ["y"],
        {},
    )
    mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
    reasons = mod.explain()
    assert "dnnl: Concat output dims ['unk__0'] are not dims of its inputs" in reasons
    assert [r.backend for r in mod.subgraphs] == ["dnnl", "ref"], mod.placement()
    feeds = {**_x(2, 4), "z": R.standard_normal((3, 4)).astype(np.float32)}
    assert_close(mod.run(feeds)["y"], run_ort(model, feeds)[0], 1e-4)


def test_reshape_shape_follows_onnx() -> None:
    assert dynamic.reshape_shape((2, 3, 4), [0, -1], False) == (2, 12)
    assert dynamic.reshape_shape((2, 3, 4), [-1, 4], False) == (6, 4)
    assert dynamic.reshape_shape((0, 3), [0, 3], True) == (0, 3)
    for x, target in (
        ((2, 3), [-1, -1]),
        ((2, 3), [4, -1]),
        ((2, 3), [5]),
        ((2, 3), [-2, 3]),
    ):
        with pytest.raises(ValueError):
            dynamic.reshape_shape(x, target, False)


def _info(ins: list[tuple], outs: list[tuple]) -> byoc.NodeInfo:
    node = byoc.JSONGraphNode("kernel", "Relu", shapes=tuple(outs), dtypes=("float32",))
    return byoc.NodeInfo(
        node,
        tuple(byoc.TensorSpec(s, "float32") for s in ins),
        tuple(byoc.TensorSpec(s, "float32") for s in outs),
    )


def test_symbolic_support_rules() -> None:
    seen: list[tuple] = []

    def static(info: byoc.NodeInfo) -> byoc.Support:
        seen.append(info.inputs[0].shape)  # type: ignore[union-attr]
        return byoc.Support.yes()

    ok = dynamic.symbolic_support(_info([("N", 4)], [("N", 4)]), static)
    assert ok and seen == [(2, 4), (3, 4)]
    seen.clear()
    unknown = dynamic.symbolic_support(_info([("?", 4)], [("?", 4)]), static)
    assert not unknown and "unknown size" in unknown.reason
    made = dynamic.symbolic_support(_info([("N", 4)], [("unk__1", 4)]), static)
    assert not made and "['unk__1']" in made.reason

    def only_two(info: byoc.NodeInfo) -> byoc.Support:
        shape = info.inputs[0].shape  # type: ignore[union-attr]
        return byoc.Support.yes() if shape[0] == 2 else byoc.Support.no("dnnl: no")

    refused = dynamic.symbolic_support(_info([("N", 4)], [("N", 4)]), only_two)
    assert (
        not refused and refused.reason == "dnnl: no (with the symbolic dims ['N'] = 3)"
    )


def test_engines_of_several_shapes_share_their_packed_weights() -> None:
    """Each shape's engine packs the weights again only where the layout differs."""
    opts = {"dnnl": {"tune": False, "conv_layout": "native"}}
    mod = byoc.compile(_cnn(), backends=["dnnl"], quiet=True, options=opts)
    for n in (2, 3):
        mod.run(_x(n, 3, 12, 12))
    programs = [e._program for _, e in _shapes(mod).built.values()]

    def packed(program: object) -> dict[int, np.ndarray]:
        return {
            id(b.key): b.key
            for b in program.buffers  # type: ignore[attr-defined]
            if b.kind == "const" and b.key is not None and b.key.nbytes > 1000
        }

    first, second = (packed(p) for p in programs)
    assert first and set(first) == set(second)  # the very same arrays


def _computed_reshape():  # noqa: ANN202 - the exporters' Shape -> Gather -> Concat
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Gather", ["xs", "i0"], ["b"], axis=0),
        helper.make_node("Gather", ["xs", "i1"], ["s"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax"], ["b1"]),
        helper.make_node("Unsqueeze", ["s", "ax"], ["s1"]),
        helper.make_node("Concat", ["b1", "s1", "heads"], ["split"], axis=0),
        helper.make_node("Reshape", ["q", "split"], ["qh"]),
        helper.make_node("Transpose", ["qh"], ["qt"], perm=[0, 2, 1, 3]),
        helper.make_node("Relu", ["qt"], ["qr"]),
        helper.make_node("Transpose", ["qr"], ["qb"], perm=[0, 2, 1, 3]),
        helper.make_node("Concat", ["b1", "s1", "width"], ["merge"], axis=0),
        helper.make_node("Reshape", ["qb", "merge"], ["m"]),
        helper.make_node("Add", ["m", "x"], ["y"]),
    ]
    inits = {
        "wq": w(16, 16),
        "i0": np.array(0, np.int64),
        "i1": np.array(1, np.int64),
        "ax": np.array([0], np.int64),
        "heads": np.array([2, 8], np.int64),
        "width": np.array([16], np.int64),
    }
    return graph_model(nodes, {"x": ("B", "S", 16)}, ["y"], inits)


def test_a_reshape_to_a_shape_computed_at_run_time_runs_on_dnnl(
    tmp_path: Path,
) -> None:
    """byoc folds the shape arithmetic into a host value; dnnl's engine for
    each shape takes the value it receives as a constant."""
    model = _computed_reshape()
    mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
    assert [r.backend for r in mod.subgraphs] == ["dnnl"], mod.explain()
    graph = mod.subgraphs[0].graph
    assert [graph.nodes[i].dtypes[0] for i in graph.input_ids].count("int64") == 2
    cases = {(b, s): _x(b, s, 16) for b, s in ((1, 3), (2, 5))}
    for (b, s), feeds in cases.items():
        assert_close(mod.run(feeds)["y"], run_ort(model, feeds)[0], 1e-4, f"{b}x{s}")
    loaded = byoc.load(mod.save(tmp_path / "m.byoc", engines=True))
    for shape, feeds in cases.items():
        assert_close(loaded.run(feeds)["y"], run_ort(model, feeds)[0], 1e-4, f"{shape}")
    assert all(e.layout_choice.prebuilt for _, e in _shapes(loaded).built.values())
