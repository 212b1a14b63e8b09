"""The bench models: dnnl (one subgraph each) matches byoc-ref within 1e-4 relative.

Only a smoke test of correctness; latency is measured by ``bench/run.py``,
never here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import byoc
from byoc_dnnl import runloop

from .helpers import assert_close, engine_steps, run_ort

ROOT = Path(__file__).resolve().parents[3]
if not (ROOT / "bench" / "models.py").exists():
    pytest.skip(
        f"bench/models.py not found under {ROOT} (tests run outside the repo)",
        allow_module_level=True,
    )
sys.path.insert(0, str(ROOT))
from bench import memory  # noqa: E402
from bench.models import MODELS, example_inputs  # noqa: E402

REL = 1e-4


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bench_model_matches_ref(name: str, tmp_path: Path) -> None:
    model = MODELS[name]()
    feeds = example_inputs(model)
    try:
        ref = byoc.compile(model, backends=["ref"], quiet=True)
    except byoc.UnsupportedError as exc:
        pytest.fail(f"byoc-ref cannot run {name}: {exc}")
    want = next(iter(ref.run(feeds).values()))
    want_ort = run_ort(model, feeds)[0]
    for conv_layout in ("native", "blocked"):
        what = f"{name} ({conv_layout})"
        opts = {"dnnl": {"conv_layout": conv_layout}}
        mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True, options=opts)
        assert [r.backend for r in mod.subgraphs] == ["dnnl"], mod.placement()
        loaded = byoc.load(mod.save(tmp_path / f"{name}.byoc"), options=opts)
        got = next(iter(loaded.run(feeds).values()))
        assert_close(got, want, REL, f"{what}: dnnl vs byoc-ref")
        assert_close(got, want_ort, REL, f"{what}: dnnl vs onnxruntime")
        steps = engine_steps(loaded)
        assert not [s for s in steps if s[1].startswith("ref")], (
            f"{what}: a reference kernel was chosen"
        )


@pytest.mark.parametrize("conv_layout", ["native", "blocked"])
def test_resnet50_is_fused_and_keeps_its_layout(conv_layout: str) -> None:
    mod = byoc.compile(
        MODELS["resnet50"](),
        backends=["dnnl", "ref"],
        quiet=True,
        options={"dnnl": {"conv_layout": conv_layout, "tune": False, "split": True}},
    )
    steps = engine_steps(mod)
    convs = [s for s in steps if s[0].startswith("conv")]
    # Every Conv is one primitive, BN, Relu and Add folded in; on the blocked
    # layout the small 1x1 ones run as one part per thread where forced (the
    # default splits on AVX2 only: test_split.py).
    assert len({s[0] for s in convs}) == 53
    split = {s[0] for s in convs if [c[0] for c in convs].count(s[0]) > 1}
    assert all(s[1].startswith("jit_1x1") for s in convs if s[0] in split)
    # Splits need the compiled run loop (BYOC_DNNL_RUNLOOP=python turns it off).
    assert (conv_layout == "native" or runloop.loop() is None) == (not split)
    # residuals in place
    assert len({s[0] for s in steps if s[2] and s[2][0] == "sum"}) == 16
    reorders = [i for i, s in enumerate(steps) if s[0] in ("reorder", "output 0")]
    if conv_layout == "native":
        # one reorder in all: the NCHW input into the convolutions' NHWC
        assert reorders == [0]
    else:
        # at most the input into nChw8c/16c and the pooled features back to plain
        assert len(reorders) <= 2, steps
    assert np.isfinite(
        next(iter(mod.run(example_inputs(MODELS["resnet50"]())).values()))
    ).all()


@pytest.mark.parametrize("conv_layout", ["native", "blocked"])
def test_bert_layer_reorders(conv_layout: str) -> None:
    mod = byoc.compile(
        MODELS["bert_layer"](),
        backends=["dnnl", "ref"],
        quiet=True,
        options={"dnnl": {"conv_layout": conv_layout, "tune": False}},
    )
    steps = engine_steps(mod)
    reorders = [s for s in steps if s[0] in ("reorder", "output 0")]
    kernels = [s for s in steps if s not in reorders]
    # Q, K, V, scores (+scale), softmax, context (written transposed), output
    # (+residual), layer norm, FFN up (+GELU), FFN down (+residual), layer norm
    assert len(kernels) == 11
    if conv_layout == "native":
        # Q, K, V, the output projection (+ the input: a binary post-op),
        # FFN up and FFN down (+residual) as 1x1 convolutions on plain rows.
        assert not reorders
        assert [s[1][:7] for s in kernels].count("jit_1x1") == 6, steps
        return
    # Q, K, V and FFN up as 1x1 convolutions: the input into the blocked layout
    # once for all three, Q, K and V back to plain rows for the attention, the
    # layer norm into FFN up, and its output back for FFN down.
    assert [s[1][:7] for s in kernels].count("jit_1x1") == 4, steps
    assert len(reorders) == 6, steps


def test_bench_memory_measures_each_runtime_in_a_process_of_its_own(
    tmp_path: Path,
) -> None:
    if not Path("/proc/self/smaps_rollup").exists():
        pytest.skip("no /proc/self/smaps_rollup: the memory columns stay empty")
    model = MODELS["mlp"](batch=4, width=512, layers=2)
    feeds = example_inputs(model)
    mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
    mod.init()
    artifact = mod.save(tmp_path / "mlp.byoc", engines=True)
    onnx_path = tmp_path / "mlp.onnx"
    onnx_path.write_bytes(model.SerializeToString())
    weights = 2 * 512 * 512 * 4 / 2**20
    for kind, path in (("byoc", artifact), ("onnxruntime", onnx_path)):
        got = memory.measure(kind, path, feeds, 1)
        assert got is not None
        # Each holds the (packed) weights; neither is a whole second process.
        assert weights < got["anon_mb"] <= got["rss_mb"] < 2048, (kind, got)


def test_bench_summary_counts_the_runs_that_meet_a_target(tmp_path: Path) -> None:
    from bench import summary

    def run(ratio: float, pct: float) -> dict[str, object]:
        row = {"model": "mlp", "threads": 2, "ratio": ratio}
        row |= {"byoc_pct_peak": pct, "ort_pct_peak": pct - 10}
        return {"results": [row, {**row, "threads": 1}]}

    paths = []
    for i, ratio in enumerate((0.80, 0.84, 0.90)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(run(ratio, 70.0 + i)))
    one, two = summary.summarize(paths)
    assert (one["threads"], one["runs_meeting"], summary.verdict(one)) == (1, None, "")
    assert two["ratio_median"] == 0.84 and two["runs_meeting"] == 2
    assert summary.verdict(two) == "met (<= 0.85; 2 of 3 runs)"


def test_bench_layers_pairs_each_layer_of_both_runtimes() -> None:
    from bench import layers

    got = layers.compare(MODELS["mlp"](batch=32, width=256, layers=3), 1, 2, gap=0)
    rows = {r["layer"]: r for r in got["layers"]}
    # Three Gemm layers (Relu fused on both sides), each timed on both.
    assert len(rows) == 3, got
    assert all(r["byoc_us"] > 0 and r["ort_us"] > 0 for r in rows.values()), got
    assert sum(a["layers"] for a in got["by_impl"].values()) == 3
    total = sum(r["byoc_us"] for r in rows.values())
    assert sum(a["byoc_us"] for a in got["by_impl"].values()) == pytest.approx(total)


def test_bert_layer_with_symbolic_batch_and_sequence_runs_on_dnnl() -> None:
    """As exporters write it: batch and sequence symbolic, the head split's
    Reshapes copying them (0) from their input."""
    from onnx import TensorProto, numpy_helper

    model = MODELS["bert_layer"]()
    for t in model.graph.initializer:
        if (
            t.data_type == TensorProto.INT64
            and len(t.dims) == 1
            and t.dims[0] in (3, 4)
        ):
            a = numpy_helper.to_array(t).copy()
            a[:2] = 0
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    for vi in (*model.graph.input, *model.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "B"
        vi.type.tensor_type.shape.dim[1].dim_param = "S"
    del model.graph.value_info[:]
    opts = {"dnnl": {"tune": False, "conv_layout": "native"}}
    mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True, options=opts)
    assert [r.backend for r in mod.subgraphs] == ["dnnl"], mod.explain()
    name = model.graph.input[0].name
    for b, s in ((2, 16), (1, 7)):
        x = np.random.default_rng(b * s).standard_normal((b, s, 768)).astype("float32")
        got = next(iter(mod.run({name: x}).values()))
        assert_close(got, run_ort(model, {name: x})[0], REL, f"B={b} S={s}")


def test_bench_reports_the_spread_of_the_rounds_ratios() -> None:
    from bench.run import quartiles

    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == [1.5, 4.5]
    assert quartiles([0.9]) == [0.9, 0.9]
