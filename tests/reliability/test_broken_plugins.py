"""Broken plugins never break the others, and ``byoc backends`` says what is wrong.

Real installed distributions (``fakedist``) in a subprocess: one raises on
import, one whose availability check raises, one whose registration hook
raises, one whose backend's ``init`` raises, next to one that works.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakedist import env, install

PLUGINS = {
    "byoc-good": ("byoc_good", "good"),
    "byoc-boom-import": ("byoc_boom_import", "boomimport"),
    "byoc-boom-available": ("byoc_boom_available", "availboom"),
    "byoc-boom-register": ("byoc_boom_register", "boomregister"),
    "byoc-boom-init": ("byoc_boom_init", "initboom"),
}
ALLOW = ",".join(PLUGINS)

SCRIPT = r"""
import json, warnings
import numpy as np
from onnx import TensorProto, helper, numpy_helper
import byoc

nodes = [
    helper.make_node("MatMul", ["x", "w"], ["h"]),
    helper.make_node("Relu", ["h"], ["y"]),
]
graph = helper.make_graph(
    nodes,
    "m",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
    [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
x = np.arange(-4, 4, dtype=np.float32).reshape(2, 4)
out = {}


def compiled(*backends):
    return byoc.compile(model, backends=list(backends) or None, quiet=True)


def attempt(key, fn):
    try:
        out[key] = {"ok": fn()}
    except Exception as exc:
        fields = {k: getattr(exc, k, None) for k in ("backend", "symbol", "stage")}
        out[key] = {"error": type(exc).__name__, "message": str(exc), "fields": fields}


attempt("default", lambda: compiled().placement())
attempt("good", lambda: compiled("good").run({"x": x})["y"].tolist())
boom = compiled("initboom", "good")
attempt("initboom", lambda: boom.run({"x": x}))
attempt("good-after-initboom", lambda: compiled("good").run({"x": x})["y"].tolist())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    attempt("availboom", lambda: compiled("availboom", "good").placement())
out["availboom-warnings"] = [str(w.message) for w in caught]
attempt("boomimport", lambda: compiled("boomimport"))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("plugins")
    for dist, (module, key) in PLUGINS.items():
        install(site, dist, module, key)
    return site


def python(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=env(site, ALLOW),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_byoc_backends_reports_each_broken_plugin_with_its_reason(site):
    proc = python(
        site, "-c", "from byoc.cli import main; raise SystemExit(main())", "backends"
    )
    assert proc.returncode == 0, proc.stderr
    lines = {
        line.split()[0]: line for line in proc.stdout.splitlines()[2:] if line.strip()
    }
    assert "yes" in lines["good"].split()
    assert "yes" in lines["initboom"].split()  # init only fails when an engine builds
    assert (
        "availability check raised OSError: device probe crashed" in lines["availboom"]
    )
    assert "failed to import byoc_boom_import" in lines["boomimport"]
    assert "ImportError: libvendor.so.3" in lines["boomimport"]
    assert (
        "hook byoc_register_backends raised RuntimeError: license server"
        in (lines["boomregister"])
    )
    rows = json.loads(
        python(
            site,
            "-c",
            "from byoc.cli import main; raise SystemExit(main())",
            "backends",
            "--json",
        ).stdout
    )
    by_name = {r["name"]: r for r in rows}
    assert by_name["good"]["available"] is True
    for broken in ("availboom", "boomimport", "boomregister"):
        assert by_name[broken]["available"] is False and by_name[broken]["reason"]


def test_the_other_plugins_keep_working(site):
    proc = python(site, "-c", SCRIPT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    # Default backends: the broken ones are not available, so good and initboom.
    assert "initboom" in out["default"]["ok"] or "good" in out["default"]["ok"]
    assert out["good"]["ok"] == [[0, 0, 0, 0], [0, 1, 2, 3]]
    # init raising is a BackendError naming backend, subgraph and stage, at run.
    assert out["initboom"]["error"] == "BackendError"
    assert out["initboom"]["fields"] == {
        "backend": "initboom",
        "symbol": "initboom_0",
        "stage": "init",
    }
    assert "out of device memory" in out["initboom"]["message"]
    assert out["good-after-initboom"]["ok"] == out["good"]["ok"]
    # A backend whose availability check raised is skipped with the reason.
    assert out["availboom"]["ok"].startswith("byoc placement: 2 nodes -> good 2")
    assert any("device probe crashed" in w for w in out["availboom-warnings"])
    # Asking for a backend whose plugin failed to import names the problem.
    assert out["boomimport"]["error"] == "BackendError"
    assert "plugin is broken: failed to import" in out["boomimport"]["message"]
