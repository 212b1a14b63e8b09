"""The per-engine choice of convolution layout (byoc_dnnl.layout)."""

from __future__ import annotations

import warnings
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
        assert choice.layout == layout.pick(choice.timings_ms)
    else:
        assert choice.layout == option
    if choice.layout == "blocked":
        convs = [s for s in engine_steps(mod) if s[0].startswith("Conv")]
        assert convs and all(impl.startswith("jit") for _, impl, _ in convs), convs


@pytest.mark.parametrize(
    ("native", "blocked", "want"),
    [
        (10.0, 9.0, "blocked"),  # 11 % faster
        (10.0, 9.8, "blocked"),  # 2 %
        (10.0, 9.95, "native"),  # 0.5 %: a close call keeps channels-last
        (10.0, 10.5, "native"),
        (9.0, 10.0, "native"),
    ],
)
def test_pick_keeps_native_unless_blocked_clearly_wins(
    native: float, blocked: float, want: str
) -> None:
    assert layout.pick({"native": native, "blocked": blocked}) == want
    assert layout.pick({"blocked": blocked, "native": native}) == want


def test_small_subgraphs_are_not_timed() -> None:
    mod = check_model(_mlp(widths=(32, 32, 32)))  # 2 Linear layers
    choice = _choice(mod)
    assert choice.layout == "native" and not choice.timings_ms


@pytest.mark.parametrize(
    ("option", "convs", "tag", "want"),
    [
        ("native", 10, 102, "native"),
        ("auto", 0, 102, "native"),
        ("blocked", 10, None, "native"),
        ("blocked", 1, 102, "blocked"),
        ("auto", 2, 102, "native"),
        ("auto", 3, 102, None),
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


def test_native_layout_refuses_a_fused_depthwise_that_needs_reorders() -> None:
    # The fused kernel is blocked-only. In the native layout it used to be
    # taken anyway, with a reorder into and out of it (on MobileNetV2 about
    # 0.5 ms a run, twice what the fusion saves).
    model = _mobile_block_chain(blocks=1, size=112, expand=6)
    mod = check_model(model, options={"conv_layout": "native"})
    assert not _dw_fused(mod)
    labels = [label for label, _, _ in engine_steps(mod)]
    convs = [i for i, x in enumerate(labels) if x.startswith("Conv")]
    assert "reorder" not in labels[convs[0] : convs[-1]], labels


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


# -- Linear layers on the blocked layout ----------------------------------------


def _w(*shape: int) -> np.ndarray:
    return (R.standard_normal(shape) * 0.2).astype(np.float32)


def _mlp(rows: int = 64, widths: tuple[int, ...] = (32, 64, 48, 32)) -> Any:
    """Gemm(transB=1) + Relu layers, as exporters write Linear layers."""
    nodes, inits, x = [], {}, "x"
    layers = list(zip(widths, widths[1:], strict=False))
    for i, (k, n) in enumerate(layers):
        y = "y" if i == len(layers) - 1 else f"r{i}"
        nodes += [
            helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"g{i}"], transB=1),
            helper.make_node("Relu", [f"g{i}"], [y]),
        ]
        inits |= {f"w{i}": _w(n, k), f"b{i}": _w(n)}
        x = y
    return graph_model(nodes, {"x": (rows, widths[0])}, ["y"], inits)


def _kernels(mod: byoc.Module) -> list[tuple[str, str]]:
    return [(label, impl) for label, impl, _ in engine_steps(mod)]


# Tests of which kernels the lowering reaches pin oneDNN's first pick: timing
# (byoc_dnnl.tune) may swap jit_1x1 for jit on these small shapes.
_BLOCKED_UNTUNED = {"conv_layout": "blocked", "tune": False}


def _needs_blocked() -> None:
    if layout.blocked_tag() is None:
        pytest.skip("this CPU has no jit kernels on a blocked layout")


def test_linear_chain_runs_as_blocked_1x1_convolutions() -> None:
    _needs_blocked()
    mod = check_model(_mlp(), options=_BLOCKED_UNTUNED)
    steps = _kernels(mod)
    gemms = [impl for label, impl in steps if label.startswith("Gemm")]
    assert len(gemms) == 3 and all(i.startswith("jit_1x1") for i in gemms), steps
    # One reorder into the blocked layout and one out: none between layers.
    assert [label for label, _ in steps if not label.startswith("Gemm")] == [
        "reorder",
        "output 0",
    ], steps


def test_linear_chain_runs_as_channels_last_1x1_convolutions() -> None:
    # Plain rows are a channels-last image: no reorder anywhere.
    mod = check_model(_mlp(), options={"conv_layout": "native", "tune": False})
    steps = _kernels(mod)
    assert [impl[:7] for _, impl in steps] == ["jit_1x1"] * 3, steps


def test_a_residual_on_channels_last_rows_is_a_sum_post_op() -> None:
    # r0 dies at the Add, after both Gemms: the second one accumulates into it.
    nodes = [
        helper.make_node("Relu", ["x"], ["r0"]),
        helper.make_node("Gemm", ["r0", "w0", "b0"], ["g0"], transB=1),
        helper.make_node("Relu", ["g0"], ["r1"]),
        helper.make_node("Gemm", ["r1", "w1", "b1"], ["g1"], transB=1),
        helper.make_node("Add", ["g1", "r0"], ["y"]),
    ]
    inits = {"w0": _w(64, 32), "b0": _w(64), "w1": _w(32, 64), "b1": _w(32)}
    model = graph_model(nodes, {"x": (48, 32)}, ["y"], inits)
    mod = check_model(model, options={"conv_layout": "native", "tune": False})
    steps = [(impl[:7], post) for label, impl, post in engine_steps(mod)]
    assert steps[1:] == [("jit_1x1", ("eltwise",)), ("jit_1x1", ("sum",))], steps


# A per-row operand (48, 1) broadcasts over the image's channels: no jit 1x1
# kernel takes that, so only correctness is checked there.
@pytest.mark.parametrize("z_shape", [(48, 16), (1, 16), (48, 1)])
def test_binary_operands_on_channels_last_rows(z_shape: tuple[int, ...]) -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1),
        helper.make_node("Mul", ["g", "z"], ["y"]),
    ]
    inits = {"w": _w(16, 32), "b": _w(16)}
    model = graph_model(nodes, {"x": (48, 32), "z": z_shape}, ["y"], inits)
    mod = check_model(model, options={"conv_layout": "native", "tune": False})
    steps = [(impl[:7], post) for _, impl, post in engine_steps(mod)]
    if z_shape[-1] != 1:
        assert steps == [("jit_1x1", ("binary",))], steps


@pytest.mark.parametrize("x_shape", [(2, 40, 32), (80, 32)])
def test_matmul_chain_stays_blocked(x_shape: tuple[int, ...]) -> None:
    _needs_blocked()
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["m0"]),
        helper.make_node("Relu", ["m0"], ["r0"]),
        helper.make_node("MatMul", ["r0", "w1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "w2"], ["y"]),
    ]
    inits = {"w0": _w(32, 64), "w1": _w(64, 48), "b1": _w(48), "w2": _w(48, 16)}
    model = graph_model(nodes, {"x": x_shape}, ["y"], inits)
    steps = _kernels(check_model(model, options=_BLOCKED_UNTUNED))
    assert [impl[:7] for label, impl in steps if label.startswith("MatMul")] == [
        "jit_1x1"
    ] * 3, steps
    assert sum(label == "reorder" for label, _ in steps) == 1, steps


@pytest.mark.parametrize(
    ("case", "rows", "k", "n"),
    [
        ("few rows", 4, 32, 32),  # the inner product is faster there
        ("padded channels", 64, 32, 20),  # 20 is no multiple of the block
    ],
)
def test_linear_layers_that_stay_inner_products(
    case: str, rows: int, k: int, n: int
) -> None:
    _needs_blocked()
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)]
    model = graph_model(nodes, {"x": (rows, k)}, ["y"], {"w": _w(n, k), "b": _w(n)})
    steps = _kernels(check_model(model, options={"conv_layout": "blocked"}))
    assert not any(impl.startswith("jit_1x1") for _, impl in steps), (case, steps)


def test_few_channels_last_rows_stay_an_inner_product() -> None:
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)]
    model = graph_model(nodes, {"x": (4, 32)}, ["y"], {"w": _w(32, 32), "b": _w(32)})
    steps = _kernels(check_model(model, options={"conv_layout": "native"}))
    assert not any(impl.startswith("jit") for _, impl in steps), steps


def test_blocked_rows_feed_a_layer_with_a_binary_post_op() -> None:
    # The second Gemm adds the subgraph input (a binary post-op), which stays
    # on the inner product: it must read the blocked rows through a reorder.
    _needs_blocked()
    nodes = [
        helper.make_node("Gemm", ["x", "w0", "b0"], ["g0"], transB=1),
        helper.make_node("Relu", ["g0"], ["r0"]),
        helper.make_node("Gemm", ["r0", "w1", "b1"], ["g1"], transB=1),
        helper.make_node("Add", ["g1", "x"], ["y"]),
    ]
    inits = {"w0": _w(64, 32), "b0": _w(64), "w1": _w(32, 64), "b1": _w(32)}
    model = graph_model(nodes, {"x": (48, 32)}, ["y"], inits)
    steps = _kernels(check_model(model, options=_BLOCKED_UNTUNED))
    impls = dict(steps)
    assert impls["Gemm_0"].startswith("jit_1x1") and not impls["Gemm_2"].startswith(
        "jit_1x1"
    ), steps


def test_auto_times_a_linear_chain() -> None:
    _needs_blocked()
    choice = _choice(check_model(_mlp()))
    assert choice.reason == "timed at init" and set(choice.timings_ms) == {
        "native",
        "blocked",
    }


# -- prebuilt engines: the layout choice travels in the artifact ----------------


def _saved_with_engine(tmp_path: Any, threads: int = 1) -> tuple[Any, Any, Any]:
    model = _mlp()
    feeds = {"x": R.standard_normal((64, 32)).astype(np.float32)}
    mod = byoc.compile(
        model,
        backends=["dnnl", "ref"],
        quiet=True,
        options={"dnnl": {"threads": threads}},
    )
    want = mod.run(feeds)
    return mod.save(tmp_path / "m.byoc", engines=True), feeds, (mod, want)


def test_prebuilt_engine_reuses_the_timed_choice(tmp_path: Any) -> None:
    _needs_blocked()
    path, feeds, (mod, want) = _saved_with_engine(tmp_path)
    timed = _choice(mod)
    assert timed.reason == "timed at init" and not timed.prebuilt
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = byoc.load(path, options={"dnnl": {"threads": 1}})
        got = loaded.run(feeds)
    assert sum(loaded.init_counts.values()) == 0  # import_engine, not init
    choice = _choice(loaded)
    assert choice.prebuilt and choice.layout == timed.layout
    assert choice.timings_ms == timed.timings_ms
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_prebuilt_engine_for_another_thread_count_is_rebuilt(tmp_path: Any) -> None:
    _needs_blocked()
    path, feeds, (_, want) = _saved_with_engine(tmp_path, threads=1)
    loaded = byoc.load(path, options={"dnnl": {"threads": 2}})
    with pytest.warns(RuntimeWarning, match=r"another setup: threads 1 \(here 2\)"):
        got = loaded.run(feeds)
    assert sum(loaded.init_counts.values()) == 1
    assert not _choice(loaded).prebuilt
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)


def test_an_explicit_layout_option_overrides_the_prebuilt_choice(
    tmp_path: Any,
) -> None:
    _needs_blocked()
    path, feeds, _ = _saved_with_engine(tmp_path)
    for forced in ("native", "blocked"):
        loaded = byoc.load(
            path, options={"dnnl": {"threads": 1, "conv_layout": forced}}
        )
        loaded.run(feeds)
        assert _choice(loaded).layout == forced


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"\x00garbage", "not a dnnl engine blob"),
        (b'{"sha256": "0", "body": {"layout": "native"}}', "checksum"),
        (b'{"sha256": "0", "body": ["native"]}', "body is a list"),
    ],
)
def test_damaged_engine_blobs_are_refused(blob: bytes, match: str) -> None:
    from byoc_dnnl.backend import DnnlBackend

    mod = check_model(_mlp())
    (rec,) = mod.subgraphs
    engine = DnnlBackend(rec.symbol, rec.graph, {}, {})
    with pytest.raises(ValueError, match=match):
        engine.import_engine(blob, {})


class _FakeClock:
    """``time.perf_counter`` for :func:`layout.time_candidates`: each run moves
    it by the candidate's cost."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: dict[str, int] = {}

    def runs(self, costs: dict[str, float]) -> dict[str, Any]:
        def make(name: str) -> Any:
            def run() -> None:
                self.calls[name] = self.calls.get(name, 0) + 1
                self.now += costs[name]

            return run

        return {name: make(name) for name in costs}


def _timed(
    monkeypatch: pytest.MonkeyPatch, costs: dict[str, float], clock: _FakeClock
) -> dict[str, float]:
    monkeypatch.setattr(layout.time, "perf_counter", lambda: clock.now)
    return layout.time_candidates(clock.runs(costs))


def test_a_clear_difference_is_timed_for_the_budget_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _FakeClock()
    ms = _timed(monkeypatch, {"native": 0.060, "blocked": 0.075}, clock)
    assert ms == pytest.approx({"native": 60.0, "blocked": 75.0})
    # 4 rounds of 2 runs each (+1 warm-up): past 1 s after the fourth round
    assert clock.calls == {"native": 9, "blocked": 9}


def test_a_close_call_is_timed_longer(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _FakeClock()
    ms = _timed(monkeypatch, {"native": 0.060, "blocked": 0.062}, clock)
    assert ms["blocked"] / ms["native"] == pytest.approx(0.062 / 0.060)
    assert clock.calls["native"] > 2 * 9  # past 3 s, not 1 s
    assert clock.now > layout._CLOSE_BUDGET_S


def test_fast_candidates_stop_at_the_round_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _FakeClock()
    _timed(monkeypatch, {"native": 0.001, "blocked": 0.001}, clock)
    n = 1 + 2 * layout._MAX_ROUNDS
    assert clock.calls == {"native": n, "blocked": n}
