"""Which oneDNN implementation each convolution and GEMM runs, chosen at init.

Where it sits: lowering creates a primitive descriptor, whose first
implementation is oneDNN's own pick; :meth:`Tuner.pick` may swap it for
another implementation of the same problem before the weights are packed.

oneDNN lists implementations best-first by heuristics, and on this repo's
AVX2 bench machine they are not always right: on channels-last data it puts
the brgemm 1x1 and brdgmm depthwise convolutions first, yet the jit 1x1 and
jit depthwise kernels listed after them are faster on most of ResNet-50's
and MobileNetV2's layers; with the timed picks both models ran 1-10 %
faster channels-last (see the dnnl README). So ``init`` times the
candidates on written zero buffers (Linear layers with few rows on weights
out of cache, see :func:`_runner`), in alternating rounds, and keeps
oneDNN's pick unless another is clearly faster among all candidates and
faster again head to head with oneDNN's pick.

Only the implementation changes: every candidate is built on the layouts the
first pick chose for source and destination (weights are packed for the
winner), so layout planning and the rest of the program do not move.
Decisions are keyed by the problem, so repeated layers are timed once, and
they travel in the exported engine, so an imported engine replays them
without timing.

Timing alone cannot see how a kernel runs inside the model (weights from
memory, input from the cores that wrote it), so decisions whose runner-up
timed close are settled by :func:`settle`, which times both programs' steps
in context.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from . import _lib
from ._lib import Arg, DnnlError, Query
from .handles import Memory, PrimitiveDesc, Stream, aligned_empty, exec_args

MARGIN = 0.97
"""Another implementation must take under this share of the first pick's time."""
ROUNDS = 5
PROBE_DROP = 1.5
"""Candidates whose first timed execution is this much slower than the best stop."""
DROP = 1.15
"""After two rounds, candidates this much slower than the best stop being timed."""
ROUND_S = 5e-4
"""Executions per round are repeated until a round takes about this long."""
CLOSE = 1.15
"""A runner-up within this factor of the winner's time is tried in context."""
SETTLE_ROUNDS = 4
"""Runs of each program, alternating, when :func:`settle` times in context."""
COLD_BYTES = 64 << 20
"""The buffer cold timing cuts weight copies from: twice a 32 MB L3."""
COLD_COPIES = 16
"""At most this many copies: the buffer is cut to that many of the largest packing."""
OLD_ISA = 0.90
"""A kernel for an older ISA than the newest among the candidates must take
under this share of the newest ISA's best time (see :func:`fastest`)."""
_ISAS = ("avx512", "avx2", "avx", "sse41")
"""ISA name prefixes, newest first (``avx2`` before ``avx``: prefixes)."""


def not_ref(impl: str) -> bool:
    """The default filter: oneDNN's reference kernels are never the fast choice."""
    return not impl.startswith("ref")


def arg_ids(has_bias: bool, extra: Iterable[tuple[int, int]]) -> list[int]:
    """The execution arguments of a convolution/GEMM step: src, weights, bias
    (if any), dst and the post-ops' ``extra`` (arg, slot) pairs."""
    bias = [Arg.bias] if has_bias else []
    return [Arg.src, Arg.weights, *bias, Arg.dst, *(arg for arg, _ in extra)]


def candidates(
    pd: PrimitiveDesc, accept: Callable[[str], bool] = not_ref
) -> dict[str, PrimitiveDesc]:
    """Every accepted implementation of ``pd``'s problem, by name, in oneDNN's order.

    Walks ``pd`` through its implementations (which moves it) and keeps a
    clone at each one; the first accepted name is oneDNN's own choice.
    """
    out: dict[str, PrimitiveDesc] = {}
    while True:
        name = pd.impl
        if accept(name) and name not in out:
            out[name] = pd.clone()
        if not pd.next_impl():
            return out


def touched_zeros(nbytes: int) -> np.ndarray:
    """A 64-byte aligned zero buffer whose pages are really written.

    ``np.zeros`` may hand out untouched pages that all map the kernel's one
    zero page: reads from them always hit the cache, which makes
    bandwidth-bound kernels look fast in timing.
    """
    buf = aligned_empty(nbytes)
    buf.fill(0)
    return buf


def _aligned(nbytes: int) -> int:
    """``nbytes`` rounded up to whole 64-byte cache lines."""
    return -(-nbytes // 64) * 64


def _runner(
    pd: PrimitiveDesc, arg_ids: Iterable[int], cold: np.ndarray | None = None
) -> Callable[[], None]:
    """One execution of ``pd``'s primitive on zero buffers (what timing needs).

    ``cold`` (a zero buffer the candidates of one problem share): each
    execution reads the next of the copies of the weights cut from it, so
    they come from memory as in the model rather than from cache.
    """
    lib = _lib.lib()
    keep: list[object] = []
    pairs: list[tuple[int, Memory]] = []
    mds = []
    for arg in arg_ids:
        try:
            md = pd.arg_md(arg)
        except DnnlError:
            continue
        mds.append((arg, md))
    if pd.scratchpad_bytes:
        mds.append((Arg.scratchpad, pd.scratchpad_md()))
    copies: list[Memory] = []
    for arg, md in mds:
        if md.nbytes == 0:
            continue
        if cold is not None and arg == Arg.weights and md.nbytes <= cold.nbytes:
            step = _aligned(md.nbytes)
            count = min(COLD_COPIES, cold.nbytes // step)
            base = cold.ctypes.data
            copies = [Memory(md, base + i * step) for i in range(count)]
            mem = copies[0]
        else:
            buf = touched_zeros(md.nbytes)
            mem = Memory(md, buf.ctypes.data)
            keep.append(buf)
        keep.append(mem)
        pairs.append((arg, mem))
    arg_sets = [
        exec_args([(a, (w if a == Arg.weights else m).h) for a, m in pairs])
        for w in copies
    ] or [exec_args([(a, m.h) for a, m in pairs])]
    prim = pd.create()
    stream = Stream()
    n = len(pairs)
    keep += [prim, stream, arg_sets, copies, cold]
    turn = [0]

    def run() -> None:
        args = arg_sets[turn[0]]
        turn[0] = (turn[0] + 1) % len(arg_sets)
        lib.primitive_execute(prim.h, stream.h, n, args)
        lib.stream_wait(stream.h)

    run.keep = keep  # type: ignore[attr-defined]
    return run


def isa_rank(name: str) -> int | None:
    """How new the ISA an implementation name ends in is (higher is newer);
    None for names without one (``x64:gemm:jit``, ``jit:uni``)."""
    tail = name.rsplit(":", 1)[-1]
    for i, prefix in enumerate(_ISAS):
        if tail.startswith(prefix):
            return len(_ISAS) - i
    return None


def fastest(secs: Mapping[str, float]) -> str:
    """The candidate to pick from timings alone: the fastest, unless it targets
    an older ISA than the newest among the candidates and is not clearly
    faster (:data:`OLD_ISA`) than the best of those.

    Why: on a Zen 4 (AVX-512 on 256-bit units) oneDNN 3.2's AVX2 1x1 kernels
    timed alone within 1-3 % of the AVX-512 ones, and the tuner took them in
    about one init in three; in ResNet-50, timed per step in context (16
    interleaved runs), AVX2 kernels took 1.03-1.21x the AVX-512 kernels' time
    on 14 of 16 1x1 problems and tied on the other two.
    """
    best = min(secs, key=lambda n: secs[n])
    ranks = {n: isa_rank(n) for n in secs}
    top = max((r for r in ranks.values() if r is not None), default=None)
    mine = ranks[best]
    if top is None or mine is None or mine >= top:
        return best
    newest = min((n for n in secs if ranks[n] == top), key=lambda n: secs[n])
    return best if secs[best] < OLD_ISA * secs[newest] else newest


def time_runs(runs: Mapping[str, Callable[[], None]]) -> dict[str, float]:
    """Median seconds per execution of each candidate, timed in alternating rounds.

    One cold execution each, then one timed probe: candidates over
    :data:`PROBE_DROP` times the best probe stop there (the older-ISA and
    reference-like kernels, most of the list). The rest run :data:`ROUNDS`
    rounds, and after two rounds those over :data:`DROP` times the best stop.
    """
    for run in runs.values():
        run()
    samples: dict[str, list[float]] = {}
    for name, run in runs.items():
        t = time.perf_counter()
        run()
        samples[name] = [time.perf_counter() - t]
    best = min(s[0] for s in samples.values())
    live = [n for n in runs if samples[n][0] <= PROBE_DROP * best]
    reps = {
        n: max(1, min(50, math.ceil(ROUND_S / max(samples[n][0], 1e-7)))) for n in live
    }
    for name in live:
        samples[name] = []
    for r in range(ROUNDS):
        for name in live if r % 2 == 0 else reversed(live):
            run, k = runs[name], reps[name]
            t = time.perf_counter()
            for _ in range(k):
                run()
            samples[name].append((time.perf_counter() - t) / k)
        if r == 1:
            best = min(statistics.median(samples[n]) for n in live)
            live = [n for n in live if statistics.median(samples[n]) <= DROP * best]
    return {name: statistics.median(s) for name, s in samples.items()}


@dataclass
class Tuner:
    """Per-program implementation choices: timed (``decisions`` empty at the
    start) or replayed from an imported engine (``replay``).

    ``decisions`` maps :func:`problem_key` to the implementation name.
    """

    decisions: dict[str, str] = field(default_factory=dict)
    replay: bool = False
    close: dict[str, str] = field(default_factory=dict)
    """Problem key -> the runner-up, for decisions timed too close to trust
    alone: :func:`settle` decides them in context."""

    def pick(
        self,
        pd: PrimitiveDesc,
        remake: Callable[[], PrimitiveDesc],
        arg_ids: Sequence[int],
        detail: object = None,
        accept: Callable[[str], bool] = not_ref,
        cold: bool = False,
    ) -> PrimitiveDesc:
        """The implementation of ``pd``'s problem to build.

        ``remake`` creates the pd again on ``pd``'s own source and destination
        layouts (so every candidate reads and writes them), ``arg_ids`` are the
        execution arguments besides the scratchpad, ``detail`` whatever the
        descs do not show (a convolution's geometry), ``accept`` filters names,
        ``cold`` times the candidates with their weights out of cache (see
        :func:`_runner`; for products that stream their weights).
        The returned pd carries the problem's key (``tune_key``), so its step
        can be timed in context by :func:`settle`.
        """
        key = problem_key(pd, arg_ids, detail)
        out = self._pick(key, pd, remake, arg_ids, accept, cold)
        out.tune_key = key
        return out

    def _pick(
        self,
        key: str,
        pd: PrimitiveDesc,
        remake: Callable[[], PrimitiveDesc],
        arg_ids: Sequence[int],
        accept: Callable[[str], bool],
        cold: bool,
    ) -> PrimitiveDesc:
        name = self.decisions.get(key)
        if self.replay and name in (None, pd.impl):
            return pd  # oneDNN's pick: chosen before, or nothing was to choose
        found = candidates(remake(), accept)
        if name is not None:
            return found.get(name, pd)
        if len(found) < 2:
            return pd
        first = next(iter(found))
        region = None
        if cold:  # enough for COLD_COPIES of the largest packing, at most COLD_BYTES
            most = max(_aligned(p.md(Query.weights_md).nbytes) for p in found.values())
            region = touched_zeros(min(COLD_BYTES, COLD_COPIES * most))
        runs = {n: _runner(p, arg_ids, region) for n, p in found.items()}
        # Looked up per call, so a test can patch the module's time_runs.
        secs = time_runs(runs)
        best = fastest(secs)
        if best != first and secs[best] < MARGIN * secs[first]:
            # Leaving oneDNN's pick takes a second win, head to head: on a
            # noisy machine one burst can make any kernel time slow once
            # (ResNet-50's 3x3 layers flipped to a kernel 1.2-1.8x slower).
            # Any win will do there: the margin was met once, and asking it
            # again kept 9 of ResNet-50's 16 1x1 problems, in one of four
            # inits, on the brgemm kernel that A/B runs found slower.
            again = time_runs({first: runs[first], best: runs[best]})
            if again[best] >= again[first]:
                best = first
        else:
            best = first
        self.decisions[key] = best
        rest = [n for n in secs if n != best]
        if rest:
            runner = min(rest, key=lambda n: secs[n])
            if secs[runner] <= CLOSE * secs[best]:
                self.close[key] = runner
        return found[best]


P = TypeVar("P")


def settle(
    tuner: Tuner,
    current: P,
    build: Callable[[dict[str, str]], P],
    step_seconds: Callable[[P], Sequence[tuple[str, float]]],
    rounds: int | None = None,
) -> P:
    """The program to keep once ``tuner``'s close decisions are settled in context.

    An implementation timed alone, on buffers that stay in cache, is not
    timed as it runs in the model, where its weights come from memory and its
    input from the cores that just wrote it. On the bench machine ResNet-50's
    7x7 1x1 convolutions ran 4-20 % faster on the jit kernel than on the
    brgemm one inside the model, yet alone the two timed within noise and the
    tuner kept the brgemm one in about a quarter of its inits.

    So ``build`` makes a second program from ``tuner``'s decisions with every
    close one (:attr:`Tuner.close`) swapped for its runner-up; ``step_seconds``
    runs a program once and returns each step's (problem key, seconds). The
    two programs alternate for ``rounds`` runs each (default
    :data:`SETTLE_ROUNDS`; 0 settles nothing), and per problem (summed over
    the steps that share it) the runner-up wins only by :data:`MARGIN`.
    Returns ``current``, the second program, or a third one built from the
    mixed decisions; ``tuner.decisions`` then holds what was kept. A program
    oneDNN refuses to build (:class:`DnnlError`) leaves ``current`` and the
    timed decisions as they were.
    """
    close, tuner.close = dict(tuner.close), {}
    rounds = SETTLE_ROUNDS if rounds is None else rounds
    if not close or rounds <= 0:
        return current
    timed = {key: tuner.decisions[key] for key in close}
    try:
        other = build({**tuner.decisions, **close})
    except DnnlError:
        return current  # settling is a refinement: the timed picks stand
    progs = (current, other)
    samples: tuple[dict[str, list[float]], ...] = ({}, {})
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            per: dict[str, float] = defaultdict(float)
            for key, secs in step_seconds(progs[i]):
                per[key] += secs
            for key in close:
                samples[i].setdefault(key, []).append(per[key])
    swapped = set()
    for key, runner in close.items():
        mine = statistics.median(samples[0][key])
        theirs = statistics.median(samples[1][key])
        if theirs < _margin(runner, timed[key]) * mine:
            tuner.decisions[key] = runner
            swapped.add(key)
    if not swapped:
        return current
    if len(swapped) == len(close):
        return other
    del other, progs  # its packed weights go before the third program's
    try:
        return build(dict(tuner.decisions))
    except DnnlError:
        tuner.decisions.update(timed)
        return current


def _margin(runner: str, kept: str) -> float:
    """The share of ``kept``'s time in context ``runner`` must beat to replace
    it: :data:`OLD_ISA` for a kernel of an older ISA (four runs in context
    swapped ResNet-50's AVX-512 1x1 kernels for AVX2 ones in two of three
    bench inits, on noise: see :func:`fastest`), else :data:`MARGIN`."""
    mine, theirs = isa_rank(kept), isa_rank(runner)
    if mine is not None and theirs is not None and theirs < mine:
        return OLD_ISA
    return MARGIN


def problem_key(pd: PrimitiveDesc, arg_ids: Sequence[int], detail: object) -> str:
    """A stable text naming the problem ``pd`` solves, for decisions that are
    reused across layers and processes (so only layouts and dims, no handles)."""
    mds = [
        repr(pd.md(q)) if q != Query.weights_md else str(pd.md(q).dims)
        for q in (Query.src_md, Query.weights_md, Query.dst_md)
    ]
    post = list(pd.post_ops)
    return f"{pd.kind} {' '.join(mds)} args={list(arg_ids)} post={post} {detail}"
