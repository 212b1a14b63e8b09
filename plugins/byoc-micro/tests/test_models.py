"""End to end: the demo CNN and the bench MLP on the micro target.

Both compile entirely onto ``micro``, match byoc-ref to 1e-4, and use exactly
the arena the plan reports: one byte less fails, and the executor's last write
lands on the arena's last byte.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import ROOT, max_error

import byoc
from byoc.cli import main as byoc_main
from byoc.demo import demo_cnn
from byoc_micro import _lib
from byoc_micro.backend import subgraph_artifact

sys.path.insert(0, str(ROOT))  # bench/ is not a package on the install path
from bench.models import example_inputs  # noqa: E402
from bench.models import mlp as bench_mlp  # noqa: E402


@pytest.fixture(scope="module")
def models():
    """(name, model, feeds) for the demo CNN and the bench MLP."""
    cnn = demo_cnn()
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32), dtype=np.float32)
    mlp = bench_mlp()
    return {"cnn": (cnn, {"input": x}), "mlp": (mlp, example_inputs(mlp))}


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_model_matches_ref_entirely_on_micro(registry, models, name, capsys):
    model, feeds = models[name]
    micro = byoc.compile(model, backends=["micro"])
    placement = capsys.readouterr().err
    assert " nodes -> micro " in placement and "1 subgraph: micro_0(" in placement
    assert [s.backend for s in micro.subgraphs] == ["micro"]
    ref = byoc.compile(model, backends=["ref"], quiet=True)
    err = max_error(micro.run(feeds), ref.run(feeds))
    print(f"{name}: max |micro - ref| = {err:.3g}")
    assert err <= 1e-4
    # The driver allocates the outputs and the C side writes them (run_into);
    # the engine's own run gives the same values.
    engine = micro.get_function(micro.symbols[0]).engine()
    assert engine.fills_outputs
    ins = {n: feeds[n] for n in engine.graph.input_names}
    np.testing.assert_array_equal(
        engine.run(ins)[0], next(iter(micro.run(feeds).values()))
    )
    meta = micro.subgraphs[0].meta
    print(f"{name}: arena {meta['arena_size']} bytes (naive {meta['naive_size']})")
    assert 0 < meta["arena_size"] < meta["naive_size"]


def _engine_model(mod: byoc.Module) -> tuple[_lib.Model, int, int]:
    rec = mod.subgraphs[0]
    consts = {n: mod.consts[n] for n in byoc.partition.const_names(rec.graph)}
    model = _lib.library().open(
        subgraph_artifact(rec.symbol, rec.graph, rec.meta, consts)
    )
    info = model.info(0)
    return model, int(info.arena_size), int(info.n_slots)


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_the_reported_arena_is_exactly_the_one_used(registry, models, name):
    model, feeds = models[name]
    mod = byoc.compile(model, backends=["micro"], quiet=True)
    planned = mod.subgraphs[0].meta["arena_size"]
    engine, size, n_slots = _engine_model(mod)
    assert size == planned
    x = [np.ascontiguousarray(v) for v in feeds.values()]
    want = mod.run(feeds)
    outs = [np.empty_like(a) for a in want.values()]
    # a byte less fails, with the executor's arena error
    with pytest.raises(byoc.BackendError, match="BM_E_ARENA.*needs " + str(planned)):
        engine.run(0, x, outs, _lib.aligned_bytes(planned - 1, 16), n_slots)
    # the planned size works, and the last byte is written: the plan is tight
    arena = _lib.aligned_bytes(planned, 16)
    arena[:] = 0xA5
    engine.run(0, x, outs, arena, n_slots)
    written = np.flatnonzero(arena != 0xA5)
    assert written.max() == planned - 1
    for got, expect in zip(outs, want.values(), strict=True):
        np.testing.assert_array_equal(got, expect)


def test_backend_option_with_one_byte_less_fails_at_init(registry, models):
    model, feeds = models["cnn"]
    mod = byoc.compile(model, backends=["micro"], quiet=True)
    planned = mod.subgraphs[0].meta["arena_size"]
    short = byoc.Module.from_bytes(
        mod.to_bytes(), options={"micro": {"arena_size": planned - 1}}
    )
    with pytest.raises(byoc.BackendError, match="BM_E_ARENA"):
        short.run(feeds)
    exact = byoc.Module.from_bytes(
        mod.to_bytes(), options={"micro": {"arena_size": planned}}
    )
    np.testing.assert_array_equal(exact.run(feeds)["probs"], mod.run(feeds)["probs"])


def test_inspect_reports_the_planned_arena(registry, models, tmp_path, capsys):
    model, _ = models["cnn"]
    path = byoc.compile(model, backends=["micro"], quiet=True).save(tmp_path / "m.byoc")
    assert byoc_main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    planned = byoc.load(path).subgraphs[0].meta["arena_size"]
    assert f"micro_0 plan: arena_size={planned}, naive_size=" in out


def test_runner_matches_python_and_refuses_a_byte_less(
    registry, models, runner, tmp_path
):
    model, feeds = models["cnn"]
    mod = byoc.compile(model, backends=["micro"], quiet=True)
    path = mod.save(tmp_path / "cnn.byoc")
    (tmp_path / "in.bin").write_bytes(feeds["input"].tobytes())
    run = [str(runner), str(path), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")]
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got = np.fromfile(tmp_path / "out.bin", np.float32).reshape(1, 10)
    np.testing.assert_array_equal(got, mod.run(feeds)["probs"])
    planned = mod.subgraphs[0].meta["arena_size"]
    short = subprocess.run(
        [str(runner), "--arena-size", str(planned - 1), *run[1:]],
        capture_output=True,
        text=True,
    )
    assert short.returncode == 2
    assert f"BM_E_ARENA: the arena is {planned - 1} bytes" in short.stderr
    info = subprocess.run([str(runner), "--info", str(path)], capture_output=True)
    assert f"arena {planned} bytes".encode() in info.stdout


def test_runner_under_sanitizers(registry, models, asan_runner, tmp_path):
    for name, (model, feeds) in models.items():
        if name == "mlp":  # 200 M multiply-adds: too slow under ASan here
            continue
        mod = byoc.compile(model, backends=["micro"], quiet=True)
        path = mod.save(tmp_path / f"{name}.byoc")
        inputs = tmp_path / "in.bin"
        inputs.write_bytes(
            b"".join(np.ascontiguousarray(v).tobytes() for v in feeds.values())
        )
        done = subprocess.run(
            [str(asan_runner), str(path), str(inputs), str(tmp_path / "out.bin")],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        want = np.concatenate([a.ravel() for a in mod.run(feeds).values()])
        np.testing.assert_array_equal(
            np.fromfile(tmp_path / "out.bin", np.float32), want
        )


def test_runner_errors(registry, models, runner, tmp_path):
    model, feeds = models["cnn"]
    mixed = byoc.compile(model, backends=["ref"], quiet=True).save(tmp_path / "r.byoc")
    (tmp_path / "in.bin").write_bytes(feeds["input"].tobytes())
    done = subprocess.run(
        [str(runner), str(mixed), str(tmp_path / "in.bin"), str(tmp_path / "o.bin")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "runs on backend 'ref'; byoc-micro-run only runs micro" in done.stderr
    micro = byoc.compile(model, backends=["micro"], quiet=True).save(
        tmp_path / "m.byoc"
    )
    (tmp_path / "short.bin").write_bytes(feeds["input"].tobytes()[:-4])
    done = subprocess.run(
        [str(runner), str(micro), str(tmp_path / "short.bin"), str(tmp_path / "o.bin")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "too short" in done.stderr
    usage = subprocess.run([str(runner)], capture_output=True, text=True)
    assert usage.returncode == 1 and "usage" in usage.stderr


def test_mixed_placement_with_ref_fallback(registry):
    # an op micro lacks (Tanh) splits the model: micro, ref, micro
    from conftest import feeds_for, make_model
    from onnx import helper

    rng = np.random.default_rng(0)
    model = make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["a"]),
            helper.make_node("Tanh", ["a"], ["t"]),
            helper.make_node("Relu", ["t"], ["y"]),
        ],
        {"x": [2, 3]},
        {"y": None},
        {"w": rng.standard_normal((3, 4)).astype(np.float32)},
    )
    mod = byoc.compile(model, backends=["micro", "ref"], quiet=True)
    assert [s.backend for s in mod.subgraphs] == ["micro", "ref", "micro"]
    assert "micro: no kernel for Tanh" in mod.explain()
    feeds = feeds_for(model)
    ref = byoc.compile(model, backends=["ref"], quiet=True)
    assert max_error(mod.run(feeds), ref.run(feeds)) <= 1e-5


def test_runs_from_many_threads(registry, models):
    model, feeds = models["cnn"]
    mod = byoc.compile(model, backends=["micro"], quiet=True)
    want = mod.run(feeds)["probs"]
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((1, 3, 32, 32), dtype=np.float32) for _ in range(8)]
    expected = [mod.run({"input": b})["probs"] for b in batches]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = mod.run({"input": batches[i]})["probs"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, exp in enumerate(expected):
        np.testing.assert_array_equal(results[i], exp)
    np.testing.assert_array_equal(mod.run(feeds)["probs"], want)
