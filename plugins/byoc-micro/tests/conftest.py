"""Fixtures for byoc-micro's tests: an isolated registry and the C tools.

Every test that needs the C runtime skips, with the reason, where no C
compiler exists (or the build fails); tests comparing with the reference
backend skip when byoc-ref is not installed. The registry holds exactly the
micro and ref backends, whatever else is installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import byoc
from byoc_micro import _lib

ROOT = Path(__file__).resolve().parents[3]
"""The repository (tests run from its root; the golden file lives there)."""


def _need_runtime() -> None:
    reason = _lib.unavailable_reason()
    if reason is not None:
        pytest.skip(f"micro runtime unavailable: {reason}")


@pytest.fixture
def runtime() -> _lib.Library:
    """The built C library (skips without a C compiler)."""
    _need_runtime()
    return _lib.library()


@pytest.fixture
def registry() -> Iterator[byoc.Registry]:
    """A registry with only the micro and ref backends, made the global one."""
    _need_runtime()
    byoc_ref_plugin = pytest.importorskip(
        "byoc_ref.plugin", reason="byoc-ref (the oracle) is not installed"
    )
    from byoc_micro import plugin

    reg = byoc.Registry()
    reg.add_plugin(plugin, "micro", "byoc-micro")
    reg.add_plugin(byoc_ref_plugin, "ref", "byoc-ref")
    with byoc.use_registry(reg):
        yield reg


def build_tool(name: str, main: str, flags: tuple[str, ...]) -> Path:
    """An executable from the library sources plus ``main``, cached by hash."""
    _need_runtime()
    try:
        return _lib.build(name, (*_lib.LIB_SOURCES, "bm_tool.c", main), flags)
    except _lib.BuildError as exc:
        pytest.skip(f"cannot build {name}: {exc}")


@pytest.fixture(scope="session")
def runner() -> Path:
    """byoc-micro-run, built with -Werror -pedantic."""
    return build_tool("byoc-micro-run", "byoc_micro_run.c", (*_lib.WERROR, "-O2"))


@pytest.fixture(scope="session")
def asan_runner() -> Path:
    """byoc-micro-run built with -fsanitize=address,undefined."""
    return build_tool(
        "byoc-micro-run-asan", "byoc_micro_run.c", (*_lib.WERROR, *_lib.SANITIZE)
    )


@pytest.fixture(scope="session")
def asan_harness() -> Path:
    """bm-harness built with -fsanitize=address,undefined."""
    return build_tool("bm-harness-asan", "bm_harness.c", (*_lib.WERROR, *_lib.SANITIZE))


@pytest.fixture(scope="session")
def harness() -> Path:
    """bm-harness, optimised."""
    return build_tool("bm-harness", "bm_harness.c", (*_lib.WERROR, "-O2"))


def nm() -> str | None:
    """The nm tool, if any."""
    return shutil.which("nm")


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: dict[str, list[int]],
    outputs: dict[str, list[int] | None],
    inits: dict[str, np.ndarray] | None = None,
) -> onnx.ModelProto:
    """An opset-17 float32 model; output shapes may be None (inferred)."""
    graph = helper.make_graph(
        nodes,
        "micro_test",
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
            for n, s in inputs.items()
        ],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
            for n, s in outputs.items()
        ],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def feeds_for(model: onnx.ModelProto, seed: int = 0) -> dict[str, Any]:
    """Seeded standard-normal float32 inputs."""
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    return {
        vi.name: rng.standard_normal(
            [d.dim_value for d in vi.type.tensor_type.shape.dim]
        ).astype(np.float32)
        for vi in model.graph.input
        if vi.name not in inits
    }


def max_error(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest absolute difference over every output (shapes must agree)."""
    assert a.keys() == b.keys()
    worst = 0.0
    for name in a:
        assert a[name].shape == b[name].shape, name
        assert a[name].dtype == b[name].dtype, name
        worst = max(worst, float(np.max(np.abs(a[name] - b[name]), initial=0.0)))
    return worst
