"""Find, build and load the micro runtime's C library; every call goes through here.

The C sources ship inside the package (``csrc/``, copied from the repository's
``micro/`` at build time) or, in a source checkout, are read from ``micro/``
directly. On first use -- never at import -- they are compiled with the system C
compiler into a shared library in a per-user cache directory keyed by a hash of
the sources, the compiler and the flags, so a rebuild happens only when one of
those changes. The library is loaded with ctypes, and every call goes through
:meth:`Library.check`, which turns the library's code and message into a
:class:`byoc.BackendError`.

Environment: ``CC`` picks the compiler (default: the first of cc, gcc, clang on
PATH), ``BYOC_MICRO_CACHE`` the cache directory (default
``$XDG_CACHE_HOME/byoc-micro``), ``BYOC_MICRO_SRC`` the source directory.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import byoc
from byoc import native
from byoc.cache import xdg_cache_home

LIB_SOURCES = ("bm_msgpack.c", "bm_reader.c", "bm_ops.c", "bm_exec.c")
HEADERS = ("byoc_micro.h", "bm_internal.h", "bm_tool.h")
# Optimised and warning-clean, but without -Werror: a newer compiler on a user's
# machine may warn about something new, and that must not make the backend
# unavailable (the tests build with -Werror).
CFLAGS = ("-std=c99", "-O2", "-fPIC", "-Wall", "-Wextra", "-pedantic")
WERROR = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
SANITIZE = (
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
)


BuildError = byoc.NativeBuildError  # the C library cannot be built or loaded here

_WHY = "the micro backend compiles its runtime on first use"


def source_dir() -> Path:
    """Where the C sources are: ``BYOC_MICRO_SRC``, a checkout's ``micro/``, or
    the copy inside the package."""
    override = os.environ.get("BYOC_MICRO_SRC")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parents[3] / "micro"
    if (checkout / "byoc_micro.h").is_file():
        return checkout
    return Path(__file__).resolve().parent / "csrc"


def compiler() -> list[str]:
    """The C compiler command, or BuildError saying that none was found."""
    return native.find_compiler(_WHY)


def cache_dir() -> Path:
    """Per-user directory holding built libraries, one subdirectory per hash."""
    override = os.environ.get("BYOC_MICRO_CACHE")
    if override:
        return Path(override)
    return xdg_cache_home() / "byoc-micro"


def build(
    out_name: str,
    sources: Sequence[str],
    flags: Sequence[str],
    *,
    shared: bool = False,
    extra_sources: Sequence[Path] = (),
) -> Path:
    """Compile ``sources`` (names in the source dir) once into the cache; the path
    (see :func:`byoc.native.build_native`)."""
    src = source_dir()
    paths = [*(src / n for n in (*sources, *HEADERS)), *extra_sources]
    return native.build_native(
        out_name,
        paths,
        (*flags, *(["-shared"] if shared else [])),
        cache_dir(),
        what="the micro runtime",
        why=_WHY,
    )


# --------------------------------------------------------------------------
# ctypes view of byoc_micro.h
# --------------------------------------------------------------------------


class Status(ctypes.Structure):
    """``bm_status``."""

    _fields_ = [
        ("code", ctypes.c_int32),
        ("node", ctypes.c_int32),
        ("msg", ctypes.c_char * 256),
    ]


class ExecInfo(ctypes.Structure):
    """``bm_exec_info``."""

    _fields_ = [
        ("n_inputs", ctypes.c_uint32),
        ("n_outputs", ctypes.c_uint32),
        ("arena_size", ctypes.c_uint64),
        ("n_slots", ctypes.c_uint32),
    ]


class RunArgs(ctypes.Structure):
    """``bm_run_args``."""

    _fields_ = [
        ("inputs", ctypes.POINTER(ctypes.c_void_p)),
        ("input_counts", ctypes.POINTER(ctypes.c_uint64)),
        ("n_inputs", ctypes.c_uint32),
        ("outputs", ctypes.POINTER(ctypes.c_void_p)),
        ("output_counts", ctypes.POINTER(ctypes.c_uint64)),
        ("n_outputs", ctypes.c_uint32),
        ("arena", ctypes.c_void_p),
        ("arena_size", ctypes.c_uint64),
        ("slots", ctypes.c_void_p),
        ("n_slots", ctypes.c_uint64),
    ]


def aligned_bytes(nbytes: int, align: int = 64) -> np.ndarray:
    """A writable uint8 array of ``nbytes`` whose data starts ``align``-aligned."""
    raw = np.empty(nbytes + align, dtype=np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start : start + nbytes]


class Model:
    """An opened artifact: the aligned buffer and the ``bm_model`` pointing into it."""

    def __init__(self, lib: Library, data: bytes) -> None:
        self.lib = lib
        self.buffer = aligned_bytes(len(data))
        self.buffer[:] = np.frombuffer(data, dtype=np.uint8)
        # uint64 words keep the struct's pointers aligned
        words = (lib.model_size + 7) // 8
        self.struct = (ctypes.c_uint64 * words)()
        status = Status()
        code = lib.c.bm_open(
            self.struct,
            ctypes.c_void_p(self.buffer.ctypes.data),
            ctypes.c_size_t(len(data)),
            ctypes.byref(status),
        )
        lib.check(code, status, "opening the artifact")

    def info(self, sg: int) -> ExecInfo:
        """Counts, arena size and slots subgraph ``sg`` needs."""
        info, status = ExecInfo(), Status()
        code = self.lib.c.bm_exec_info_get(
            self.struct, sg, ctypes.byref(info), ctypes.byref(status)
        )
        self.lib.check(code, status, "reading the memory plan")
        return info

    def run(
        self,
        sg: int,
        inputs: Sequence[np.ndarray],
        outputs: Sequence[np.ndarray],
        arena: np.ndarray,
        n_slots: int,
    ) -> None:
        """``bm_exec_run`` on C-contiguous float32 numpy buffers."""
        self._call(
            self.lib.c.bm_exec_run,
            sg,
            [a.ctypes.data for a in inputs],
            [a.size for a in inputs],
            [a.ctypes.data for a in outputs],
            [a.size for a in outputs],
            arena.ctypes.data if arena.size else None,
            arena.size,
            n_slots,
        )

    def check(
        self,
        sg: int,
        input_counts: Sequence[int],
        output_counts: Sequence[int],
        arena_size: int,
        n_slots: int,
    ) -> None:
        """``bm_exec_check``: every check of a run, without buffers or kernels."""
        self._call(
            self.lib.c.bm_exec_check,
            sg,
            None,
            input_counts,
            None,
            output_counts,
            None,
            arena_size,
            n_slots,
        )

    def _call(
        self,
        fn: Any,
        sg: int,
        in_ptrs: Sequence[int] | None,
        in_counts: Sequence[int],
        out_ptrs: Sequence[int] | None,
        out_counts: Sequence[int],
        arena: int | None,
        arena_size: int,
        n_slots: int,
    ) -> None:
        def array(ctype: Any, values: Sequence[Any] | None, n: int) -> Any:
            if values is None:
                return None
            return ctypes.cast((ctype * max(n, 1))(*values), ctypes.POINTER(ctype))

        n_in, n_out = len(in_counts), len(out_counts)
        slots = (ctypes.c_uint64 * max(1, n_slots * self.lib.slot_size // 8))()
        args = RunArgs(
            array(ctypes.c_void_p, in_ptrs, n_in),
            array(ctypes.c_uint64, in_counts, n_in),
            n_in,
            array(ctypes.c_void_p, out_ptrs, n_out),
            array(ctypes.c_uint64, out_counts, n_out),
            n_out,
            arena,
            arena_size,
            ctypes.cast(slots, ctypes.c_void_p),
            n_slots,
        )
        status = Status()
        code = fn(self.struct, sg, ctypes.byref(args), ctypes.byref(status))
        what = "running" if fn is self.lib.c.bm_exec_run else "checking the subgraph"
        self.lib.check(code, status, what)


class Library:
    """The loaded shared library, with typed entry points and one error check."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.c = ctypes.CDLL(str(path))
        except OSError as exc:
            raise BuildError(f"cannot load the micro runtime {path}: {exc}") from exc
        c = self.c
        vp, st = ctypes.c_void_p, ctypes.POINTER(Status)
        c.bm_open.argtypes = [vp, vp, ctypes.c_size_t, st]
        c.bm_exec_info_get.argtypes = [
            vp,
            ctypes.c_uint32,
            ctypes.POINTER(ExecInfo),
            st,
        ]
        c.bm_exec_run.argtypes = [vp, ctypes.c_uint32, ctypes.POINTER(RunArgs), st]
        c.bm_exec_check.argtypes = c.bm_exec_run.argtypes
        for fn in (c.bm_open, c.bm_exec_info_get, c.bm_exec_run, c.bm_exec_check):
            fn.restype = ctypes.c_int
        c.bm_code_name.argtypes = [ctypes.c_int]
        c.bm_code_name.restype = ctypes.c_char_p
        c.bm_model_size.restype = ctypes.c_size_t
        c.bm_slot_size.restype = ctypes.c_size_t
        self.model_size = int(c.bm_model_size())
        self.slot_size = int(c.bm_slot_size())

    def check(self, code: int, status: Status, what: str) -> None:
        """Raise a BackendError carrying the library's code and message."""
        if code == 0:
            return
        name = self.c.bm_code_name(code).decode()
        msg = status.msg.decode("utf-8", "replace")
        node = f" (node #{status.node})" if status.node >= 0 else ""
        raise byoc.BackendError(
            f"micro: {what} failed: {name}: {msg}{node}",
            backend="micro",
            code=name,
            node=status.node,
        )

    def open(self, data: bytes) -> Model:
        """Open artifact bytes (copied into a 64-byte aligned buffer)."""
        return Model(self, data)


@functools.lru_cache(maxsize=1)
def library() -> Library:
    """The built and loaded runtime (built on first call, cached per process).

    Failures are not cached, so a fixed toolchain is picked up on the next call.
    """
    return Library(build("libbyoc_micro.so", LIB_SOURCES, CFLAGS, shared=True))


def unavailable_reason() -> str | None:
    """None when the runtime builds and loads here, else the exact reason."""
    try:
        library()
    except BuildError as exc:
        return str(exc)
    return None
