"""On a GPU: build, run, compare with byoc-ref, cache hits, engines from the artifact.

Every test here skips with the exact availability reason where TensorRT or a
CUDA device is missing; ``gpu_check.sh`` runs them on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_translate import CASES

import byoc
from byoc import cache
from byoc.demo import demo_cnn
from byoc_trt import TrtBackend

REASON = TrtBackend.available()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(REASON is not None, reason=str(REASON)),
]


@pytest.fixture
def options(tmp_path):
    return {"trt": {"cache_dir": str(tmp_path / "cache"), "progress": False}}


def _events(symbol):
    return [e for e in cache.events() if e.cache == "trt" and e.label == symbol]


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_ops_match_ref(case, options):
    model = CASES[case]
    feeds = {}
    rng = np.random.default_rng(1)
    for vi in model.graph.input:
        if vi.name.startswith("x"):
            shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            feeds[vi.name] = rng.standard_normal(shape).astype(np.float32)
    mod = byoc.compile(model, backends=["trt", "ref"], options=options, quiet=True)
    assert [r.backend for r in mod.subgraphs] == ["trt"]
    want = byoc.compile(model, backends=["ref"], quiet=True).run(feeds)
    got = mod.run(feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_demo_cnn_cache_hit_and_artifact_engine(options, tmp_path):
    model = demo_cnn(seed=2, batch="n")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    want = byoc.compile(model, backends=["ref"], quiet=True).run({"input": x})["probs"]
    first = byoc.compile(model, backends=["trt", "ref"], options=options, quiet=True)
    np.testing.assert_allclose(
        first.run({"input": x})["probs"], want, rtol=1e-4, atol=1e-5
    )
    assert [e.outcome for e in _events("trt_0")][:2] == ["miss", "stored"]
    # same model, fresh module: the engine comes from the cache
    second = byoc.compile(model, backends=["trt", "ref"], options=options, quiet=True)
    second.run({"input": x})
    assert _events("trt_0")[-1].outcome == "hit"
    # the artifact carries the engine: loading uses it without building or caching
    path = second.save(tmp_path / "cnn.byoc", engines=True)
    before = len(cache.events())
    other = {"trt": {"cache_dir": str(tmp_path / "empty"), "progress": False}}
    loaded = byoc.load(path, eager=True, options=other)
    assert len(cache.events()) == before
    np.testing.assert_allclose(
        loaded.run({"input": x})["probs"], want, rtol=1e-4, atol=1e-5
    )


def test_threads_get_their_own_contexts(options):
    import threading

    model = demo_cnn(seed=4)
    mod = byoc.compile(model, backends=["trt", "ref"], options=options, quiet=True)
    xs = [
        np.random.default_rng(i).standard_normal((1, 3, 32, 32)).astype(np.float32)
        for i in range(8)
    ]
    want = [mod.run({"input": x})["probs"] for x in xs]
    got: list = [None] * 8

    def work(i):
        for _ in range(20):
            got[i] = mod.run({"input": xs[i]})["probs"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
