"""Concurrency and the conformance kit on every bundled backend that is installed.

Bundled backends are the first-party plugins of this repository. These tests
need them installed (``tox -e conformance`` does), and skip, saying so, where
one is not installed or not available on this machine.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from fakedist import env, run_pytest

import byoc
from byoc.demo import demo_cnn

BUNDLED = ("ref", "dnnl", "trt", "micro")
THREADS, RUNS = 8, 25


@pytest.fixture(params=BUNDLED)
def backend(request) -> str:
    """A bundled backend, from a registry of the installed plugins."""
    name = request.param
    registry = byoc.Registry()
    registry.load_entry_points(None)
    known = {info.name: info for info in registry.backends()}
    if name not in known:
        pytest.skip(f"byoc-{name} is not installed (pip install byoc-{name})")
    if not known[name].available:
        pytest.skip(f"{name} is unavailable here: {known[name].reason}")
    if name != "ref" and "ref" not in known:
        pytest.skip("byoc-ref (the fallback) is not installed")
    with byoc.use_registry(registry):
        yield name


def compiled(name: str, tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    backends = [name] if name == "ref" else [name, "ref"]
    mod = byoc.compile(demo_cnn(size=16), backends=backends, quiet=True)
    assert any(r.backend == name for r in mod.subgraphs), f"{name} took no node"
    rng = np.random.default_rng(0)
    feeds = {
        t.name: rng.standard_normal(
            [d if isinstance(d, int) else 1 for d in t.shape or ()]
        ).astype(t.dtype)
        for t in mod.inputs
    }
    return mod.save(tmp_path / f"{name}.byoc"), feeds


def in_threads(fn) -> list:
    barrier = threading.Barrier(THREADS)
    results: list = [None] * THREADS

    def main(t: int) -> None:
        try:
            barrier.wait()
            results[t] = fn(t)
        except BaseException as exc:
            results[t] = exc

    threads = [threading.Thread(target=main, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[0]
    return results


def test_concurrent_runs_match_a_single_thread(backend, tmp_path):
    path, feeds = compiled(backend, tmp_path)
    inputs = [{k: v * (1 + t / 8) for k, v in feeds.items()} for t in range(THREADS)]
    mod = byoc.load(path)  # the threads race to build its engines
    outs = in_threads(
        lambda t: [mod.run(inputs[(t + r) % THREADS]) for r in range(RUNS)]
    )
    # The same engines, run serially: bit-identical. (Another load could time
    # its way to other kernels, see the next test.)
    want = [mod.run(f) for f in inputs]
    for t, per_thread in enumerate(outs):
        for r, out in enumerate(per_thread):
            for name, value in want[(t + r) % THREADS].items():
                np.testing.assert_array_equal(out[name], value)
    assert all(n == 1 for n in mod.init_counts.values())


def test_concurrent_loads_of_the_same_file(backend, tmp_path):
    path, feeds = compiled(backend, tmp_path)
    want = byoc.load(path).run(feeds)
    for out in in_threads(lambda t: byoc.load(path, eager=t % 2 == 1).run(feeds)):
        for name, value in want.items():
            # Each load builds its own engines, and a backend that picks kernels
            # by timing them (dnnl) may pick others, which round differently.
            np.testing.assert_allclose(out[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [b for b in BUNDLED if b != "ref"])
def test_the_conformance_kit_passes(name, tmp_path):
    """byoc-ref's own kit run is a tox command; the other bundled ones run here."""
    registry = byoc.Registry()
    registry.load_entry_points(None)
    known = {info.name: info for info in registry.backends()}
    if name not in known:
        pytest.skip(f"byoc-{name} is not installed")
    if not known[name].available:
        pytest.skip(f"{name} is unavailable here: {known[name].reason}")
    report = tmp_path / "report.json"
    proc = run_pytest(
        ["-q", "--byoc-backend", name, "--byoc-report", str(report)],
        cwd=tmp_path,
        env=env(tmp_path, None),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    data = json.loads(report.read_text())
    assert data["passed"] and data["total"]["failed"] == 0
    assert data["categories"]["ops"]["passed"] > 0
