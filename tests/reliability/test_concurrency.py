"""Concurrency on the core's fake backends: one module run from 8 threads,
the same file loaded from 8 threads, and loads racing atomic re-saves."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import NumpyBackend, Plugin

import byoc

from .seeds import Blobby, seed_model

THREADS = 8


class SlowInit(NumpyBackend):
    """Widens the window in which threads race to build the same engine."""

    name = "slowinit"
    priority = 5
    ops = frozenset({"MatMul", "Relu"})

    def init(self, consts: Any) -> None:
        threading.Event().wait(0.02)
        super().init(consts)


@pytest.fixture
def backends(empty_registry) -> byoc.Registry:
    empty_registry.add_plugin(Plugin(NumpyBackend, Blobby, SlowInit), "threads")
    NumpyBackend.init_calls = 0
    return empty_registry


def in_threads(fn: Callable[[int], Any], n: int = THREADS) -> list[Any]:
    """``fn(t)`` for t < n in threads released together; results or exceptions."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def main(t: int) -> None:
        try:
            barrier.wait()
            results[t] = fn(t)
        except BaseException as exc:  # reported by the caller
            results[t] = exc

    threads = [threading.Thread(target=main, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[0]
    return results


def feeds(k: int) -> dict[str, np.ndarray]:
    return {"x": np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 8) * (k + 1)}


def test_one_module_from_8_threads_matches_a_single_thread(backends, tmp_path):
    path = byoc.compile(
        seed_model(), backends=["blobby", "slowinit", "fake"], quiet=True
    ).save(tmp_path / "m.byoc")
    want = [byoc.load(path).run(feeds(k))["y"] for k in range(THREADS)]
    mod = byoc.load(path)

    def work(t: int) -> list[np.ndarray]:
        return [mod.run(feeds((t + r) % THREADS))["y"] for r in range(100)]

    for t, outs in enumerate(in_threads(work)):
        for r, out in enumerate(outs):
            np.testing.assert_array_equal(out, want[(t + r) % THREADS])
    assert mod.init_counts == dict.fromkeys(mod.symbols, 1)


def test_the_same_file_loaded_from_8_threads(backends, tmp_path):
    path = byoc.compile(seed_model(), backends=["blobby", "fake"], quiet=True).save(
        tmp_path / "m.byoc", engines=True
    )
    want = byoc.load(path).run(feeds(0))["y"]
    outs = in_threads(lambda t: byoc.load(path, eager=t % 2 == 0).run(feeds(0))["y"])
    for out in outs:
        np.testing.assert_array_equal(out, want)


def test_loads_racing_atomic_resaves_see_a_whole_file(backends, tmp_path):
    """Readers see the old artifact or the new one, never a partial write."""
    mod_a = byoc.compile(seed_model(), backends=["fake"], quiet=True)
    mod_b = byoc.compile(seed_model(), backends=["blobby", "fake"], quiet=True)
    path = mod_a.save(tmp_path / "m.byoc")
    versions = {tuple(m.symbols): m.run(feeds(1))["y"] for m in (mod_a, mod_b)}
    stop = threading.Event()

    def writer() -> None:
        k = 0
        while not stop.is_set():
            (mod_a if k % 2 else mod_b).save(path)
            k += 1

    saving = threading.Thread(target=writer)
    saving.start()
    try:
        results = in_threads(
            lambda t: [
                (tuple(m.symbols), m.run(feeds(1))["y"])
                for m in (byoc.load(path) for _ in range(25))
            ]
        )
    finally:
        stop.set()
        saving.join()
    seen = set()
    for per_thread in results:
        for symbols, out in per_thread:
            np.testing.assert_array_equal(out, versions[symbols])
            seen.add(symbols)
    assert seen, "no load happened"
    assert [p.name for p in tmp_path.iterdir()] == ["m.byoc"], "temp files left"
