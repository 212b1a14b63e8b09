"""Which activation layout a subgraph's convolutions and Linear layers use,
chosen per engine.

oneDNN offers two families of direct-convolution kernels on x86: the brgemm
ones on channels-last (NHWC) data, which ``format_tag::any`` picks, and the
older jit ones on channel-blocked data (nChw8c on AVX2, nChw16c on AVX-512).
Neither wins everywhere: on the bench's AMD Zen 3 machine (AVX2, 2 threads)
MobileNetV2 ran faster blocked with oneDNN's first-listed kernels, and about
even once each layer's kernel is timed (:mod:`byoc_dnnl.tune`); ResNet-50 ran
faster channels-last. Linear layers with at least 32 rows run as jit 1x1
convolutions in either layout (:func:`byoc_dnnl.ops.matmul.linear_as_conv`);
see ``plugins/byoc-dnnl/README.md``.

So ``conv_layout="auto"`` (the default) builds both programs at init and
keeps the one that runs faster, timed on zero inputs in alternating rounds
(:func:`time_candidates`); the blocked one must be faster by more than
:data:`NATIVE_MARGIN` (:func:`pick`).
Subgraphs with fewer than :data:`AUTO_MIN_OPS` convolutions and Linear layers
skip the timing and keep oneDNN's own choice; ``"native"`` and ``"blocked"``
force one family without timing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from ._lib import DnnlError, FormatTag
from .handles import MemoryDesc, conv_pd
from .ir import IR, Op

LAYOUTS = ("auto", "native", "blocked")
AUTO_MIN_OPS = 3
"""Fewer layout-sensitive ops than this: the choice cannot matter much, skip timing."""
_BUDGET_S = 1.0
"""Seconds of alternating runs the programs get at init (at least
``_MIN_ROUNDS``, at most ``_MAX_ROUNDS`` rounds of two runs each)."""
_CLOSE = 0.05
_CLOSE_BUDGET_S = 3.0
"""When the two best are within ``_CLOSE`` of each other after ``_BUDGET_S``,
timing goes on until this many seconds (or ``_MAX_ROUNDS``).

Measured on ResNet-50 (about 60 ms a run; its blocked program 1.085x the
channels-last one's time in 40 bench rounds), 25 + 15 simulated inits on two
fixed programs, onnxruntime run between them: with 1 s (4 - 5 rounds) the
blocked program won 3 of 25 by the medians and 2 of 25 by the median per-round
ratio; with 3 s (10 - 13 rounds) 2 of 15 by the medians and 0 of 15 by the
per-round ratio. In the bench, 0.5 s let it win 2 of 6 inits."""
NATIVE_MARGIN = 0.01
"""How much faster the blocked program must time to be kept (:func:`pick`)."""
_MIN_ROUNDS = 3
_MAX_ROUNDS = 15


@dataclass
class Choice:
    """The layout an engine runs with, and why (the engine's ``layout_choice``)."""

    layout: str
    reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    prebuilt: bool = False
    """True when the choice came with an imported engine instead of this init."""
    cached: bool = False
    """True when init found the choice in the decision cache
    (:func:`byoc_dnnl.backend.decision_cache`) instead of timing."""
    impls: dict[str, str] = field(default_factory=dict)
    """The implementation picked per problem (:mod:`byoc_dnnl.tune`), where
    timing overrode or confirmed oneDNN's first pick."""


@cache
def blocked_tag() -> int | None:
    """The channel-blocked tag this CPU's jit convolutions run on, or None.

    Probed once: a 3x3 convolution on nChw16c, then nChw8c; the first with a
    jit (not reference) kernel wins.
    """
    shape, wshape = (1, 16, 8, 8), (16, 16, 3, 3)
    for tag in (FormatTag.nChw16c, FormatTag.nChw8c):
        src, dst = MemoryDesc.with_tag(shape, tag), MemoryDesc.with_tag(shape, tag)
        try:
            pd = conv_pd(
                src, MemoryDesc.any(wshape), None, dst, ((1, 1), (0, 0), (1, 1), (1, 1))
            )
        except DnnlError:
            continue
        if pd.impl.startswith("jit"):
            return tag
    return None


def channel_layouts(shape: tuple[int, ...]) -> list[MemoryDesc]:
    """Layouts oneDNN's jit kernels read for per-channel ops (pooling, batch
    norm) where plain NCHW gets only simple loops: channel-blocked for 2-D
    images where the CPU has it (its reorder from NCHW is the cheaper one),
    then channels-last."""
    tag = blocked_tag() if len(shape) == 4 else None
    blocked = [MemoryDesc.with_tag(shape, tag)] if tag is not None else []
    return [*blocked, MemoryDesc.innermost(shape, 1)]


def standard_layouts(shape: tuple[int, ...]) -> list[MemoryDesc]:
    """The layouts this backend makes for ``shape`` itself: row-major,
    channels-last and (2-D images) channel-blocked. oneDNN 3.2's kernels
    misaddress binary post-op operands on other layouts of the same dims
    (transposed views, a (rows, C) view of a blocked image)."""
    out = [MemoryDesc.plain(shape)]
    if len(shape) >= 3:
        out.append(MemoryDesc.innermost(shape, 1))
    tag = blocked_tag() if len(shape) == 4 else None
    if tag is not None:
        out.append(MemoryDesc.with_tag(shape, tag))
    return out


def is_standard(md: MemoryDesc) -> bool:
    """``md`` places every element as one of :func:`standard_layouts` does."""
    return any(std.same_bytes_as(md) for std in standard_layouts(md.dims))


def count_layout_ops(ir: IR) -> int:
    """The ops whose kernels the choice changes: 2-D convolutions and Linear
    layers (Gemm/MatMul with constant 2-D weights, run as 1x1 convolutions
    when blocked)."""
    return sum(1 for op in ir.ops if _layout_op(op))


def _layout_op(op: Op) -> bool:
    if op.kind == "Conv":
        return len(op.out.shape) == 4
    if op.kind in ("Gemm", "MatMul") and len(op.inputs) > 1:
        w = op.inputs[1]
        return w is not None and w.const is not None and len(w.shape) == 2
    return False


def plan(option: str, convs: int, tag: int | None) -> Choice | None:
    """The choice that needs no timing, or None when both programs must be timed.

    ``option`` is the ``conv_layout`` option, ``convs`` the subgraph's 2-D
    convolutions and Linear layers (:func:`count_layout_ops`), ``tag`` the
    CPU's blocked layout (None: it has none).
    """
    if option == "native":
        return Choice("native", "conv_layout='native'")
    if convs == 0:
        return Choice("native", "no 2-D convolutions or Linear layers")
    if tag is None:
        return Choice("native", "this CPU has no jit kernels on a blocked layout")
    if option == "blocked":
        return Choice("blocked", "conv_layout='blocked'")
    if convs < AUTO_MIN_OPS:
        return Choice(
            "native", f"{convs} layout-sensitive op(s) < {AUTO_MIN_OPS}: not timed"
        )
    return None


def time_candidates(
    runs: dict[str, Callable[[], object]], budget_s: float = _BUDGET_S
) -> dict[str, float]:
    """Milliseconds per run of each candidate, from alternating rounds of two runs.

    One warm-up each, then rounds in alternating order while under
    ``budget_s`` (see ``_MIN_ROUNDS``, ``_MAX_ROUNDS``, and ``_CLOSE_BUDGET_S``
    for close calls). The first candidate's value is its median; another's
    is that times the median over rounds of its time to the first's in the
    same round, as the bench compares runtimes: a slow phase of the shared
    host that spans a round moves both sides of that round's ratio.
    """
    names = list(runs)
    for name in names:
        runs[name]()
    per_round: dict[str, list[float]] = {n: [] for n in names}
    start = time.perf_counter()
    ms: dict[str, float] = {}
    for r in range(_MAX_ROUNDS):
        for name in names if r % 2 == 0 else reversed(names):
            t = time.perf_counter()
            runs[name]()
            runs[name]()
            per_round[name].append((time.perf_counter() - t) / 2)
        ms = _paired_ms(per_round)
        spent = time.perf_counter() - start
        if r + 1 < _MIN_ROUNDS or spent <= budget_s:
            continue
        best = sorted(ms.values())
        close = len(best) > 1 and best[1] < (1 + _CLOSE) * best[0]
        if not close or spent > max(budget_s, _CLOSE_BUDGET_S):
            break
    return ms


def pick(ms: dict[str, float]) -> str:
    """The layout to keep from :func:`time_candidates`' milliseconds: the
    fastest, except that the blocked program must beat the native one by more
    than ``NATIVE_MARGIN``.

    Why: a close call is a coin toss on a shared machine, and here the two
    sides are not equal. In 13 bench runs on the Zen 4 (2026-12-02),
    ResNet-50's init picked blocked 4 times, each on timings within 0.7 %,
    while every comparison in one process had channels-last ahead: six
    repeated timings as init does them put blocked at 1.004 - 1.093x native,
    a 30-round A/B with gaps at 1.039x. Near ties came when the machine was
    slow (ResNet-50 timed at 71 - 73 ms instead of 38 - 46), where both are
    held back alike. Where blocked really wins (MobileNetV2 with chains:
    1.1 - 7.2 % faster in all 8 inits recorded), it wins by more than the
    margin.
    """
    best = min(ms, key=lambda k: ms[k])
    if best == "blocked" and "native" in ms:
        if ms["native"] <= (1 + NATIVE_MARGIN) * ms["blocked"]:
            return "native"
    return best


def _paired_ms(per_round: dict[str, list[float]]) -> dict[str, float]:
    """The first candidate's median ms, the others' scaled by their median
    per-round ratio to it (see :func:`time_candidates`)."""
    names = list(per_round)
    first = per_round[names[0]]
    base = statistics.median(first) * 1e3
    return {
        n: base
        * statistics.median(x / y for x, y in zip(per_round[n], first, strict=True))
        for n in names
    }


def zero_inputs(ir: IR) -> dict[str, np.ndarray]:
    """Zero arrays for every subgraph input (timing needs shapes, not values)."""
    # np.full writes every page; np.zeros may map the shared zero page, which
    # reads faster than real inputs (see byoc_dnnl.tune.touched_zeros).
    return {v.name: np.full(v.shape, 0.0, np.float32) for v in ir.inputs}
