"""End to end through byoc-ref: whole models against onnxruntime (max abs err 1e-4)."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import byoc
from byoc.demo import demo_cnn, run_demo

ort = pytest.importorskip("onnxruntime")


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return sess.run(None, feeds)


def transformer_block(d: int = 64, heads: int = 4, ffn: int = 128, seed: int = 0):
    """One pre-LN encoder block with a symbolic sequence length.

    The head split reshapes to a shape computed from Shape(x), so the importer's
    symbolic folding and the driver's run-time evaluation are both on the path.
    """
    rng = np.random.default_rng(seed)
    dh = d // heads
    inits: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []

    def w(name: str, *shape: int, scale: float = 0.1) -> str:
        inits[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
        return name

    def i64(name: str, values) -> str:
        inits[name] = np.array(values, np.int64)
        return name

    def f32(name: str, value: float) -> str:
        inits[name] = np.array([value], np.float32)
        return name

    def node(op: str, ins: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def linear(x: str, din: int, dout: int, name: str) -> str:
        h = node("MatMul", [x, w(f"{name}.w", din, dout)], f"{name}.mm")
        return node("Add", [h, w(f"{name}.b", dout)], f"{name}.out")

    shape = node("Shape", ["x"], "shape")
    batch = node("Gather", [shape, i64("idx0", [0])], "batch")
    seq = node("Gather", [shape, i64("idx1", [1])], "seq")
    split_shape = node(
        "Concat", [batch, seq, i64("hd", [heads, dh])], "split_shape", axis=0
    )
    merge_shape = node("Concat", [batch, seq, i64("dd", [d])], "merge_shape", axis=0)

    ln1 = node(
        "LayerNormalization",
        ["x", w("ln1.g", d), w("ln1.b", d)],
        "ln1",
        axis=-1,
        epsilon=1e-5,
    )

    def split(t: str, name: str, perm: list[int]) -> str:
        r = node("Reshape", [t, split_shape], f"{name}.split")
        return node("Transpose", [r], f"{name}.t", perm=perm)

    q = split(linear(ln1, d, d, "q"), "q", [0, 2, 1, 3])
    k = split(linear(ln1, d, d, "k"), "k", [0, 2, 3, 1])
    v = split(linear(ln1, d, d, "v"), "v", [0, 2, 1, 3])
    scores = node("MatMul", [q, k], "scores")
    scaled = node("Div", [scores, f32("sqrt_dh", dh**0.5)], "scaled")
    probs = node("Softmax", [scaled], "probs", axis=-1)
    ctx = node("MatMul", [probs, v], "ctx")
    ctx = node("Transpose", [ctx], "ctx.t", perm=[0, 2, 1, 3])
    ctx = node("Reshape", [ctx, merge_shape], "ctx.merged")
    attn = linear(ctx, d, d, "o")
    res1 = node("Add", ["x", attn], "res1")
    ln2 = node(
        "LayerNormalization",
        [res1, w("ln2.g", d), w("ln2.b", d)],
        "ln2",
        axis=-1,
        epsilon=1e-5,
    )
    h = linear(ln2, d, ffn, "ff1")
    # erf GELU as exporters write it: 0.5 * h * (1 + erf(h / sqrt(2)))
    g = node("Div", [h, f32("sqrt2", 2**0.5)], "gelu.div")
    g = node("Erf", [g], "gelu.erf")
    g = node("Add", [g, f32("one", 1.0)], "gelu.add")
    g = node("Mul", [h, g], "gelu.mul")
    g = node("Mul", [g, f32("half", 0.5)], "gelu.half")
    out = linear(g, ffn, d, "ff2")
    node("Add", [res1, out], "y")
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", d])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_resnet_style_cnn_matches_onnxruntime(tmp_path):
    model = demo_cnn(seed=3, batch="n")
    mod = byoc.compile(model, backends=["ref"], quiet=True)
    loaded = byoc.load(mod.save(tmp_path / "cnn.byoc"))
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 3, 32, 32)).astype(np.float32)
        (want,) = ort_run(model, {"input": x})
        got = loaded.run({"input": x})["probs"]
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) <= 1e-4


def test_transformer_block_matches_onnxruntime_at_several_lengths(tmp_path):
    model = transformer_block()
    mod = byoc.compile(model, backends=["ref"], quiet=True)
    host_ops = [n.name for n in mod.artifact.host.nodes]
    assert "byoc.sym" in host_ops  # the head-split shape is a run-time expression
    loaded = byoc.load(mod.save(tmp_path / "block.byoc"))
    for batch, seq in ((1, 7), (2, 16), (1, 1)):
        x = (
            np.random.default_rng(seq)
            .standard_normal((batch, seq, 64))
            .astype(np.float32)
        )
        (want,) = ort_run(model, {"x": x})
        got = loaded.run({"x": x})["y"]
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) <= 1e-4


def test_the_readme_demo_passes():
    out = io.StringIO()
    assert run_demo(["ref"], repeat=2, out=out) == 0
    text = out.getvalue()
    assert "-> OK" in text and "ref_0" in text and "onnxruntime run" in text


def test_outputs_never_alias_inputs_or_constants():
    # Reshape of the input and of a constant are views in numpy; run must copy.
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
        helper.make_node("Reshape", ["c", "shape"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "views",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [6]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [6]),
        ],
        [
            numpy_helper.from_array(np.array([-1], np.int64), "shape"),
            numpy_helper.from_array(np.ones((2, 3), np.float32), "c"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    mod = byoc.compile(model, backends=["ref"], quiet=True)
    x = np.zeros((2, 3), np.float32)
    out = mod.run({"x": x})
    assert not np.shares_memory(out["y"], x)
    out["z"][0] = 7  # writable and private
    assert mod.run({"x": x})["z"][0] == 1
