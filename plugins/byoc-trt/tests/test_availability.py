"""GPU-free: honest availability, and compile falling back when TensorRT is absent."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import byoc
from byoc.cli import main
from byoc.demo import demo_cnn
from byoc_trt import TrtBackend, probe


def test_missing_tensorrt_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    probe.device.cache_clear()
    reason = TrtBackend.available()
    assert reason is not None
    assert "TensorRT is not installed" in reason and "byoc-trt[gpu]" in reason


class _Err:
    def __init__(self, value):
        self.value = value
        self.name = "cudaErrorNoDevice" if value else "cudaSuccess"


def _fake_cudart(count, err=0):
    module = types.SimpleNamespace()
    module.cudaGetDeviceCount = lambda: (_Err(err), count)
    module.cudaGetDeviceProperties = lambda i: (
        _Err(0),
        types.SimpleNamespace(name=b"NVIDIA H200", major=9, minor=0),
    )
    return module


@pytest.mark.parametrize(
    ("count", "err", "expected"),
    [
        (0, 0, "no CUDA device found"),
        (
            0,
            100,
            "no usable CUDA device: CUDA call cudaGetDeviceCount failed: "
            "cudaErrorNoDevice (100)",
        ),
        (1, 0, None),
    ],
)
def test_device_probe_reasons(monkeypatch, count, err, expected):
    monkeypatch.setitem(
        sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.4.0")
    )
    monkeypatch.setattr(probe, "import_cudart", lambda: _fake_cudart(count, err))
    probe.device.cache_clear()
    try:
        reason = probe.availability()
    finally:
        probe.device.cache_clear()
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(expected)


def test_old_tensorrt_is_refused(monkeypatch):
    monkeypatch.setitem(
        sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1")
    )
    monkeypatch.setattr(probe, "import_cudart", lambda: _fake_cudart(1))
    probe.device.cache_clear()
    try:
        assert "too old" in probe.availability()
    finally:
        probe.device.cache_clear()


needs_no_gpu = pytest.mark.skipif(
    TrtBackend.available() is None,
    reason="TensorRT is usable here; this checks its absence",
)


@needs_no_gpu
def test_compile_falls_back_without_tensorrt(capsys):
    model = demo_cnn()
    assert "trt" not in byoc.get_registry().default_backends()
    with pytest.warns(RuntimeWarning, match="skipping unavailable backends: trt"):
        mod = byoc.compile(model, backends=["trt", "ref"], quiet=True)
    assert {r.backend for r in mod.subgraphs} == {"ref"}
    x = np.zeros((1, 3, 32, 32), np.float32)
    assert mod.run({"input": x})["probs"].shape == (1, 10)


@needs_no_gpu
def test_byoc_backends_lists_trt_with_its_reason(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("trt ")]
    assert " no " in row and "byoc-trt[gpu]" in row
