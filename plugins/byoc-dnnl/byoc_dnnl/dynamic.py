"""Symbolic dims: claimed at compile time by probing, built per shape at run time.

Exported models usually leave the batch (and often the sequence) dims
symbolic, and oneDNN primitives are made for one shape. So dnnl:

* claims a node with symbolic dims (:func:`symbolic_support`) when its static
  checks pass with every symbolic dim set to each of :data:`PROBES`, and its
  outputs carry no dim its inputs do not fix: a new name (ONNX's ``unk__0``)
  only from a Reshape to a constant shape, whose sizes :func:`reshape_shape`
  computes, never ``"?"``. Every dim of a claimed subgraph is then fixed by
  the shapes of the subgraph's inputs. A Reshape whose shape is computed at
  run time (exporters' ``Shape -> Gather -> Concat``, which byoc folds into a
  host value) is claimed when its output's dims are all dims of its input:
  its engine reads the shape's values at run time and builds with them as a
  constant;
* builds, at the first run with new input shapes, an ordinary static engine
  for the subgraph with those sizes (:class:`Specializations`), and keeps the
  last ``max_shapes`` of them. Each is built like any engine: timed (or read
  from the decision cache, whose key includes the sizes), so every new shape
  costs one ``init``; the engines share the packings they have in common
  (:class:`byoc_dnnl.lowering.PackedWeights`).
"""

from __future__ import annotations

import json
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

import byoc

from .handles import release_free_heap

if TYPE_CHECKING:
    from .backend import DnnlBackend

PROBES = (2, 3)
"""Sizes every symbolic dim takes, in turn, when a node's support is checked.

Two sizes, neither 1: a size-1 dim broadcasts, and a node whose checks pass
only for it (a constant Reshape to a fixed batch) is not batch-polymorphic.
"""
MAX_SHAPES = 4
"""Default of the ``max_shapes`` option: specializations kept per engine."""


def has_symbols(info: byoc.NodeInfo) -> bool:
    """True when a tensor of ``info`` has a non-integer dim or an unknown rank."""
    return any(s is not None and not s.is_static for s in (*info.inputs, *info.outputs))


def symbolic_support(
    info: byoc.NodeInfo, static_support: Callable[[byoc.NodeInfo], byoc.Support]
) -> byoc.Support:
    """Whether dnnl runs ``info`` for every size of its symbolic dims (see above)."""
    seen = {d for s in info.inputs if s is not None for d in s.shape or () if _sym(d)}
    made = {d for s in info.outputs for d in s.shape or () if _sym(d)}
    if not seen:  # static inputs, unknown outputs: the static checks say why
        return static_support(info)
    if "?" in seen | made:
        return byoc.Support.no(f"dnnl: {info.op} has a dim of unknown size ('?')")
    if made - seen and not _sizes_its_output(info):
        return byoc.Support.no(
            f"dnnl: {info.op} output dims {sorted(made - seen)} are not dims of its "
            "inputs, so an engine could not size them from its input shapes"
        )
    # The op's own reasons before the unknown rank: they say more.
    for size in PROBES:
        answer = static_support(probe(info, size))
        if not answer:
            return byoc.Support.no(
                f"{answer.reason} (with the symbolic dims {sorted(seen)} = {size})"
            )
    specs = [s for s in (*info.inputs, *info.outputs) if s is not None]
    if any(s.shape is None for s in specs):
        return byoc.Support.no(f"dnnl: {info.op} has a tensor of unknown rank")
    return byoc.Support.yes()


def probe(info: byoc.NodeInfo, size: int) -> byoc.NodeInfo:
    """``info`` with every symbolic dim set to ``size`` (a Reshape's output
    computed from its probed input, as its sizes will be at run time)."""

    def fix(spec: byoc.TensorSpec) -> byoc.TensorSpec:
        if spec.shape is None:
            return spec
        shape = tuple(size if _sym(d) else d for d in spec.shape)
        return byoc.TensorSpec(shape, spec.dtype)

    inputs = tuple(None if s is None else fix(s) for s in info.inputs)
    outputs = tuple(fix(s) for s in info.outputs)
    consts = info.consts
    x, y = (inputs[0] if inputs else None), (outputs[0] if outputs else None)
    if _runtime_shape(info) and y is not None and y.shape is not None:
        # What the shape input will hold at run time: the output's sizes.
        consts = {**consts, 1: np.array(y.shape, np.int64)}
    elif _sizes_its_output(info) and x is not None and x.shape is not None:
        try:
            sizes = reshape_shape(x.shape, _target(info), _allowzero(info.attrs))  # type: ignore[arg-type]
            outputs = (byoc.TensorSpec(sizes, info.outputs[0].dtype),)
        except ValueError:
            pass  # the static check refuses the sizes as given
    return byoc.NodeInfo(info.node, inputs, outputs, consts, info.node_id)


def reshape_shape(
    x: Sequence[int], target: Sequence[int], allowzero: bool
) -> tuple[int, ...]:
    """ONNX Reshape's output shape: 0 copies the input's dim (unless
    ``allowzero``), one -1 takes what is left; ValueError if none fits."""
    out = [
        x[i] if t == 0 and not allowzero and i < len(x) else int(t)
        for i, t in enumerate(target)
    ]
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise ValueError(f"Reshape to {list(target)}")
    total = math.prod(x)
    if -1 in out:
        rest = math.prod(d for d in out if d != -1)
        if rest == 0 or total % rest:
            raise ValueError(f"Reshape of {list(x)} to {list(target)}")
        out[out.index(-1)] = total // rest
    if math.prod(out) != total:
        raise ValueError(f"Reshape of {list(x)} to {list(target)}")
    return tuple(out)


def bind_reshaped(
    graph: byoc.Graph, dims: Mapping[str, int], consts: Mapping[str, np.ndarray]
) -> dict[str, int]:
    """``dims`` plus the sizes of the dims Reshapes to constant shapes invent.

    The graph's other ops invent none (:func:`symbolic_support`), so one walk
    in graph order sizes every Reshape's input before the Reshape.
    """
    out = dict(dims)
    for node in graph.nodes:
        shape = node.shapes[0] if node.op == "kernel" and node.shapes else None
        if node.name != "Reshape" or not shape or all(not _sym(d) for d in shape):
            continue
        x = [
            d if isinstance(d, int) else out.get(d)
            for d in graph.spec(node.inputs[0]).shape or ()
        ]
        target_node = graph.nodes[node.inputs[1].node_id]
        if target_node.op != "const" or None in x:
            continue  # not one the rules let in: the caller reports what is left
        target = np.asarray(consts[target_node.name]).reshape(-1).tolist()
        sizes = reshape_shape(x, target, _allowzero(node.attrs))  # type: ignore[arg-type]
        for d, n in zip(shape, sizes, strict=True):
            if isinstance(d, str) and out.setdefault(d, n) != n:
                raise ValueError(f"dim {d!r} is {out[d]} and {n}")
    return out


def _sizes_its_output(info: byoc.NodeInfo) -> bool:
    """A Reshape to a constant shape: its new dims are computed from its input."""
    return info.op == "Reshape" and 1 in info.consts


def _runtime_shape(info: byoc.NodeInfo) -> bool:
    """A Reshape whose shape arrives at run time (a subgraph input: dnnl runs
    no int64 op), as a 1-D int64 tensor of known length."""
    if info.op != "Reshape" or 1 in info.consts or len(info.inputs) < 2:
        return False
    spec = info.inputs[1]
    return (
        spec is not None
        and spec.dtype == "int64"
        and spec.shape is not None
        and len(spec.shape) == 1
        and isinstance(spec.shape[0], int)
    )


def freeze_inputs(
    graph: byoc.Graph, values: Mapping[str, np.ndarray]
) -> tuple[byoc.Graph, dict[str, np.ndarray]]:
    """``graph`` with the inputs in ``values`` turned into constants, and those
    constants by name (:data:`FROZEN` + the input's name)."""
    consts: dict[str, np.ndarray] = {}
    nodes = []
    for node in graph.nodes:
        if node.op == "input" and node.name in values:
            key = FROZEN + node.name
            consts[key] = np.asarray(values[node.name])
            node = byoc.JSONGraphNode(
                "const", key, shapes=node.shapes, dtypes=node.dtypes, label=node.label
            )
        nodes.append(node)
    return byoc.Graph(tuple(nodes), graph.heads, graph.head_names), consts


FROZEN = "byoc_dnnl.input:"
"""Prefix of the constants :func:`freeze_inputs` makes from run-time inputs."""


def _target(info: byoc.NodeInfo) -> list[int]:
    return np.asarray(info.consts[1]).reshape(-1).tolist()


def _allowzero(attrs: Mapping[str, Any]) -> bool:
    return bool(attrs.get("allowzero", 0))


def _sym(d: object) -> bool:
    return not isinstance(d, int)


Key = tuple[tuple[str, int], ...]


class Specializations:
    """The static engines of one symbolic subgraph, one per set of dim sizes.

    ``make(graph)`` creates an engine (not yet built) for a specialized graph;
    ``known`` holds exported engines by dim sizes (from an artifact's engine
    blob), imported instead of built when their sizes first come. Thread-safe:
    a lock guards the table and the builds (a build holds back other new
    shapes, never runs on engines already built); a run with the shapes of
    the previous run takes no lock.
    """

    def __init__(
        self,
        graph: byoc.Graph,
        consts: Mapping[str, np.ndarray],
        make: Callable[[byoc.Graph], DnnlBackend],
        max_shapes: int,
        known: Mapping[Key, bytes] | None = None,
    ) -> None:
        self.graph = graph
        self._consts = consts
        self._make = make
        self.max_shapes = max_shapes
        self._known: dict[Key, bytes] = dict(known or {})
        # Where the sizes are: (input name, axis) of every symbolic input dim.
        self._axes = tuple(
            (graph.nodes[i].name, axis)
            for i in graph.input_ids
            for axis, d in enumerate(graph.nodes[i].shapes[0] or ())
            if _sym(d)
        )
        # Run-time shapes (int64 inputs: dnnl claims no int64 op): their values
        # are constants of each engine, so they are part of what selects it.
        self._valued = tuple(
            graph.nodes[i].name
            for i in graph.input_ids
            if graph.nodes[i].dtypes[0] == "int64"
        )
        self.built: OrderedDict[tuple[Any, ...], tuple[Key, DnnlBackend]] = (
            OrderedDict()
        )
        """Sizes at ``_axes`` and run-time shape values -> (dim sizes by name,
        engine); least recently used first."""
        self._last: tuple[Any, ...] | None = None
        self.builds = 0
        """How many engines were built or imported (evictions make repeats)."""
        self._lock = threading.Lock()

    def engine_for(self, inputs: Mapping[str, np.ndarray]) -> DnnlBackend:
        """The engine for the shapes of ``inputs``, built on first use."""
        sizes: tuple[Any, ...] = tuple(
            inputs[name].shape[axis] for name, axis in self._axes
        )
        if self._valued:
            sizes += tuple(tuple(np.asarray(inputs[n]).tolist()) for n in self._valued)
        if sizes == self._last:
            found = self.built.get(sizes)
            if found is not None:
                return found[1]
        with self._lock:
            found = self.built.get(sizes)
            if found is None:
                dims = self.graph.bind_dims({n: a.shape for n, a in inputs.items()})
                key = tuple(sorted(dims.items()))
                values = {n: np.array(inputs[n], np.int64) for n in self._valued}
                found = (key, self._build(key, dims, values))
                self.built[sizes] = found
                if len(self.built) > self.max_shapes:
                    while len(self.built) > self.max_shapes:
                        self.built.popitem(last=False)
                    release_free_heap()  # what the evicted engines held
            self.built.move_to_end(sizes)
            self._last = sizes
            return found[1]

    def latest(self) -> DnnlBackend:
        """The engine used last (for introspection); LookupError before any run."""
        with self._lock:
            if not self.built:
                raise LookupError(
                    "this dnnl engine has symbolic dims and has not run yet: "
                    "its programs are built per input shape, at the first run"
                )
            return next(reversed(self.built.values()))[1]

    def _build(
        self, key: Key, dims: Mapping[str, int], values: Mapping[str, np.ndarray]
    ) -> DnnlBackend:
        graph, frozen = freeze_inputs(self.graph, values)
        consts = {**self._consts, **frozen} if frozen else self._consts
        graph = graph.with_dims(bind_reshaped(graph, dims, consts))
        left = sorted(
            {d for n in graph.nodes for s in n.shapes if s for d in s if _sym(d)}
        )
        if left:
            raise ValueError(
                f"dims {left} are not fixed by the subgraph's input shapes {dict(dims)}"
            )
        engine = self._make(graph)
        blob = self._known.get(key)
        self.builds += 1
        if blob is not None:
            try:
                engine.import_engine(blob, consts)
                return engine
            except ValueError as exc:
                warnings.warn(
                    f"dnnl engine for {dict(dims)} in the artifact is unusable "
                    f"({exc}); building it",
                    RuntimeWarning,
                    stacklevel=4,
                )
                engine = self._make(graph)
        engine.init(consts)
        return engine

    def export(self) -> dict[str, Any]:
        """Every specialization's exported decisions (built ones and carried)."""
        with self._lock:
            blobs = dict(self._known)
            for key, engine in self.built.values():
                blobs[key] = engine.export_engine()
        return {
            "shapes": [[dict(key), blob.decode("utf-8")] for key, blob in blobs.items()]
        }


def parse_known(body: Mapping[str, Any]) -> dict[Key, bytes]:
    """The per-shape blobs of an exported symbolic engine (inverse of export)."""
    shapes = body.get("shapes")
    if not isinstance(shapes, list):
        raise ValueError("dnnl symbolic engine blob has no shape list")
    known: dict[Key, bytes] = {}
    for item in shapes:
        if not (isinstance(item, list) and len(item) == 2):
            raise ValueError("dnnl symbolic engine blob entry is not a pair")
        dims, blob = item
        if not isinstance(dims, dict) or not isinstance(blob, str):
            raise ValueError("dnnl symbolic engine blob entry has bad types")
        if not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in dims.items()
        ):
            raise ValueError("dnnl symbolic engine blob has bad dim sizes")
        known[tuple(sorted(dims.items()))] = blob.encode("utf-8")
    return known


def dumps(body: Mapping[str, Any]) -> bytes:
    """The exported blob's bytes (sorted keys: the same engines, the same bytes)."""
    return json.dumps(body, sort_keys=True).encode()
