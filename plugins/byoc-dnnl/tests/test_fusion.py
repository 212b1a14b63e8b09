"""Fusion, layout propagation, and the run contract (fresh outputs, inputs intact)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper

import byoc
from byoc_dnnl import _lib

from .helpers import check_model, claims, engine_steps, feeds_for, graph_model, run_ort

R = np.random.default_rng(7)


def w(*shape: int) -> np.ndarray:
    return (R.standard_normal(shape) * 0.3).astype(np.float32)


def bn_inits(prefix: str, c: int) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_s": (1 + 0.1 * R.standard_normal(c)).astype(np.float32),
        f"{prefix}_b": w(c),
        f"{prefix}_m": w(c),
        f"{prefix}_v": (0.5 + R.random(c)).astype(np.float32),
    }


def bn(prefix: str, x: str, y: str) -> helper.NodeProto:
    return helper.make_node(
        "BatchNormalization",
        [x, f"{prefix}_s", f"{prefix}_b", f"{prefix}_m", f"{prefix}_v"],
        [y],
    )


def kernel_steps(mod: byoc.Module) -> list[tuple[str, str, tuple[str, ...]]]:
    return [s for s in engine_steps(mod) if not s[0].startswith("output")]


def test_conv_bn_relu_is_one_primitive() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        bn("bn", "c", "b"),
        helper.make_node("Relu", ["b"], ["y"]),
    ]
    model = graph_model(
        nodes, {"x": (1, 16, 8, 8)}, ["y"], {"w": w(16, 16, 3, 3), **bn_inits("bn", 16)}
    )
    steps = kernel_steps(check_model(model))
    assert [s[2] for s in steps if s[0] != "reorder"] == [("eltwise",)]


def test_residual_add_relu_is_a_sum_post_op() -> None:
    # r -> conv -> relu -> conv -> bn -> add(r) -> relu: a ResNet basic block
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["r0"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["r0"], ["r"]),
        helper.make_node("Conv", ["r", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["a1"]),
        helper.make_node("Conv", ["a1", "w2"], ["c"], pads=[1, 1, 1, 1]),
        bn("bn", "c", "b"),
        helper.make_node("Add", ["b", "r"], ["s"]),
        helper.make_node("Relu", ["s"], ["y"]),
    ]
    model = graph_model(
        nodes,
        {"x": (1, 16, 8, 8)},
        ["y"],
        {
            "w0": w(16, 16, 3, 3),
            "w1": w(16, 16, 3, 3),
            "w2": w(16, 16, 3, 3),
            **bn_inits("bn", 16),
        },
    )
    steps = kernel_steps(check_model(model))
    assert [s[2] for s in steps if s[0] != "reorder"] == [("eltwise",)] * 2 + [
        ("sum", "eltwise")
    ]


def test_residual_that_is_an_input_is_read_not_overwritten() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "x"], ["s"]),
        helper.make_node("Relu", ["s"], ["y"]),
    ]
    model = graph_model(nodes, {"x": (1, 8, 6, 6)}, ["y"], {"w": w(8, 8, 3, 3)})
    feeds = feeds_for(model)
    keep = feeds["x"].copy()
    steps = kernel_steps(check_model(model, feeds))
    # oneDNN has only its reference convolution for a plain residual fused into
    # a channels-last or blocked one (230x slower at 56x56): the Conv runs
    # alone and the Add, with the Relu, as a binary primitive reading x.
    assert not [s for s in steps if s[1].startswith("ref")], steps
    assert [s[2] for s in steps if s[0].startswith("Add")] == [("eltwise",)]
    np.testing.assert_array_equal(feeds["x"], keep)


def test_batchnorm_after_a_residual_add_rides_on_it() -> None:
    # Pre-activation blocks (ResNet v2, DenseNet): Conv -> Add -> BN -> Relu.
    # BN becomes Mul + Add by per-channel constants, post-ops of the step that
    # adds the residual (the Add here: the residual is still read elsewhere).
    r = np.random.default_rng(4)
    params = {
        "s": r.standard_normal(8).astype(np.float32),
        "b": r.standard_normal(8).astype(np.float32),
        "m": r.standard_normal(8).astype(np.float32),
        "v": (r.random(8) + 0.5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Conv", ["r", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "r"], ["s0"]),
        helper.make_node("BatchNormalization", ["s0", "s", "b", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    model = graph_model(
        nodes, {"x": (1, 8, 6, 6)}, ["y"], {"w": w(8, 8, 3, 3), **params}
    )
    steps = [s for s in kernel_steps(check_model(model)) if s[0] != "reorder"]
    assert not [s for s in steps if s[0].startswith("BatchNormalization")], steps
    assert steps[-1][2][-3:] == ("binary", "binary", "eltwise"), steps
    assert not [s for s in steps if s[1].startswith("ref")], steps


@pytest.mark.parametrize("op", ["Add", "Mul"])
@pytest.mark.parametrize("rows", [8, 64])
def test_a_gemm_with_a_per_row_operand_runs_apart_on_jit_kernels(
    op: str, rows: int
) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node(op, ["m", "r"], ["y"]),
    ]
    model = graph_model(
        nodes, {"x": (rows, 64)}, ["y"], {"w": w(64, 48), "r": w(rows, 1)}
    )
    steps = kernel_steps(check_model(model))
    # Fused, only oneDNN's reference matmul takes a (rows, 1) binary operand,
    # 1000x slower than the two primitives apart.
    assert not [s for s in steps if s[1].startswith("ref")], steps
    assert [s[0].split("_")[0] for s in steps if s[0] != "reorder"] == ["MatMul", op]


def test_residual_still_needed_later_is_not_overwritten() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Conv", ["r", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "r"], ["s"]),
        helper.make_node("Mul", ["s", "r"], ["y"]),
    ]
    model = graph_model(nodes, {"x": (1, 8, 6, 6)}, ["y", "r"], {"w": w(8, 8, 3, 3)})
    check_model(model)


def _gelu(x: str, y: str, first: str = "Div") -> list[helper.NodeProto]:
    c = "sqrt2" if first == "Div" else "inv_sqrt2"
    return [
        helper.make_node(first, [x, c], [f"{y}_d"]),
        helper.make_node("Erf", [f"{y}_d"], [f"{y}_e"]),
        helper.make_node("Add", [f"{y}_e", "one"], [f"{y}_a"]),
        helper.make_node("Mul", [x, f"{y}_a"], [f"{y}_m"]),
        helper.make_node("Mul", [f"{y}_m", "half"], [y]),
    ]


GELU_CONSTS = {
    "sqrt2": np.array(math.sqrt(2), np.float32),
    "inv_sqrt2": np.array(1 / math.sqrt(2), np.float32),
    "one": np.array(1.0, np.float32),
    "half": np.array(0.5, np.float32),
}


@pytest.mark.parametrize("first", ["Div", "Mul"])
def test_matmul_bias_gelu_is_one_primitive(first: str) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["h"]),
        *_gelu("h", "y", first),
    ]
    model = graph_model(
        nodes, {"x": (2, 8, 16)}, ["y"], {"w": w(16, 32), "b": w(32), **GELU_CONSTS}
    )
    mod = check_model(model)
    assert [s[2] for s in kernel_steps(mod)] == [("eltwise",)]
    patterns = {d.pattern for d in mod.partition.decisions}  # type: ignore[union-attr]
    assert "dnnl.gelu_erf" in patterns


def test_gelu_with_wrong_constant_is_not_claimed_as_gelu() -> None:
    nodes = _gelu("x", "y")
    consts = {**GELU_CONSTS, "sqrt2": np.array(1.5, np.float32)}
    model = graph_model(nodes, {"x": (3, 5)}, ["y"], consts)
    mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
    assert any("Erf" in c for c in claims(mod))
    np.testing.assert_allclose(
        mod.run(feeds_for(model))["y"],
        run_ort(model, feeds_for(model))[0],
        rtol=1e-5,
        atol=1e-6,
    )


def test_attention_scores_div_fuses_and_transposes_are_views() -> None:
    nodes = [
        helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["qt", "kt"], ["s"]),
        helper.make_node("Div", ["s", "d"], ["sd"]),
        helper.make_node("Softmax", ["sd"], ["y"], axis=-1),
    ]
    model = graph_model(
        nodes,
        {"q": (1, 16, 4, 8), "k": (1, 16, 4, 8)},
        ["y"],
        {"d": np.array(math.sqrt(8), np.float32)},
    )
    steps = kernel_steps(check_model(model))
    assert [s[2] for s in steps] == [
        ("binary",),
        (),
    ]  # matmul(+div), softmax: no reorders


def test_gemm_relu_and_binary_relu_fuse() -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1),
        helper.make_node("Relu", ["g"], ["r"]),
        helper.make_node("Add", ["r", "z"], ["s"]),
        helper.make_node("Relu", ["s"], ["y"]),
    ]
    model = graph_model(
        nodes, {"x": (4, 16), "z": (4, 8)}, ["y"], {"w": w(8, 16), "b": w(8)}
    )
    steps = kernel_steps(check_model(model))
    assert [s[2] for s in steps] == [("eltwise", "binary", "eltwise")]


def test_conv_chain_keeps_its_layout() -> None:
    nodes, inits, x = [], {}, "x"
    for i in range(4):
        nodes.append(
            helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1])
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        inits[f"w{i}"] = w(32, 32, 3, 3)
        x = f"r{i}"
    nodes.append(
        helper.make_node("MaxPool", [x], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    )
    model = graph_model(nodes, {"x": (1, 32, 16, 16)}, ["y"], inits)
    steps = engine_steps(check_model(model))
    reorders = [s for s in steps if s[0] == "reorder"]
    assert len(reorders) <= 1  # at most the input into the convs' layout
    assert not any(impl.startswith("ref") for _, impl, _ in steps)


def test_refused_fusion_falls_back_to_separate_primitives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from byoc_dnnl import lowering
    from byoc_dnnl.ops import OPS, OpEntry

    real = OPS["Conv"]

    def refuse_fused(b: lowering.Builder, op: object, ep: lowering.Epilogue) -> None:
        if ep:
            raise _lib.DnnlError(
                "refused", function="test", status=3, status_name="unimplemented"
            )
        real.lower(b, op, ep)  # type: ignore[arg-type]

    monkeypatch.setitem(
        OPS, "Conv", OpEntry(refuse_fused, real.check, real.post, real.host)
    )
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "z"], ["s"]),
        helper.make_node("Relu", ["s"], ["y"]),
    ]
    model = graph_model(
        nodes, {"x": (1, 8, 6, 6), "z": (1, 8, 6, 6)}, ["y"], {"w": w(8, 8, 3, 3)}
    )
    steps = kernel_steps(check_model(model))
    assert len([s for s in steps if s[0] != "reorder"]) == 2  # conv, add(+relu)


# -- found by random graphs against onnxruntime ----------------------------------


@pytest.mark.parametrize("first", ["Relu", "MaxPool"])
def test_a_one_input_host_before_a_conv_builds(first: str) -> None:
    # The depthwise-fusion check read the host's weights input before asking
    # whether the host was a Conv at all: IndexError in init.
    attrs = {"kernel_shape": [2, 2]} if first == "MaxPool" else {}
    nodes = [
        helper.make_node(first, ["x"], ["r"], **attrs),
        helper.make_node("Conv", ["r", "w"], ["y"], strides=[2, 2]),
    ]
    check_model(graph_model(nodes, {"x": (1, 3, 5, 11)}, ["y"], {"w": w(8, 3, 1, 1)}))


@pytest.mark.parametrize("layout", ["native", "blocked"])
@pytest.mark.parametrize("act", ["Relu", "Sigmoid", "Elu"])
def test_a_split_chain_keeps_the_value_its_rest_reads(act: str, layout: str) -> None:
    # conv -> act -> Add(conv, act): oneDNN refuses act + Add(conv) fused, and
    # the act, then lowered alone at the chain's end, thought conv dead there
    # and overwrote it in place before the Add read it.
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node(act, ["c"], ["e"]),
        helper.make_node("Add", ["c", "e"], ["y"]),
    ]
    model = graph_model(nodes, {"x": (1, 8, 8, 10)}, ["y"], {"w": w(24, 8, 1, 1)})
    check_model(model, options={"conv_layout": layout})


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("operand", [(1, 8, 8, 5), (8, 8, 5)])
def test_pooling_with_a_per_element_operand_is_right(
    pool: str, operand: tuple[int, ...]
) -> None:
    # oneDNN 3.2's jit pooling reads such a binary post-op operand at the
    # blocked dst's offsets: the fused form is refused.
    nodes = [
        helper.make_node(pool, ["x"], ["p"], kernel_shape=[2, 2]),
        helper.make_node("Sub", ["p", "c"], ["y"]),
    ]
    model = graph_model(nodes, {"x": (1, 8, 9, 6)}, ["y"], {"c": w(*operand)})
    steps = kernel_steps(check_model(model))
    assert any(s[0] == "Sub_1" for s in steps), steps  # ran apart


@pytest.mark.parametrize("channels", [3, 16])
def test_pooling_with_a_per_sample_operand_is_right(channels: int) -> None:
    # Also an operand that varies over batch and channels, spatial one: the
    # pooling read sample 1's operand at the blocked dst's (padded) offsets
    # (random image graph 6873). Run apart, as above.
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Mul", ["p", "c"], ["y"]),
    ]
    model = graph_model(
        nodes, {"x": (2, channels, 12, 4)}, ["y"], {"c": w(2, channels, 1, 1)}
    )
    steps = kernel_steps(check_model(model))
    assert any(s[0] == "Mul_1" for s in steps), steps  # ran apart


@pytest.mark.parametrize("shape", [(2, 8, 1, 1), (3, 16, 1, 1), (2, 8, 1, 1, 1)])
def test_batchnorm_at_spatial_one_and_batch_above_one_is_right(
    shape: tuple[int, ...],
) -> None:
    # x * k + c as one binary primitive with a binary post-op came out wrong
    # in oneDNN 3.2 on (N > 1, C, 1, ...) tensors: Mul and Add run apart there.
    c = shape[1]
    nodes = [bn("bn", "x", "y")]
    mod = check_model(graph_model(nodes, {"x": shape}, ["y"], bn_inits("bn", c)))
    assert len(kernel_steps(mod)) == 2
    flat = (shape[0], c, 2, 1)  # spatial extent above one: still one primitive
    mod = check_model(graph_model(nodes, {"x": flat}, ["y"], bn_inits("bn", c)))
    assert len(kernel_steps(mod)) == 1


@pytest.mark.parametrize("layout", ["native", "blocked"])
@pytest.mark.parametrize(("rows", "cols"), [(33, 16), (64, 24)])
def test_a_binary_post_op_on_blocked_rows_is_right(
    rows: int, cols: int, layout: str
) -> None:
    # A Linear layer's rows on the blocked layout are a (rows, C) view of a
    # channel-blocked image. A binary op on them with a per-column binary
    # post-op (Div by a full matrix, then Add a bias) added the first block's
    # bias to every block in oneDNN 3.2: the two run apart there.
    nodes = [
        helper.make_node("Gemm", ["x", "k", "b"], ["g"], transB=1),
        helper.make_node("Div", ["g", "d"], ["q"]),
        helper.make_node("Add", ["q", "c"], ["y"]),
    ]
    inits = {
        "k": w(cols, cols),
        "b": w(1, cols),
        "d": np.abs(w(rows, cols)) + 0.5,
        "c": w(cols),
    }
    model = graph_model(nodes, {"x": (rows, cols)}, ["y", "g"], inits)
    check_model(model, options={"conv_layout": layout})


@pytest.mark.parametrize("layout", ["native", "blocked"])
@pytest.mark.parametrize("post", ["Add", "Mul"])
def test_a_concat_feeding_a_fused_binary_op_is_right(post: str, layout: str) -> None:
    # A batch-1 concat's dst desc carried its first input's batch stride;
    # the binary kernel after it read the per-channel post-op operand through
    # that stride, so channels 8-15 got channels 0-7's (random image graph
    # 4404). The concat now writes the standard desc of the same bytes.
    nodes = [
        helper.make_node("Conv", ["x", "k"], ["c"]),
        helper.make_node("Concat", ["c", "c"], ["j"], axis=1),
        helper.make_node("Div", ["j", "d"], ["q"]),
        helper.make_node(post, ["q", "e"], ["y"]),
    ]
    inits = {"k": w(8, 3, 3, 3), "d": np.abs(w(16, 6, 2)) + 0.5, "e": w(16, 1, 1)}
    model = graph_model(nodes, {"x": (1, 3, 8, 4)}, ["y"], inits)
    mod = check_model(model, options={"conv_layout": layout})
    assert ("Div_2", "jit:uni", ("binary",)) in kernel_steps(mod)  # still fused


@pytest.mark.parametrize("layout", ["native", "blocked"])
def test_a_residual_kept_in_columns_is_summed_right(layout: str) -> None:
    # A Softmax over axis 0 writes its rows as columns. The Linear layer run
    # as a 1x1 convolution summed into that residual where it lay, reading
    # the columns as rows (random row graph 3256): it now declines there.
    nodes = [
        helper.make_node("Softmax", ["x"], ["s"], axis=0),
        helper.make_node("MatMul", ["s", "k1"], ["h"]),
        helper.make_node("MatMul", ["h", "k2"], ["o"]),
        helper.make_node("Add", ["s", "o"], ["y"]),
    ]
    inits = {"k1": w(8, 16), "k2": w(16, 8)}
    model = graph_model(nodes, {"x": (33, 8)}, ["y"], inits)
    check_model(model, options={"conv_layout": layout})


def test_a_binary_post_op_on_a_transposed_view_is_right() -> None:
    # A binary op on a transposed view keeps the view's layout (columns
    # first); oneDNN 3.2 added the same bias to every row of it (random row
    # graph 5383). Binary post-ops now need a standard layout.
    r = helper.make_node("Relu", ["x"], ["r"])
    t = helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0])
    host = helper.make_node("Mul", ["t", "r"], ["m"])
    nodes = [r, t, host, helper.make_node("Add", ["m", "c"], ["y"])]
    model = graph_model(nodes, {"x": (8, 8)}, ["y"], {"c": w(8)})
    check_model(model)


@pytest.mark.parametrize("layout", ["native", "blocked"])
def test_a_division_into_a_padded_channel_block_is_right(layout: str) -> None:
    # A depthwise Conv on 4 channels with a Div by a per-channel constant
    # fused computed 0 / 0 in the padding lanes of the blocked dst, and the
    # 1x1 Conv after it carried the NaN through its zero weights (random
    # image graph 10329). The Div runs apart on padded channel counts.
    nodes = [
        helper.make_node("Conv", ["x", "d"], ["c"], group=4, pads=[1] * 4),
        helper.make_node("Div", ["c", "k"], ["q"]),
        helper.make_node("Conv", ["q", "p"], ["y"]),
    ]
    inits = {"d": w(4, 1, 3, 3), "k": np.abs(w(1, 4, 1, 1)) + 0.5, "p": w(24, 4, 1, 1)}
    model = graph_model(nodes, {"x": (2, 4, 9, 5)}, ["y"], inits)
    check_model(model, options={"conv_layout": layout})


def test_a_division_on_unpadded_channels_stays_fused() -> None:
    # The padded-block rule looks at the dst the host really writes: on
    # channels-last (native) or with whole channel blocks the Div stays fused.
    nodes = [
        helper.make_node("Conv", ["x", "d"], ["c"], group=4, pads=[1] * 4),
        helper.make_node("Div", ["c", "k"], ["y"]),
    ]
    inits = {"d": w(4, 1, 3, 3), "k": np.abs(w(1, 4, 1, 1)) + 0.5}
    model = graph_model(nodes, {"x": (2, 4, 9, 5)}, ["y"], inits)
    native = check_model(model, options={"conv_layout": "native"})
    assert [s[2] for s in engine_steps(native) if s[0].startswith("Conv")] == [
        ("binary",)
    ]
    blocked = check_model(model, options={"conv_layout": "blocked"})
    kernels = [s for s in engine_steps(blocked) if s[0] not in ("reorder", "output 0")]
    assert [s[2] for s in kernels] == [(), ()], kernels  # Conv, then Div apart


def test_a_value_written_in_place_is_reordered_again() -> None:
    # The Mul writes v9 over v4's blocked buffer; v4's plain copy (made for
    # the Add) stayed cached for that buffer and the Sub read it as v9.
    nodes = [
        helper.make_node("Clip", ["x", "lo", "hi"], ["v1"]),
        helper.make_node("Conv", ["v1", "dw", "db"], ["v4"], group=4, pads=[1] * 4),
        helper.make_node("Add", ["v4", "k"], ["v7"]),
        helper.make_node("Mul", ["v4", "v7"], ["v9"]),
        helper.make_node("Sub", ["v9", "c"], ["v10"]),
        helper.make_node("GlobalAveragePool", ["v10"], ["y"]),
    ]
    inits = {
        "lo": np.array(-1.0, np.float32),
        "hi": np.array(1.0, np.float32),
        "dw": w(4, 1, 3, 3),
        "db": w(4),
        "k": np.array(0.5, np.float32),
        "c": w(4, 11, 9),
    }
    model = graph_model(nodes, {"x": (2, 4, 11, 9)}, ["y", "v9"], inits)
    for layout in ("native", "blocked"):
        check_model(model, options={"conv_layout": layout})


def test_outputs_are_fresh_and_inputs_untouched() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["y"]),
        helper.make_node("Add", ["y", "x"], ["z"]),
    ]
    model = graph_model(nodes, {"x": (3, 4)}, ["y", "z"])
    mod = byoc.compile(model, backends=["dnnl"], quiet=True)
    x = feeds_for(model)["x"]
    keep = x.copy()
    first = mod.run({"x": x})
    y0 = first["y"].copy()
    second = mod.run({"x": -x})
    assert first["y"] is not second["y"]
    np.testing.assert_array_equal(first["y"], y0)
    np.testing.assert_array_equal(x, keep)
    np.testing.assert_array_equal(second["y"], np.maximum(-x, 0))


@pytest.mark.parametrize(
    "kind", ["transposed read-only", "transposed", "read-only", "offset view"]
)
def test_non_contiguous_and_readonly_inputs(kind: str) -> None:
    # The run binds a writable C-contiguous input in place and copies others.
    model = graph_model(
        [helper.make_node("Sigmoid", ["x"], ["y"])], {"x": (4, 3)}, ["y"]
    )
    mod = byoc.compile(model, backends=["dnnl"], quiet=True)
    base = R.standard_normal((5, 5)).astype(np.float32)
    x = base[1:4, 1:].T  # (4, 3), a non-contiguous view
    if kind == "read-only":
        x = np.ascontiguousarray(x)
    if kind == "offset view":
        x = base.reshape(-1)[3:15].reshape(4, 3)  # contiguous, not at the buffer start
    if kind.endswith("read-only"):
        x.flags.writeable = False
    np.testing.assert_allclose(mod.run({"x": x})["y"], 1 / (1 + np.exp(-x)), rtol=1e-6)
    # A static program writes into the outputs the driver allocates.
    assert mod.get_function(mod.symbols[0]).engine().fills_outputs


def test_head_read_inside_and_view_heads() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0, 2]),
        helper.make_node("Tanh", ["r"], ["y"]),
    ]
    model = graph_model(nodes, {"x": (2, 3, 4)}, ["r", "f", "t", "y"])
    check_model(model)


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return False


def _mlp_with_skip() -> tuple[list[helper.NodeProto], dict, dict]:
    nodes = [
        helper.make_node("Gemm", ["x", "w0", "b0"], ["g0"], transB=1),
        helper.make_node("Relu", ["g0"], ["r0"]),
        helper.make_node("Gemm", ["r0", "w1", "b1"], ["g1"]),
        helper.make_node("Add", ["g1", "r0"], ["s"]),
        helper.make_node("Relu", ["s"], ["y"]),
    ]
    inits = {"w0": w(32, 16), "b0": w(32), "w1": w(32, 32), "b1": w(32)}
    return nodes, {"x": (8, 16)}, inits


def _gemm_alpha_beta_c() -> tuple[list[helper.NodeProto], dict, dict]:
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], alpha=0.5, beta=2.0)]
    return nodes, {"x": (6, 16)}, {"w": w(16, 24), "c": w(6, 24)}


def _matmul_rows_bias_binary() -> tuple[list[helper.NodeProto], dict, dict]:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["h"]),
        helper.make_node("Mul", ["h", "z"], ["y"]),
    ]
    return nodes, {"x": (2, 8, 16), "z": (2, 8, 32)}, {"w": w(16, 32), "b": w(32)}


@pytest.mark.parametrize(
    "build", [_mlp_with_skip, _gemm_alpha_beta_c, _matmul_rows_bias_binary]
)
def test_linear_layers_run_as_brgemm_inner_products(build) -> None:  # noqa: ANN001
    # oneDNN 3.2's matmul has no brgemm kernel on AVX2; its inner product does.
    nodes, inputs, inits = build()
    model = graph_model(nodes, inputs, ["y"], inits)
    mod = check_model(model, options={"tune": False})  # oneDNN's own first pick
    steps = [s for s in kernel_steps(mod) if s[0] != "reorder"]
    if not _has_avx2():
        pytest.skip("brgemm kernels need AVX2; the matmul primitive runs instead")
    assert steps and all(s[1].startswith("brgemm") for s in steps), steps
