"""The run path: a lowered subgraph as a flat list of primitive calls.

Where it sits: the last stage of ``init`` (:class:`Program`) and all of
``run`` (:meth:`Program.run`). Everything a run needs is prepared once:

* internal buffers are packed into one arena by liveness (buffers whose
  lifetimes do not overlap share bytes, which keeps activations in cache);
* an execution *context* owns the arena, a scratchpad, one memory object per
  slot and a prebuilt ``dnnl_exec_arg_t[]`` per step. A run only points the
  input/output memory objects at the caller's arrays and calls
  ``dnnl_primitive_execute`` once per step.

Where the compiled run loop builds (:mod:`byoc_dnnl.runloop`), one C call
runs all steps, and a *team* of steps (``Step.team``) runs side by side in one
OpenMP region, each member on its own stream and scratchpad; otherwise a
Python loop calls ``dnnl_primitive_execute`` per step (a team's members one
after the other: each was made for one thread, so that is correct, only slower).

Concurrent runs take different contexts from a pool (one is built on demand
when all are busy), so they never share scratch memory; see the README for
the measurement against a single context behind a lock.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from . import _lib, runloop
from ._lib import Arg, DnnlError, check
from .handles import Memory, Stream, aligned_empty, exec_args
from .lowering import CONST, INPUT, INTERNAL, OUTPUT, Builder

_ALIGN = 64
_F32 = np.dtype(np.float32)
_char_at = ctypes.c_char.from_buffer
_addressof = ctypes.addressof
_R = TypeVar("_R")
_EXECUTE = "dnnl_primitive_execute"


def data_address(a: np.ndarray) -> int:
    """The data pointer of a C-contiguous array, on the run path.

    Exporting the buffer to ctypes is a C call; ``a.ctypes.data`` builds a
    Python helper object on every call and costs about 1 µs more, per array
    and run. Read-only and empty arrays cannot be exported writable and take
    that slower way.
    """
    try:
        return _addressof(_char_at(a))  # type: ignore[arg-type]
    except (TypeError, ValueError, BufferError):
        return a.ctypes.data


def _aligned(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


def plan_arena(b: Builder) -> int:
    """Give every internal buffer an offset; returns the arena size in bytes.

    Greedy by size: each buffer goes to the lowest offset where it overlaps no
    placed buffer whose interval intersects its own. Intervals count run units
    (:func:`teams`), not steps: a team's steps run at once.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    unit_of = [u for u, unit in enumerate(teams(b.steps)) for _ in unit]
    for step, i in zip(b.steps, unit_of, strict=True):
        for _, s in step.args:
            buf = b.slots[s].buffer
            if b.buffers[buf].kind == INTERNAL:
                first.setdefault(buf, i)
                last[buf] = i
    order = sorted(first, key=lambda k: (-b.buffers[k].nbytes, k))
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    total = 0
    for buf in order:
        size = _aligned(b.buffers[buf].nbytes)
        lo, hi = first[buf], last[buf]
        clashes = sorted((o, e) for o, e, f, la in placed if not (la < lo or f > hi))
        offset = 0
        for o, e in clashes:
            if offset + size <= o:
                break
            offset = max(offset, e)
        b.buffers[buf].offset = offset
        placed.append((offset, offset + size, lo, hi))
        total = max(total, offset + size)
    return total


def teams(steps: Sequence[Any]) -> list[range]:
    """The run's units in order: a lone step, or a team of steps run side by side."""
    out, i = [], 0
    while i < len(steps):
        n = max(1, steps[i].team)
        out.append(range(i, i + n))
        i += n
    return out


def _scratch_offsets(steps: Sequence[Any]) -> tuple[list[int], int]:
    """Each step's offset into the shared scratchpad, and its size: the members
    of a team run at once, so each gets its own part."""
    offsets = [0] * len(steps)
    total = 0
    for unit in teams(steps):
        at = 0
        for i in unit:
            offsets[i] = at
            if steps[i].scratch is not None:
                at += _aligned(steps[i].scratch.nbytes)
        total = max(total, at)
    return offsets, total


def release_unused_consts(b: Builder) -> int:
    """Drop the arrays of constant buffers no step reads; returns the bytes kept.

    Lowering makes plain constants first (folded batch norm, scaled biases,
    the artifact's weights) and packs them into the layout a primitive wants:
    the plain copy is then dead, and holding it doubled the engine's memory
    (ResNet-50: 94 MB of folded weights beside the 102 MB packed).
    """
    used = {b.slots[s].buffer for step in b.steps for _, s in step.args}
    kept = 0
    for i, buf in enumerate(b.buffers):
        if buf.kind != CONST:
            continue
        if i in used:
            kept += buf.nbytes
        else:
            buf.key = None
    return kept


class Program:
    """A lowered subgraph, ready to run; builds execution contexts on demand."""

    def __init__(
        self,
        b: Builder,
        input_names: Sequence[str],
        out_shapes: Sequence[tuple[int, ...]],
        *,
        threads: int | None = None,
        concurrency: str = "pool",
    ) -> None:
        self.lib = _lib.lib()
        self.buffers = b.buffers
        self.slots = b.slots
        self.steps = b.steps
        self.input_names = tuple(input_names)
        self.out_shapes = tuple(out_shapes)
        self.threads = threads if threads is not None else self.lib.default_threads
        self.arena_bytes = plan_arena(b)
        self.scratch_offsets, self.scratch_bytes = _scratch_offsets(b.steps)
        self.loop = runloop.loop()
        self.team_size = max((s.team for s in b.steps), default=1)
        self.const_bytes = release_unused_consts(b)
        # Constant memory objects are read-only: every context shares them.
        self._const_mems: dict[int, Memory] = {}
        for i, slot in enumerate(self.slots):
            arr = self.buffers[slot.buffer].key
            if self.buffers[slot.buffer].kind == CONST and arr is not None:
                self._const_mems[i] = Memory(
                    slot.md, arr.ctypes.data + slot.offset, keep=arr
                )
        self._pool: list[_Context] = []
        self._lock = threading.Lock() if concurrency == "lock" else None
        self._pool.append(_Context(self))

    def describe(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(label, oneDNN implementation, post-op kinds) of every step, in run order."""
        return [(s.label, s.impl, s.post_ops) for s in self.steps]

    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[np.ndarray] | None = None,
    ) -> Sequence[np.ndarray]:
        """One inference; returns ``outputs`` filled, or fresh arrays the caller owns.

        ``outputs``: C-contiguous float32 arrays of :attr:`out_shapes`.
        :meth:`_on_context` inlined: a run starts with the interpreter out of
        cache, where every Python call on the way costs microseconds.
        """
        self.lib.omp_set_num_threads(self.threads)
        if self._lock is not None:
            with self._lock:
                return self._pool[0].run(inputs, outputs)
        pool = self._pool
        try:
            ctx = pool.pop()
        except IndexError:
            ctx = _Context(self)
        try:
            return ctx.run(inputs, outputs)
        finally:
            pool.append(ctx)

    def step_seconds(self, inputs: Mapping[str, np.ndarray]) -> list[float]:
        """Seconds each step took in one run on ``inputs``, in :attr:`steps` order.

        Steps are timed as they run in the model (weights from memory, input
        just written), which timing a kernel alone does not show: for
        :func:`byoc_dnnl.tune.settle` and the bench's per-layer report.
        """
        return self._on_context(_Context.step_seconds, inputs)

    def _on_context(
        self, method: Callable[[_Context, Mapping[str, np.ndarray]], _R], inputs: Any
    ) -> _R:
        """``method`` on an execution context of this program's own."""
        # The OpenMP team size is a per-calling-thread setting: set it every run.
        self.lib.omp_set_num_threads(self.threads)
        if self._lock is not None:
            with self._lock:
                return method(self._pool[0], inputs)
        try:
            ctx = self._pool.pop()
        except IndexError:
            ctx = _Context(self)
        try:
            return method(ctx, inputs)
        finally:
            self._pool.append(ctx)


def _raise(status: int, at: int, labels: Sequence[str]) -> None:
    """The DnnlError for a failed status from the compiled loop at step ``at``."""
    try:
        check(status, _EXECUTE, ())
    except DnnlError as exc:
        where = labels[at] if at < len(labels) else "the final wait"
        exc.message = f"{exc.message} (step {at}: {where})"
        exc.args = (exc.message,)
        raise


class _Context:
    """Memory objects, arena, scratchpad and exec-arg arrays for one run at a time."""

    def __init__(self, prog: Program) -> None:
        lib = prog.lib
        self._execute = lib.unchecked("dnnl_primitive_execute")
        self._set_handle = lib.unchecked("dnnl_memory_set_data_handle")
        self._wait = lib.unchecked("dnnl_stream_wait")
        self.streams = [Stream() for _ in range(max(1, prog.team_size))]
        self.stream = self.streams[0]
        self.arena = aligned_empty(max(prog.arena_bytes, _ALIGN))
        self.scratch = aligned_empty(max(prog.scratch_bytes, _ALIGN))
        base = self.arena.ctypes.data
        self._mems: list[Memory | None] = []
        self.in_bind: list[tuple[ctypes.c_void_p, int, int]] = []
        self.out_bind: list[tuple[ctypes.c_void_p, int, int]] = []
        index = {name: i for i, name in enumerate(prog.input_names)}
        for i, slot in enumerate(prog.slots):
            buf = prog.buffers[slot.buffer]
            if buf.kind == CONST:
                self._mems.append(prog._const_mems.get(i))  # None: unused
                continue
            if buf.kind == INTERNAL:
                mem = Memory(slot.md, base + buf.offset + slot.offset)
            else:
                mem = Memory(slot.md, None)
                if buf.kind == INPUT:
                    self.in_bind.append((mem.h, index[buf.key], slot.offset))
                elif buf.kind == OUTPUT:
                    self.out_bind.append((mem.h, buf.key, slot.offset))
            self._mems.append(mem)
        self._scratch_mems: list[Memory] = []
        calls: list[tuple[Any, ctypes.c_int, Any]] = []
        for step, at in zip(prog.steps, prog.scratch_offsets, strict=True):
            pairs = [(arg, self._mems[s].h) for arg, s in step.args]  # type: ignore[union-attr]
            if step.scratch is not None:
                m = Memory(step.scratch, self.scratch.ctypes.data + at)
                self._scratch_mems.append(m)
                pairs.append((Arg.scratchpad, m.h))
            assert step.prim is not None
            args = exec_args(pairs)
            calls.append((step.prim.h, ctypes.c_int(len(pairs)), args))
        self.calls = calls
        self.labels = [s.label for s in prog.steps]
        self.units = teams(prog.steps)
        self.names = prog.input_names
        self.out_shapes = prog.out_shapes
        self._loop_call: Callable[[int, int], int] | None = None
        self._whole: tuple[Callable[..., int], tuple[Any, ...]] | None = None
        if prog.loop is not None:
            self._loop_call = self._compiled(prog.loop, prog.steps)

    def _compiled(
        self, loop: runloop.RunLoop, steps: Sequence[Any]
    ) -> Callable[[int, int], int]:
        """``call(first, n)``: steps [first, first + n) through the C loop.

        Also sets ``_whole``: the loop and its arguments for all steps, which
        :meth:`run` calls without this closure.
        """
        table = (runloop.CStep * len(self.calls))()
        for row, (prim, n, args), step in zip(table, self.calls, steps, strict=True):
            row.prim, row.nargs, row.team = prim, n.value, max(1, step.team)
            row.chain = max(1, step.chain)
            row.args = ctypes.cast(args, ctypes.c_void_p)
        streams = (ctypes.c_void_p * len(self.streams))(*(s.h for s in self.streams))
        self._table, self._stream_table = table, streams  # alive with the context
        fn, execute, wait = loop.bd_run, loop.execute, loop.wait
        labels = self.labels
        self._failed = failed = ctypes.c_int(-1)
        failed_ref = ctypes.byref(failed)
        base, size, n_streams = (
            ctypes.addressof(table),
            ctypes.sizeof(runloop.CStep),
            len(self.streams),
        )
        self._whole = (
            fn,
            (
                execute,
                wait,
                streams,
                n_streams,
                ctypes.c_void_p(base),
                len(self.calls),
                failed_ref,
            ),
        )

        def call(first: int, n: int) -> int:
            status = fn(
                execute, wait, streams, n_streams, base + first * size, n, failed_ref
            )
            if status:
                _raise(status, first + failed.value, labels)
            return 0

        return call

    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[np.ndarray] | None = None,
    ) -> Sequence[np.ndarray]:
        # The calls return their status unchecked (see Library.unchecked): a
        # non-zero one goes through check, which raises.
        arrays, outs = self._bind(inputs, outputs)
        if self._loop_call is not None and self._whole is not None:
            fn, args = self._whole  # one C call, no helper on the way
            status = fn(*args)
            if status:
                _raise(status, self._failed.value, self.labels)
            return outs
        execute = self._execute
        stream = self.stream.h
        for prim, n, args in self.calls:
            status = execute(prim, stream, n, args)
            if status:
                check(status, execute, ())
        status = self._wait(stream)
        if status:
            check(status, self._wait, ())
        return outs

    def step_seconds(self, inputs: Mapping[str, np.ndarray]) -> list[float]:
        """One run, timing each step (oneDNN's CPU stream executes in order
        and returns when the primitive is done); a team's time is its first
        member's, the others' 0."""
        arrays, outs = self._bind(inputs)
        execute, stream, clock = self._execute, self.stream.h, time.perf_counter
        secs = [0.0] * len(self.calls)
        for unit in self.units:
            t = clock()
            if self._loop_call is not None:
                self._loop_call(unit.start, len(unit))
            else:
                for i in unit:
                    prim, n, args = self.calls[i]
                    status = execute(prim, stream, n, args)
                    if status:
                        check(status, execute, ())
            secs[unit.start] = clock() - t
        status = self._wait(stream)
        if status:
            check(status, self._wait, ())
        del arrays, outs  # alive until every step has run
        return secs

    def _bind(
        self,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[np.ndarray] | None = None,
    ) -> tuple[list[np.ndarray], Sequence[np.ndarray]]:
        """Point the I/O memory objects at ``inputs`` and ``outputs`` (default:
        fresh arrays); the returned arrays must stay alive until the run ends."""
        arrays, ptrs = [], []
        for name in self.names:
            a = inputs[name]
            if a.dtype is not _F32:
                a = a.astype(_F32)
            try:  # the export succeeds only for a writable C-contiguous array
                ptr = _addressof(_char_at(a))  # type: ignore[arg-type]
            except (TypeError, ValueError, BufferError):
                a = np.ascontiguousarray(a)
                ptr = a.ctypes.data
            arrays.append(a)  # keeps converted copies alive until the run ends
            ptrs.append(ptr)
        set_handle = self._set_handle
        for mem, i, at in self.in_bind:
            status = set_handle(mem, ptrs[i] + at)
            if status:
                check(status, set_handle, ())
        outs = outputs
        if outs is None:
            outs = []
            for shape in self.out_shapes:
                outs.append(np.empty(shape, _F32))
        for mem, k, at in self.out_bind:
            status = set_handle(mem, data_address(outs[k]) + at)
            if status:
                check(status, set_handle, ())
        return arrays, outs
