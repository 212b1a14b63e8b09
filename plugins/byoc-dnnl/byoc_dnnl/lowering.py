"""Lowering: IR ops -> oneDNN primitives, memory slots and execution steps.

Where it sits: ``init`` runs :func:`lower` once per subgraph; support queries
run it "dry" on a one-op IR (primitive descriptors are created, so oneDNN
itself confirms it implements the op, but nothing is JIT-compiled or executed).

The vocabulary:

* a *buffer* is bytes with a kind: ``const`` (weights, packed once here),
  ``input``/``output`` (bound to the caller's arrays on every run) or
  ``internal`` (placed in a per-context arena after liveness planning);
* a *slot* is one memory object: a buffer seen through one memory desc. Views
  (Reshape, Transpose, grouped weights) are extra slots on the same buffer;
* a *step* is one primitive execution with its (DNNL_ARG, slot) arguments.

Each value lives in one current slot, in whatever layout its producer chose
(``format_tag::any``); :meth:`Builder.convert` inserts a reorder only where a
consumer wants another layout, and runs it at once when its source is
constant, which is how weights are packed into blocked formats exactly once.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _lib
from ._lib import Alg, Arg, DnnlError
from .handles import (
    Attr,
    Memory,
    MemoryDesc,
    PostOp,
    Primitive,
    PrimitiveDesc,
    Stream,
    aligned_empty,
    engine,
    exec_args,
)
from .ir import IR, Decline, Op, Value
from .tune import Tuner, not_ref

CONST, INPUT, OUTPUT, INTERNAL = "const", "input", "output", "internal"
NEVER = 1 << 30  # "last use" of values that must survive the whole run


@dataclass
class Buffer:
    """Bytes behind one or more slots; see the module docstring for kinds."""

    kind: str
    nbytes: int
    key: Any = None
    """Input name (input), head index (output) or the numpy array (const)."""
    offset: int = 0
    """Byte offset inside the context arena (internal buffers)."""


@dataclass
class Slot:
    """One memory object: a buffer seen through a memory desc."""

    buffer: int
    md: MemoryDesc
    offset: int = 0
    """Bytes from the buffer's start (one part of a split convolution's dst)."""


@dataclass
class Step:
    """One primitive execution."""

    prim: Primitive | None
    args: list[tuple[int, int]]
    scratch: MemoryDesc | None
    label: str
    impl: str
    post_ops: tuple[str, ...] = ()
    key: str = ""
    """The tuner's problem key (see :func:`byoc_dnnl.tune.problem_key`), if tuned."""
    team: int = 1
    """How many steps from this one on run side by side, one thread each (a
    split convolution, see :mod:`byoc_dnnl.runloop`); 0 on the team's other
    members, 1 for a step that runs alone."""
    chain: int = 1
    """On a team's first step: how many consecutive steps each member runs in
    order on its thread (an expand 1x1 convolution's part, then the depthwise
    convolution's part that reads it); the team has ``team // chain`` members."""


@dataclass
class PostItem:
    """One fused op as a post-op: ``eltwise``, ``binary`` (with operand), ``sum``,
    or ``dw`` (a depthwise convolution: alg = kernel, alpha = stride, beta = pad)."""

    kind: str
    alg: int = 0
    alpha: float = 0.0
    beta: float = 0.0
    operand: Value | None = None
    shape: tuple[int, ...] = ()
    """The operand's shape padded with leading 1s to the chain's rank."""
    slot: int | None = None
    """A ready operand slot (host-made items), used instead of ``operand``."""
    weights: Value | None = None
    """``dw``: the depthwise weights (C, 1, k, k), constant."""
    bias: Value | None = None
    """``dw``: the depthwise bias (C,), constant (None: zeros)."""


@dataclass
class Epilogue:
    """The post-op chain of a host op, as oneDNN will run it."""

    items: list[PostItem] = field(default_factory=list)
    result: Value | None = None
    """The value the fused chain produces (None: the host's own output)."""
    sum_value: Value | None = None
    """Value whose buffer the result overwrites in place (the sum post-op)."""

    def __bool__(self) -> bool:
        return bool(self.items)

    def sum_slot(self, b: Builder, dst_dims: Sequence[int]) -> int | None:
        """The in-place destination slot for the sum post-op, seen as ``dst_dims``."""
        if self.sum_value is None:
            return None
        s = b.slot(self.sum_value)
        if tuple(b.md(s).dims) != tuple(dst_dims):
            s = b.view(s, dst_dims)
        return s

    def build(
        self,
        b: Builder,
        dst_dims: Sequence[int],
        prefix: Sequence[PostItem] = (),
        view: Callable[[int], int] | None = None,
    ) -> tuple[Attr, list[tuple[int, int]]]:
        """The attr and extra exec args for a primitive whose dst has ``dst_dims``.

        ``prefix`` are post-ops the host itself needs first (e.g. Gemm's alpha);
        ``view`` maps each binary operand's slot to the one the primitive reads
        (a Linear layer run as a convolution sees rows as an image).
        """
        post: list[PostOp] = []
        args: list[tuple[int, int]] = []
        dst_dims = tuple(dst_dims)
        for item in (*prefix, *self.items):
            if item.kind == "binary":
                if item.slot is not None:
                    s = item.slot
                else:
                    assert item.operand is not None
                    s = _operand_slot(b, item.operand, item.shape, dst_dims)
                if view is not None:
                    s = view(s)
                args.append((Arg.post_op(len(post)) | Arg.src_1, s))
                post.append(PostOp("binary", item.alg, md=b.md(s)))
            elif item.kind == "sum":
                post.append(PostOp("sum"))
            elif item.kind == "dw":
                post.append(PostOp("dw", item.alg, item.alpha, item.beta))
            else:
                post.append(PostOp("eltwise", item.alg, item.alpha, item.beta))
        return Attr(post), args

    @property
    def has_dw(self) -> bool:
        """True when a depthwise convolution rides on the host."""
        return any(i.kind == "dw" for i in self.items)

    def dw_args(self, b: Builder, pd: PrimitiveDesc) -> list[tuple[int, int]]:
        """Exec args of the fused depthwise convolution: weights packed into the
        layout ``pd`` wants (once, at init) and the bias."""
        args: list[tuple[int, int]] = []
        for item in self.items:
            if item.kind != "dw":
                continue
            assert item.weights is not None and item.weights.const is not None
            c, k = item.weights.shape[0], item.weights.shape[-1]
            w = b.const_slot(item.weights.const, (c, 1, 1, k, k))
            bias = (
                item.bias.const
                if item.bias is not None and item.bias.const is not None
                else np.zeros(c, np.float32)
            )
            dw = Arg.attr_post_op_dw
            args.append((dw | Arg.weights, b.convert(w, pd.arg_md(dw | Arg.weights))))
            bias_slot = b.const_slot(bias)
            args.append((dw | Arg.bias, b.convert(bias_slot, pd.arg_md(dw | Arg.bias))))
        return args

    def operands_fit(self, dst_dims: Sequence[int]) -> bool:
        """True when every binary operand can be viewed with ``dst_dims``'s rank."""
        return all(
            _collapse(i.shape, tuple(dst_dims)) is not None
            for i in self.items
            if i.kind == "binary"
        )


def _collapse(shape: tuple[int, ...], dst: tuple[int, ...]) -> tuple[int, ...] | None:
    """``shape`` (broadcastable to the chain) as a shape broadcastable to ``dst``."""
    if len(shape) == len(dst):
        return shape
    if len(shape) < len(dst):
        return (1,) * (len(dst) - len(shape)) + shape
    # dst merged leading dims of the chain: merge the operand's the same way.
    k = len(shape) - len(dst) + 1
    lead, rest = shape[:k], shape[k:]
    if all(d == 1 for d in lead):
        return (1, *rest)
    if math.prod(lead) == dst[0]:
        return (dst[0], *rest)
    return None


def _operand_slot(
    b: Builder, v: Value, shape: tuple[int, ...], dst: tuple[int, ...]
) -> int:
    s = b.slot(v)
    want = _collapse(shape, dst)
    assert want is not None
    md = b.md(s)
    if md.dims == want:
        return s  # same dims: whatever layout the operand has, the post-op reads it
    return b.view(s, want)


NO_EPILOGUE = Epilogue()

LowerFn = Callable[["Builder", Op, Epilogue], None]


class PackedWeights:
    """Packed constants that programs of one subgraph share, by content.

    The engines a symbolic subgraph builds per input shape pack the same
    weights, mostly into the same layouts: with this store, each packing is
    made once and held while any program uses it (weak references). Keyed by
    a SHA-256 of the plain bytes (folded weights are recomputed per program)
    and both memory descs.
    """

    def __init__(self) -> None:
        self._arrays: weakref.WeakValueDictionary[str, np.ndarray] = (
            weakref.WeakValueDictionary()
        )

    def key(self, plain: np.ndarray, src: MemoryDesc, dst: MemoryDesc) -> str:
        """What makes two packings the same: the bytes and both layouts."""
        flat = np.ascontiguousarray(plain).reshape(-1).view(np.uint8)
        digest = hashlib.sha256(flat.data).hexdigest()
        return f"{digest} {src!r} {dst!r}"

    def get(self, key: str) -> np.ndarray | None:
        """The packed array for ``key``, if a program still holds it."""
        return self._arrays.get(key)

    def put(self, key: str, packed: np.ndarray) -> None:
        """Share ``packed`` (a fresh packing) under ``key``."""
        self._arrays[key] = packed


class Builder:
    """Collects buffers, slots and steps while ops are lowered in order."""

    def __init__(
        self,
        ir: IR,
        *,
        dry: bool = False,
        conv_tag: int | None = None,
        tuner: Tuner | None = None,
        packed: PackedWeights | None = None,
        team: int = 1,
        chain: int = 1,
    ) -> None:
        self.ir = ir
        self.dry = dry
        self.conv_tag = conv_tag
        """A blocked ``dnnl_format_tag_t`` for 2-D convolutions (None: "any")."""
        self.tuner = tuner
        """Picks among oneDNN's implementations (None: always oneDNN's first)."""
        self.packed = packed
        """Packed constants shared with other programs (None: not shared)."""
        self.team = team
        """Threads a small 1x1 convolution may be split across, one part each
        (1: no splits; see :func:`byoc_dnnl.ops.conv.split_parts`)."""
        self.chain_team = chain
        """Threads a 1x1 Conv and the depthwise Conv reading it are split
        across, one chain of two parts each (1: none; see
        :func:`byoc_dnnl.ops.conv.chain_dw`)."""
        self.chain_src: dict[int, tuple[int, list[tuple[int, int]], list[int]]] = {}
        """Value id -> (first team step, channel bounds, part slots) of a split
        1x1 Conv whose depthwise reader joins its team."""
        self.block = (
            MemoryDesc.with_tag((1, 1, 1, 1), conv_tag).nbytes // 4 if conv_tag else 1
        )
        """Channels per block of ``conv_tag`` (16 for nChw16c)."""
        self.lib = _lib.lib()
        self.buffers: list[Buffer] = []
        self.slots: list[Slot] = []
        self.steps: list[Step] = []
        self.where: dict[int, int] = {}
        self.holders: dict[int, list[int]] = {}  # buffer -> value ids living in it
        self._variants: dict[int, list[tuple[MemoryDesc, int]]] = {}
        self._views: dict[tuple[int, tuple[int, ...]], int] = {}
        self._aliases: dict[int, list[tuple[MemoryDesc, int]]] = {}
        self._stream: Stream | None = None
        self.pos = 0
        self.last_use = _last_uses(ir)
        self.hints: dict[int, tuple[int, ...]] = {}
        self._read: set[int] = set()  # buffers a step reads or writes (a superset)

    # -- creation helpers ----------------------------------------------------

    def pd(self, kind: str, fn_name: str, *args: Any) -> PrimitiveDesc:
        """Create a primitive descriptor with ``dnnl_<fn_name>`` (engine first)."""
        return PrimitiveDesc.make(kind, getattr(self.lib, fn_name), engine(), *args)

    def buffer(self, kind: str, nbytes: int, key: Any = None) -> int:
        """A new buffer id."""
        self.buffers.append(Buffer(kind, nbytes, key))
        return len(self.buffers) - 1

    def new_slot(self, buffer: int, md: MemoryDesc, offset: int = 0) -> int:
        """A new slot id on ``buffer``, ``offset`` bytes in."""
        self.slots.append(Slot(buffer, md, offset))
        return len(self.slots) - 1

    def md(self, slot: int) -> MemoryDesc:
        """The memory desc of ``slot``."""
        return self.slots[slot].md

    # -- values ------------------------------------------------------------

    def slot(self, v: Value) -> int:
        """The slot holding ``v`` now (constants get one const slot on first use)."""
        s = self.where.get(v.id)
        if s is not None:
            return s
        if v.const is None:
            raise AssertionError(f"value {v} is used before it is produced")
        arr = np.ascontiguousarray(v.const, dtype=np.float32)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        buf = self.buffer(CONST, arr.nbytes, arr)
        s = self.new_slot(buf, MemoryDesc.plain(arr.shape))
        self.bind(v, s)
        return s

    def const_slot(self, array: np.ndarray, shape: Sequence[int] | None = None) -> int:
        """A const slot for a computed array (folded weights, scaled bias)."""
        arr = np.ascontiguousarray(array, dtype=np.float32)
        shape = tuple(shape) if shape is not None else arr.shape
        if int(np.prod(shape)) != arr.size:
            raise AssertionError("const_slot shape does not match the array")
        buf = self.buffer(CONST, arr.nbytes, arr)
        return self.new_slot(buf, MemoryDesc.plain(shape))

    def bind(self, v: Value, slot: int) -> None:
        """Record that ``v`` now lives in ``slot``."""
        self.where[v.id] = slot
        self.holders.setdefault(self.slots[slot].buffer, []).append(v.id)

    def output(self, v: Value, md: MemoryDesc, inplace: int | None = None) -> int:
        """A slot for the new value ``v`` with layout ``md`` (optionally in place)."""
        s = self._dst_slot(md, inplace)
        self.bind(v, s)
        return s

    def _dst_slot(self, md: MemoryDesc, inplace: int | None) -> int:
        """A step's dst: a new buffer, or ``inplace``'s buffer overwritten.

        Overwriting stales the reordered copies :meth:`convert` made of that
        buffer: a later conversion of the new value must reorder again, not
        find the old value's copy (a fuzzed graph read one).
        """
        if inplace is None:
            return self.new_slot(self.buffer(INTERNAL, md.nbytes), md)
        buf = self.slots[inplace].buffer
        for k in [k for k in self._variants if self.slots[k].buffer == buf]:
            del self._variants[k]
        return inplace if self.slots[inplace].md.same(md) else self.new_slot(buf, md)

    def can_overwrite(self, v: Value) -> bool:
        """True when ``v``'s buffer may be reused by the op being lowered now."""
        s = self.where.get(v.id)
        if s is None:
            return False
        buf = self.slots[s].buffer
        if self.buffers[buf].kind != INTERNAL:
            return False
        return all(
            self.last_use.get(vid, NEVER) <= self.pos for vid in self.holders[buf]
        )

    # -- layouts -------------------------------------------------------------

    def convert(self, slot: int, md: MemoryDesc) -> int:
        """A slot with the same data in layout ``md`` (reorder, cached per slot)."""
        if self.slots[slot].md.same(md):
            return slot
        for known, other in self._variants.get(slot, ()):
            if known.same(md):
                return other
        src = self.slots[slot]
        pd = self._reorder_pd(src.md, md)
        if self.buffers[src.buffer].kind == CONST:
            out = self._run_const_reorder(pd, slot, md)
        else:
            out = self.new_slot(self.buffer(INTERNAL, md.nbytes), md)
            self.add_step(pd, [(Arg.src, slot), (Arg.dst, out)], "reorder")
        self._variants.setdefault(slot, []).append((md, out))
        return out

    def _reorder_pd(self, src: MemoryDesc, dst: MemoryDesc) -> PrimitiveDesc:
        attr = Attr()
        return PrimitiveDesc.make(
            "reorder",
            self.lib.reorder_primitive_desc_create,
            src.h,
            engine(),
            dst.h,
            engine(),
            attr.h,
        )

    def dense(self, slot: int) -> int:
        """``slot`` in dense row-major layout (reordered if needed)."""
        md = self.slots[slot].md
        if md.is_dense:
            return slot
        return self.convert(slot, MemoryDesc.plain(md.dims))

    def view(self, slot: int, shape: Sequence[int]) -> int:
        """The data of ``slot`` reinterpreted as dense ``shape`` (no copy)."""
        slot = self.dense(slot)
        shape = tuple(int(d) for d in shape)
        if self.slots[slot].md.dims == shape:
            return slot
        key = (slot, shape)
        if key not in self._views:
            if math.prod(shape) != math.prod(self.slots[slot].md.dims):
                raise AssertionError(f"view {self.slots[slot].md.dims} -> {shape}")
            self._views[key] = self.new_slot(
                self.slots[slot].buffer, MemoryDesc.plain(shape)
            )
        return self._views[key]

    def alias(self, slot: int, md: MemoryDesc) -> int:
        """The bytes of ``slot`` seen through another desc ``md`` (no copy).

        Cached per slot, so conversions of the alias are made only once too.
        """
        for known, other in self._aliases.get(slot, ()):
            if known.same(md):
                return other
        out = self.new_slot(self.slots[slot].buffer, md)
        self._aliases.setdefault(slot, []).append((md, out))
        return out

    def strided_view(
        self, slot: int, shape: Sequence[int], strides: Sequence[int]
    ) -> int:
        """A strided (e.g. transposed) view of the dense data of ``slot``."""
        slot = self.dense(slot)
        return self.new_slot(
            self.slots[slot].buffer, MemoryDesc.strided(shape, strides)
        )

    def best_pd(
        self, slots: list[int], make: Callable[[list[MemoryDesc]], PrimitiveDesc]
    ) -> tuple[PrimitiveDesc, list[int]]:
        """A pd on the operands' current layouts, else on dense copies of them.

        Keeping the producers' layouts saves reorders; but when oneDNN only has
        its reference kernel for them (or none), dense row-major inputs win.
        """
        try:
            pd: PrimitiveDesc | None = make([self.md(s) for s in slots])
            if not pd.impl.startswith("ref"):  # type: ignore[union-attr]
                return pd, slots  # type: ignore[return-value]
        except DnnlError:
            pd = None
        dense = [self.dense(s) for s in slots]
        if dense == slots and pd is not None:
            return pd, slots
        return make([self.md(s) for s in dense]), dense

    def jit_pd(
        self,
        slot: int,
        make: Callable[[list[MemoryDesc]], PrimitiveDesc],
        layouts: Sequence[MemoryDesc],
    ) -> tuple[PrimitiveDesc, int]:
        """:meth:`best_pd` for one operand; where that gets no jit kernel, the
        first of ``layouts`` one reads, with the operand reordered into it.

        oneDNN runs some problems on plain data only with simple loops or its
        reference kernel (pooling NCHW, softmax over a strided axis): one
        reorder is far cheaper than those.
        """
        pd, (s,) = self.best_pd([slot], make)
        if is_jit(pd.impl):
            return pd, s
        for md in layouts:
            try:
                fast = make([md])
            except DnnlError:
                continue
            if is_jit(fast.impl):
                return fast, self.convert(s, md)
        return pd, s

    def tuned(
        self,
        pd: PrimitiveDesc,
        remake: Callable[[], PrimitiveDesc],
        arg_ids: Sequence[int],
        detail: object = None,
        accept: Callable[[str], bool] = not_ref,
        cold: bool = False,
    ) -> PrimitiveDesc:
        """``pd`` or a faster implementation of its problem (:mod:`byoc_dnnl.tune`)."""
        if self.tuner is None or self.dry:
            return pd
        return self.tuner.pick(pd, remake, arg_ids, detail, accept, cold)

    def hint(self, v: Value) -> MemoryDesc | None:
        """The plain layout downstream kernels want for ``v`` (see plan_layouts)."""
        order = self.hints.get(v.id)
        if order is None or len(order) != len(v.shape):
            return None
        strides = [0] * len(order)
        step = 1
        for axis in reversed(order):
            strides[axis] = step
            step *= max(1, v.shape[axis])
        return MemoryDesc.strided(v.shape, strides)

    # -- steps ---------------------------------------------------------------

    def add_step(
        self, pd: PrimitiveDesc, args: list[tuple[int, int]], label: str
    ) -> None:
        """Append one execution of a primitive made from ``pd``."""
        prim = None if self.dry else pd.create()
        scratch = pd.scratchpad_md() if pd.scratchpad_bytes else None
        self.steps.append(
            Step(prim, args, scratch, label, pd.impl, pd.post_ops, pd.tune_key)
        )
        self._read.update(self.slots[s].buffer for _, s in args)

    def one_thread_pd(self, make: Callable[[], PrimitiveDesc]) -> PrimitiveDesc:
        """``make()`` with OpenMP at one thread: oneDNN fits a kernel to the
        thread count in force, and a team member runs on one thread."""
        before = self.lib.omp_get_max_threads()
        self.lib.omp_set_num_threads(1)
        try:
            return make()
        finally:
            self.lib.omp_set_num_threads(before)

    def add_team(
        self, parts: Sequence[tuple[PrimitiveDesc, list[tuple[int, int]]]], label: str
    ) -> None:
        """One step per (pd, args) part, run side by side (``Step.team``)."""
        first = len(self.steps)
        for pd, args in parts:
            self.add_step(pd, args, label)
        for step in self.steps[first:]:
            step.team = 0
        self.steps[first].team = len(parts)

    def release_consts(self, values: Sequence[Value]) -> None:
        """Drop ``values``' plain arrays: no op after this one reads them.

        A folded weight is packed by the op that reads it and its plain copy
        is dead from then on; releasing it here, not after lowering, keeps
        init's peak memory from holding every weight twice. Arrays a step
        reads as they are (a plain bias) stay.
        """
        for v in values:
            s = self.where.get(v.id)
            if s is not None and self.slots[s].buffer not in self._read:
                buf = self.buffers[self.slots[s].buffer]
                if buf.kind == CONST:
                    buf.key = None
            v.const = None

    def _run_const_reorder(self, pd: PrimitiveDesc, slot: int, md: MemoryDesc) -> int:
        nbytes = md.nbytes
        if self.dry:
            buf = self.buffer(CONST, nbytes, None)
            return self.new_slot(buf, md)
        src = self.slots[slot]
        arr = self.buffers[src.buffer].key
        packed, key = self.packed, ""
        if packed is not None:
            key = packed.key(arr, src.md, md)
            shared = packed.get(key)
            if shared is not None:
                return self.new_slot(self.buffer(CONST, nbytes, shared), md)
        out = aligned_empty(nbytes)
        m_src = Memory(src.md, arr.ctypes.data)
        m_dst = Memory(md, out.ctypes.data)
        prim = pd.create()
        if self._stream is None:
            self._stream = Stream()
        args = exec_args([(Arg.src, m_src.h), (Arg.dst, m_dst.h)])
        if pd.scratchpad_bytes:
            scratch = aligned_empty(pd.scratchpad_bytes)
            m_scr = Memory(pd.scratchpad_md(), scratch.ctypes.data)
            args = exec_args(
                [(Arg.src, m_src.h), (Arg.dst, m_dst.h), (Arg.scratchpad, m_scr.h)]
            )
        self.lib.primitive_execute(prim.h, self._stream.h, len(args), args)
        self.lib.stream_wait(self._stream.h)
        if packed is not None:
            packed.put(key, out)
        buf = self.buffer(CONST, nbytes, out)
        return self.new_slot(buf, md)

    # -- epilogues -------------------------------------------------------------

    def epilogue(self, host: Op) -> Epilogue:
        """Post-ops for the ops fused into ``host`` (see :mod:`byoc_dnnl.passes`)."""
        from .ops import OPS

        if not host.fused:
            return NO_EPILOGUE
        ep = Epilogue(result=host.fused[-1].out)
        chain = host.out
        for f in host.fused:
            entry = OPS[f.kind]
            if entry.post is None:
                raise AssertionError(f"{f.kind} was fused but cannot be a post-op")
            entry.post(self, f, chain, ep)
            chain = f.out
        return ep

    def may_sum_into(self, host: Op, v: Value) -> bool:
        """Whether ``host``'s group may write its result over ``v`` (sum post-op)."""
        if v.const is not None or not self.can_overwrite(v):
            return False
        buf = self.slots[self.where[v.id]].buffer
        readers = 0
        for member in (host, *host.fused):
            for u in member.inputs:
                if u is None:
                    continue
                if u is v:
                    readers += 1  # only the fused Add itself may read v
                    if member is host:
                        return False
                    continue
                su = self.where.get(u.id)
                if su is not None and self.slots[su].buffer == buf:
                    return False
        return readers == 1

    def produce(self, v: Value, md: MemoryDesc, inplace: int | None = None) -> int:
        """The DST slot for a primitive computing ``v`` with dst layout ``md``.

        ``md`` may have other dims than ``v`` (a MatMul run on flattened rows);
        ``v`` then lives in a reshaped view of the same buffer.
        """
        if tuple(md.dims) == (v.shape or (1,)):
            return self.output(v, md, inplace)
        s = self._dst_slot(md, inplace)
        self.bind(v, self.view(s, v.shape or (1,)))
        return s


def _last_uses(ir: IR) -> dict[int, int]:
    """Position of each value's last reader (a fused group runs at its end)."""
    pos: dict[int, int] = {}
    for op in ir.ops:
        if op.fused:
            end = op.fused[-1].index
            pos[id(op)] = end
            for f in op.fused:
                pos[id(f)] = end
        else:
            pos.setdefault(id(op), op.index)
    last: dict[int, int] = {}
    for v in ir.values:
        if v.users:
            last[v.id] = max(pos[id(u)] for u in v.users)
    for v in ir.heads:
        last[v.id] = NEVER
    return last


def _order(md: MemoryDesc) -> tuple[int, ...]:
    """Axes from outermost to innermost of a plain layout (nhwc -> (0, 2, 3, 1))."""
    strides = md.strides
    return tuple(sorted(range(len(strides)), key=lambda a: (-strides[a], a)))


def plan_layouts(b: Builder, ir: IR) -> None:
    """Record, per value, the plain layout the convolutions reading it prefer.

    Walks the ops backwards: a Conv asks oneDNN which input layout its kernel
    picks (e.g. NHWC for brgconv); ops that run in any layout (activations,
    binary ops, pooling...) pass the wish on to their inputs. Producers then
    write that layout directly instead of reordering on every run.
    """
    from .ops import OPS

    for op in reversed(ir.ops):
        entry = OPS.get(op.kind)
        if entry is None:
            continue
        if entry.prefers is not None:
            x = op.inputs[0]
            try:
                md = entry.prefers(b, op)
            except DnnlError:
                md = None
            if x is not None and md is not None and md.is_plain:
                b.hints.setdefault(x.id, _order(md))
        elif entry.follows and op.outputs and op.out.id in b.hints:
            order = b.hints[op.out.id]
            for v in op.inputs:
                if v is not None and v.const is None and len(v.shape) == len(order):
                    b.hints.setdefault(v.id, order)


def is_jit(impl: str) -> bool:
    """A jit kernel's name: ``jit:avx2``, ``jit_1x1:avx2``, ``bnorm_jit:avx2``
    (not ``ref:any``, ``simple_nchw:any``, ``brgconv:avx2``, ``x64:gemm:jit``)."""
    return "jit" in impl.split(":", 1)[0]


def lower(
    ir: IR,
    *,
    dry: bool = False,
    conv_tag: int | None = None,
    tuner: Tuner | None = None,
    packed: PackedWeights | None = None,
    team: int = 1,
    chain: int = 1,
) -> Builder:
    """Lower every op of ``ir`` (fused groups at their last member) and the heads."""
    from .ops import OPS

    b = Builder(
        ir,
        dry=dry,
        conv_tag=conv_tag,
        tuner=tuner,
        packed=packed,
        team=team,
        chain=chain,
    )
    if not dry:
        plan_layouts(b, ir)
    for v in ir.inputs:
        if v.shape and 0 in v.shape:
            raise Decline(f"input {v.name!r} is empty")
        buf = b.buffer(INPUT, 4 * math.prod(v.shape), v.name)
        b.bind(v, b.new_slot(buf, MemoryDesc.plain(v.shape or (1,))))
    spent = {} if dry else _spent_consts(ir, b.last_use)
    for op in ir.ops:
        if op.fused:
            continue  # lowered when its chain's last op is reached
        host = op.host
        if host is not None and op is not host.fused[-1]:
            continue
        b.pos = op.index
        if host is not None:
            _lower_group(b, host, OPS)
        else:
            OPS[op.kind].lower(b, op, NO_EPILOGUE)
        b.release_consts(spent.pop(op.index, ()))
    _bind_heads(b)
    return b


def _spent_consts(ir: IR, last_use: dict[int, int]) -> dict[int, list[Value]]:
    """Constants by the position of their last reader (heads never end)."""
    out: dict[int, list[Value]] = {}
    for v in ir.values:
        pos = last_use.get(v.id, NEVER)
        if v.const is not None and pos != NEVER:
            out.setdefault(pos, []).append(v)
    return out


def _lower_group(b: Builder, host: Op, ops: Any) -> None:
    mark = (len(b.buffers), len(b.slots), len(b.steps))
    try:
        ep = b.epilogue(host)
        ops[host.kind].lower(b, host, ep)
        made = [s for s in b.steps[mark[2] :] if s.label == host.label]
        if not any(s.impl.startswith("ref") for s in made) and not (
            _divides_into_padding(b, ep, made)
        ):
            return
        # Only oneDNN's reference kernel takes the fused form (a GEMM with a
        # per-row (rows, 1) binary operand ran 1000x slower than apart), or
        # the fused form computes garbage: refuse.
    except DnnlError:
        pass
    # oneDNN refused the fused form: roll back, run the host alone (it passed the
    # support query alone, so this cannot fail) and retry the rest of the chain
    # with its first op as the new host.
    del b.buffers[mark[0] :], b.slots[mark[1] :], b.steps[mark[2] :]
    b.where = {k: s for k, s in b.where.items() if s < mark[1]}
    b.holders = {
        k: [v for v in vs if b.where.get(v, mark[1]) < mark[1]]
        for k, vs in b.holders.items()
        if k < mark[0]
    }
    b._variants = {
        k: [(m, s) for m, s in vs if s < mark[1]]
        for k, vs in b._variants.items()
        if k < mark[1]
    }
    b._views = {k: s for k, s in b._views.items() if s < mark[1]}
    b._aliases = {
        k: [(m, s) for m, s in vs if s < mark[1]]
        for k, vs in b._aliases.items()
        if k < mark[1]
    }
    rest = host.fused
    cut = next((i for i, f in enumerate(rest) if f.kind == "Conv"), None)
    if cut is not None:
        # A fused depthwise Conv was refused: keep the chain before it on the
        # host and run the depthwise Conv as the host of its own chain.
        _lower_chain(b, [host, *rest[:cut]], ops)
        _lower_chain(b, rest[cut:], ops)
        return
    host.fused = []
    b.pos = host.index
    ops[host.kind].lower(b, host, NO_EPILOGUE)
    _lower_chain(b, rest, ops)


def _divides_into_padding(b: Builder, ep: Epilogue, steps: Sequence[Step]) -> bool:
    """Whether a Div post-op runs on a dst with padding lanes (a channel-blocked
    layout whose last block is partly empty).

    The fused division computes 0 / 0 there, and the NaN reached the next
    convolution through its zero weights (a depthwise Conv on 4 channels, a
    Div by a per-channel constant, then a 1x1 Conv: random image graph
    10329). Unpadded layouts (plain, channels-last, whole blocks) keep it.
    """
    if not any(i.kind == "binary" and i.alg == Alg.binary_div for i in ep.items):
        return False
    for step in steps:
        for arg, slot in step.args:
            md = b.slots[slot].md
            if arg == Arg.dst and md.nbytes > 4 * math.prod(md.dims):
                return True
    return False


def _lower_chain(b: Builder, chain: list[Op], ops: Any) -> None:
    """Lower ``chain`` as its first op with the others fused into it.

    At the position of the chain's own last op, not the whole group's: a value
    the rest of the group still reads (``relu(c) + c`` split into two steps)
    must not look dead to the first part, which would overwrite it in place.
    """
    b.pos = chain[-1].index
    head, head.host, head.fused = chain[0], None, chain[1:]
    for f in head.fused:
        f.host = head
    if head.fused:
        _lower_group(b, head, ops)
    else:
        ops[head.kind].lower(b, head, NO_EPILOGUE)


def _bind_heads(b: Builder) -> None:
    taken: set[int] = set()
    for k, v in enumerate(b.ir.heads):
        s = b.where.get(v.id)
        if s is None:
            s = b.slot(v)  # a constant head
        slot = b.slots[s]
        buf = b.buffers[slot.buffer]
        want = 4 * math.prod(v.shape)
        if (
            buf.kind == INTERNAL
            and slot.md.is_dense
            and slot.md.dims == (v.shape or (1,))
            and buf.nbytes == want
            and slot.buffer not in taken
        ):
            buf.kind, buf.key = OUTPUT, k
            taken.add(slot.buffer)
            continue
        out_buf = b.buffer(OUTPUT, want, k)
        taken.add(out_buf)
        dst = b.new_slot(out_buf, MemoryDesc.plain(v.shape or (1,)))
        src = s
        if not b.slots[src].md.same(b.slots[dst].md) and b.slots[src].md.dims != (
            v.shape or (1,)
        ):
            src = b.view(src, v.shape or (1,))
        b.add_step(
            b._reorder_pd(b.slots[src].md, b.slots[dst].md),
            [(Arg.src, src), (Arg.dst, dst)],
            f"output {k}",
        )
