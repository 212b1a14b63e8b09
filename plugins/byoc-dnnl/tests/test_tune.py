"""Timing oneDNN's implementations at init (byoc_dnnl.tune)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
from onnx import helper

import byoc
from byoc_dnnl import _lib, tune
from byoc_dnnl._lib import Arg, DnnlError, Query
from byoc_dnnl.handles import MemoryDesc, conv_pd
from byoc_dnnl.program import Program

from .helpers import check_model, engine_steps, graph_model

R = np.random.default_rng(5)
Timer = Callable[[Mapping[str, Callable[[], None]]], dict[str, float]]


def _w(*shape: int) -> np.ndarray:
    return (R.standard_normal(shape) * 0.2).astype(np.float32)


def _bottlenecks(blocks: int = 2, c: int = 32, mid: int = 64) -> Any:
    """ResNet bottlenecks (1x1 -> 3x3 -> 1x1 + residual), identical shapes, so
    every block repeats the first block's problems."""
    nodes, inits, x = [], {}, "x"
    for i in range(blocks):
        nodes += [
            helper.make_node("Conv", [x, f"a{i}", f"ab{i}"], [f"p{i}"]),
            helper.make_node("Relu", [f"p{i}"], [f"pr{i}"]),
            helper.make_node("Conv", [f"pr{i}", f"b{i}"], [f"q{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"q{i}"], [f"qr{i}"]),
            helper.make_node("Conv", [f"qr{i}", f"c{i}"], [f"r{i}"]),
            helper.make_node("Add", [f"r{i}", x], [f"s{i}"]),
            helper.make_node("Relu", [f"s{i}"], [f"o{i}"]),
        ]
        inits |= {
            f"a{i}": _w(mid, c, 1, 1),
            f"ab{i}": _w(mid),
            f"b{i}": _w(mid, mid, 3, 3),
            f"c{i}": _w(c, mid, 1, 1),
        }
        x = f"o{i}"
    nodes.append(helper.make_node("Relu", [x], ["y"]))
    return graph_model(nodes, {"x": (1, c, 14, 14)}, ["y"], inits)


_NATIVE = {"conv_layout": "native", "threads": 1}


def _choice(mod: byoc.Module) -> Any:
    (rec,) = [r for r in mod.subgraphs if r.backend == "dnnl"]
    return mod.get_function(rec.symbol).engine().layout_choice  # type: ignore[attr-defined]


def _fake(pick: Callable[[list[str]], str], calls: list[list[str]]) -> Timer:
    """A timer that makes ``pick(names)`` the fastest, by 2x, and logs its calls."""

    def timer(runs: Mapping[str, Callable[[], None]]) -> dict[str, float]:
        names = list(runs)
        calls.append(names)
        for run in runs.values():
            run()  # every candidate really executes
        return {n: 0.5 if n == pick(names) else 1.0 for n in names}

    return timer


def _impls(mod: byoc.Module) -> list[str]:
    return [impl for _, impl, _ in engine_steps(mod)]


def _channels_last_1x1() -> tuple[Any, MemoryDesc]:
    src = MemoryDesc.strided((1, 64, 14, 14), (64 * 196, 1, 14 * 64, 64))
    w, dst = MemoryDesc.any((64, 64, 1, 1)), MemoryDesc.any((1, 64, 14, 14))
    return conv_pd(src, w, None, dst, ((1, 1), (0, 0), (0, 0), (0, 0))), src


def _needs_choices() -> None:
    """Skip where oneDNN has a single non-reference kernel for a channels-last
    1x1 convolution (x86 with AVX2 has brgemm and jit ones): then no layer of
    the test models has anything to choose from."""
    if len(tune.candidates(_channels_last_1x1()[0])) < 2:
        pytest.skip("oneDNN offers one implementation per problem on this CPU")


def test_candidates_start_with_onednns_pick_and_skip_reference_kernels() -> None:
    pd, src = _channels_last_1x1()
    first = pd.impl
    found = tune.candidates(pd)
    assert list(found)[0] == first
    assert not any(name.startswith("ref") for name in found), list(found)
    for name, clone in found.items():
        assert clone.impl == name
        assert clone.md(Query.src_md).same(src)  # a fixed layout stays fixed
    assert pd.impl.startswith("ref")  # the walk ends at the reference kernel


def test_the_fastest_candidate_is_built_and_computes_correctly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _needs_choices()
    calls: list[list[str]] = []
    monkeypatch.setattr(tune, "time_runs", _fake(lambda names: names[-1], calls))
    mod = check_model(_bottlenecks(), options=_NATIVE)  # vs onnxruntime and ref
    assert calls
    decisions = _choice(mod).impls
    # Every flip was timed twice: among all candidates, then head to head.
    assert len(calls) == 2 * len(decisions)
    assert all(len(c) == 2 for c in calls[1::2]), calls
    assert sorted(decisions.values()) == sorted(names[-1] for names in calls[::2])
    impls = _impls(mod)
    assert all(pick in impls for pick in decisions.values()), (decisions, impls)
    untuned = _impls(check_model(_bottlenecks(), options={**_NATIVE, "tune": False}))
    assert impls != untuned  # the picks really replaced oneDNN's first choice


def test_repeated_layers_are_timed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _needs_choices()
    calls: list[list[str]] = []
    monkeypatch.setattr(tune, "time_runs", _fake(lambda names: names[0], calls))
    mod = check_model(_bottlenecks(blocks=3), options=_NATIVE)
    assert calls
    convs = [s for s in engine_steps(mod) if s[0].startswith("Conv")]
    assert len(convs) == 9
    # Blocks 2 and 3 repeat block 2's problems (block 1 reads the subgraph
    # input, whose layout differs): at most 6 distinct problems.
    assert len(calls) == len(_choice(mod).impls) <= 6


def test_a_pick_within_the_margin_keeps_onednns_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _needs_choices()
    calls: list[list[str]] = []

    def timer(runs: Mapping[str, Callable[[], None]]) -> dict[str, float]:
        first, *rest = runs
        calls.append([first, *rest])
        return {first: 1.0} | {n: tune.MARGIN + 0.01 for n in rest}

    monkeypatch.setattr(tune, "time_runs", timer)
    monkeypatch.setattr(tune, "SETTLE_ROUNDS", 0)  # the timing alone (see below)
    tuned = check_model(_bottlenecks(), options=_NATIVE)
    untuned = check_model(_bottlenecks(), options={**_NATIVE, "tune": False})
    assert calls  # the problems were timed, and every pick stayed oneDNN's
    assert sorted(_choice(tuned).impls.values()) == sorted(c[0] for c in calls)
    assert _impls(tuned) == _impls(untuned)


def test_a_win_that_is_not_confirmed_head_to_head_keeps_onednns_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _needs_choices()
    calls: list[list[str]] = []

    def timer(runs: Mapping[str, Callable[[], None]]) -> dict[str, float]:
        names = list(runs)
        calls.append(names)
        if len(calls) % 2:  # the full field: the last one looks 2x faster
            return {n: 0.5 if n == names[-1] else 1.0 for n in names}
        return dict.fromkeys(names, 1.0)  # head to head: a tie

    monkeypatch.setattr(tune, "time_runs", timer)
    monkeypatch.setattr(tune, "SETTLE_ROUNDS", 0)  # the timing alone (see below)
    tuned = check_model(_bottlenecks(), options=_NATIVE)
    untuned = check_model(_bottlenecks(), options={**_NATIVE, "tune": False})
    assert calls and len(calls) % 2 == 0
    assert [c[0] for c in calls[1::2]] == [c[0] for c in calls[::2]]
    assert sorted(_choice(tuned).impls.values()) == sorted(c[0] for c in calls[::2])
    assert _impls(tuned) == _impls(untuned)


def _settle_in_favour_of(
    monkeypatch: pytest.MonkeyPatch, wins: Callable[[str], bool]
) -> tuple[dict[str, str], list[int]]:
    """Alone, oneDNN's pick times fastest and every other candidate close
    behind; in context, the runner-up of each problem ``wins(key)`` accepts
    is twice as fast. Returns the runner-ups the tuner handed to settle and
    the number of steps of each program timed in context."""
    close: dict[str, str] = {}
    timed: list[int] = []

    def timer(runs: Mapping[str, Callable[[], None]]) -> dict[str, float]:
        first, *rest = runs
        return {first: 1.0} | dict.fromkeys(rest, 1.05)

    def step_seconds(prog: Program, inputs: Any) -> list[float]:
        timed.append(len(prog.steps))
        return [
            0.5 if close.get(s.key) == s.impl and wins(s.key) else 1.0
            for s in prog.steps
        ]

    real = tune.settle

    def settle(tuner: tune.Tuner, *args: Any, **kw: Any) -> Any:
        close.update(tuner.close)
        return real(tuner, *args, **kw)

    monkeypatch.setattr(tune, "time_runs", timer)
    monkeypatch.setattr(tune, "settle", settle)
    monkeypatch.setattr(Program, "step_seconds", step_seconds)
    return close, timed


def _steps(mod: byoc.Module) -> list[Any]:
    (rec,) = [r for r in mod.subgraphs if r.backend == "dnnl"]
    return mod.get_function(rec.symbol).engine()._program.steps  # type: ignore[attr-defined]


def test_close_picks_are_settled_in_context(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    _needs_choices()
    close, timed = _settle_in_favour_of(monkeypatch, lambda key: True)
    mod = check_model(_bottlenecks(), options=_NATIVE)  # vs onnxruntime and ref
    assert close and len(timed) == 2 * tune.SETTLE_ROUNDS
    decisions = _choice(mod).impls
    assert {k: decisions[k] for k in close} == close  # every runner-up won
    tuned = [s for s in _steps(mod) if s.key in close]
    assert tuned and all(s.impl == close[s.key] for s in tuned)
    # What settling chose travels with the engine and is not timed again.
    path = mod.save(tmp_path / "m.byoc", engines=True)
    timed.clear()
    loaded = byoc.load(path, options={"dnnl": _NATIVE})
    loaded.init()
    assert not timed and _impls(loaded) == _impls(mod)


def test_settling_keeps_what_the_context_does_not_confirm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _needs_choices()
    # Only the 3x3 problems' runner-ups win in context: a third program is
    # built from the mixed decisions.
    close, timed = _settle_in_favour_of(monkeypatch, lambda key: ", 3, 3)" in key)
    mod = check_model(_bottlenecks(), options=_NATIVE)
    decisions = _choice(mod).impls
    wide = {k for k in close if ", 3, 3)" in k}
    assert wide and wide != set(close), close
    for k, runner in close.items():
        assert (decisions[k] == runner) == (k in wide), (k, decisions[k], runner)
    for s in _steps(mod):
        if s.key in close:
            assert s.impl == decisions[s.key]
    untuned = check_model(_bottlenecks(), options={**_NATIVE, "tune": False})
    assert _impls(mod) != _impls(untuned)


def test_settling_in_context_keeps_onednns_pick_when_it_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _needs_choices()
    close, timed = _settle_in_favour_of(monkeypatch, lambda key: False)
    mod = check_model(_bottlenecks(), options=_NATIVE)
    untuned = check_model(_bottlenecks(), options={**_NATIVE, "tune": False})
    assert close and timed
    assert all(_choice(mod).impls[k] != runner for k, runner in close.items())
    assert _impls(mod) == _impls(untuned)


def _fake_settle(
    wins: set[str], fail: Callable[[dict[str, str]], bool] = lambda d: False
) -> tuple[tune.Tuner, Any, list[dict[str, str]]]:
    """settle on stand-in programs: each is the decisions it was built from;
    in context, the runner-ups of the problems in ``wins`` take half the time.
    Returns the tuner, the program kept and every build's decisions."""
    tuner = tune.Tuner({"a": "x", "b": "x", "c": "x"}, close={"a": "y", "b": "y"})
    builds: list[dict[str, str]] = []

    def build(decisions: dict[str, str]) -> dict[str, str]:
        builds.append(decisions)
        if fail(decisions):
            raise DnnlError(
                "refused", backend="dnnl", function="f", status=3, status_name="x"
            )
        return decisions

    def step_seconds(prog: dict[str, str]) -> list[tuple[str, float]]:
        return [
            (k, 0.5 if k in wins and impl == "y" else 1.0) for k, impl in prog.items()
        ]

    current = dict(tuner.decisions)
    return tuner, tune.settle(tuner, current, build, step_seconds, rounds=2), builds


def test_settle_keeps_swaps_or_mixes_by_the_step_times() -> None:
    tuner, kept, builds = _fake_settle(set())
    assert builds == [{"a": "y", "b": "y", "c": "x"}] and kept == tuner.decisions
    assert tuner.decisions == {"a": "x", "b": "x", "c": "x"} and not tuner.close
    tuner, kept, builds = _fake_settle({"a", "b"})
    assert len(builds) == 1 and kept is builds[0]  # the runner-ups' program
    assert tuner.decisions == {"a": "y", "b": "y", "c": "x"}
    tuner, kept, builds = _fake_settle({"b"})
    assert len(builds) == 2 and kept is builds[1]  # a third, mixed program
    assert kept == tuner.decisions == {"a": "x", "b": "y", "c": "x"}


def test_settle_keeps_the_timed_program_when_an_alternative_cannot_be_built() -> None:
    tuner, kept, builds = _fake_settle({"a"}, fail=lambda d: True)
    assert len(builds) == 1 and kept == {"a": "x", "b": "x", "c": "x"}
    assert tuner.decisions == kept
    # The mixed program is refused: back to the timed decisions.
    tuner, kept, builds = _fake_settle({"a"}, fail=lambda d: d.get("b") == "x")
    assert len(builds) == 2 and kept == {"a": "x", "b": "x", "c": "x"}
    assert tuner.decisions == kept


def test_tune_false_times_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def timer(runs: Mapping[str, Callable[[], None]]) -> dict[str, float]:
        raise AssertionError("timed with tune=False")

    monkeypatch.setattr(tune, "time_runs", timer)
    mod = check_model(_bottlenecks(), options={**_NATIVE, "tune": False})
    assert _choice(mod).impls == {}


def test_prebuilt_engine_replays_the_picks_without_timing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    _needs_choices()
    calls: list[list[str]] = []
    monkeypatch.setattr(tune, "time_runs", _fake(lambda names: names[-1], calls))
    mod = byoc.compile(
        _bottlenecks(), backends=["dnnl", "ref"], quiet=True, options={"dnnl": _NATIVE}
    )
    feeds = {"x": R.standard_normal((1, 32, 14, 14)).astype(np.float32)}
    want = mod.run(feeds)
    assert calls
    path = mod.save(tmp_path / "m.byoc", engines=True)

    def timer(runs: Mapping[str, Callable[[], None]]) -> dict[str, float]:
        raise AssertionError("an imported engine timed again")

    monkeypatch.setattr(tune, "time_runs", timer)
    loaded = byoc.load(path, options={"dnnl": _NATIVE})
    got = loaded.run(feeds)
    assert sum(loaded.init_counts.values()) == 0
    assert _choice(loaded).prebuilt and _choice(loaded).impls == _choice(mod).impls
    assert _impls(loaded) == _impls(mod)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_an_engine_blob_with_bad_impls_is_refused() -> None:
    import hashlib
    import json

    from byoc_dnnl.backend import DnnlBackend

    mod = check_model(_bottlenecks(blocks=1), options=_NATIVE)
    (rec,) = mod.subgraphs
    blob = mod.get_function(rec.symbol).engine().export_engine()  # type: ignore[attr-defined]
    body = json.loads(blob)["body"]
    body["impls"] = {"convolution": 3}
    text = json.dumps(body, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    bad = json.dumps({"sha256": digest, "body": body})
    engine = DnnlBackend(rec.symbol, rec.graph, {"threads": 1})
    with pytest.raises(ValueError, match="impls is not a map"):
        engine.import_engine(bad.encode(), {})


def test_a_bad_tune_option_is_a_clear_error() -> None:
    model = graph_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (2, 3)}, ["y"])
    mod = byoc.compile(
        model, backends=["dnnl", "ref"], quiet=True, options={"dnnl": {"tune": "yes"}}
    )
    with pytest.raises(byoc.ByocError, match="tune='yes'; use True or False"):
        mod.run({"x": np.ones((2, 3), np.float32)})


def test_a_cold_runner_reads_another_copy_of_the_weights_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pd, _ = _channels_last_1x1()
    lib = _lib.lib()
    seen: list[dict[int, int]] = []
    real = lib.primitive_execute

    def record(prim: Any, stream: Any, n: int, args: Any) -> None:
        seen.append({args[i].arg: args[i].memory for i in range(n)})
        real(prim, stream, n, args)

    monkeypatch.setattr(lib, "primitive_execute", record)
    ids = [Arg.src, Arg.weights, Arg.dst]
    region = tune.touched_zeros(5 * pd.md(Query.weights_md).nbytes)
    cold = tune._runner(pd, ids, region)
    for _ in range(10):
        cold()
    weights = [args[Arg.weights] for args in seen]
    assert len(set(weights)) == 5 and weights[:5] == weights[5:]  # five in turn
    hot = tune._runner(pd, ids)
    for _ in range(3):
        hot()
    for runs in (seen[:10], seen[10:]):
        (src,) = {args[Arg.src] for args in runs}
        (dst,) = {args[Arg.dst] for args in runs}
        assert src != dst and not {args[Arg.weights] for args in runs} & {src, dst}
    assert len({args[Arg.weights] for args in seen[10:]}) == 1


def test_a_linear_layer_with_few_rows_is_timed_with_cold_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flags: list[tuple[str, bool]] = []
    sizes: list[tuple[int, int]] = []  # (weights bytes, cold buffer bytes)
    real = tune._runner

    def runner(pd: Any, ids: Any, cold: Any = None) -> Callable[[], None]:
        flags.append((pd.kind, cold is not None))
        if cold is not None:
            sizes.append((pd.md(Query.weights_md).nbytes, cold.nbytes))
        return real(pd, ids, cold)

    monkeypatch.setattr(tune, "_runner", runner)
    model = graph_model(
        [
            helper.make_node("Conv", ["x", "c"], ["h"]),
            helper.make_node("Flatten", ["h"], ["f"]),
            helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1),
        ],
        {"x": (1, 64, 1, 1)},
        ["y"],
        {"c": _w(64, 64, 1, 1), "w": _w(512, 64), "b": _w(512)},
    )
    mod = check_model(model, options=_NATIVE)
    if not any(kind == "inner_product" for kind, _ in flags):
        pytest.skip(f"no inner-product choice to time here: {_impls(mod)}")
    assert {kind for kind, cold in flags if cold} == {"inner_product"}, flags
    # One buffer for the candidates: 16 copies of the largest packing (128 KB).
    (region,) = {cold for _, cold in sizes}
    assert region == tune.COLD_COPIES * max(w for w, _ in sizes) < tune.COLD_BYTES
    assert any(kind == "convolution" and not cold for kind, cold in flags), flags


def test_isa_rank_reads_the_isa_an_implementation_name_ends_in() -> None:
    ranks = [
        tune.isa_rank(n)
        for n in ("jit:sse41", "jit:avx", "jit_1x1:avx2", "brgconv:avx512_core")
    ]
    assert ranks == sorted(ranks) and len(set(ranks)) == 4
    assert tune.isa_rank("jit:avx2_vnni") == tune.isa_rank("brgemm:avx2")
    assert tune.isa_rank("x64:gemm:jit") is None and tune.isa_rank("jit:uni") is None


@pytest.mark.parametrize(
    ("secs", "want"),
    [
        # An AVX2 kernel a little faster alone: the AVX-512 one's best is kept.
        (
            {
                "brgconv_1x1:avx512_core": 1.0,
                "jit_1x1:avx2": 0.97,
                "jit_1x1:avx512_core": 0.99,
            },
            "jit_1x1:avx512_core",
        ),
        ({"brgconv_1x1:avx512_core": 1.0, "jit_1x1:avx2": 0.85}, "jit_1x1:avx2"),
        ({"brgemm:avx512_core": 1.0, "brgemm:avx2": 0.7}, "brgemm:avx2"),
        ({"jit:avx2": 1.0, "jit:sse41": 0.95}, "jit:avx2"),
        # Names without an ISA are never held back, nor hold others back.
        ({"jit:avx512_core": 1.0, "x64:gemm:jit": 0.99}, "x64:gemm:jit"),
        ({"jit:uni": 1.0, "x64:gemm:jit": 0.9}, "x64:gemm:jit"),
        ({"jit_1x1:avx2": 1.0, "brgconv_1x1:avx2": 0.98}, "brgconv_1x1:avx2"),
    ],
)
def test_an_older_isa_kernel_must_be_clearly_faster(
    secs: dict[str, float], want: str
) -> None:
    assert tune.fastest(secs) == want


@pytest.mark.parametrize(("factor", "avx2_kept"), [(0.98, False), (0.5, True)])
def test_the_tuner_keeps_avx512_kernels_over_slightly_faster_avx2_ones(
    monkeypatch: pytest.MonkeyPatch, factor: float, avx2_kept: bool
) -> None:
    names = list(tune.candidates(_channels_last_1x1()[0]))
    if not any("avx2" in n for n in names) or not any("avx512" in n for n in names):
        pytest.skip(f"needs AVX2 and AVX-512 kernels for one problem; have {names}")

    def timer(runs: Mapping[str, Callable[[], None]]) -> dict[str, float]:
        return {n: factor if "avx2" in n else 1.0 for n in runs}

    monkeypatch.setattr(tune, "time_runs", timer)
    monkeypatch.setattr(tune, "SETTLE_ROUNDS", 0)  # real timings in context: noise
    mod = byoc.compile(
        _bottlenecks(),
        backends=["dnnl"],
        quiet=True,
        options={"dnnl": {**_NATIVE, "cache": False}},
    )
    mod.init()
    picks = _choice(mod).impls.values()
    assert any("avx2" in p for p in picks) is avx2_kept, picks


@pytest.mark.parametrize(("share", "swapped"), [(0.93, {"b"}), (0.5, {"a", "b"})])
def test_settle_asks_an_older_isa_runner_up_to_win_clearly(
    share: float, swapped: set[str]
) -> None:
    avx512 = "jit_1x1:avx512_core"
    runner = {"a": "jit_1x1:avx2", "b": "brgconv_1x1:avx512_core"}
    tuner = tune.Tuner({"a": avx512, "b": avx512}, close=dict(runner))

    def step_seconds(prog: dict[str, str]) -> list[tuple[str, float]]:
        return [(k, share if impl == runner[k] else 1.0) for k, impl in prog.items()]

    tune.settle(tuner, dict(tuner.decisions), dict, step_seconds, rounds=2)
    assert {k for k, v in tuner.decisions.items() if v == runner[k]} == swapped
