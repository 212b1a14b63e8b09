"""ONNX node tests for every op dnnl claims, through compile -> save -> load -> run.

A case counts only when dnnl runs all of its nodes; otherwise it is skipped
with dnnl's reason, so coverage gaps stay visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import byoc

from .conftest import compile_dnnl, dnnl_claims_all


def _read(path: Path) -> np.ndarray:
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


def test_onnx_node(node_case: tuple[Path, dict], tmp_path: Path) -> None:
    root, meta = node_case
    model = onnx.load(root / "model.onnx")
    try:
        mod = compile_dnnl(model)
    except (byoc.UnsupportedError, byoc.ModelError) as exc:
        pytest.skip(f"not compiled: {exc}")
    others = dnnl_claims_all(mod)
    if others:
        pytest.skip("dnnl does not claim: " + "; ".join(others))
    path = mod.save(tmp_path / "model.byoc")
    loaded = byoc.load(path)
    names = [i.name for i in model.graph.input]
    onames = [o.name for o in model.graph.output]
    for k in range(int(meta["datasets"])):
        d = root / f"data_{k}"
        inputs = {n: _read(d / f"input_{j}.pb") for j, n in enumerate(names)}
        got = loaded.run(inputs)
        for j, name in enumerate(onames):
            want = _read(d / f"output_{j}.pb")
            np.testing.assert_allclose(
                got[name],
                want,
                rtol=meta["rtol"],
                atol=meta["atol"],
                err_msg=f"output {name!r} of dataset {k}",
            )
