"""The driver: a loaded (or freshly compiled) model that runs.

Last steps of the flow (load -> init -> run). A :class:`Module` holds the host
graph and every subgraph. On first use of a subgraph (or at load with
``eager=True``) it finds the backend by name, creates the engine and calls
``init`` exactly once, even when many threads race to be first; afterwards
``run`` only walks a precomputed plan of the host graph. TVM's names map as:
Deserialize/LoadFromBinary -> :func:`load`/:meth:`Module.from_bytes`,
SaveToBinary -> :meth:`Module.save`/:meth:`Module.to_bytes`, GetFunction ->
:meth:`Module.get_function`.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import (
    Artifact,
    EngineRecord,
    SubgraphRecord,
    artifact_bytes,
    parse_artifact,
    read_artifact,
    write_artifact,
)
from .attrs import Sym, evaluate
from .errors import ByocError, FormatError, InputError
from .graph import Graph
from .onnx_import import SYM_OP
from .partition import CALL_OP, Partition, const_names
from .registry import Registry, get_registry
from .report import explain, kernel_ops
from .runtime import Backend


@dataclass(frozen=True)
class TensorInfo:
    """A named model input or output with its shape and dtype."""

    name: str
    shape: tuple[int | str, ...] | None
    dtype: str


@dataclass(frozen=True)
class _Step:
    kind: str  # "input" | "const" | "sym" | "call"
    outs: tuple[int, ...]  # value slots written
    ins: tuple[int, ...] = ()  # value slots read (calls)
    payload: Any = None  # input name, const array, sym exprs, or symbol
    free: tuple[int, ...] = ()  # slots whose last reader is this step


@dataclass(frozen=True)
class _Direct:
    """A plan that is one subgraph call on the model's inputs, returning heads
    it computed: run calls it without walking the plan (see :func:`_direct`)."""

    symbol: str
    feed: tuple[tuple[str, str], ...] | None  # (subgraph name, model name); None: same
    picks: tuple[tuple[str, int], ...]  # (output name, index into the call's outputs)
    names: tuple[str, ...] | None  # the output names when picks are 0, 1, ... in order


class SubgraphFunction:
    """A subgraph's callable (GetFunction): builds the engine on first call."""

    def __init__(self, module: Module, record: SubgraphRecord) -> None:
        self._module = module
        self.symbol = record.symbol
        self.backend = record.backend
        self.graph = record.graph

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names the callable expects, in order."""
        return self.graph.input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of what the callable returns."""
        return self.graph.output_names

    def engine(self) -> Backend:
        """The engine, built once (thread-safe)."""
        return self._module._engine(self.symbol)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise InputError(
                f"{self.symbol} needs inputs {list(self.input_names)}; missing "
                f"{missing}",
                symbol=self.symbol,
            )
        return self.engine()(inputs)


class Module:
    """A compiled model: run it, save it, or fetch a subgraph's function."""

    def __init__(
        self,
        artifact: Artifact,
        *,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        registry: Registry | None = None,
        partition: Partition | None = None,
        source: str = "<memory>",
    ) -> None:
        self.artifact = artifact
        self.partition = partition
        self.source = source
        self._options = _backend_options(options)
        self._registry = registry
        self._records = {r.symbol: r for r in artifact.subgraphs}
        self._engines: dict[str, Backend] = {}
        self._locks = {s: threading.Lock() for s in self._records}
        self.init_counts: dict[str, int] = dict.fromkeys(self._records, 0)
        host = artifact.host
        self.inputs = tuple(
            TensorInfo(
                host.nodes[i].name, host.nodes[i].shapes[0], host.nodes[i].dtypes[0]
            )
            for i in host.input_ids
        )
        self.outputs = tuple(
            TensorInfo(name, host.spec(h).shape, host.spec(h).dtype)
            for name, h in zip(host.output_names, host.heads, strict=True)
        )
        for rec in artifact.subgraphs:
            missing = [n for n in const_names(rec.graph) if n not in artifact.consts]
            if missing:
                raise FormatError(
                    f"subgraph {rec.symbol} reads missing constants {missing[:5]}"
                )
        self._plan = _plan(host, artifact.consts, self._records)
        self._nslots = host.node_row_ptr[-1]
        self._input_names = frozenset(t.name for t in self.inputs)
        # (info, numpy dtype, the shape when fully static): checked on every run
        self._input_checks = tuple(
            (t, np.dtype(t.dtype), _static_shape(t.shape)) for t in self.inputs
        )
        self._heads = tuple(
            (n, host.entry_id(h))
            for n, h in zip(host.output_names, host.heads, strict=True)
        )
        self._borrowed = {
            host.entry_id(h) for h in host.heads if host.nodes[h.node_id].op == "const"
        }
        self._direct = _direct(self._plan, self._heads, self._input_names)

    # -- introspection -------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        """Subgraph symbols in execution order."""
        return tuple(r.symbol for r in self.artifact.subgraphs)

    @property
    def subgraphs(self) -> tuple[SubgraphRecord, ...]:
        """The stored subgraphs (symbol, backend, backend version, graph)."""
        return self.artifact.subgraphs

    @property
    def consts(self) -> Mapping[str, np.ndarray]:
        """The constant table (read-only arrays; memory-mapped after load)."""
        return self.artifact.consts

    def placement(self) -> str:
        """One line: kernel nodes per backend and the subgraphs, e.g. for logs."""
        counts: dict[str, int] = {}
        per_sym = []
        for rec in self.artifact.subgraphs:
            n = sum(kernel_ops(rec.graph).values())
            counts[rec.backend] = counts.get(rec.backend, 0) + n
            per_sym.append(f"{rec.symbol}({n})")
        total = sum(counts.values())
        by_backend = ", ".join(f"{b} {n}" for b, n in counts.items()) or "none"
        return (
            f"byoc placement: {total} nodes -> {by_backend}; "
            f"{len(per_sym)} subgraph{'s' if len(per_sym) != 1 else ''}: "
            f"{' '.join(per_sym)}"
        )

    def explain(self) -> str:
        """The partition as a table and, after compile, why nodes fell back."""
        return explain(self.partition, self.artifact.subgraphs, self.artifact.consts)

    def get_function(self, symbol: str) -> SubgraphFunction:
        """The callable for subgraph ``symbol`` (GetFunction)."""
        record = self._records.get(symbol)
        if record is None:
            raise ByocError(
                f"no subgraph {symbol!r} in this module; symbols: "
                f"{', '.join(self.symbols)}",
                symbol=symbol,
            )
        return SubgraphFunction(self, record)

    # -- engines -----------------------------------------------------------

    def init(self) -> None:
        """Build every engine now (what ``load(..., eager=True)`` does)."""
        for symbol in self.symbols:
            self._engine(symbol)

    def _engine(self, symbol: str) -> Backend:
        engine = self._engines.get(symbol)
        if engine is not None:
            return engine
        with self._locks[symbol]:
            engine = self._engines.get(symbol)
            if engine is None:
                engine = self._build(self._records[symbol])
                self._engines[symbol] = engine
        return engine

    def _build(self, record: SubgraphRecord) -> Backend:
        registry = self._registry or get_registry()
        cls = registry.backend(record.backend)
        consts = {n: self.artifact.consts[n] for n in const_names(record.graph)}
        options = self._options.get(record.backend)
        engine = cls(record.symbol, record.graph, options, record.meta)
        blob = self.artifact.engines.get(record.symbol)
        if (
            blob is not None
            and blob.backend == cls.name
            and blob.backend_version == cls.version
        ):
            try:
                engine.import_engine(blob.data, consts)
                return engine
            except Exception as exc:
                warnings.warn(
                    f"prebuilt engine for {record.symbol} ({cls.name} "
                    f"{cls.version}) is "
                    f"unusable ({type(exc).__name__}: {exc}); rebuilding it",
                    RuntimeWarning,
                    stacklevel=3,
                )
                engine = cls(record.symbol, record.graph, options, record.meta)
        engine.build(consts)
        self.init_counts[record.symbol] += 1
        return engine

    # -- running -------------------------------------------------------------

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run the model: input name -> array, returns output name -> array."""
        arrays, dims = self._check_inputs(inputs)
        direct = self._direct
        if direct is not None:
            # The common whole-model case, kept short: after a model's run the
            # interpreter's code and data are out of cache, and every statement
            # here cost microseconds (MobileNetV2: 170 - 220 us of Python a run
            # before this path and Backend.run_into).
            fn = self._engines.get(direct.symbol) or self._engine(direct.symbol)
            feed = direct.feed
            outs = fn.checked_run(
                arrays if feed is None else {s: arrays[n] for s, n in feed}
            )
            if direct.names is not None:
                return dict(zip(direct.names, outs, strict=True))
            return {name: outs[i] for name, i in direct.picks}
        values: list[Any] = [None] * self._nslots
        for step in self._plan:
            kind = step.kind
            if kind == "call":
                symbol, names = step.payload
                fn = self._engines.get(symbol) or self._engine(symbol)
                outs = fn.checked_run(
                    {n: values[s] for n, s in zip(names, step.ins, strict=True)}
                )
                for slot, value in zip(step.outs, outs, strict=True):
                    values[slot] = value
            elif kind == "input":
                values[step.outs[0]] = arrays[step.payload]
            elif kind == "const":
                values[step.outs[0]] = step.payload
            else:  # sym
                exprs, shape = step.payload
                values[step.outs[0]] = np.array(
                    [evaluate(e, dims) for e in exprs], dtype=np.int64
                ).reshape(shape)
            for slot in step.free:
                values[slot] = None
        return {
            name: np.array(values[slot]) if slot in self._borrowed else values[slot]
            for name, slot in self._heads
        }

    def _check_inputs(
        self, inputs: Mapping[str, Any]
    ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        if type(inputs) is not dict and not isinstance(inputs, Mapping):
            raise InputError(
                "run takes a dict of input name -> array; got "
                f"{type(inputs).__name__}. Inputs: {_sig(self.inputs)}"
            )
        if inputs.keys() != self._input_names:
            expected = {t.name for t in self.inputs}
            raise InputError(
                "input names do not match the model: missing "
                f"{[t.name for t in self.inputs if t.name not in inputs]}, unexpected "
                f"{[k for k in inputs if k not in expected]}. The model takes "
                f"{_sig(self.inputs)}",
                missing=[t.name for t in self.inputs if t.name not in inputs],
                unexpected=[k for k in inputs if k not in expected],
            )
        arrays: dict[str, np.ndarray] = {}
        dims: dict[str, int] = {}
        for t, dtype, static in self._input_checks:
            value = inputs[t.name]
            array = value if type(value) is np.ndarray else np.asarray(value)
            if array.dtype is not dtype and array.dtype != dtype:
                raise InputError(
                    f"input {t.name!r} has dtype {array.dtype.name}; the model expects "
                    f"{t.dtype} (convert with .astype(np.{t.dtype}))",
                    input=t.name,
                    expected=t.dtype,
                    given=array.dtype.name,
                )
            if array.shape != static and t.shape is not None:
                _bind(t, array.shape, dims)  # symbolic dims, or a mismatch to report
            arrays[t.name] = array
        return arrays, dims

    # -- saving ------------------------------------------------------------

    def _artifact_with_engines(self, engines: bool) -> Artifact:
        if not engines:
            return Artifact(
                self.artifact.host,
                self.artifact.subgraphs,
                self.artifact.consts,
                {},
                self.artifact.meta,
            )
        blobs: dict[str, EngineRecord] = dict(self.artifact.engines)
        for rec in self.artifact.subgraphs:
            engine = self._engine(rec.symbol)
            try:
                data = engine.export_engine()
            except Exception as exc:
                raise engine.error(
                    "export", f"failed to export the engine of {rec.symbol}: {exc}"
                ) from exc
            if data is not None:
                blobs[rec.symbol] = EngineRecord(
                    rec.symbol, rec.backend, type(engine).version, bytes(data)
                )
        return Artifact(
            self.artifact.host,
            self.artifact.subgraphs,
            self.artifact.consts,
            blobs,
            self.artifact.meta,
        )

    def save(self, path: str | os.PathLike[str], *, engines: bool = False) -> Path:
        """Write the one-file artifact atomically; ``engines`` adds prebuilt engines."""
        return write_artifact(
            path, self._artifact_with_engines(engines), self._codecs()
        )

    def to_bytes(self, *, engines: bool = False) -> bytes:
        """The artifact as bytes (SaveToBinary)."""
        return artifact_bytes(self._artifact_with_engines(engines), self._codecs())

    @staticmethod
    def from_bytes(
        data: bytes,
        *,
        eager: bool = False,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Module:
        """A module from artifact bytes (LoadFromBinary); constants view ``data``."""
        registry = get_registry()
        mod = Module(
            parse_artifact(data, registry.codecs()), options=options, registry=registry
        )
        mod._check_backends()
        if eager:
            mod.init()
        return mod

    def _codecs(self) -> Any:
        return (self._registry or get_registry()).codecs()

    def _check_backends(self) -> None:
        registry = self._registry or get_registry()
        for name in dict.fromkeys(r.backend for r in self.artifact.subgraphs):
            registry.backend(name)


def load(
    path: str | os.PathLike[str],
    *,
    eager: bool = False,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Module:
    """Load an artifact (Deserialize). Engines build lazily unless ``eager``.

    Fails early with a :class:`~byoc.BackendError` when a backend the file needs
    is not installed or not available, naming what to install.
    """
    registry = get_registry()
    mod = Module(
        read_artifact(path, registry.codecs()),
        options=options,
        registry=registry,
        source=str(path),
    )
    mod._check_backends()
    if eager:
        mod.init()
    return mod


def _static_shape(shape: tuple[int | str, ...] | None) -> tuple[int, ...] | None:
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return tuple(int(d) for d in shape)


def _sig(infos: tuple[TensorInfo, ...]) -> str:
    return ", ".join(
        f"{t.name}: {t.dtype}{list(t.shape) if t.shape is not None else '[?]'}"
        for t in infos
    )


def _bind(t: TensorInfo, shape: tuple[int, ...], dims: dict[str, int]) -> None:
    assert t.shape is not None
    if len(shape) != len(t.shape):
        raise InputError(
            f"input {t.name!r} has shape {list(shape)}; the model expects rank "
            f"{len(t.shape)}: {list(t.shape)}",
            input=t.name,
            expected=t.shape,
            given=shape,
        )
    for axis, (want, got) in enumerate(zip(t.shape, shape, strict=True)):
        if isinstance(want, int):
            if want != got:
                raise InputError(
                    f"input {t.name!r} has shape {list(shape)}; the model expects "
                    f"{list(t.shape)} (axis {axis} must be {want})",
                    input=t.name,
                    expected=t.shape,
                    given=shape,
                )
        elif want != "?":
            bound = dims.setdefault(want, got)
            if bound != got:
                raise InputError(
                    f"dim {want!r} is {bound} in one input but {got} in {t.name!r} "
                    f"(axis {axis}); inputs sharing a dim name must agree",
                    input=t.name,
                    dim=want,
                )


def _backend_options(
    options: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict[str, Any]]:
    """A copy of ``options`` (backend name -> that backend's options), or an
    InputError saying how it is shaped when it is not."""
    if options is None:
        return {}
    bad = ([] if isinstance(options, Mapping) else [f"a {type(options).__name__}"]) or [
        f"{k!r}: {v!r}" for k, v in options.items() if not isinstance(v, Mapping)
    ]
    if bad:
        raise InputError(
            "options map each backend's name to its own options, e.g. "
            f"{{'dnnl': {{'threads': 2}}}}; got {', '.join(bad[:3])}"
        )
    return {k: dict(v) for k, v in options.items()}


def _direct(
    plan: tuple[_Step, ...],
    heads: tuple[tuple[str, int], ...],
    input_names: frozenset[str],
) -> _Direct | None:
    """The plan as one call, when it is: input steps, then a single subgraph
    call reading only model inputs, and every head one of that call's outputs."""
    calls = [s for s in plan if s.kind == "call"]
    if len(calls) != 1 or any(s.kind not in ("input", "call") for s in plan):
        return None
    call = calls[0]
    model_name = {s.outs[0]: s.payload for s in plan if s.kind == "input"}
    if not all(slot in model_name for slot in call.ins):
        return None
    if not all(slot in call.outs for _, slot in heads):
        return None
    symbol, names = call.payload
    feed = tuple(
        (sub, model_name[slot]) for sub, slot in zip(names, call.ins, strict=True)
    )
    same = all(sub == model for sub, model in feed) and set(names) == input_names
    picks = tuple((name, call.outs.index(slot)) for name, slot in heads)
    in_order = [i for _, i in picks] == list(range(len(call.outs)))
    return _Direct(
        symbol,
        None if same else feed,
        picks,
        tuple(name for name, _ in picks) if in_order else None,
    )


def _plan(
    host: Graph, consts: Mapping[str, np.ndarray], records: Mapping[str, SubgraphRecord]
) -> tuple[_Step, ...]:
    """Precompute the host graph walk, including when each value can be freed."""
    ptr = host.node_row_ptr
    steps: list[_Step] = []
    for nid, node in enumerate(host.nodes):
        outs = tuple(range(ptr[nid], ptr[nid + 1]))
        if node.op == "input":
            steps.append(_Step("input", outs, payload=node.name))
        elif node.op == "const":
            if node.name not in consts:
                raise FormatError(f"host graph reads missing constant {node.name!r}")
            steps.append(_Step("const", outs, payload=consts[node.name]))
        elif node.name == SYM_OP:
            value = node.attrs.get("value")
            shape = node.shapes[0] or ()
            if not isinstance(value, tuple) or not all(
                isinstance(v, int | Sym) for v in value
            ):
                raise FormatError(
                    f"host node {node.describe(nid)} has a bad symbolic value"
                )
            steps.append(_Step("sym", outs, payload=(value, shape)))
        elif node.name == CALL_OP:
            symbol = node.attrs.get("symbol")
            if not isinstance(symbol, str) or symbol not in records:
                raise FormatError(f"host graph calls unknown subgraph {symbol!r}")
            if len(node.inputs) != len(
                records[symbol].graph.input_ids
            ) or node.num_outputs != len(records[symbol].graph.heads):
                raise FormatError(f"host call of {symbol} does not match its subgraph")
            if any(e.absent for e in node.inputs):
                raise FormatError(f"host call of {symbol} has an omitted input")
            ins = tuple(host.entry_id(e) for e in node.inputs)
            names = records[symbol].graph.input_names
            steps.append(_Step("call", outs, ins, (symbol, names)))
        else:
            raise FormatError(
                f"host graph node {node.describe(nid)} is not a call, input or value"
            )
    heads = {host.entry_id(h) for h in host.heads}
    last: dict[int, int] = {}
    for i, step in enumerate(steps):
        for slot in step.ins:
            last[slot] = i
    frees: dict[int, list[int]] = {}
    for slot, i in last.items():
        if slot not in heads:
            frees.setdefault(i, []).append(slot)
    return tuple(
        _Step(s.kind, s.outs, s.ins, s.payload, tuple(frees.get(i, ())))
        for i, s in enumerate(steps)
    )
