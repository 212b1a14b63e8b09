"""Finding, building and loading the C runtime (byoc_micro._lib)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import byoc
from byoc_micro import MicroBackend, _lib


def test_cache_dir_is_its_own_under_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BYOC_MICRO_CACHE", str(tmp_path / "mine"))
    assert _lib.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("BYOC_MICRO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _lib.cache_dir() == tmp_path / "xdg" / "byoc-micro"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _lib.cache_dir() == tmp_path / "home" / ".cache" / "byoc-micro"


def test_no_compiler_makes_the_backend_unavailable_with_the_reason(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("CC", "no-such-cc-1234")
    monkeypatch.setenv("BYOC_MICRO_CACHE", str(tmp_path))
    _lib.library.cache_clear()
    try:
        reason = MicroBackend.available()
    finally:
        _lib.library.cache_clear()
    assert reason == "the C compiler CC='no-such-cc-1234' was not found on PATH"
    reg = byoc.Registry()
    from byoc_micro import plugin

    reg.add_plugin(plugin, "micro", "byoc-micro")
    monkeypatch.setenv("CC", "no-such-cc-1234")
    _lib.library.cache_clear()
    try:
        (row,) = reg.backends()
    finally:
        _lib.library.cache_clear()
    assert not row.available and "no-such-cc-1234" in row.reason


def test_a_failing_build_reports_the_compiler_output(monkeypatch, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in (*_lib.LIB_SOURCES, *_lib.HEADERS):
        (src / name).write_text("#error deliberately broken\n")
    monkeypatch.setenv("BYOC_MICRO_SRC", str(src))
    monkeypatch.setenv("BYOC_MICRO_CACHE", str(tmp_path / "cache"))
    try:
        _lib.compiler()
    except _lib.BuildError as exc:
        pytest.skip(str(exc))
    _lib.library.cache_clear()
    try:
        reason = _lib.unavailable_reason()
    finally:
        _lib.library.cache_clear()
    assert reason is not None
    assert "building the micro runtime failed" in reason
    assert "deliberately broken" in reason


def test_importing_the_plugin_compiles_nothing(tmp_path):
    code = "import byoc_micro, byoc_micro.plugin, byoc_micro.backend"
    env = {"BYOC_MICRO_CACHE": str(tmp_path / "cache"), "PATH": ""}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert not (tmp_path / "cache").exists()


def test_builds_are_cached_by_source_hash(runtime, monkeypatch, tmp_path):
    monkeypatch.setenv("BYOC_MICRO_CACHE", str(tmp_path))
    first = _lib.build("libbyoc_micro.so", _lib.LIB_SOURCES, _lib.CFLAGS, shared=True)
    stamp = first.stat().st_mtime_ns
    again = _lib.build("libbyoc_micro.so", _lib.LIB_SOURCES, _lib.CFLAGS, shared=True)
    assert again == first and again.stat().st_mtime_ns == stamp
    other = _lib.build(
        "libbyoc_micro.so", _lib.LIB_SOURCES, (*_lib.CFLAGS, "-O1"), shared=True
    )
    assert other != first  # different flags, different key
    assert [p.name for p in first.parent.iterdir()] == ["libbyoc_micro.so"]


def test_library_errors_carry_the_code_and_message(runtime):
    with pytest.raises(byoc.BackendError, match="BM_E_FORMAT: not a byoc artifact"):
        runtime.open(b"\x89BYOD" + bytes(60))
    with pytest.raises(byoc.BackendError, match="BM_E_VERSION: artifact format 2.0"):
        runtime.open(b"\x89BYOC\r\n\x1a" + b"\x02\x00" + bytes(54))
