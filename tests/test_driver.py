"""Driver: run, save/load, engine caching, threads, input checks, backend errors."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
from conftest import NumpyBackend, Plugin, make_model, mlp_reference
from onnx import helper

import byoc


def test_compile_run_matches_numpy(registry, mlp_model):
    mod = byoc.compile(mlp_model, backends=["fake"], quiet=True)
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    y = mod.run({"x": x})["y"]
    np.testing.assert_allclose(y, mlp_reference(mlp_model, x), rtol=1e-5, atol=1e-6)


def test_save_load_round_trip_is_identical(registry, mlp_model, tmp_path):
    mod = byoc.compile(mlp_model, backends=["accel", "fake"], quiet=True)
    x = np.random.default_rng(2).standard_normal((5, 8)).astype(np.float32)
    want = mod.run({"x": x})["y"]
    path = mod.save(tmp_path / "m.byoc")
    loaded = byoc.load(path)
    np.testing.assert_array_equal(loaded.run({"x": x})["y"], want)
    again = byoc.Module.from_bytes(mod.to_bytes())
    np.testing.assert_array_equal(again.run({"x": x})["y"], want)
    assert loaded.symbols == mod.symbols


def test_engines_build_lazily_once_and_eagerly_on_request(
    registry, mlp_model, tmp_path
):
    path = byoc.compile(mlp_model, backends=["fake"], quiet=True).save(
        tmp_path / "m.byoc"
    )
    lazy = byoc.load(path)
    assert NumpyBackend.init_calls == 0
    x = np.ones((1, 8), np.float32)
    for _ in range(5):
        lazy.run({"x": x})
    assert NumpyBackend.init_calls == 1
    assert lazy.init_counts == {"fake_0": 1}
    byoc.load(path, eager=True)
    assert NumpyBackend.init_calls == 2


class SlowInit(NumpyBackend):
    """Slow init widens the race window between threads that all run first."""

    name = "slow"

    def init(self, consts):
        import time

        time.sleep(0.05)
        super().init(consts)


def test_concurrent_first_runs_build_each_engine_once(empty_registry, mlp_model):
    empty_registry.add_plugin(Plugin(SlowInit), "slow")
    SlowInit.init_calls = 0
    mod = byoc.compile(mlp_model, backends=["slow"], quiet=True)
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((2, 8)).astype(np.float32) for _ in range(16)]
    results: list[np.ndarray | None] = [None] * 16
    barrier = threading.Barrier(16)

    def worker(i):
        barrier.wait()
        for _ in range(20):
            results[i] = mod.run({"x": xs[i]})["y"]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert SlowInit.init_calls == 1
    for x, y in zip(xs, results, strict=True):
        np.testing.assert_allclose(y, mlp_reference(mlp_model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("feeds", "match"),
    [
        ({}, "missing \\['x'\\]"),
        ({"x": np.ones((1, 8), np.float32), "z": 1}, "unexpected \\['z'\\]"),
        (
            {"x": np.ones((1, 8), np.float64)},
            "dtype float64; the model expects float32",
        ),
        ({"x": np.ones((8,), np.float32)}, "expects rank 2"),
        ({"x": np.ones((1, 7), np.float32)}, "axis 1 must be 8"),
    ],
)
def test_bad_inputs_raise_input_error(registry, mlp_model, feeds, match):
    mod = byoc.compile(mlp_model, backends=["fake"], quiet=True)
    with pytest.raises(byoc.InputError, match=match):
        mod.run(feeds)


def test_inputs_sharing_a_dim_must_agree(registry):
    model = make_model(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        [("a", ["n", 2]), ("b", ["n", 2])],
        [("c", ["n", 2])],
    )
    mod = byoc.compile(model, backends=["fake"], quiet=True)
    with pytest.raises(byoc.InputError, match="dim 'n' is 3 in one input but 4"):
        mod.run({"a": np.ones((3, 2), np.float32), "b": np.ones((4, 2), np.float32)})


def test_run_requires_a_mapping(registry, mlp_model):
    mod = byoc.compile(mlp_model, backends=["fake"], quiet=True)
    with pytest.raises(byoc.InputError, match="dict of input name"):
        mod.run([np.ones((1, 8), np.float32)])


def test_get_function_runs_one_subgraph(registry, mlp_model):
    mod = byoc.compile(mlp_model, backends=["accel", "fake"], quiet=True)
    fn = mod.get_function("accel_0")
    assert fn.backend == "accel"
    x = np.ones((2, 8), np.float32)
    outs = fn({name: x for name in fn.input_names})
    assert set(outs) == set(fn.output_names)
    with pytest.raises(byoc.ByocError, match="no subgraph 'nope'.*accel_0"):
        mod.get_function("nope")
    with pytest.raises(byoc.InputError, match="missing"):
        fn({})


class Exploding(NumpyBackend):
    name = "boom"

    def run(self, inputs):
        raise ZeroDivisionError("kaboom")


class WrongDtype(NumpyBackend):
    name = "wrongdtype"

    def run(self, inputs):
        return [np.zeros((1, 4), np.float64)]


class WrongCount(NumpyBackend):
    name = "wrongcount"

    def run(self, inputs):
        return []


@pytest.mark.parametrize(
    ("cls", "match"),
    [
        (
            Exploding,
            "backend 'boom' failed in run of subgraph boom_0: ZeroDivisionError: "
            "kaboom",
        ),
        (WrongDtype, "returned float64 for output"),
        (WrongCount, "expected a sequence of 1 arrays"),
    ],
)
def test_backend_failures_become_backend_errors(empty_registry, mlp_model, cls, match):
    empty_registry.add_plugin(Plugin(cls), cls.name)
    mod = byoc.compile(mlp_model, backends=[cls.name], quiet=True)
    with pytest.raises(byoc.BackendError, match=match) as info:
        mod.run({"x": np.ones((1, 8), np.float32)})
    assert info.value.backend == cls.name
    assert info.value.symbol == f"{cls.name}_0"


def test_load_without_the_backend_names_what_to_install(registry, mlp_model, tmp_path):
    path = byoc.compile(mlp_model, backends=["accel", "fake"], quiet=True).save(
        tmp_path / "m.byoc"
    )
    registry.remove_plugin("fake-plugins")
    with pytest.raises(
        byoc.BackendError,
        match="backend 'accel' is not installed.*pip install byoc-accel",
    ):
        byoc.load(path)


class Unavailable(NumpyBackend):
    name = "gone"

    @classmethod
    def available(cls):
        return "needs the gone runtime"


def test_unavailable_backends_are_skipped_with_their_reason(empty_registry, mlp_model):
    empty_registry.add_plugin(Plugin(Unavailable, NumpyBackend), "gone")
    with pytest.raises(byoc.BackendError, match="none of the selected backends is av"):
        byoc.compile(mlp_model, backends=["gone"], quiet=True)
    with pytest.warns(RuntimeWarning, match="skipping unavailable backends: gone"):
        mod = byoc.compile(mlp_model, backends=["gone", "fake"], quiet=True)
    assert [r.backend for r in mod.subgraphs] == ["fake"]
    with pytest.raises(byoc.BackendError, match="'typo' is not installed"):
        byoc.compile(mlp_model, backends=["typo", "fake"], quiet=True)


class Exporting(NumpyBackend):
    """Exports a tiny engine blob; import succeeds only for the expected bytes."""

    name = "exporting"
    imported = 0

    def export_engine(self):
        return b"ENGINE:" + self.symbol.encode()

    def import_engine(self, blob, consts):
        if blob != b"ENGINE:" + self.symbol.encode():
            raise ValueError("corrupt engine")
        type(self).imported += 1
        self.consts = consts


def test_prebuilt_engines_round_trip_and_corrupt_ones_rebuild(
    empty_registry, mlp_model, tmp_path
):
    empty_registry.add_plugin(Plugin(Exporting), "exporting")
    Exporting.init_calls = Exporting.imported = 0
    mod = byoc.compile(mlp_model, backends=["exporting"], quiet=True)
    x = np.ones((1, 8), np.float32)
    want = mod.run({"x": x})["y"]
    path = mod.save(tmp_path / "m.byoc", engines=True)
    inits = Exporting.init_calls
    loaded = byoc.load(path, eager=True)
    assert (Exporting.imported, Exporting.init_calls) == (1, inits)
    np.testing.assert_array_equal(loaded.run({"x": x})["y"], want)

    data = bytearray(path.read_bytes())
    at = bytes(data).index(b"ENGINE:exporting_0")
    data[at] ^= 0xFF
    bad = tmp_path / "bad.byoc"
    bad.write_bytes(bytes(data))
    with pytest.warns(
        RuntimeWarning, match="prebuilt engine for exporting_0 .* rebuilding"
    ):
        rebuilt = byoc.load(bad, eager=True)
    assert Exporting.init_calls == inits + 1
    np.testing.assert_array_equal(rebuilt.run({"x": x})["y"], want)


def test_symbolic_range_is_evaluated_per_run(registry):
    # y = x + Range(0, Shape(x)[1], 1): the Range limit is a symbolic dim.
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["n"]),
        helper.make_node("Range", ["zero", "n", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=1),
        helper.make_node("Add", ["x", "rf"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("x", ["batch", "seq"])],
        [("y", ["batch", "seq"])],
        {"one": np.array(1, np.int64), "zero": np.array(0, np.int64)},
    )
    mod = byoc.compile(model, backends=["fake"], quiet=True)
    ops = [n.name for n in mod.artifact.host.nodes]
    assert "byoc.sym" in ops  # Shape/Gather were folded into an expression
    for seq in (1, 5, 9):
        x = np.zeros((2, seq), np.float32)
        np.testing.assert_array_equal(
            mod.run({"x": x})["y"], np.tile(np.arange(seq), (2, 1))
        )


def test_constant_outputs_are_writable_copies(registry, tmp_path):
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", [2])],
        [("y", [2]), ("c", [2])],
        {"c": np.array([1, 2], np.float32)},
    )
    path = byoc.compile(model, backends=["fake"], quiet=True).save(tmp_path / "m.byoc")
    out = byoc.load(path).run({"x": np.ones(2, np.float32)})
    out["c"][0] = 5  # would raise on a read-only view of the artifact
    np.testing.assert_array_equal(
        byoc.load(path).run({"x": np.ones(2, np.float32)})["c"], [1, 2]
    )


def test_unused_warnings_are_not_emitted_on_normal_runs(registry, mlp_model):
    mod = byoc.compile(mlp_model, backends=["fake"], quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mod.run({"x": np.ones((1, 8), np.float32)})


def test_placement_line_is_printed_unless_quiet(registry, mlp_model, capsys):
    byoc.compile(mlp_model, backends=["accel", "fake"])
    err = capsys.readouterr().err
    # the Mul+Sigmoid pattern lets accel take everything, in one subgraph
    assert err == "byoc placement: 7 nodes -> accel 7; 1 subgraph: accel_0(7)\n"
    byoc.compile(mlp_model, backends=["accel", "fake"], quiet=True)
    assert capsys.readouterr().err == ""


class Planning(NumpyBackend):
    """Computes a compile-time plan that must come back to the engine."""

    name = "planning"

    @classmethod
    def plan(cls, graph, consts):
        return {"kernels": sum(n.op == "kernel" for n in graph.nodes), "tag": "v1"}

    def init(self, consts):
        assert self.meta["tag"] == "v1"
        super().init(consts)


class BadPlan(NumpyBackend):
    name = "badplan"

    @classmethod
    def plan(cls, graph, consts):
        return {"obj": object()}


def test_plan_metadata_travels_in_the_artifact(empty_registry, mlp_model, tmp_path):
    empty_registry.add_plugin(Plugin(Planning, BadPlan), "planners")
    mod = byoc.compile(mlp_model, backends=["planning"], quiet=True)
    path = mod.save(tmp_path / "m.byoc")
    loaded = byoc.load(path, eager=True)
    assert loaded.subgraphs[0].meta == {"kernels": 7, "tag": "v1"}
    assert loaded.get_function("planning_0").engine().meta["kernels"] == 7
    with pytest.raises(byoc.BackendError, match="planned non-plain data"):
        byoc.compile(mlp_model, backends=["badplan"], quiet=True)


def _relu_add(outputs: list[str], unused_input: bool = False):
    """y = relu(x + w), z = x + w: one subgraph on the fake backend."""
    inputs = [("x", [2]), ("w", [2])] + ([("u", [3])] if unused_input else [])
    return make_model(
        [
            helper.make_node("Add", ["x", "w"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        inputs,
        [(name, [2]) for name in outputs],
    )


@pytest.mark.parametrize("outputs", [["y", "z"], ["z", "y"], ["y"], ["z", "y", "z"]])
@pytest.mark.parametrize("unused_input", [False, True])
def test_a_one_call_model_runs_directly(registry, outputs, unused_input):
    mod = byoc.compile(_relu_add(outputs, unused_input), backends=["fake"], quiet=True)
    assert mod._direct is not None  # one call on the inputs: no plan walk
    assert (mod._direct.feed is None) is not unused_input
    x, w = np.array([-3, 1], np.float32), np.array([1, 1], np.float32)
    feeds = {"x": x, "w": w} | ({"u": np.zeros(3, np.float32)} if unused_input else {})
    out = mod.run(feeds)
    assert list(out) == list(dict.fromkeys(outputs))
    if "z" in outputs:
        np.testing.assert_array_equal(out["z"], x + w)
    np.testing.assert_array_equal(out["y"], np.maximum(x + w, 0))


def test_models_that_are_not_one_call_walk_the_plan(registry):
    # An output that is an input, and one that is a constant: not the call's.
    passthrough = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", [2])],
        [("y", [2]), ("x", [2])],
    )
    const = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", [2])],
        [("y", [2]), ("c", [2])],
        {"c": np.array([1, 2], np.float32)},
    )
    two_calls = make_model(  # accel runs Relu, fake runs Neg: two subgraphs
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])],
        [("x", [2])],
        [("y", [2])],
    )
    x = np.array([-1, 2], np.float32)
    for model, want in (
        (passthrough, {"y": [0, 2], "x": [-1, 2]}),
        (const, {"y": [0, 2], "c": [1, 2]}),
        (two_calls, {"y": [0, -2]}),
    ):
        mod = byoc.compile(model, backends=["accel", "fake"], quiet=True)
        assert mod._direct is None
        out = mod.run({"x": x})
        assert list(out) == list(want)
        for name, value in want.items():
            np.testing.assert_array_equal(out[name], value)


@pytest.mark.parametrize("options", [{"threads": 2}, [("fake", {})], {"fake": None}])
def test_options_not_shaped_per_backend_raise_input_error(registry, mlp_model, options):
    with pytest.raises(byoc.InputError, match="map each backend's name"):
        byoc.compile(mlp_model, backends=["fake"], quiet=True, options=options)


class Filling(NumpyBackend):
    """Writes into the outputs the driver allocates (run_into)."""

    name = "filling"
    fills_outputs = True
    calls: list[str] = []

    def run(self, inputs):
        type(self).calls.append("run")
        return super().run(inputs)

    def run_into(self, inputs, outputs):
        type(self).calls.append("run_into")
        for out, value in zip(outputs, super().run(inputs), strict=True):
            assert out.flags.c_contiguous and out.flags.writeable
            out[...] = value


class FillingOff(Filling):
    name = "fillingoff"

    def init(self, consts):
        super().init(consts)
        self.fills_outputs = False  # an engine may decline for itself


class FillingBroken(Filling):
    name = "fillingbroken"

    def run_into(self, inputs, outputs):
        raise KeyError("no such buffer")


def test_run_into_fills_driver_allocated_outputs(empty_registry):
    empty_registry.add_plugin(Plugin(Filling, FillingOff, FillingBroken), "filling")
    x, w = np.array([-3, 1], np.float32), np.array([1, 1], np.float32)
    model = _relu_add(["y", "z"])
    for cls, called in ((Filling, "run_into"), (FillingOff, "run")):
        Filling.calls = []
        mod = byoc.compile(model, backends=[cls.name], quiet=True)
        first = mod.run({"x": x, "w": w})
        second = mod.run({"x": -x, "w": w})
        assert Filling.calls == [called, called]
        assert first["y"] is not second["y"]  # fresh arrays every run
        np.testing.assert_array_equal(first["y"], np.maximum(x + w, 0))
        np.testing.assert_array_equal(second["z"], w - x)
        assert first["y"].dtype == np.float32 and first["y"].shape == (2,)
    mod = byoc.compile(model, backends=["fillingbroken"], quiet=True)
    with pytest.raises(byoc.BackendError, match="KeyError: 'no such buffer'"):
        mod.run({"x": x, "w": w})


def test_run_into_is_not_used_for_symbolic_outputs(empty_registry, mlp_model):
    empty_registry.add_plugin(Plugin(Filling), "filling")
    Filling.calls = []
    mod = byoc.compile(mlp_model, backends=["filling"], quiet=True)
    for rows in (1, 3):
        assert mod.run({"x": np.ones((rows, 8), np.float32)})["y"].shape[0] == rows
    assert Filling.calls == ["run", "run"]
