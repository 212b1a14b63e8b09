"""The decision cache: what init timed (layout, kernel picks) is kept on disk
and reused by the next init of the same subgraph, weights, machine and options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import helper

import byoc
from byoc.cache import EngineCache
from byoc_dnnl import layout, tune

from .helpers import graph_model

R = np.random.default_rng(11)
W = {
    "a": (R.standard_normal((32, 16, 1, 1)) * 0.2).astype(np.float32),
    "b": (R.standard_normal((32, 32, 3, 3)) * 0.1).astype(np.float32),
    "c": (R.standard_normal((16, 32, 1, 1)) * 0.2).astype(np.float32),
}


def _model(scale: float = 1.0) -> Any:
    """Three convolutions (enough for the layout to be timed) and a residual."""
    w = {**W, "a": W["a"] * np.float32(scale)}
    nodes = [
        helper.make_node("Conv", ["x", "a"], ["p"]),
        helper.make_node("Relu", ["p"], ["pr"]),
        helper.make_node("Conv", ["pr", "b"], ["q"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["q"], ["qr"]),
        helper.make_node("Conv", ["qr", "c"], ["r"]),
        helper.make_node("Add", ["r", "x"], ["y"]),
    ]
    return graph_model(nodes, {"x": (1, 16, 12, 12)}, ["y"], w)


FEEDS = {"x": R.standard_normal((1, 16, 12, 12)).astype(np.float32)}


def _build(model: Any, **options: object) -> byoc.Module:
    mod = byoc.compile(
        model,
        backends=["dnnl", "ref"],
        quiet=True,
        options={"dnnl": {"threads": 1, **options}},
    )
    mod.init()
    return mod


def _choice(mod: byoc.Module) -> layout.Choice:
    (rec,) = [r for r in mod.subgraphs if r.backend == "dnnl"]
    return mod.get_function(rec.symbol).engine().layout_choice  # type: ignore[attr-defined,no-any-return]


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("??/*.engine"))


def _no_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> dict[str, float]:
        raise AssertionError("init timed although the cache holds its decisions")

    monkeypatch.setattr(tune, "time_runs", refuse)
    monkeypatch.setattr(layout, "time_candidates", refuse)


def test_a_second_init_reuses_the_timed_decisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _build(_model(), cache_dir=str(tmp_path))
    assert not _choice(first).cached
    assert _choice(first).reason == "timed at init"
    assert len(_entries(tmp_path)) == 1
    want = first.run(FEEDS)

    _no_timing(monkeypatch)
    second = _build(_model(), cache_dir=str(tmp_path))
    got = second.run(FEEDS)
    c1, c2 = _choice(first), _choice(second)
    assert c2.cached and not c2.prebuilt
    assert (c2.layout, c2.impls) == (c1.layout, c1.impls)
    np.testing.assert_array_equal(got["y"], want["y"])  # the same program
    assert len(_entries(tmp_path)) == 1


def test_the_environment_variable_names_the_default_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BYOC_DNNL_CACHE_DIR", str(tmp_path / "env"))
    _build(_model())
    assert len(_entries(tmp_path / "env")) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"threads": 2},  # another thread count times differently
        {"conv_layout": "native"},
        {"tune": False},
    ],
)
def test_another_setup_misses(tmp_path: Path, change: dict[str, object]) -> None:
    _build(_model(), cache_dir=str(tmp_path))
    again = _build(_model(), cache_dir=str(tmp_path), **change)
    assert not _choice(again).cached
    assert len(_entries(tmp_path)) == 2


def test_other_weights_miss(tmp_path: Path) -> None:
    _build(_model(), cache_dir=str(tmp_path))
    again = _build(_model(scale=2.0), cache_dir=str(tmp_path))
    assert not _choice(again).cached
    assert len(_entries(tmp_path)) == 2


def test_nothing_is_stored_when_off_or_when_nothing_is_timed(tmp_path: Path) -> None:
    _build(_model(), cache_dir=str(tmp_path), cache=False)
    _build(_model(), cache_dir=str(tmp_path), tune=False, conv_layout="native")
    assert _entries(tmp_path) == []


def test_an_unusable_entry_warns_and_is_timed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _build(_model(), cache_dir=str(tmp_path))
    (entry,) = _entries(tmp_path)
    key = entry.stem
    # A well-formed cache entry (checksum right) whose blob is not the backend's.
    EngineCache(tmp_path, name="dnnl").put(key, b'{"body": "nonsense"}')
    calls: list[int] = []
    real: Callable[[Mapping[str, Callable[[], None]]], dict[str, float]]
    real = tune.time_runs

    def counting(runs: Mapping[str, Callable[[], None]]) -> dict[str, float]:
        calls.append(1)
        return real(runs)

    monkeypatch.setattr(tune, "time_runs", counting)
    with pytest.warns(RuntimeWarning, match="cache entry .* unusable"):
        again = _build(_model(), cache_dir=str(tmp_path))
    assert calls and not _choice(again).cached
    np.testing.assert_allclose(
        again.run(FEEDS)["y"],
        _build(_model(), cache=False).run(FEEDS)["y"],
        rtol=1e-5,
        atol=1e-5,
    )
    # The entry was replaced by a good one: the next init hits.
    assert _choice(_build(_model(), cache_dir=str(tmp_path))).cached


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cache": "yes"}, "cache='yes'; use True or False"),
        ({"cache_dir": 3}, "cache_dir=3; use a path"),
    ],
)
def test_bad_cache_options_are_clear_errors(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(byoc.ByocError, match=message):
        _build(_model(), **options)
