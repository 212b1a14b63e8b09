"""The compiled run loop (``runloop.c``): optional, built on first use.

Where it sits: ``run`` (:mod:`byoc_dnnl.program`). A program's steps are
executed by one C call instead of one ctypes call per primitive, and *teams*
(steps that run side by side, one OpenMP thread each: a 1x1 convolution split
by output channels, see :func:`byoc_dnnl.ops.conv.split_parts`) run inside one
OpenMP region, which only C can open without paying Python's GIL in every
thread. The C file is compiled with the system compiler into
``$BYOC_DNNL_NATIVE_CACHE`` (default ``dnnl-native`` in the user cache dir,
:func:`byoc.cache.user_cache_dir`) the first time an engine is built. Where
that fails (no compiler) the Python loop runs every program and no teams are
planned; ``BYOC_DNNL_RUNLOOP=python`` asks for that on purpose.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Any

import byoc
from byoc import native
from byoc.cache import user_cache_dir

from . import _lib

ENV_SWITCH = "BYOC_DNNL_RUNLOOP"
_FLAGS = ("-std=c99", "-O2", "-fPIC", "-fopenmp", "-shared", "-Wall", "-Wextra")
_WHY = (
    "byoc-dnnl compiles its run loop on first use (BYOC_DNNL_RUNLOOP=python skips it)"
)


class CStep(ctypes.Structure):
    """``bd_step``: one primitive execution; ``team`` > 1 starts a team."""

    _fields_ = [
        ("prim", ctypes.c_void_p),
        ("args", ctypes.c_void_p),
        ("nargs", ctypes.c_int),
        ("team", ctypes.c_int),
        ("chain", ctypes.c_int),
    ]


class RunLoop:
    """The loaded ``bd_run`` with the oneDNN entry points it calls."""

    def __init__(self, path: Path, lib: _lib.Library) -> None:
        self.path = path
        dll = ctypes.CDLL(str(path))
        fn = dll.bd_run
        fn.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        fn.restype = ctypes.c_int
        self.bd_run = fn
        self.dll = dll
        self.execute = ctypes.cast(lib.dll["dnnl_primitive_execute"], ctypes.c_void_p)
        self.wait = ctypes.cast(lib.dll["dnnl_stream_wait"], ctypes.c_void_p)


_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


def _load() -> tuple[RunLoop | None, str | None]:
    if os.environ.get(ENV_SWITCH, "").lower() == "python":
        return None, f"{ENV_SWITCH}=python"
    src = Path(__file__).resolve().parent / "runloop.c"
    try:
        path = native.build_native(
            "libbyoc_dnnl_runloop.so",
            [src],
            _FLAGS,
            Path(
                os.environ.get("BYOC_DNNL_NATIVE_CACHE")
                or user_cache_dir("dnnl-native")
            ),
            what="the dnnl run loop",
            why=_WHY,
            libs=(),
        )
        return RunLoop(path, _lib.lib()), None
    except byoc.NativeBuildError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"the dnnl run loop failed to load: {exc}"


def loop() -> RunLoop | None:
    """The compiled loop, or None (the reason: :func:`unavailable_reason`).

    Decided once per process: a failed build is not retried for every engine.
    """
    with _LOCK:
        if "loop" not in _STATE:
            _STATE["loop"], _STATE["reason"] = _load()
        return _STATE["loop"]


def unavailable_reason() -> str | None:
    """None when the compiled loop is in use, else why the Python loop runs."""
    loop()
    return _STATE["reason"]


def reset() -> None:
    """Forget the decision (tests switch ``BYOC_DNNL_RUNLOOP``)."""
    with _LOCK:
        _STATE.clear()
