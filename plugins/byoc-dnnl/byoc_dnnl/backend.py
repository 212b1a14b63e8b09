"""The dnnl backend: oneDNN primitives for float32 CNN and transformer ops.

Flow inside the backend: ``supports`` (compile time) runs the op's static
check, then lowers the node alone "dry" so oneDNN confirms an implementation
exists; ``init`` imports the subgraph into the IR, fuses
(:mod:`byoc_dnnl.passes`), lowers every op to primitives with weights packed
once (:mod:`byoc_dnnl.lowering`) and prepares the run path
(:mod:`byoc_dnnl.program`); ``run`` binds arrays and executes.

Options (``byoc.compile(..., options={"dnnl": {...}})`` or ``byoc.load``):

* ``threads``: OpenMP threads per run (default: ``OMP_NUM_THREADS``, else
  every core);
* ``concurrency``: ``"pool"`` (default; concurrent runs use separate
  execution contexts) or ``"lock"`` (one context, runs serialized);
* ``conv_layout``: ``"auto"`` (default), ``"native"`` or ``"blocked"``: the
  activation layout of 2-D convolutions and Linear layers
  (:mod:`byoc_dnnl.layout`);
* ``tune``: ``True`` (default) times oneDNN's implementations of each
  convolution and GEMM at init and keeps the fastest; ``False`` keeps
  oneDNN's first pick (:mod:`byoc_dnnl.tune`);
* ``cache``: ``True`` (default) keeps what ``init`` decided by timing in a
  persistent cache, so the next init of the same subgraph (same weights,
  oneDNN, CPU, threads and options) skips the timing; ``False`` times every
  init and stores nothing;
* ``cache_dir``: the cache's directory (default: ``$BYOC_DNNL_CACHE_DIR``,
  else ``dnnl`` in the user cache dir, see :func:`byoc.cache.user_cache_dir`);
* ``max_shapes``: for a subgraph with symbolic dims, how many per-shape
  engines to keep (default 4; :mod:`byoc_dnnl.dynamic`);
* ``split``: ``"auto"`` (default) runs the 1x1 convolutions of small blocked
  images as one part of the output channels per thread, side by side, where
  the compiled run loop builds (:func:`byoc_dnnl.ops.conv.split_parts`), on
  AVX2 only (see :func:`_team`); ``True`` splits on any CPU, ``False``
  never;
* ``chain``: ``True`` (default) runs a 1x1 convolution and the depthwise
  convolution reading it on the blocked layout as one chain per thread, each
  on its own part of the channels (:func:`_chain_team`); ``False`` never.

``export_engine`` stores the layout and the implementations ``init`` chose,
so an artifact saved with ``engines=True`` loads without timing again; the
cache stores the same blob.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

import byoc
from byoc.cache import EngineCache, cache_key, consts_digest, user_cache_dir

from . import _lib, dynamic, layout, runloop, tune
from ._lib import FormatTag
from .handles import release_free_heap
from .ir import IR, Decline, from_graph, from_node_info
from .lowering import PackedWeights, lower
from .ops import OPS, no
from .passes import fuse
from .patterns import patterns as _patterns
from .program import Program
from .tune import Tuner

try:
    _VERSION = version("byoc-dnnl")
except PackageNotFoundError:  # running from a source tree
    _VERSION = "0.0.0"

_OPTIONS = frozenset(
    {
        "threads",
        "concurrency",
        "conv_layout",
        "tune",
        "cache",
        "cache_dir",
        "max_shapes",
        "split",
        "chain",
    }
)
_ENGINE_FORMAT = 2
_TUNER = 6
"""How decisions are made, in the decision cache's key, so entries made before
are timed again: 2 settles close picks in context (:func:`byoc_dnnl.tune.settle`);
3 compares the two layouts by their per-round ratio, timing close calls longer
(:func:`byoc_dnnl.layout.time_candidates`: the older timing picked ResNet-50's
slower layout in some inits, and a cached pick would keep it); 4 keeps the
native layout unless the blocked one is more than 1 % faster
(:func:`byoc_dnnl.layout.pick`); 5 times Linear layers with few rows on weights
out of cache (:func:`byoc_dnnl.tune._runner`); 6 takes an older ISA's kernel
only when it is clearly faster (:func:`byoc_dnnl.tune.fastest`)."""
_TRIALS: OrderedDict[Any, byoc.Support] = OrderedDict()
_TRIALS_MAX = 4096


class DnnlBackend(byoc.Backend):
    """oneDNN (CPU) backend, above the reference fallback."""

    name = "dnnl"
    version = _VERSION
    priority = 50

    # -- capability (compile time) ---------------------------------------------

    @classmethod
    def available(cls) -> str | None:
        return _lib.unavailable_reason()

    @classmethod
    def supports(cls, node: byoc.NodeInfo) -> byoc.Support:
        if node.op not in OPS:
            return no(f"no kernel for {node.op}")
        if dynamic.has_symbols(node):
            return dynamic.symbolic_support(node, _static_support)
        return _static_support(node)

    @classmethod
    def patterns(cls) -> Sequence[byoc.Pattern]:
        return _patterns()

    # -- engine -------------------------------------------------------------------

    _program: Program | None = None
    _shapes: dynamic.Specializations | None = None
    _packed: PackedWeights | None = None
    """Shared with the other per-shape engines of a symbolic subgraph."""

    def init(self, consts: Mapping[str, np.ndarray]) -> None:
        if _is_symbolic(self.graph):
            self._init_symbolic(consts, {})
            return
        cache = decision_cache(self.options)
        if cache is None:
            self._build(consts, None)
            return
        key = self._cache_key(consts)
        blob = cache.get(key, label=self.symbol)
        if blob is not None:
            try:
                self.import_engine(blob, consts)
            except ValueError as exc:
                warnings.warn(
                    f"dnnl cache entry for {self.symbol} is unusable ({exc}); "
                    "timing again",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                self.layout_choice.prebuilt = False
                self.layout_choice.cached = True
                return
        self._build(consts, None)
        cache.put(key, self.export_engine(), label=self.symbol)

    def _init_symbolic(
        self, consts: Mapping[str, np.ndarray], known: Mapping[dynamic.Key, bytes]
    ) -> None:
        """Programs come per input shape, at run time (:mod:`byoc_dnnl.dynamic`)."""
        _check_options(self.options)
        decision_cache(self.options)  # its options too: fail at init, not at a run

        packed = PackedWeights()

        def make(graph: byoc.Graph) -> DnnlBackend:
            engine = DnnlBackend(self.symbol, graph, self.options, self.meta)
            engine._packed = packed
            return engine

        self._shapes = dynamic.Specializations(
            self.graph, consts, make, _max_shapes(self.options), known
        )

    def _cache_key(self, consts: Mapping[str, np.ndarray]) -> str:
        """Everything init's timed decisions depend on: the subgraph, its
        weights (fusions look at constant values), the machine and the
        options that change what is timed."""
        setup = {
            "format": _ENGINE_FORMAT,
            "tuner": _TUNER,
            "machine": _fingerprint(_threads_option(self.options)),
            "conv_layout": self.options.get("conv_layout", "auto"),
            "tune": self.options.get("tune", True),
            "team": _team(self.options, _threads_option(self.options)),
            "chain": _chain_team(self.options, _threads_option(self.options)),
        }
        return cache_key(
            "byoc-dnnl decisions",
            json.dumps(setup, sort_keys=True),
            self.graph.to_json(),
            consts_digest(self.graph, consts),
        )

    def _build(
        self, consts: Mapping[str, np.ndarray], known: layout.Choice | None
    ) -> None:
        self._choose_program(consts, known)
        # Lowering and timing allocate far more than the engine keeps.
        release_free_heap()
        prog = self._program
        specs = [self.graph.spec(h) for h in self.graph.heads]
        # The driver allocates what the program would: float32 of its shapes.
        self.fills_outputs = prog is not None and [
            (tuple(sp.shape or ()), sp.dtype) for sp in specs
        ] == [(tuple(shape), "float32") for shape in prog.out_shapes]

    def _choose_program(
        self, consts: Mapping[str, np.ndarray], known: layout.Choice | None
    ) -> None:
        """Lower the subgraph; ``known`` is a layout choice made before (an
        imported engine), which spares timing both programs."""
        threads, concurrency, conv_layout, tuning = _check_options(self.options)
        lib = _lib.lib()
        # Kernels are chosen for the thread count in force when they are made.
        lib.omp_set_num_threads(threads if threads is not None else lib.default_threads)

        def fresh_ir() -> IR:
            ir = from_graph(self.graph, consts)
            fuse(ir)
            return ir

        team = _team(self.options, threads)
        chain = _chain_team(self.options, threads)

        def program(ir: IR, conv_tag: int | None, tuner: Tuner | None) -> Program:
            prog = Program(
                lower(
                    ir,
                    conv_tag=conv_tag,
                    tuner=tuner,
                    packed=self._packed,
                    team=team,
                    chain=chain,
                ),
                [v.name for v in ir.inputs],
                [v.shape for v in ir.heads],
                threads=threads,
                concurrency=concurrency,
            )
            # The program holds the constants it reads; the IR's ops and values
            # refer to each other, so without this their arrays (folded
            # weights) would wait for a garbage collection.
            for v in ir.values:
                v.const = None
            return prog

        ir = fresh_ir()
        tag = layout.blocked_tag() if conv_layout != "native" else None
        choice = layout.plan(conv_layout, layout.count_layout_ops(ir), tag)
        if known is not None and (choice is None or choice.layout == known.layout):
            choice = known  # an option naming another layout overrides it

        def tuner() -> Tuner | None:
            if not tuning:
                return None
            if choice is known and known is not None:
                return Tuner(dict(known.impls), replay=True)
            return Tuner()

        if choice is not None:
            t = tuner()
            self._program = program(ir, tag if choice.layout == "blocked" else None, t)
        else:
            # Lowering may rewrite the IR (refused fusions): one IR per program.
            tn, tb = tuner(), tuner()
            native, blocked = program(ir, None, tn), program(fresh_ir(), tag, tb)
            feeds = layout.zero_inputs(ir)
            ms = layout.time_candidates(
                {
                    "native": lambda: native.run(feeds),
                    "blocked": lambda: blocked.run(feeds),
                }
            )
            pick = layout.pick(ms)
            self._program, t = (native, tn) if pick == "native" else (blocked, tb)
            del native, blocked  # the loser's packed weights go now
            choice = layout.Choice(pick, "timed at init", ms)
        if t is not None and t.close:
            conv_tag = tag if choice.layout == "blocked" else None
            feeds = layout.zero_inputs(ir)

            def step_seconds(prog: Program) -> list[tuple[str, float]]:
                prog.run(feeds)  # untimed: the other program ran last
                secs = prog.step_seconds(feeds)
                return [(s.key, x) for s, x in zip(prog.steps, secs, strict=True)]

            self._program = tune.settle(
                t,
                self._program,
                lambda d: program(fresh_ir(), conv_tag, Tuner(d, replay=True)),
                step_seconds,
            )
        if choice is not known:
            choice.impls = dict(t.decisions) if t is not None else {}
        self.layout_choice = choice

    # -- prebuilt engines -----------------------------------------------------------

    def export_engine(self) -> bytes:
        """The decisions ``init`` made by measuring, for the artifact's engine section.

        oneDNN 3.2 cannot serialize CPU primitives (``dnnl_primitive_get_cache_blob``
        is unimplemented on CPU), and rebuilding them is fast; the slow, and
        run-to-run noisy, part of ``init`` is timing the implementations and the
        two layouts. An imported engine reuses those decisions, so a deployment
        loads faster and runs the same program in every process. The blob is
        only valid on the same oneDNN version, CPU and thread count
        (:func:`_fingerprint`).
        """
        if self._shapes is not None:
            body: dict[str, Any] = {
                "format": _ENGINE_FORMAT,
                "dynamic": True,
                **self._shapes.export(),
            }
        else:
            c = self.layout_choice
            body = {
                "format": _ENGINE_FORMAT,
                "machine": _fingerprint(_threads_option(self.options)),
                "layout": c.layout,
                "reason": c.reason,
                "timings_ms": c.timings_ms,
                "impls": c.impls,
            }
        text = json.dumps(body, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        return json.dumps({"sha256": digest, "body": body}, sort_keys=True).encode()

    def import_engine(self, blob: bytes, consts: Mapping[str, np.ndarray]) -> None:
        """Build with the layout choice in ``blob``; raise (the driver then warns
        and runs ``init``) if the blob is damaged or made for another machine."""
        try:
            outer = json.loads(blob)
            body = outer["body"]
            if not isinstance(body, dict):
                raise TypeError(f"body is a {type(body).__name__}")
            text = json.dumps(body, sort_keys=True)
            ok = hashlib.sha256(text.encode()).hexdigest() == outer["sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a dnnl engine blob ({exc})") from exc
        if not ok:
            raise ValueError("dnnl engine blob checksum mismatch")
        if body.get("format") != _ENGINE_FORMAT:
            raise ValueError(f"dnnl engine blob format {body.get('format')!r}")
        if bool(body.get("dynamic")) != _is_symbolic(self.graph):
            raise ValueError("dnnl engine blob is for a subgraph of other shapes")
        if body.get("dynamic"):
            self._init_symbolic(consts, dynamic.parse_known(body))
            return
        here = _fingerprint(_threads_option(self.options))
        built = body.get("machine")
        if built != here:
            built = built if isinstance(built, dict) else {}
            diff = ", ".join(
                f"{k} {built.get(k)!r} (here {v!r})"
                for k, v in here.items()
                if built.get(k) != v
            )
            raise ValueError(f"its layout was chosen for another setup: {diff}")
        if body.get("layout") not in ("native", "blocked"):
            raise ValueError(f"dnnl engine blob layout {body.get('layout')!r}")
        impls = body.get("impls")
        if not isinstance(impls, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in impls.items()
        ):
            raise ValueError("dnnl engine blob impls is not a map of names")
        known = layout.Choice(
            body["layout"],
            str(body.get("reason")),
            dict(body.get("timings_ms") or {}),
            prebuilt=True,
            impls=impls,
        )
        self._build(consts, known)

    def run_into(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[np.ndarray]
    ) -> None:
        assert self._program is not None, "run_into without a static program"
        self._program.run(inputs, outputs)

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        program = self._program
        if program is not None:
            return program.run(inputs)
        assert self._shapes is not None, "run before init"
        return self._shapes.engine_for(inputs).run(inputs)

    def describe(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(label, oneDNN implementation, post-op kinds) per primitive execution
        (symbolic dims: of the engine for the shapes run last)."""
        if self._shapes is not None:
            return self._shapes.latest().describe()
        assert self._program is not None
        return self._program.describe()


def decision_cache(options: Mapping[str, Any]) -> EngineCache | None:
    """The cache of init's timed decisions the options select; None when
    ``cache`` is off or init times nothing (``tune=False`` and a fixed layout)."""
    enabled = options.get("cache", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"dnnl option cache={enabled!r}; use True or False")
    times = options.get("tune", True) is not False or options.get(
        "conv_layout", "auto"
    ) not in ("native", "blocked")
    if not enabled or not times:
        return None
    directory = options.get("cache_dir")
    if directory is not None and not isinstance(directory, str | os.PathLike):
        raise ValueError(f"dnnl option cache_dir={directory!r}; use a path")
    directory = (
        directory or os.environ.get("BYOC_DNNL_CACHE_DIR") or user_cache_dir("dnnl")
    )
    # Entries are a few kB of JSON: the limit only bounds years of models.
    return EngineCache(directory, name="dnnl", max_bytes=64 << 20)


def _fingerprint(threads: int | None) -> dict[str, Any]:
    """What a layout choice depends on: oneDNN, the CPU and the thread count."""
    lib = _lib.lib()
    return {
        "onednn": ".".join(map(str, lib.version_tuple)),
        "cpu": _cpu_model(),
        "blocked_tag": layout.blocked_tag(),
        "threads": threads if threads is not None else lib.default_threads,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _check_options(options: Mapping[str, Any]) -> tuple[int | None, str, str, bool]:
    """The engine options (threads, concurrency, conv_layout, tune), validated."""
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown dnnl option(s) {unknown}; the options are {sorted(_OPTIONS)}"
        )
    threads = _threads_option(options)
    concurrency = options.get("concurrency", "pool")
    if concurrency not in ("pool", "lock"):
        raise ValueError(
            f"dnnl option concurrency={concurrency!r}; use 'pool' or 'lock'"
        )
    conv_layout = options.get("conv_layout", "auto")
    if conv_layout not in layout.LAYOUTS:
        raise ValueError(
            f"dnnl option conv_layout={conv_layout!r}; use one of {layout.LAYOUTS}"
        )
    tune = options.get("tune", True)
    if not isinstance(tune, bool):
        raise ValueError(f"dnnl option tune={tune!r}; use True or False")
    _max_shapes(options)
    _team(options, threads)
    _chain_team(options, threads)
    return threads, concurrency, conv_layout, tune


def _team(options: Mapping[str, Any], threads: int | None) -> int:
    """How many threads a small 1x1 convolution is split across (1: none).

    It needs the compiled run loop (:mod:`byoc_dnnl.runloop`) and more than
    one thread. The ``split`` option: ``"auto"`` (default) splits only where
    the blocked layout is nChw8c, i.e. on AVX2, whose jit 1x1 kernel shares
    only pixels among the threads, so each streams all the weights. The
    AVX-512 kernel also divides the output channels itself: on Zen 4 a split
    ran 0.98 - 1.08x its time on ResNet-50's and MobileNetV2's 7x7 and 14x14
    shapes (300 alternating runs each) and MobileNetV2 2 % slower (two A/Bs
    of 150 and 60 rounds). ``True`` splits wherever the shapes allow,
    ``False`` nowhere.
    """
    split = options.get("split", "auto")
    if not isinstance(split, bool) and split != "auto":
        raise ValueError(f"dnnl option split={split!r}; use 'auto', True or False")
    if not split or (split == "auto" and layout.blocked_tag() != FormatTag.nChw8c):
        return 1
    return _team_threads(threads)


def _chain_team(options: Mapping[str, Any], threads: int | None) -> int:
    """How many threads a 1x1 Conv and the depthwise Conv reading it are
    split across, one part of the channels each (1: none).

    Each thread runs its part of the 1x1 Conv, then the depthwise Conv on the
    same channels, so the expanded tensor stays in that core's cache and the
    two need one OpenMP barrier, not two. MobileNetV2 on Zen 4 (AVX-512, 2
    threads) ran 0.945 - 0.989x the unchained time per round in four
    interleaved A/Bs of 120 - 150 rounds. Needs the compiled run loop, more
    than one thread and the blocked layout (a channel range of nChw16c data
    is contiguous). The ``chain`` option: ``True`` (default) or ``False``.
    """
    chain = options.get("chain", True)
    if not isinstance(chain, bool):
        raise ValueError(f"dnnl option chain={chain!r}; use True or False")
    return _team_threads(threads) if chain else 1


def _team_threads(threads: int | None) -> int:
    """The members a team may have: the engine's threads, or 1 (no teams)
    with one thread or without the compiled run loop that starts teams."""
    n = threads if threads is not None else _lib.lib().default_threads
    return n if n >= 2 and runloop.loop() is not None else 1


def _max_shapes(options: Mapping[str, Any]) -> int:
    value = options.get("max_shapes", dynamic.MAX_SHAPES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"dnnl option max_shapes={value!r}; use a positive integer")
    return value


def _is_symbolic(graph: byoc.Graph) -> bool:
    return any(
        not n.spec(i).is_static for n in graph.nodes for i in range(n.num_outputs)
    )


def _static_support(info: byoc.NodeInfo) -> byoc.Support:
    """The op's own check, the generic one, then a dry lowering."""
    answer = OPS[info.op].check(info)  # op-specific reasons are the most telling
    if not answer:
        return answer
    answer = _generic_check(info)
    if not answer:
        return answer
    return _trial(info)


def _threads_option(options: Mapping[str, Any]) -> int | None:
    value = options.get("threads")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"dnnl option threads={value!r}; use a positive integer")
    return value


def _generic_check(info: byoc.NodeInfo) -> byoc.Support:
    """Static shapes, known dtypes, no empty or rank-0 outputs."""
    for i, spec in enumerate(info.inputs):
        if spec is None:
            continue
        if spec.shape is None or not spec.is_static:
            return no(f"{info.op} input {i} has a dynamic shape {spec.shape}")
        if 0 in spec.shape:
            return no(f"{info.op} input {i} is empty")
    for i, spec in enumerate(info.outputs):
        if spec.shape is None or not spec.is_static:
            return no(f"{info.op} output {i} has a dynamic shape {spec.shape}")
        if 0 in spec.shape:
            return no(f"{info.op} output {i} is empty")
        if len(spec.shape) == 0:
            return no(f"{info.op} output {i} is a scalar")
        if len(spec.shape) > _lib.MAX_NDIMS:
            return no(f"{info.op} output {i} has rank {len(spec.shape)} > 12")
    return byoc.Support.yes()


def _trial_key(info: byoc.NodeInfo) -> Any:
    consts = []
    for i, arr in sorted(info.consts.items()):
        a = np.asarray(arr)
        consts.append((i, a.tobytes() if a.size <= 64 else a.shape))
    return (
        info.op,
        repr(sorted(info.attrs.items(), key=lambda kv: kv[0])),
        tuple(None if s is None else (s.shape, s.dtype) for s in info.inputs),
        tuple((s.shape, s.dtype) for s in info.outputs),
        tuple(consts),
    )


def _trial(info: byoc.NodeInfo) -> byoc.Support:
    """Lower the node alone, dry: does oneDNN implement it for these shapes?"""
    try:
        key = _trial_key(info)
    except Exception:  # unhashable attrs: just do not cache
        key = None
    if key is not None and key in _TRIALS:
        _TRIALS.move_to_end(key)
        return _TRIALS[key]
    try:
        lower(from_node_info(info), dry=True)
        answer = byoc.Support.yes()
    except Decline as exc:
        answer = no(f"{info.op} {exc.reason}")
    except _lib.DnnlError as exc:
        answer = no(
            f"oneDNN has no {info.op} implementation for these shapes/attributes "
            f"({exc.function}: {exc.status_name})"
        )
    if key is not None:
        _TRIALS[key] = answer
        if len(_TRIALS) > _TRIALS_MAX:
            _TRIALS.popitem(last=False)
    return answer
