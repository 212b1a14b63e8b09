"""byoc.native: C sources compiled once per content, errors that say why."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import pytest

import byoc
from byoc import native

needs_cc = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("cc", "gcc", "clang")),
    reason="no C compiler on PATH",
)

SRC = "int twice(int x) { return 2 * x; }\n"
FLAGS = ("-O1", "-fPIC", "-shared")


def _source(tmp_path: Path, text: str = SRC) -> Path:
    src = tmp_path / "twice.c"
    src.write_text(text)
    return src


def _build(src: Path, cache: Path, flags: tuple[str, ...] = FLAGS) -> Path:
    return native.build_native(
        "libtwice.so", [src], flags, cache, what="the test library", why="a test"
    )


@needs_cc
def test_a_build_is_reused_until_an_input_changes(tmp_path: Path) -> None:
    src = _source(tmp_path)
    first = _build(src, tmp_path / "cache")
    assert ctypes.CDLL(str(first)).twice(21) == 42
    stamp = first.stat().st_mtime_ns
    again = _build(src, tmp_path / "cache")
    assert again == first and again.stat().st_mtime_ns == stamp
    assert _build(src, tmp_path / "cache", (*FLAGS, "-O2")) != first
    src.write_text(SRC.replace("2 *", "3 *"))
    changed = _build(src, tmp_path / "cache")
    assert changed != first and ctypes.CDLL(str(changed)).twice(2) == 6
    assert [p.name for p in first.parent.iterdir()] == ["libtwice.so"]


@needs_cc
def test_a_failing_build_reports_the_compiler_output(tmp_path: Path) -> None:
    src = _source(tmp_path, "#error deliberately broken\n")
    with pytest.raises(byoc.NativeBuildError, match="building the test library failed"):
        _build(src, tmp_path / "cache")
    with pytest.raises(byoc.NativeBuildError, match="deliberately broken"):
        _build(src, tmp_path / "cache")
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert leftovers == []  # no half-written library is left behind


def test_missing_sources_and_compilers_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC", "no-such-cc-1234")
    with pytest.raises(byoc.NativeBuildError, match="no-such-cc-1234"):
        _build(_source(tmp_path), tmp_path / "cache")
    monkeypatch.setenv("CC", "true")  # found on PATH; the sources are not
    with pytest.raises(byoc.NativeBuildError, match="gone.c"):
        _build(tmp_path / "gone.c", tmp_path / "cache")
    monkeypatch.delenv("CC")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(byoc.NativeBuildError, match="no C compiler found.*a test"):
        native.find_compiler("a test")
