"""The bench models: dnnl (one subgraph each) matches byoc-ref within 1e-4 relative.

Only a smoke test of correctness; latency is measured by ``bench/run.py``,
never here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import byoc

from .helpers import assert_close, engine_steps, run_ort

ROOT = Path(__file__).resolve().parents[3]
if not (ROOT / "bench" / "models.py").exists():
    pytest.skip(
        f"bench/models.py not found under {ROOT} (tests run outside the repo)",
        allow_module_level=True,
    )
sys.path.insert(0, str(ROOT))
from bench.models import MODELS, example_inputs  # noqa: E402

REL = 1e-4


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bench_model_matches_ref(name: str, tmp_path: Path) -> None:
    model = MODELS[name]()
    feeds = example_inputs(model)
    mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
    assert [r.backend for r in mod.subgraphs] == ["dnnl"], mod.placement()
    loaded = byoc.load(mod.save(tmp_path / f"{name}.byoc"))
    got = next(iter(loaded.run(feeds).values()))
    try:
        ref = byoc.compile(model, backends=["ref"], quiet=True)
    except byoc.UnsupportedError as exc:
        pytest.fail(f"byoc-ref cannot run {name}: {exc}")
    want = next(iter(ref.run(feeds).values()))
    assert_close(got, want, REL, f"{name}: dnnl vs byoc-ref")
    assert_close(got, run_ort(model, feeds)[0], REL, f"{name}: dnnl vs onnxruntime")
    steps = engine_steps(loaded)
    assert not [s for s in steps if s[1].startswith("ref")], (
        "a reference kernel was chosen"
    )


@pytest.mark.parametrize("conv_layout", ["native", "blocked"])
def test_resnet50_is_fused_and_keeps_its_layout(conv_layout: str) -> None:
    mod = byoc.compile(
        MODELS["resnet50"](),
        backends=["dnnl", "ref"],
        quiet=True,
        options={"dnnl": {"conv_layout": conv_layout}},
    )
    steps = engine_steps(mod)
    convs = [s for s in steps if s[0].startswith("conv")]
    assert len(convs) == 53  # every Conv is one primitive: BN, Relu, Add folded in
    assert (
        sum(1 for s in steps if s[2] and s[2][0] == "sum") == 16
    )  # residuals in place
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


def test_bert_layer_has_no_reorders() -> None:
    mod = byoc.compile(MODELS["bert_layer"](), backends=["dnnl", "ref"], quiet=True)
    steps = engine_steps(mod)
    assert not [s for s in steps if s[0] in ("reorder", "output 0")]
    # Q, K, V, scores (+scale), softmax, context (written transposed), output
    # (+residual), layer norm, FFN up (+GELU), FFN down (+residual), layer norm
    assert len(steps) == 11
