"""Small 1x1 convolutions split by output channels, and the compiled run loop.

A split convolution runs as a team of steps, one thread each, side by side in
one OpenMP region of the C loop (byoc_dnnl/runloop.c); each part writes its
own channel blocks of the output and reads its own blocks of a summed residual.
"""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import helper

import byoc
from byoc_dnnl import backend, layout, program, runloop
from byoc_dnnl._lib import FormatTag

from .conftest import compile_dnnl
from .helpers import graph_model, run_ort

R = np.random.default_rng(11)

needs_loop = pytest.mark.skipif(
    runloop.loop() is None,
    reason=f"no compiled run loop: {runloop.unavailable_reason()}",
)


def w(*shape: int) -> np.ndarray:
    return (R.standard_normal(shape) * 0.2).astype(np.float32)


def block_model(
    ic: int, oc: int, hw: int, *, residual: bool, bias: bool = True
) -> onnx.ModelProto:
    """MobileNetV2's projection shape: a 1x1 Conv (+ bias) + Clip, optionally
    summed into a residual computed before it (the sum post-op)."""
    nodes = []
    if residual:
        nodes.append(helper.make_node("Conv", ["x", "w3"], ["z"], pads=[1, 1, 1, 1]))
    nodes += [
        helper.make_node("Sigmoid", ["x"], ["a"]),
        helper.make_node("Conv", ["a", "w1", *(["b1"] if bias else [])], ["c"]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r"]),
    ]
    if residual:
        nodes.append(helper.make_node("Add", ["r", "z"], ["y"]))
    else:
        nodes.append(helper.make_node("Relu", ["r"], ["y"]))
    inits = {
        "w1": w(oc, ic, 1, 1),
        "w3": w(oc, ic, 3, 3),
        "lo": np.array(-1.0, np.float32),
        "hi": np.array(1.5, np.float32),
    }
    if bias:
        inits["b1"] = w(oc)
    if not residual:
        del inits["w3"]
    return graph_model(nodes, {"x": (1, ic, hw, hw)}, ["y"], inits)


def _engine(mod: byoc.Module):  # noqa: ANN202 - the dnnl engine of the only subgraph
    (symbol,) = mod.symbols
    return mod.get_function(symbol).engine()


def _teams(mod: byoc.Module) -> list[int]:
    return [s.team for s in _engine(mod)._program.steps]


def _check(mod: byoc.Module, model: onnx.ModelProto, seed: int = 0) -> None:
    """Every output of ``mod`` matches onnxruntime's on a seeded input."""
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    got = mod.run({"x": x})
    for head, want in zip(model.graph.output, run_ort(model, {"x": x}), strict=True):
        np.testing.assert_allclose(got[head.name], want, rtol=1e-4, atol=1e-5)


@needs_loop
@pytest.mark.parametrize(
    ("ic", "oc", "hw", "residual", "bias"),
    [
        (16, 32, 7, True, True),  # both halves write into the summed residual
        (24, 64, 5, False, True),
        (32, 96, 14, True, True),
        (48, 32, 7, False, False),  # no bias
        (16, 64, 3, True, True),
    ],
)
def test_a_split_convolution_matches_onnxruntime(
    ic: int, oc: int, hw: int, residual: bool, bias: bool
) -> None:
    model = block_model(ic, oc, hw, residual=residual, bias=bias)
    mod = compile_dnnl(model, conv_layout="blocked", split=True, threads=2)
    teams = _teams(mod)
    assert 2 in teams, f"not split: {_engine(mod).describe()}"
    assert teams[teams.index(2) + 1] == 0
    _check(mod, model)
    alone = compile_dnnl(model, conv_layout="blocked", threads=2, split=False)
    assert set(_teams(alone)) == {1}
    assert len(_teams(alone)) == len(teams) - 1  # the same program, one step less


@needs_loop
def test_three_threads_make_three_parts() -> None:
    """Every part a whole number of channel blocks (48 = 3 x 16 channels)."""
    model = block_model(16, 48, 7, residual=True)
    mod = compile_dnnl(model, conv_layout="blocked", split=True, threads=3)
    teams = _teams(mod)
    assert 3 in teams, f"not split: {_engine(mod).describe()}"
    assert teams[teams.index(3) + 1 : teams.index(3) + 3] == [0, 0]
    _check(mod, model)


@needs_loop
@pytest.mark.parametrize(
    ("ic", "oc", "hw", "options", "why"),
    [
        (16, 40, 7, {"conv_layout": "blocked", "threads": 2}, "partial block"),
        (16, 32, 28, {"conv_layout": "blocked", "threads": 2}, "large image"),
        (16, 32, 7, {"conv_layout": "native", "threads": 2}, "not blocked"),
        (16, 32, 7, {"conv_layout": "blocked", "threads": 1}, "one thread"),
        (16, 32, 7, {"conv_layout": "blocked", "split": False}, "option"),
    ],
)
def test_no_split_where_it_does_not_apply(
    ic: int, oc: int, hw: int, options: dict[str, object], why: str
) -> None:
    model = block_model(ic, oc, hw, residual=True)
    mod = compile_dnnl(model, **{"split": True, **options})
    assert set(_teams(mod)) == {1}, why
    _check(mod, model)


def test_a_batch_above_one_or_a_strided_1x1_is_not_split() -> None:
    for x_shape, strides in (((2, 16, 7, 7), [1, 1]), ((1, 16, 14, 14), [2, 2])):
        nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["y"], strides=strides)]
        model = graph_model(
            nodes, {"x": x_shape}, ["y"], {"w1": w(32, 16, 1, 1), "b1": w(32)}
        )
        mod = compile_dnnl(model, conv_layout="blocked", split=True, threads=2)
        assert set(_teams(mod)) == {1}
        feeds = {"x": R.standard_normal(x_shape).astype(np.float32)}
        np.testing.assert_allclose(
            mod.run(feeds)["y"], run_ort(model, feeds)[0], rtol=1e-4, atol=1e-5
        )


def _concurrent_runs_are_right(
    mod: byoc.Module, model: onnx.ModelProto, workers: int = 4, runs: int = 30
) -> None:
    """``workers`` threads each run ``mod`` ``runs`` times on rotating inputs;
    every result must match onnxruntime's."""
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    feeds = [
        {"x": np.random.default_rng(s).standard_normal(shape).astype(np.float32)}
        for s in range(workers)
    ]
    want = [run_ort(model, f)[0] for f in feeds]
    bad: list[str] = []

    def worker(k: int) -> None:
        for i in range(runs):
            j = (k + i) % len(feeds)
            got = mod.run(feeds[j])["y"]
            if not np.allclose(got, want[j], rtol=1e-4, atol=1e-5):
                bad.append(f"thread {k} run {i}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


@needs_loop
def test_concurrent_runs_of_a_split_program_are_right() -> None:
    model = block_model(16, 64, 7, residual=True)
    mod = compile_dnnl(model, conv_layout="blocked", split=True, threads=2)
    assert 2 in _teams(mod)
    _concurrent_runs_are_right(mod, model)


@needs_loop
def test_the_python_loop_runs_a_team_one_member_after_another() -> None:
    model = block_model(16, 32, 7, residual=True)
    mod = compile_dnnl(model, conv_layout="blocked", split=True, threads=2)
    prog = _engine(mod)._program
    assert 2 in _teams(mod)
    for ctx in prog._pool:
        ctx._loop_call = None  # as if the loop had not built after lowering
    _check(mod, model)
    secs = prog.step_seconds({"x": np.zeros((1, 16, 7, 7), np.float32)})
    teams = _teams(mod)
    assert len(secs) == len(teams)
    assert all(s > 0 for s, t in zip(secs, teams, strict=True) if t)
    assert all(s == 0 for s, t in zip(secs, teams, strict=True) if not t)


@needs_loop
def test_step_seconds_times_a_team_as_one_unit() -> None:
    model = block_model(16, 32, 7, residual=False)
    mod = compile_dnnl(model, conv_layout="blocked", split=True, threads=2)
    teams = _teams(mod)
    secs = _engine(mod)._program.step_seconds({"x": np.ones((1, 16, 7, 7), np.float32)})
    assert [s > 0 for s in secs] == [t > 0 for t in teams]


def test_without_the_compiled_loop_nothing_is_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(runloop.ENV_SWITCH, "python")
    runloop.reset()
    try:
        assert runloop.loop() is None
        assert runloop.unavailable_reason() == f"{runloop.ENV_SWITCH}=python"
        model = block_model(16, 32, 7, residual=True)
        mod = compile_dnnl(model, conv_layout="blocked", split=True, threads=2)
        assert set(_teams(mod)) == {1}
        assert _engine(mod)._program._pool[0]._loop_call is None
        _check(mod, model)
    finally:
        monkeypatch.delenv(runloop.ENV_SWITCH)
        runloop.reset()


def test_a_failed_build_leaves_the_python_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("CC", "no-such-cc-5678")
    monkeypatch.setenv("BYOC_DNNL_NATIVE_CACHE", str(tmp_path))
    monkeypatch.delenv(runloop.ENV_SWITCH, raising=False)  # the build must be tried
    runloop.reset()
    try:
        assert runloop.loop() is None
        assert "no-such-cc-5678" in (runloop.unavailable_reason() or "")
        model = block_model(16, 32, 7, residual=False)
        _check(compile_dnnl(model, conv_layout="blocked", split=True, threads=2), model)
    finally:
        monkeypatch.delenv("CC")
        runloop.reset()


@needs_loop
@pytest.mark.parametrize(
    ("tag", "split", "want"),
    [
        ("nChw8c", "auto", 2),  # AVX2: the jit 1x1 kernel shares only pixels
        ("nChw16c", "auto", 1),  # AVX-512: its kernel divides the channels too
        ("nChw16c", True, 2),
        ("nChw8c", False, 1),
    ],
)
def test_auto_splits_only_where_the_blocked_layout_is_avx2s(
    monkeypatch: pytest.MonkeyPatch, tag: str, split: object, want: int
) -> None:
    monkeypatch.setattr(layout, "blocked_tag", lambda: getattr(FormatTag, tag))
    assert backend._team({"split": split}, 2) == want
    assert backend._team({}, 2) == backend._team({"split": "auto"}, 2)


def test_the_split_option_is_checked() -> None:
    model = block_model(16, 32, 7, residual=False)
    with pytest.raises(byoc.ByocError, match="split='yes'"):
        compile_dnnl(model, split="yes").init()


def test_team_members_get_their_own_scratchpad() -> None:
    class FakeStep:
        def __init__(self, team: int, nbytes: int | None) -> None:
            self.team = team
            self.scratch = None if nbytes is None else type("M", (), {"nbytes": nbytes})

    steps = [FakeStep(1, 100), FakeStep(2, 100), FakeStep(0, 30), FakeStep(1, None)]
    offsets, total = program._scratch_offsets(steps)
    assert offsets == [0, 0, 128, 0]
    assert total == 192
    assert [list(u) for u in program.teams(steps)] == [[0], [1, 2], [3]]


# -- chains: a 1x1 Conv and the depthwise Conv reading it, per thread -----------


def inverted_residual(
    c: int,
    e: int,
    hw: int,
    *,
    stride: int = 1,
    kernel: int = 3,
    extra_reader: bool = False,
    batch: int = 1,
) -> onnx.ModelProto:
    """MobileNetV2's block: 1x1 expand + Clip, depthwise + Clip, 1x1 project,
    plus the input where the shapes allow. ``extra_reader``: the expanded
    tensor is also an output, so the depthwise Conv is not its only reader."""
    pad = kernel // 2
    nodes = [
        helper.make_node("Conv", ["x", "we", "be"], ["e"]),
        helper.make_node("Clip", ["e", "lo", "hi"], ["ce"]),
        helper.make_node(
            "Conv",
            ["ce", "wd", "bd"],
            ["d"],
            group=e,
            pads=[pad] * 4,
            strides=[stride, stride],
        ),
        helper.make_node("Clip", ["d", "lo", "hi"], ["cd"]),
        helper.make_node("Conv", ["cd", "wp", "bp"], ["p"]),
    ]
    if stride == 1:
        nodes.append(helper.make_node("Add", ["p", "x"], ["y"]))
    else:
        nodes.append(helper.make_node("Relu", ["p"], ["y"]))
    inits = {
        "we": w(e, c, 1, 1),
        "be": w(e),
        "wd": w(e, 1, kernel, kernel),
        "bd": w(e),
        "wp": w(c, e, 1, 1),
        "bp": w(c),
        "lo": np.array(0.0, np.float32),
        "hi": np.array(6.0, np.float32),
    }
    outs = ["y", "ce"] if extra_reader else ["y"]
    return graph_model(nodes, {"x": (batch, c, hw, hw)}, outs, inits)


def _chains(mod: byoc.Module) -> list[tuple[int, int, list[str]]]:
    """(team, chain, labels) of every chained team in the program."""
    steps = _engine(mod)._program.steps
    return [
        (s.team, s.chain, [t.label for t in steps[i : i + s.team]])
        for i, s in enumerate(steps)
        if s.chain > 1
    ]


@needs_loop
@pytest.mark.parametrize(
    ("c", "e", "hw", "stride", "kernel", "threads"),
    [
        (16, 96, 14, 1, 3, 2),
        (24, 144, 28, 1, 3, 2),  # 144 = 9 blocks of 16: parts of 5 and 4 blocks
        (16, 96, 15, 2, 3, 2),  # odd size, stride 2: no residual
        (32, 192, 7, 1, 3, 3),  # three threads, three parts
        (16, 64, 9, 1, 5, 2),  # a 5x5 depthwise kernel
    ],
)
def test_a_chained_block_matches_onnxruntime(
    c: int, e: int, hw: int, stride: int, kernel: int, threads: int
) -> None:
    model = inverted_residual(c, e, hw, stride=stride, kernel=kernel)
    mod = compile_dnnl(model, conv_layout="blocked", threads=threads, split=False)
    ((team, chain, labels),) = _chains(mod)
    assert (team, chain) == (2 * threads, 2)
    assert labels == ["Conv_0", "Conv_2"] * threads  # expand part, then its dw part
    _check(mod, model)
    plain = compile_dnnl(
        model, conv_layout="blocked", threads=threads, chain=False, split=False
    )
    assert _chains(plain) == [] and set(_teams(plain)) == {1}
    _check(plain, model)


@needs_loop
@pytest.mark.parametrize(
    ("model", "options", "why"),
    [
        (inverted_residual(16, 64, 8, extra_reader=True), {}, "a second reader"),
        (inverted_residual(16, 64, 8, batch=2), {}, "batch 2"),
        (inverted_residual(16, 64, 8), {"conv_layout": "native"}, "channels-last"),
        (inverted_residual(16, 64, 8), {"threads": 1}, "one thread"),
        (inverted_residual(16, 64, 8), {"chain": False}, "the option"),
        (inverted_residual(16, 36, 8), {}, "a partial channel block"),
    ],
)
def test_no_chain_where_it_does_not_apply(
    model: onnx.ModelProto, options: dict[str, object], why: str
) -> None:
    mod = compile_dnnl(model, **{"conv_layout": "blocked", "threads": 2, **options})
    assert _chains(mod) == [], why
    _check(mod, model)


def _chained(c: int, e: int, hw: int) -> tuple[onnx.ModelProto, byoc.Module]:
    """An inverted-residual block compiled with its 1x1 + depthwise chained."""
    model = inverted_residual(c, e, hw)
    mod = compile_dnnl(model, conv_layout="blocked", threads=2)
    assert _chains(mod)
    return model, mod


@needs_loop
def test_the_python_loop_runs_a_chained_team_in_order() -> None:
    model, mod = _chained(16, 96, 14)
    for ctx in _engine(mod)._program._pool:
        ctx._loop_call = None
    _check(mod, model)


@needs_loop
def test_concurrent_runs_of_a_chained_program_are_right() -> None:
    model, mod = _chained(24, 144, 14)
    _concurrent_runs_are_right(mod, model, workers=3, runs=20)


def test_the_chain_option_is_checked() -> None:
    with pytest.raises(byoc.ByocError, match="chain='yes'"):
        compile_dnnl(inverted_residual(16, 64, 8), chain="yes").init()
    assert backend._chain_team({"chain": False}, 2) == 1
    assert backend._chain_team({}, 1) == 1


def test_a_teams_buffers_never_share_arena_bytes() -> None:
    # Two members that each touch only their own buffer still run at once:
    # the arena must not give the two buffers the same bytes.
    class Buf:
        def __init__(self) -> None:
            self.kind, self.nbytes, self.offset = program.INTERNAL, 256, -1

    class Slot:
        def __init__(self, buffer: int) -> None:
            self.buffer = buffer

    class FakeStep:
        def __init__(self, team: int, slot: int) -> None:
            self.team, self.args = team, [(1, slot)]

    b = type("B", (), {})()
    b.buffers = [Buf(), Buf()]
    b.slots = [Slot(0), Slot(1)]
    b.steps = [FakeStep(2, 0), FakeStep(0, 1)]
    assert program.plan_arena(b) == 512  # type: ignore[arg-type]
    assert {buf.offset for buf in b.buffers} == {0, 256}
    b.steps = [FakeStep(1, 0), FakeStep(1, 1)]  # one after the other: shared
    assert program.plan_arena(b) == 256  # type: ignore[arg-type]
