"""Atomic save: however a save is interrupted, the target path holds either the
old artifact or nothing, never a half-written file.

In-process interruptions (an exception, KeyboardInterrupt, a failing engine
export) and a real ``SIGKILL`` of a process in the middle of writing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import NumpyBackend, Plugin, make_model
from onnx import helper

import byoc


def big_model(mbytes: int = 8):
    n = mbytes * (1 << 20) // 4 // 64
    w = np.random.default_rng(0).standard_normal((64, n)).astype(np.float32)
    return make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [("x", [1, 64])],
        [("y", [1, n])],
        {"w": w},
    )


class ExportFails(NumpyBackend):
    name = "exportfails"

    def export_engine(self) -> bytes | None:
        raise RuntimeError("device lost during export")


@pytest.fixture
def saved(registry, tmp_path) -> tuple[byoc.Module, Path, bytes]:
    mod = byoc.compile(big_model(1), backends=["fake"], quiet=True)
    path = mod.save(tmp_path / "m.byoc")
    return mod, path, path.read_bytes()


class Interrupt(BaseException):
    pass


@pytest.mark.parametrize(
    "error", [OSError("disk full"), KeyboardInterrupt(), Interrupt()]
)
def test_an_exception_midway_leaves_the_old_file(saved, monkeypatch, error):
    mod, path, before = saved
    real_fdopen = os.fdopen
    written = [0]

    class Failing:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            if written[0] > len(before) // 2:
                raise error
            written[0] += len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: Failing(real_fdopen(*a, **k)))
    with pytest.raises(type(error)):
        mod.save(path)
    monkeypatch.undo()
    assert written[0] > 0, "the save never started writing"
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["m.byoc"], "temp file left"
    byoc.load(path)


def test_a_failing_engine_export_leaves_the_old_file(registry, tmp_path):
    registry.add_plugin(Plugin(ExportFails), "exportfails")
    mod = byoc.compile(big_model(1), backends=["exportfails"], quiet=True)
    path = mod.save(tmp_path / "m.byoc")
    before = path.read_bytes()
    with pytest.raises(byoc.BackendError, match="device lost during export"):
        mod.save(path, engines=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.byoc"]


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path[:0] = [{tests!r}]
    from conftest import NumpyBackend, Plugin
    import byoc
    from reliability.test_atomic_save import big_model

    where, target, marker = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    registry = byoc.Registry()
    registry.add_plugin(Plugin(NumpyBackend), "fake")
    byoc.registry._REGISTRY = registry
    mod = byoc.compile(big_model(8), backends=["fake"], quiet=True)

    def hang(*args):
        marker.write_text("writing")
        time.sleep(120)

    real_fdopen = os.fdopen
    if where == "fsync":
        os.fsync = hang
    else:  # hang after half of the data is written
        class Half:
            def __init__(self, f):
                self.f, self.n = f, 0
            def write(self, data):
                self.n += self.f.write(data)
                if self.n > 4 << 20:
                    self.f.flush()
                    hang()
                return len(data)
            def __getattr__(self, name):
                return getattr(self.f, name)
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                return self.f.__exit__(*exc)
        os.fdopen = lambda *a, **k: Half(real_fdopen(*a, **k))
    mod.save(target)
    """
)


@pytest.mark.parametrize("where", ["data", "fsync"])
def test_a_process_killed_while_saving_leaves_the_old_file(saved, tmp_path, where):
    _, path, before = saved
    marker = tmp_path / "marker"
    tests = str(Path(__file__).resolve().parents[1])
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD.format(tests=tests),
            where,
            str(path),
            str(marker),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if child.poll() is not None:
                pytest.fail(f"the child exited early: {child.stderr.read()}")
            assert time.monotonic() < deadline, "the child never started writing"
            time.sleep(0.02)
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".m.byoc.")]
        assert temps and temps[0].stat().st_size > 0, "no partial temp file to kill"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before, "the target holds a half-written artifact"
    byoc.load(path)
