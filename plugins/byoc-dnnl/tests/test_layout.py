"""The per-engine choice of convolution layout (byoc_dnnl.layout)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import helper

import byoc
from byoc_dnnl import layout
from byoc_dnnl._lib import FormatTag

from .helpers import check_model, engine_steps, graph_model

R = np.random.default_rng(3)


def _mobile_block_chain(blocks: int = 2, size: int = 16, expand: int = 4) -> Any:
    """1x1 expand -> Clip -> depthwise 3x3 -> Clip -> 1x1 project, repeated.

    The first block's depthwise convolution has stride 2.
    """
    nodes, inits, x, c = [], {}, "x", 16
    for i in range(blocks):
        e = expand * c
        nodes += [
            helper.make_node("Conv", [x, f"we{i}", f"be{i}"], [f"e{i}"]),
            helper.make_node("Clip", [f"e{i}", "lo", "hi"], [f"ce{i}"]),
            helper.make_node(
                "Conv",
                [f"ce{i}", f"wd{i}", f"bd{i}"],
                [f"d{i}"],
                group=e,
                pads=[1, 1, 1, 1],
                strides=[2, 2] if i == 0 else [1, 1],
            ),
            helper.make_node("Clip", [f"d{i}", "lo", "hi"], [f"cd{i}"]),
            helper.make_node("Conv", [f"cd{i}", f"wp{i}"], [f"p{i}"]),
        ]
        inits |= {
            f"we{i}": (R.standard_normal((e, c, 1, 1)) * 0.3).astype(np.float32),
            f"be{i}": (R.standard_normal(e) * 0.1).astype(np.float32),
            f"wd{i}": (R.standard_normal((e, 1, 3, 3)) * 0.3).astype(np.float32),
            f"bd{i}": (R.standard_normal(e) * 0.1).astype(np.float32),
            f"wp{i}": (R.standard_normal((c, e, 1, 1)) * 0.3).astype(np.float32),
        }
        x = f"p{i}"
    inits |= {"lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}
    nodes.append(helper.make_node("Relu", [x], ["y"]))
    return graph_model(nodes, {"x": (1, 16, size, size)}, ["y"], inits)


def _choice(mod: byoc.Module) -> layout.Choice:
    (rec,) = [r for r in mod.subgraphs if r.backend == "dnnl"]
    return mod.get_function(rec.symbol).engine().layout_choice  # type: ignore[attr-defined]


@pytest.mark.parametrize("option", ["auto", "native", "blocked"])
def test_every_layout_computes_the_same(option: str) -> None:
    mod = check_model(_mobile_block_chain(), options={"conv_layout": option})
    choice = _choice(mod)
    if layout.blocked_tag() is None:
        assert choice.layout == "native"
        return
    if option == "auto":
        assert choice.reason == "timed at init"
        assert set(choice.timings_ms) == {"native", "blocked"}
        assert choice.layout == min(choice.timings_ms, key=choice.timings_ms.get)
    else:
        assert choice.layout == option
    if choice.layout == "blocked":
        convs = [s for s in engine_steps(mod) if s[0].startswith("Conv")]
        assert convs and all(impl.startswith("jit") for _, impl, _ in convs), convs


def test_small_subgraphs_are_not_timed() -> None:
    mod = check_model(_mobile_block_chain(blocks=1))  # 3 convolutions
    choice = _choice(mod)
    assert choice.layout == "native" and not choice.timings_ms


@pytest.mark.parametrize(
    ("option", "convs", "tag", "want"),
    [
        ("native", 10, 102, "native"),
        ("auto", 0, 102, "native"),
        ("blocked", 10, None, "native"),
        ("blocked", 1, 102, "blocked"),
        ("auto", 3, 102, "native"),
        ("auto", 4, 102, None),
    ],
)
def test_plan(option: str, convs: int, tag: int | None, want: str | None) -> None:
    got = layout.plan(option, convs, tag)
    assert (got.layout if got is not None else None) == want


def test_bad_layout_option_is_a_backend_error() -> None:
    with pytest.raises(byoc.BackendError, match="'auto', 'native', 'blocked'"):
        byoc.compile(
            _mobile_block_chain(),
            backends=["dnnl", "ref"],
            quiet=True,
            options={"dnnl": {"conv_layout": "nhwc"}},
        ).init()


def _dw_fused(mod: byoc.Module) -> list[str]:
    return [label for label, _, post in engine_steps(mod) if "convolution" in post]


@pytest.mark.parametrize("size", [112, 111])
def test_stride2_depthwise_rides_on_the_1x1_conv(size: int) -> None:
    # MobileNetV2's first downsampling block: oneDNN 3.2 fuses it on AVX2.
    model = _mobile_block_chain(blocks=1, size=size, expand=6)
    mod = check_model(model, options={"conv_layout": "blocked"})
    if layout.blocked_tag() != FormatTag.nChw8c:
        pytest.skip("the fused depthwise kernel was measured on AVX2 only")
    assert _dw_fused(mod) == ["Conv_0"]
    labels = [label for label, _, _ in engine_steps(mod)]
    assert "Conv_2" not in labels and "Clip_1" not in labels


def test_refused_depthwise_fusion_keeps_the_rest_fused() -> None:
    # Too small for oneDNN's fused kernel: the 1x1 keeps its Clip, the
    # depthwise Conv runs with its own Clip.
    mod = check_model(_mobile_block_chain(blocks=1), options={"conv_layout": "native"})
    steps = [s for s in engine_steps(mod) if s[0].startswith(("Conv", "Clip"))]
    assert not _dw_fused(mod)
    assert [(label, post) for label, _, post in steps] == [
        ("Conv_0", ("eltwise",)),
        ("Conv_2", ("eltwise",)),
        ("Conv_4", ("eltwise",)),  # the final Relu
    ]
