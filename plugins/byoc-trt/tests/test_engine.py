"""GPU-free: cache keys, the engine envelope, build options, cache selection."""

from __future__ import annotations

import numpy as np
import pytest
from test_translate import CASES

from byoc.onnx_import import import_onnx
from byoc_trt.backend import cache_for
from byoc_trt.engine import BuildOptions, engine_key, unwrap, wrap
from byoc_trt.probe import Device

DEV = Device(0, "NVIDIA H200", (9, 0))


def graph_and_consts(case="conv_same_upper_strided"):
    imp = import_onnx(CASES[case])
    return imp.graph, dict(imp.consts)


def test_key_changes_with_every_ingredient():
    g, c = graph_and_consts()
    base = engine_key(g, c, "10.4.0", DEV, BuildOptions())
    assert base == engine_key(g, c, "10.4.0", DEV, BuildOptions())
    other_graph, other_consts = graph_and_consts("conv_same_lower")
    changed_consts = {k: v + 1 for k, v in c.items()}
    variants = {
        "graph": engine_key(other_graph, other_consts, "10.4.0", DEV, BuildOptions()),
        "constants": engine_key(g, changed_consts, "10.4.0", DEV, BuildOptions()),
        "tensorrt": engine_key(g, c, "10.5.0", DEV, BuildOptions()),
        "gpu": engine_key(
            g, c, "10.4.0", Device(0, "NVIDIA A100", (8, 0)), BuildOptions()
        ),
        "fp16": engine_key(g, c, "10.4.0", DEV, BuildOptions(fp16=True)),
        "workspace": engine_key(g, c, "10.4.0", DEV, BuildOptions(workspace=1 << 20)),
        "profile": engine_key(
            g, c, "10.4.0", DEV, BuildOptions(dim_ranges={"n": (1, 2, 4)})
        ),
    }
    assert len(set(variants.values()) | {base}) == len(variants) + 1
    # the symbol name is deliberately not an ingredient
    assert "trt_0" not in g.to_json()


def test_envelope_round_trip_and_rejections():
    blob = wrap("k" * 64, b"\x01engine", "10.4.0", DEV)
    assert unwrap(blob, "k" * 64) == b"\x01engine"
    with pytest.raises(ValueError, match="another subgraph, TensorRT or GPU"):
        unwrap(blob, "j" * 64)
    with pytest.raises(ValueError, match="not a byoc-trt engine"):
        unwrap(b"PLAN" + blob, "k" * 64)
    with pytest.raises(ValueError):
        unwrap(blob[:14], "k" * 64)
    with pytest.raises(ValueError, match="holds no engine"):
        unwrap(wrap("k" * 64, b"", "10.4.0", DEV), "k" * 64)


def test_build_options_are_validated():
    opts = BuildOptions.from_options(
        {"fp16": True, "dim_ranges": {"batch": [1, 4, 16]}, "cache_dir": "/tmp/x"}
    )
    assert opts.fp16 and opts.range_of("batch") == (1, 4, 16)
    assert opts.range_of("seq") == (1, 1, 32)
    with pytest.raises(ValueError, match="unknown trt options"):
        BuildOptions.from_options({"fp61": True})
    with pytest.raises(ValueError, match="min <= opt <= max"):
        BuildOptions.from_options({"dim_ranges": {"batch": [4, 2, 8]}})
    # options that do not change the engine do not change the key
    g, c = graph_and_consts()
    assert engine_key(g, c, "10", DEV, opts) == engine_key(
        g,
        c,
        "10",
        DEV,
        BuildOptions.from_options(
            {
                "fp16": True,
                "dim_ranges": {"batch": [1, 4, 16]},
                "cache_dir": "/elsewhere",
                "progress": True,
            }
        ),
    )


def test_cache_directory_selection(monkeypatch, tmp_path):
    monkeypatch.setenv("BYOC_TRT_CACHE_DIR", str(tmp_path / "env"))
    assert cache_for({}).directory == tmp_path / "env"
    assert cache_for({"cache_dir": str(tmp_path / "opt")}).directory == tmp_path / "opt"
    monkeypatch.delenv("BYOC_TRT_CACHE_DIR")
    monkeypatch.setenv("BYOC_CACHE_DIR", str(tmp_path / "user"))
    assert cache_for({}).directory == tmp_path / "user" / "trt"
    ro = cache_for({"cache_read_only": True, "cache_max_bytes": 10})
    assert ro.read_only and ro.max_bytes == 10


def test_constants_digest_covers_values_not_just_shapes():
    g, c = graph_and_consts()
    flipped = {k: np.flip(v).copy() for k, v in c.items()}
    assert engine_key(g, c, "10", DEV, BuildOptions()) != engine_key(
        g, flipped, "10", DEV, BuildOptions()
    )
