"""ONNX import: constants, opsets, symbolic dims, folding, errors."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from conftest import make_model
from onnx import TensorProto, helper, numpy_helper

import byoc
from byoc import Sym, TensorAttr
from byoc.onnx_import import SYM_OP, import_onnx


def kernels(imported):
    return [n for n in imported.graph.nodes if n.op == "kernel"]


def test_initializers_become_consts_and_unused_ones_are_dropped():
    model = make_model(
        [helper.make_node("Add", ["x", "b"], ["y"])],
        [("x", [3])],
        [("y", [3])],
        {"b": np.ones(3, np.float32), "unused": np.zeros(9, np.float32)},
    )
    imp = import_onnx(model)
    assert [(n.op, n.name) for n in imp.graph.nodes] == [
        ("input", "x"),
        ("const", "b"),
        ("kernel", "Add"),
    ]
    assert set(imp.consts) == {"b"}
    assert imp.graph.head_names == ("y",)


def test_constant_nodes_and_constant_subgraphs_fold():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(w)),
        helper.make_node("Transpose", ["c"], ["ct"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "ct"], ["y"]),
    ]
    imp = import_onnx(make_model(nodes, [("x", [1, 3])], [("y", [1, 2])]))
    assert [n.name for n in kernels(imp)] == ["MatMul"]
    np.testing.assert_array_equal(imp.consts["ct"], w.T)


def test_dead_nodes_are_pruned_and_labels_unique():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="n"),
        helper.make_node("Neg", ["x"], ["dead"], name="n"),
        helper.make_node("Relu", ["a"], ["y"], name="n"),
    ]
    imp = import_onnx(make_model(nodes, [("x", [3])], [("y", [3])]))
    assert [n.label for n in kernels(imp)] == ["n", "n_2"]


def test_attributes_are_converted_to_plain_values():
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["s"],
            ["c"],
            value=numpy_helper.from_array(np.array([2.5], np.float32)),
        ),
        helper.make_node("Resize", ["x", "", "sc"], ["r"], mode="linear"),
        helper.make_node("Add", ["r", "c"], ["y"]),
    ]
    model = make_model(
        nodes,
        [("x", [1, 1, "h", 2]), ("s", [4])],
        [("y", None)],
        {"sc": np.array([1, 1, 2, 2], np.float32)},
    )
    model.graph.input[1].type.tensor_type.elem_type = TensorProto.INT64
    imp = import_onnx(model)
    cos, resize, _ = kernels(imp)
    assert isinstance(cos.attrs["value"], TensorAttr)
    assert cos.attrs["value"].array().tolist() == [2.5]
    assert resize.attrs == {"mode": "linear"}
    assert resize.inputs[1].absent  # the omitted roi input


def test_symbolic_shape_arithmetic_folds_into_expressions():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["b"]),
        helper.make_node("Gather", ["s", "i1"], ["t"]),
        helper.make_node("Mul", ["t", "two"], ["t2"]),
        helper.make_node("Unsqueeze", ["b", "ax"], ["bu"]),
        helper.make_node("Unsqueeze", ["t2", "ax"], ["tu"]),
        helper.make_node("Concat", ["bu", "tu", "m1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = {
        "i0": np.array(0, np.int64),
        "i1": np.array(1, np.int64),
        "two": np.array(2, np.int64),
        "ax": np.array([0], np.int64),
        "m1": np.array([-1], np.int64),
    }
    imp = import_onnx(
        make_model(nodes, [("x", ["batch", "seq", 4])], [("y", None)], inits)
    )
    sym, reshape = kernels(imp)
    assert sym.name == SYM_OP and reshape.name == "Reshape"
    assert sym.attrs["value"] == (Sym.dim("batch"), Sym.dim("seq") * 2, -1)
    assert sym.shapes == ((3,),)


def test_static_shapes_fold_to_plain_constants():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Reshape", ["x", "s"], ["y"]),
    ]
    imp = import_onnx(make_model(nodes, [("x", [2, 3])], [("y", [2, 3])]))
    assert imp.consts["s"].tolist() == [2, 3]


def test_unnamed_input_dims_get_names():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [("x", [None, 3])], [("y", None)]
    )
    imp = import_onnx(model)
    assert imp.graph.nodes[0].shapes == (("x_d0", 3),)


def test_unknown_ops_are_imported_for_the_partitioner_to_refuse(registry):
    node = helper.make_node("FancyOp", ["x"], ["y"], domain="com.vendor")
    model = make_model([node], [("x", [3])], [("y", [3])])
    model.opset_import.append(helper.make_opsetid("com.vendor", 1))
    imp = import_onnx(model)
    assert kernels(imp)[0].name == "com.vendor:FancyOp"
    with pytest.raises(byoc.UnsupportedError, match="com.vendor:FancyOp"):
        byoc.compile(model, backends=["fake"], quiet=True)


@pytest.mark.parametrize("opset", [11, 13, 17, 21, 22, 25])
def test_opsets_are_brought_into_13_to_21(registry, opset):
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", [3])],
        [("y", [3])],
        opset=opset,
    )
    imp = import_onnx(model)
    assert 13 <= imp.opset <= 21
    mod = byoc.compile(model, backends=["fake"], quiet=True)
    x = np.array([-1, 0, 2], np.float32)
    np.testing.assert_array_equal(mod.run({"x": x})["y"], [0, 0, 2])


def test_model_errors_are_typed(tmp_path):
    with pytest.raises(byoc.ModelError, match="does not exist"):
        import_onnx(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00junk")
    with pytest.raises(byoc.ModelError):
        import_onnx(tmp_path / "junk.onnx")
    with pytest.raises(byoc.ModelError, match="expected an onnx.ModelProto"):
        import_onnx(42)
    broken = make_model(
        [helper.make_node("Relu", ["missing"], ["y"])], [("x", [3])], [("y", [3])]
    )
    with pytest.raises(byoc.ModelError, match="invalid"):
        import_onnx(broken)


@pytest.mark.parametrize(
    ("node", "complaint"),
    [
        (helper.make_node("Relu", ["x", "x"], ["y"]), "input size 2"),
        (helper.make_node("Sigmoid", ["x"], ["y"], alpha=0.5), "attribute: alpha"),
    ],
)
def test_outputs_without_shape_do_not_hide_invalid_nodes(node, complaint):
    # Exporters leave graph outputs without a shape and that is accepted; but
    # the checker stops at its first complaint, and skipping past that one
    # used to let every later check go unchecked (found by mutating models).
    model = make_model([node], [("x", [3])], [("y", None)])
    assert not model.graph.output[0].type.tensor_type.HasField("shape")
    with pytest.raises(byoc.ModelError, match=complaint):
        import_onnx(model)
    assert not model.graph.output[0].type.tensor_type.HasField("shape")  # untouched
    fine = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [("x", [3])], [("y", None)]
    )
    assert kernels(import_onnx(fine))[0].name == "Relu"
    assert not fine.graph.output[0].type.tensor_type.HasField("shape")


@pytest.mark.parametrize(
    ("nodes", "inputs", "complaint"),
    [
        (  # float indices
            [helper.make_node("Gather", ["x", "i"], ["y"])],
            [("x", [4, 3], TensorProto.FLOAT), ("i", [2], TensorProto.FLOAT)],
            "input 1 ('i') is tensor(float); its parameter 'indices' takes",
        ),
        (  # float pads where the schema says tensor(int64)
            [helper.make_node("Pad", ["x", "p"], ["y"])],
            [("x", [4, 3], TensorProto.FLOAT), ("p", [4], TensorProto.FLOAT)],
            "its parameter 'pads' takes tensor(int64)",
        ),
        (  # both inputs bind T: float and int64 differ
            [helper.make_node("Add", ["x", "n"], ["y"])],
            [("x", [3], TensorProto.FLOAT), ("n", [3], TensorProto.INT64)],
            "earlier input of type T is tensor(float): they must match",
        ),
        (  # an intermediate value's type, as shape inference found it
            [
                helper.make_node("Cast", ["x"], ["c"], to=TensorProto.INT64),
                helper.make_node("Relu", ["x"], ["r"]),
                helper.make_node("Mul", ["r", "c"], ["y"]),
            ],
            [("x", [3], TensorProto.FLOAT)],
            "Mul node 2: input 1 ('c') is tensor(int64)",
        ),
    ],
)
def test_input_types_are_checked_against_the_operator(nodes, inputs, complaint):
    # onnxruntime refuses these at load and onnx.checker does not; they ran.
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info(n, t, s) for n, s, t in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(byoc.ModelError, match=re.escape(complaint)):
        import_onnx(model)


def test_variadic_and_heterogeneous_inputs_pass_the_type_check():
    nodes = [
        helper.make_node("Concat", ["x", "x", "x"], ["c"], axis=0),
        helper.make_node("Shape", ["c"], ["s"]),
        helper.make_node("Reshape", ["c", "s"], ["y"]),
    ]
    model = make_model(nodes, [("x", [3])], [("y", None)])
    assert [n.name for n in kernels(import_onnx(model))] == ["Concat", "Reshape"]


def test_loads_from_a_path(tmp_path):
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [("x", [3])], [("y", [3])]
    )
    onnx.save(model, tmp_path / "m.onnx")
    assert kernels(import_onnx(tmp_path / "m.onnx"))[0].name == "Relu"
