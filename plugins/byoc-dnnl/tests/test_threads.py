"""Concurrent runs on one engine, and the threads option."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from onnx import helper

import byoc

from .helpers import graph_model, run_ort

R = np.random.default_rng(3)


def _model():  # noqa: ANN202 - a small conv net with a residual and a matmul head
    w = lambda *s: (R.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "r"], ["s"]),
        helper.make_node("GlobalAveragePool", ["s"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    return graph_model(
        nodes,
        {"x": (1, 16, 12, 12)},
        ["y"],
        {"w1": w(16, 16, 3, 3), "w2": w(16, 16, 3, 3), "fw": w(10, 16), "fb": w(10)},
    )


@pytest.mark.parametrize("concurrency", ["pool", "lock"])
def test_concurrent_runs_are_correct(concurrency: str, tmp_path: object) -> None:
    model = _model()
    mod = byoc.compile(
        model,
        backends=["dnnl"],
        quiet=True,
        options={"dnnl": {"concurrency": concurrency, "threads": 1}},
    )
    path = mod.save(tmp_path / "m.byoc")  # type: ignore[operator]
    loaded = byoc.load(
        path, options={"dnnl": {"concurrency": concurrency, "threads": 1}}
    )
    inputs = [R.standard_normal((1, 16, 12, 12)).astype(np.float32) for _ in range(8)]
    want = [run_ort(model, {"x": x})[0] for x in inputs]
    errors: list[str] = []
    start = threading.Barrier(8)

    def worker(k: int) -> None:
        start.wait()
        for i in range(25):
            j = (k + i) % len(inputs)
            got = loaded.run({"x": inputs[j]})["y"]
            if not np.allclose(got, want[j], rtol=1e-4, atol=1e-5):
                errors.append(
                    f"thread {k} run {i}: max err {np.abs(got - want[j]).max()}"
                )

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    engine = loaded.get_function(loaded.symbols[0]).engine()
    pool = engine._program._pool  # type: ignore[attr-defined]
    if concurrency == "lock":
        assert len(pool) == 1
    else:
        assert len(pool) >= 1  # contexts are made on demand and reused


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_threads_option_is_a_backend_error(bad: object) -> None:
    mod = byoc.compile(
        _model(), backends=["dnnl"], quiet=True, options={"dnnl": {"threads": bad}}
    )
    with pytest.raises(byoc.BackendError, match="threads"):
        mod.run({"x": np.zeros((1, 16, 12, 12), np.float32)})


def test_unknown_option_is_a_backend_error_naming_the_options() -> None:
    mod = byoc.compile(
        _model(), backends=["dnnl"], quiet=True, options={"dnnl": {"thread": 2}}
    )
    with pytest.raises(
        byoc.BackendError, match="'conv_layout', 'max_shapes', 'split', 'threads"
    ):
        mod.init()


def test_bad_concurrency_option_is_a_backend_error() -> None:
    mod = byoc.compile(
        _model(),
        backends=["dnnl"],
        quiet=True,
        options={"dnnl": {"concurrency": "yolo"}},
    )
    with pytest.raises(byoc.BackendError, match="concurrency"):
        mod.init()


def test_threads_option_sets_the_openmp_team() -> None:
    from byoc_dnnl import _lib

    lib = _lib.lib()
    before = lib.omp_get_max_threads()
    mod = byoc.compile(
        _model(), backends=["dnnl"], quiet=True, options={"dnnl": {"threads": 1}}
    )
    x = np.zeros((1, 16, 12, 12), np.float32)
    try:
        mod.run({"x": x})
        assert lib.omp_get_max_threads() == 1
    finally:
        lib.omp_set_num_threads(before)


def test_omp_num_threads_is_the_default() -> None:
    code = "from byoc_dnnl import _lib; print(_lib.lib().omp_get_max_threads())"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "1"


def test_engine_without_threads_option_restores_the_default() -> None:
    from byoc_dnnl import _lib

    lib = _lib.lib()
    x = np.zeros((1, 16, 12, 12), np.float32)
    one = byoc.compile(
        _model(), backends=["dnnl"], quiet=True, options={"dnnl": {"threads": 1}}
    )
    default = byoc.compile(_model(), backends=["dnnl"], quiet=True)
    one.run({"x": x})
    assert lib.omp_get_max_threads() == 1
    default.run({"x": x})
    assert lib.omp_get_max_threads() == lib.default_threads
