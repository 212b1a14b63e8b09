"""Owning Python wrappers of oneDNN handles: memory descs, attrs, pds, primitives.

Where it sits: just above :mod:`byoc_dnnl._lib`. Lowering (init time) works
with these objects; the run path never touches them, it only holds the raw
handles they own. Each wrapper destroys its handle when collected.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _lib
from ._lib import (
    Alg,
    Arg,
    DataType,
    FormatKind,
    FormatTag,
    PropKind,
    Query,
    ScratchpadMode,
)

_ENGINE: ctypes.c_void_p | None = None
_ENGINE_LOCK = threading.Lock()


def engine() -> ctypes.c_void_p:
    """The process-wide CPU engine (created once; oneDNN engines are thread-safe)."""
    global _ENGINE
    if _ENGINE is None:
        with _ENGINE_LOCK:
            if _ENGINE is None:
                h = ctypes.c_void_p()
                _lib.lib().engine_create(ctypes.byref(h), _lib.EngineKind.cpu, 0)
                _ENGINE = h
    return _ENGINE


class Stream:
    """An in-order CPU stream (one per execution context)."""

    def __init__(self) -> None:
        self.h = ctypes.c_void_p()
        self._lib = _lib.lib()
        self._lib.stream_create(ctypes.byref(self.h), engine(), 0x1)

    def __del__(self) -> None:
        _destroy(self, "stream_destroy")


def _destroy(obj: Any, fn: str) -> None:
    h = getattr(obj, "h", None)
    if h is not None and h.value:
        try:
            getattr(obj._lib, fn)(h)
        except Exception:  # interpreter shutdown: the library may be gone
            pass
        h.value = None


def aligned_empty(nbytes: int, align: int = 64) -> np.ndarray:
    """A uint8 array of ``nbytes`` whose data pointer is ``align``-aligned."""
    raw = np.empty(nbytes + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off : off + nbytes]


def release_free_heap() -> None:
    """Hand the heap memory freed since the last call back to the OS.

    ``init`` allocates far more than an engine keeps (folded weights before
    packing, the losing layout's program, timing buffers); glibc keeps such
    freed heap pages for reuse, so a process that had built ResNet-50 stayed
    about 90 MB bigger than its engine. ``malloc_trim`` returns them. A no-op
    where the C library has none (not glibc).
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _libc() -> Any:
    try:
        return ctypes.CDLL(None)
    except OSError:  # pragma: no cover - a platform without dlopen(NULL)
        return None


def c_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Row-major strides (in elements) of ``shape``."""
    out = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        out[i] = out[i + 1] * max(1, shape[i + 1])
    return tuple(out)


class MemoryDesc:
    """An owned ``dnnl_memory_desc_t``."""

    __slots__ = ("h", "_lib", "_cache")

    def __init__(self, h: ctypes.c_void_p) -> None:
        self.h = h
        self._lib = _lib.lib()
        self._cache: dict[str, Any] = {}

    def __del__(self) -> None:
        _destroy(self, "memory_desc_destroy")

    # -- constructors ------------------------------------------------------

    @staticmethod
    def plain(shape: Sequence[int], dtype: int = DataType.f32) -> MemoryDesc:
        """Dense row-major layout of ``shape``."""
        return MemoryDesc.strided(shape, c_strides(shape), dtype)

    @staticmethod
    def strided(
        shape: Sequence[int], strides: Sequence[int], dtype: int = DataType.f32
    ) -> MemoryDesc:
        """Plain layout with explicit element strides (views, transposes)."""
        h = ctypes.c_void_p()
        _lib.lib().memory_desc_create_with_strides(
            ctypes.byref(h),
            len(shape),
            _lib.dims(tuple(shape)),
            dtype,
            _lib.dims(tuple(strides)),
        )
        return MemoryDesc(h)

    @staticmethod
    def innermost(shape: Sequence[int], axis: int) -> MemoryDesc:
        """Dense, with ``axis`` innermost and the other axes in order (axis 1
        of an NCHW shape: NHWC)."""
        order = [a for a in range(len(shape)) if a != axis] + [axis]
        strides = [0] * len(shape)
        step = 1
        for a in reversed(order):
            strides[a] = step
            step *= max(1, shape[a])
        return MemoryDesc.strided(shape, strides)

    @staticmethod
    def any(shape: Sequence[int], dtype: int = DataType.f32) -> MemoryDesc:
        """``format_tag::any``: let the primitive choose its preferred layout."""
        h = ctypes.c_void_p()
        _lib.lib().memory_desc_create_with_tag(
            ctypes.byref(h), len(shape), _lib.dims(tuple(shape)), dtype, FormatTag.any
        )
        return MemoryDesc(h)

    @staticmethod
    def with_tag(
        shape: Sequence[int], tag: int, dtype: int = DataType.f32
    ) -> MemoryDesc:
        """A layout given by a ``dnnl_format_tag_t``."""
        h = ctypes.c_void_p()
        _lib.lib().memory_desc_create_with_tag(
            ctypes.byref(h), len(shape), _lib.dims(tuple(shape)), dtype, tag
        )
        return MemoryDesc(h)

    @staticmethod
    def clone(raw: int | ctypes.c_void_p) -> MemoryDesc:
        """An owned copy of a desc owned by someone else (e.g. a pd)."""
        h = ctypes.c_void_p()
        _lib.lib().memory_desc_clone(ctypes.byref(h), raw)
        return MemoryDesc(h)

    def reshape(self, shape: Sequence[int]) -> MemoryDesc:
        """The same bytes seen with other dims; raises DnnlError where the
        layout cannot express them (e.g. splitting a blocked axis)."""
        h = ctypes.c_void_p()
        self._lib.memory_desc_reshape(
            ctypes.byref(h), self.h, len(shape), _lib.dims(tuple(shape))
        )
        return MemoryDesc(h)

    def permute(self, perm: Sequence[int]) -> MemoryDesc:
        """The same bytes with axis ``i`` moved to position ``perm[i]``."""
        h = ctypes.c_void_p()
        order = (ctypes.c_int * len(perm))(*perm)
        self._lib.memory_desc_permute_axes(ctypes.byref(h), self.h, order)
        return MemoryDesc(h)

    # -- queries -----------------------------------------------------------

    def _q_int(self, what: int) -> int:
        out = ctypes.c_int32()
        self._lib.memory_desc_query(self.h, what, ctypes.byref(out))
        return out.value

    def _q_dims(self, what: int) -> tuple[int, ...]:
        ptr = ctypes.POINTER(ctypes.c_int64)()
        self._lib.memory_desc_query(self.h, what, ctypes.byref(ptr))
        return tuple(ptr[i] for i in range(self.ndims))

    @property
    def ndims(self) -> int:
        """Number of dimensions."""
        if "ndims" not in self._cache:
            self._cache["ndims"] = self._q_int(Query.ndims_s32)
        return self._cache["ndims"]

    @property
    def dims(self) -> tuple[int, ...]:
        """Logical dimensions."""
        if "dims" not in self._cache:
            self._cache["dims"] = self._q_dims(Query.dims)
        return self._cache["dims"]

    @property
    def format_kind(self) -> int:
        """FormatKind of the desc (any, blocked, opaque)."""
        if "fk" not in self._cache:
            self._cache["fk"] = self._q_int(Query.format_kind)
        return self._cache["fk"]

    @property
    def strides(self) -> tuple[int, ...]:
        """Outer strides in elements (blocked formats only)."""
        if "strides" not in self._cache:
            self._cache["strides"] = self._q_dims(Query.strides)
        return self._cache["strides"]

    @property
    def inner_nblks(self) -> int:
        """Number of inner blocks (0 for plain layouts)."""
        if "nblks" not in self._cache:
            self._cache["nblks"] = self._q_int(Query.inner_nblks_s32)
        return self._cache["nblks"]

    @property
    def nbytes(self) -> int:
        """Bytes a buffer of this layout needs (padding included)."""
        return int(self._lib.memory_desc_get_size(self.h))

    @property
    def is_plain(self) -> bool:
        """Blocked format without inner blocks: a (possibly strided) plain view."""
        return self.format_kind == FormatKind.blocked and self.inner_nblks == 0

    @property
    def is_dense(self) -> bool:
        """Plain and row-major contiguous: numpy C order."""
        return self.is_plain and _same_strides(self.dims, self.strides)

    def same(self, other: MemoryDesc) -> bool:
        """Identical layout (``dnnl_memory_desc_equal``)."""
        return bool(self._lib.memory_desc_equal(self.h, other.h))

    def same_bytes_as(self, other: MemoryDesc) -> bool:
        """The same element at the same offset everywhere: equal dims, blocking
        and size, and equal strides on every dim larger than one (a stride
        over a dim of one is never used to address, so descs may differ there
        and still place every element alike)."""
        if self.dims != other.dims or self.format_kind != other.format_kind:
            return False
        if self.inner_nblks != other.inner_nblks or self.nbytes != other.nbytes:
            return False
        return all(
            d == 1 or a == b
            for d, a, b in zip(self.dims, self.strides, other.strides, strict=True)
        )

    def __repr__(self) -> str:
        kind = {1: "any", 2: "blocked", 3: "opaque"}.get(self.format_kind, "?")
        extra = ""
        if self.format_kind == FormatKind.blocked:
            extra = f" strides={self.strides} nblks={self.inner_nblks}"
        return f"MemoryDesc({self.dims} {kind}{extra})"


def _same_strides(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    want = c_strides(shape)
    # Strides of size-1 dims never matter.
    return all(d == 1 or s == w for d, s, w in zip(shape, strides, want, strict=True))


def numel(shape: Sequence[int]) -> int:
    """Number of elements of ``shape``."""
    return math.prod(shape)


@dataclass(frozen=True)
class PostOp:
    """One post-op: ``eltwise`` (alg, alpha, beta), ``sum``, ``binary`` (alg, md),
    or ``dw``, a fused depthwise convolution (kernel, stride, left padding)."""

    kind: str
    alg: int = 0
    alpha: float = 0.0
    beta: float = 0.0
    md: MemoryDesc | None = None


class Attr:
    """A primitive attr: user-managed scratchpad, plus post-ops."""

    def __init__(self, post_ops: Sequence[PostOp] = ()) -> None:
        self._lib = _lib.lib()
        self.h = ctypes.c_void_p()
        self._lib.primitive_attr_create(ctypes.byref(self.h))
        # A user scratchpad lets each execution context own its scratch memory,
        # so concurrent runs never share one (the OpenMP build has no
        # DNNL_ENABLE_CONCURRENT_EXEC).
        self._lib.primitive_attr_set_scratchpad_mode(self.h, ScratchpadMode.user)
        if post_ops:
            po = ctypes.c_void_p()
            self._lib.post_ops_create(ctypes.byref(po))
            try:
                for op in post_ops:
                    if op.kind == "eltwise":
                        self._lib.post_ops_append_eltwise(po, op.alg, op.alpha, op.beta)
                    elif op.kind == "sum":
                        self._lib.post_ops_append_sum(po, 1.0, 0, DataType.undef)
                    elif op.kind == "binary":
                        assert op.md is not None
                        self._lib.post_ops_append_binary(po, op.alg, op.md.h)
                    elif op.kind == "dw":  # alg: kernel, alpha: stride, beta: pad
                        f32 = DataType.f32
                        self._lib.post_ops_append_dw(
                            po, f32, f32, f32, op.alg, int(op.alpha), int(op.beta)
                        )
                    else:
                        raise ValueError(f"unknown post-op kind {op.kind!r}")
                self._lib.primitive_attr_set_post_ops(self.h, po)
            finally:
                self._lib.post_ops_destroy(po)

    def __del__(self) -> None:
        _destroy(self, "primitive_attr_destroy")


class PrimitiveDesc:
    """An owned primitive descriptor."""

    def __init__(self, h: ctypes.c_void_p, kind: str) -> None:
        self.h = h
        self.kind = kind
        self._lib = _lib.lib()
        self.tune_key = ""
        """The tuner's name for this pd's problem, when the tuner chose it."""

    @staticmethod
    def make(kind: str, fn: Any, *args: Any) -> PrimitiveDesc:
        """Call a ``*_primitive_desc_create`` ``fn`` with a fresh out-handle."""
        h = ctypes.c_void_p()
        fn(ctypes.byref(h), *args)
        return PrimitiveDesc(h, kind)

    def __del__(self) -> None:
        _destroy(self, "primitive_desc_destroy")

    def clone(self) -> PrimitiveDesc:
        """An independent copy at the current implementation."""
        h = ctypes.c_void_p()
        self._lib.primitive_desc_clone(ctypes.byref(h), self.h)
        return PrimitiveDesc(h, self.kind)

    def next_impl(self) -> bool:
        """Move to oneDNN's next implementation of the same problem; False at
        the end of the list (the pd then stays at its last implementation)."""
        status = self._lib.primitive_desc_next_impl(self.h)
        if status not in (0, 4):  # success, last_impl_reached
            _lib.check(status, self._lib.primitive_desc_next_impl, (self.h,))
        return status == 0

    def md(self, query: int, index: int = 0) -> MemoryDesc:
        """An owned copy of a memory desc the pd reports (src_md, dst_md ...)."""
        raw = self._lib.primitive_desc_query_md(self.h, query, index)
        if not raw:
            raise _lib.DnnlError(
                f"oneDNN {self.kind} primitive descriptor has no memory desc for "
                f"query {query} index {index}",
                backend="dnnl",
                function="dnnl_primitive_desc_query_md",
                status=-1,
                status_name="none",
            )
        return MemoryDesc.clone(raw)

    def arg_md(self, arg: int) -> MemoryDesc:
        """Memory desc of execution argument ``arg`` (DNNL_ARG_*)."""
        return self.md(Query.exec_arg_md, arg)

    @property
    def impl(self) -> str:
        """Implementation name, e.g. ``brg:avx512_core`` or ``ref:any``."""
        out = ctypes.c_char_p()
        self._lib.primitive_desc_query(
            self.h, Query.impl_info_str, 0, ctypes.byref(out)
        )
        return (out.value or b"").decode()

    @property
    def post_ops(self) -> tuple[str, ...]:
        """Kinds of the post-ops the pd carries, as oneDNN reports them."""
        attr, po = ctypes.c_void_p(), ctypes.c_void_p()
        self._lib.primitive_desc_get_attr(self.h, ctypes.byref(attr))
        self._lib.primitive_attr_get_post_ops(attr, ctypes.byref(po))
        n = self._lib.post_ops_len(po)
        kinds = (self._lib.post_ops_get_kind(po, i) for i in range(n))
        return tuple(_lib.PRIMITIVE_KINDS.get(k, str(k)) for k in kinds)

    @property
    def scratchpad_bytes(self) -> int:
        """Bytes of user scratchpad the primitive needs."""
        raw = self._lib.primitive_desc_query_md(self.h, Query.scratchpad_md, 0)
        return int(self._lib.memory_desc_get_size(raw)) if raw else 0

    def scratchpad_md(self) -> MemoryDesc:
        """The scratchpad desc (for the memory object passed at execution)."""
        return self.md(Query.scratchpad_md)

    def create(self) -> Primitive:
        """Create the primitive (this is where oneDNN JIT-compiles kernels)."""
        h = ctypes.c_void_p()
        self._lib.primitive_create(ctypes.byref(h), self.h)
        return Primitive(h, self)


def conv_pd(
    src: MemoryDesc,
    weights: MemoryDesc,
    bias: MemoryDesc | None,
    dst: MemoryDesc,
    geometry: tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int]],
    attr: Attr | None = None,
    *,
    deconv: bool = False,
) -> PrimitiveDesc:
    """A forward-inference direct (de)convolution pd.

    ``geometry`` is (strides, dilations, left pads, right pads), dilations
    counted as oneDNN counts them (0: none). Raises DnnlError when oneDNN has
    no implementation.
    """
    kind = "deconvolution" if deconv else "convolution"
    attr = attr if attr is not None else Attr()
    strides, dilations, pad_l, pad_r = (_lib.dims(tuple(g)) for g in geometry)
    return PrimitiveDesc.make(
        kind,
        getattr(_lib.lib(), f"{kind}_forward_primitive_desc_create"),
        engine(),
        PropKind.forward_inference,
        Alg.deconvolution_direct if deconv else Alg.convolution_direct,
        src.h,
        weights.h,
        bias.h if bias is not None else None,
        dst.h,
        strides,
        dilations,
        pad_l,
        pad_r,
        attr.h,
    )


class Primitive:
    """An owned primitive; keeps its pd alive."""

    def __init__(self, h: ctypes.c_void_p, pd: PrimitiveDesc) -> None:
        self.h = h
        self.pd = pd
        self._lib = _lib.lib()

    def __del__(self) -> None:
        _destroy(self, "primitive_destroy")


class Memory:
    """An owned ``dnnl_memory_t`` over a caller-managed buffer (or none yet)."""

    __slots__ = ("h", "_lib", "md", "keep")

    def __init__(self, md: MemoryDesc, ptr: int | None, keep: Any = None) -> None:
        self._lib = _lib.lib()
        self.h = ctypes.c_void_p()
        self.md = md
        self.keep = keep  # whatever owns the buffer ptr points into
        self._lib.memory_create(ctypes.byref(self.h), md.h, engine(), ptr or None)

    def __del__(self) -> None:
        _destroy(self, "memory_destroy")


def exec_args(pairs: Sequence[tuple[int, ctypes.c_void_p]]) -> Any:
    """A ``dnnl_exec_arg_t[]`` for ``(DNNL_ARG_*, memory handle)`` pairs."""
    arr = (_lib.ExecArg * len(pairs))()
    for i, (arg, mem) in enumerate(pairs):
        arr[i].arg = arg
        arr[i].memory = mem
    return arr


__all__ = [
    "Arg",
    "Attr",
    "Memory",
    "MemoryDesc",
    "PostOp",
    "Primitive",
    "PrimitiveDesc",
    "Stream",
    "c_strides",
    "engine",
    "exec_args",
    "numel",
]
