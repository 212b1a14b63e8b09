"""The capability check refuses, with a reason, what dnnl must not claim."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import byoc
from byoc_dnnl import DnnlBackend

from .helpers import graph_model, single_node


def _reasons(model: onnx.ModelProto) -> list[str]:
    """dnnl's refusal reasons for every node it declined (compiled with ref)."""
    try:
        mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
    except byoc.UnsupportedError as exc:  # ref refuses it too
        return [exc.reasons["dnnl"]]  # type: ignore[attr-defined]
    assert mod.partition is not None
    return [
        dict(d.declined).get("dnnl", "")
        for d in mod.partition.decisions
        if d.backend == "ref"
    ]


def _typed(op: str, dtype: int, shape: list[int], **attrs: object) -> onnx.ModelProto:
    node = helper.make_node(op, ["a", "b"], ["y"], **attrs)
    graph = helper.make_graph(
        node and [node],
        "t",
        [
            helper.make_tensor_value_info("a", dtype, shape),
            helper.make_tensor_value_info("b", dtype, shape),
        ],
        [helper.make_tensor_value_info("y", dtype, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


W = np.ones((4, 3, 3, 3), np.float32)

REFUSALS = {
    "int32 add": (_typed("Add", TensorProto.INT32, [2, 3]), "only float32"),
    "float64 mul": (_typed("Mul", TensorProto.DOUBLE, [2, 3]), "only float32"),
    # Symbolic dims are claimed (test_dynamic.py) unless a node invents one.
    "invented dim": (
        helper.make_model(
            helper.make_graph(
                [helper.make_node("Concat", ["x", "z"], ["y"], axis=0)],
                "t",
                [
                    helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4]),
                    helper.make_tensor_value_info("z", TensorProto.FLOAT, ["m", 4]),
                ],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            ),
            opset_imports=[helper.make_opsetid("", 17)],
        ),
        "are not dims of its inputs",
    ),
    "maxpool indices": (
        single_node("MaxPool", [("x", (1, 2, 4, 4))], n_outputs=2, kernel_shape=[2, 2]),
        "Indices",
    ),
    "batchnorm training": (
        single_node(
            "BatchNormalization",
            [
                ("x", (2, 3, 4)),
                ("s", np.ones(3, np.float32)),
                ("b", np.zeros(3, np.float32)),
                ("m", np.zeros(3, np.float32)),
                ("v", np.ones(3, np.float32)),
            ],
            training_mode=1,
        ),
        "training_mode",
    ),
    "clip runtime bound": (
        single_node("Clip", [("x", (3, 4)), ("lo", ())]),
        "must be a constant",
    ),
    "reshape runtime shape": (
        helper.make_model(
            helper.make_graph(
                [helper.make_node("Reshape", ["x", "s"], ["y"])],
                "t",
                [
                    helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
                    helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
                ],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            ),
            opset_imports=[helper.make_opsetid("", 17)],
        ),
        "shape (input 1) must be a constant",
    ),
    "div broadcasting the dividend": (
        single_node("Div", [("a", (3,)), ("b", (2, 3))]),
        "only the second operand may broadcast",
    ),
    "both operands broadcast": (
        single_node("Add", [("a", (3, 1)), ("b", (1, 4))]),
        "only the second operand may broadcast",
    ),
    "lone erf": (single_node("Erf", [("x", (3, 4))]), "no kernel for Erf"),
    "unknown op": (single_node("Exp", [("x", (3, 4))]), "no kernel for Exp"),
    "scalar output": (single_node("MatMul", [("a", (4,)), ("b", (4,))]), "scalar"),
    "layernorm stash type": (
        single_node(
            "LayerNormalization",
            [("x", (2, 4)), ("g", np.ones(4, np.float32))],
            stash_type=0,
        ),
        "stash_type",
    ),
    "avgpool ceil include pad": (
        single_node(
            "AveragePool",
            [("x", (1, 1, 6, 6))],
            kernel_shape=[3, 3],
            strides=[2, 2],
            ceil_mode=1,
            pads=[1, 1, 1, 1],
            count_include_pad=1,
        ),
        "count_include_pad",
    ),
    "pool pad as large as window": (
        single_node(
            "MaxPool", [("x", (1, 1, 5, 5))], kernel_shape=[2, 2], pads=[2, 2, 2, 2]
        ),
        "padding as large as the window",
    ),
    "empty tensor": (single_node("Relu", [("x", (0, 3))]), "empty"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_has_a_reason(case: str) -> None:
    model, why = REFUSALS[case]
    reasons = _reasons(model)
    assert reasons, "dnnl claimed a node it must refuse"
    assert any(why in r and r.startswith("dnnl:") for r in reasons), reasons


def test_a_claim_that_onednn_cannot_build_is_refused_by_the_dry_run() -> None:
    # Conv weights with a 13-D layout do not exist in oneDNN; the static check
    # alone would let rank 3-5 through, so use a valid-looking but unbuildable
    # op: MatMul with 13 dims exceeds oneDNN's 12.
    a = tuple([1] * 11 + [2, 3])
    model = single_node("MatMul", [("a", a), ("b", (3, 2))])
    reasons = _reasons(model)
    assert any("rank" in r or "oneDNN" in r for r in reasons), reasons


def test_supports_rejects_what_a_trial_build_rejects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from byoc_dnnl import _lib, backend

    def refuse(*args: object, **kwargs: object) -> None:
        raise _lib.DnnlError(
            "no",
            function="dnnl_eltwise_forward_primitive_desc_create",
            status=3,
            status_name="unimplemented",
        )

    monkeypatch.setattr(backend, "lower", refuse)
    backend._TRIALS.clear()
    model = single_node("Relu", [("x", (3, 5))])
    reasons = _reasons(model)
    backend._TRIALS.clear()
    assert reasons and "unimplemented" in reasons[0]


def test_gelu_chain_is_one_composite_and_matches() -> None:
    import math

    nodes = [
        helper.make_node("Div", ["x", "s2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["a", "x"], ["m"]),
        helper.make_node("Mul", ["half", "m"], ["y"]),
    ]
    model = graph_model(
        nodes,
        {"x": (3, 7)},
        ["y"],
        {
            "s2": np.array(math.sqrt(2), np.float32),
            "one": np.array(1.0, np.float32),
            "half": np.array(0.5, np.float32),
        },
    )
    mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
    assert all(d.backend == "dnnl" for d in mod.partition.decisions)  # type: ignore[union-attr]
    x = np.linspace(-4, 4, 21, dtype=np.float32).reshape(3, 7)
    want = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.ravel()])
    np.testing.assert_allclose(
        mod.run({"x": x})["y"].ravel(), want, rtol=1e-5, atol=1e-6
    )


def test_backend_metadata() -> None:
    assert DnnlBackend.name == "dnnl"
    assert DnnlBackend.priority > 0
    assert DnnlBackend.available() is None
    info = {b.name: b for b in byoc.backends()}
    assert info["dnnl"].available and info["dnnl"].distribution == "byoc-dnnl"
