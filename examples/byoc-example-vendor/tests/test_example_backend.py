"""The example vendor backend: capability answers, the vendor attribute and its
codec through save/load, and engine blobs that refuse damage."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from byoc_example_vendor import ExampleBackend, Tiling
from byoc_example_vendor.backend import FUSED
from onnx import TensorProto, helper, numpy_helper

import byoc


def model(a_shape=(6, 8), dtype=TensorProto.FLOAT):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["hb"]),
            helper.make_node("Relu", ["hb"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", dtype, list(a_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w, b],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


X = np.linspace(-2, 2, 48, dtype=np.float32).reshape(6, 8)


def reference(x: np.ndarray) -> np.ndarray:
    inits = {t.name: numpy_helper.to_array(t) for t in model().graph.initializer}
    return np.maximum(x @ inits["w"] + inits["b"], 0)


def test_matmul_add_fuses_and_relu_runs_alone():
    mod = byoc.compile(model(), backends=["example"], quiet=True)
    (rec,) = mod.subgraphs
    kernels = [n.name for n in rec.graph.nodes if n.op == "kernel"]
    assert kernels == [FUSED, "Relu"]
    np.testing.assert_allclose(mod.run({"x": X})["y"], reference(X), rtol=1e-5)


def test_refusals_say_why():
    with pytest.raises(byoc.UnsupportedError) as err:
        byoc.compile(model(a_shape=(8,)), backends=["example"], quiet=True)
    assert err.value.reasons["example"] == (
        "example: MatMul with a 1-D operand not supported"
    )
    info = byoc.NodeInfo(
        byoc.JSONGraphNode("kernel", "Add", shapes=((2,),), dtypes=("int32",)),
        (byoc.TensorSpec((2,), "int32"), byoc.TensorSpec((2,), "int32")),
        (byoc.TensorSpec((2,), "int32"),),
    )
    answer = ExampleBackend.supports(info)
    assert not answer and answer.reason == (
        "example: Add on int32 not supported (float32 only)"
    )


def test_the_tiling_attribute_travels_through_the_vendor_codec(tmp_path):
    mod = byoc.compile(model(), backends=["example"], quiet=True)
    fused = next(n for n in mod.subgraphs[0].graph.nodes if n.name == FUSED)
    assert fused.attrs["tiling"] == Tiling(4)  # chosen by ExampleBackend.lower
    path = mod.save(tmp_path / "m.byoc")
    assert b"example.tiling" in path.read_bytes()
    loaded = byoc.load(path)
    fused = next(n for n in loaded.subgraphs[0].graph.nodes if n.name == FUSED)
    assert isinstance(fused.attrs["tiling"], Tiling) and fused.attrs["tiling"].rows == 4
    np.testing.assert_array_equal(loaded.run({"x": X})["y"], mod.run({"x": X})["y"])


def test_without_the_plugin_the_file_names_the_distribution_to_install(tmp_path):
    path = byoc.compile(model(), backends=["example"], quiet=True).save(
        tmp_path / "m.byoc"
    )
    bare = byoc.Registry()
    with byoc.use_registry(bare), pytest.raises(byoc.FormatError) as err:
        byoc.load(path)
    assert "pip install byoc-example-vendor" in str(err.value)


def test_engine_blobs_reload_and_damaged_ones_are_rebuilt(tmp_path):
    mod = byoc.compile(model(), backends=["example"], quiet=True)
    want = mod.run({"x": X})["y"]
    path = mod.save(tmp_path / "m.byoc", engines=True)
    loaded = byoc.load(path)
    np.testing.assert_array_equal(loaded.run({"x": X})["y"], want)
    assert loaded.init_counts == {"example_0": 0}  # imported, not built
    data = bytearray(path.read_bytes())
    blob = loaded.artifact.engines["example_0"].data
    at = bytes(data).rfind(blob)
    data[at + len(blob) - 1] ^= 0x01
    (tmp_path / "bad.byoc").write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bad = byoc.load(tmp_path / "bad.byoc")
        np.testing.assert_array_equal(bad.run({"x": X})["y"], want)
    assert any("checksum mismatch" in str(w.message) for w in caught)
    assert bad.init_counts == {"example_0": 1}
