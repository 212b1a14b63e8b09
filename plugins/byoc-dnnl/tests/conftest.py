"""Shared fixtures of the byoc-dnnl tests.

Every test here needs libdnnl: when it cannot load, the tests skip with the
exact reason, unless ``BYOC_DNNL_REQUIRE=1`` (set it in CI on machines that
have the library), which turns that skip into a failure.

ONNX node test cases are generated once by onnx's generators (several
seconds) and materialized into pytest's cache as ``model.onnx`` plus
TensorProto ``.pb`` files, never pickles; later sessions only read them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest

import byoc
from byoc_dnnl import _lib

REQUIRE = os.environ.get("BYOC_DNNL_REQUIRE") == "1"


@pytest.fixture(autouse=True)
def _need_library() -> Iterator[None]:
    reason = _lib.unavailable_reason()
    if reason is not None:
        if REQUIRE:
            pytest.fail(f"BYOC_DNNL_REQUIRE=1 but dnnl is unavailable: {reason}")
        pytest.skip(f"dnnl unavailable: {reason}")
    yield


@pytest.fixture(autouse=True)
def _own_decision_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty decision cache per test: tests that count timings must not
    find what an earlier test (or the user's own runs) stored."""
    directory = tmp_path_factory.mktemp("dnnl-cache")
    monkeypatch.setenv("BYOC_DNNL_CACHE_DIR", str(directory))


# -- ONNX node test cases -------------------------------------------------------


def _cases_dir(config: pytest.Config) -> Path:
    key = f"byoc_dnnl_node_cases_onnx_{onnx.__version__}"
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(key))
    path = Path(tempfile.gettempdir()) / key
    path.mkdir(exist_ok=True)
    return path


def _materialize(root: Path, ops: set[str]) -> dict[str, dict[str, float | int]]:
    from onnx import numpy_helper
    from onnx.backend.test.case.node import collect_testcases

    index: dict[str, dict[str, float | int]] = {}
    for case in collect_testcases(None):
        if not any(n.op_type in ops for n in case.model.graph.node):
            continue
        d = root / case.name
        d.mkdir(exist_ok=True)
        onnx.save(case.model, d / "model.onnx")
        for k, (inputs, outputs) in enumerate(case.data_sets):
            dd = d / f"data_{k}"
            dd.mkdir(exist_ok=True)
            names = [i.name for i in case.model.graph.input]
            onames = [o.name for o in case.model.graph.output]
            for j, arr in enumerate(inputs):
                t = numpy_helper.from_array(np.asarray(arr), names[j])
                (dd / f"input_{j}.pb").write_bytes(t.SerializeToString())
            for j, arr in enumerate(outputs):
                t = numpy_helper.from_array(np.asarray(arr), onames[j])
                (dd / f"output_{j}.pb").write_bytes(t.SerializeToString())
        index[case.name] = {
            "rtol": case.rtol,
            "atol": case.atol,
            "datasets": len(case.data_sets),
        }
    # Written last: an interrupted run leaves no index and starts over.
    (root / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    return index


def node_case_index(
    config: pytest.Config,
) -> tuple[Path, dict[str, dict[str, float | int]]]:
    """The cached case directory and its index (building it on first use)."""
    from byoc_dnnl.ops import OPS

    root = _cases_dir(config)
    index_file = root / "index.json"
    if index_file.exists():
        return root, json.loads(index_file.read_text())
    # Ops we claim, plus Erf: its cases exercise the GELU pattern.
    return root, _materialize(root, set(OPS) | {"Erf"})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "node_case" in metafunc.fixturenames:
        root, index = node_case_index(metafunc.config)
        metafunc.parametrize(
            "node_case",
            [(root / n, index[n]) for n in sorted(index)],
            ids=sorted(index),
        )


# -- helpers shared by the test modules -------------------------------------------


def compile_dnnl(model: onnx.ModelProto, **options: object) -> byoc.Module:
    """Compile for dnnl with ref as the fallback, quietly."""
    return byoc.compile(
        model,
        backends=["dnnl", "ref"],
        quiet=True,
        options={"dnnl": dict(options)} if options else None,
    )


def dnnl_claims_all(mod: byoc.Module) -> list[str]:
    """Why nodes went elsewhere than dnnl (empty when dnnl runs everything)."""
    assert mod.partition is not None
    out = []
    for d in mod.partition.decisions:
        if d.backend not in ("dnnl", "host"):
            why = dict(d.declined).get("dnnl", "not asked")
            out.append(f"{d.op} {d.label!r}: {why}")
    return out
