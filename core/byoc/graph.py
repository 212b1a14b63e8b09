"""The JSON graph: the one form every graph takes inside byoc and in its files.

Flow: import builds a :class:`Graph`; partition cuts it into subgraph Graphs plus a
host Graph of subgraph calls; the artifact stores them; a backend's ``init``
receives its subgraph. The layout is TVM's graph/JSON runtime layout (``nodes``,
``arg_nodes``, ``heads``, ``node_row_ptr``) with two deliberate differences: node
attributes are typed (see :mod:`byoc.attrs`), and the format carries a version.

Nodes are stored in topological order: a node may only read outputs of nodes
before it. That invariant is checked on construction, so every Graph is acyclic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from .attrs import MAX_DEPTH, decode_attr, encode_attr
from .dtypes import DTYPES, UNKNOWN
from .errors import FormatError, GraphError

if TYPE_CHECKING:
    from .attrs import AttrCodec

_KNOWN_DTYPES = frozenset((*DTYPES, UNKNOWN))

GRAPH_FORMAT_VERSION = 1
"""Version of the graph dict layout; readers reject newer versions."""

NODE_KINDS = ("input", "const", "kernel")
NodeKind = Literal["input", "const", "kernel"]
Dim = int | str
"""A dimension: a size, or the name of a symbolic dim such as ``"batch"``."""
Shape = tuple[Dim, ...]


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of one tensor; ``shape`` is None when the rank is unknown."""

    shape: Shape | None
    dtype: str

    @property
    def is_static(self) -> bool:
        """True when every dimension is a known integer."""
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)


@dataclass(frozen=True)
class JSONGraphNodeEntry:
    """One output of one node: ``(node_id, index, version)`` as in TVM.

    ``node_id == -1`` marks an omitted optional input (ONNX's empty input name).
    """

    node_id: int
    index: int = 0
    version: int = 0

    @property
    def absent(self) -> bool:
        """True for an omitted optional input."""
        return self.node_id < 0


ABSENT = JSONGraphNodeEntry(-1, 0, 0)


@dataclass(frozen=True)
class JSONGraphNode:
    """A graph node.

    ``op`` is the node kind: ``"input"`` (a graph input, ``name`` is the tensor
    name), ``"const"`` (``name`` is the key in the constant table) or ``"kernel"``
    (``name`` is the operator, e.g. ``"Conv"``, ``"com.microsoft:Gelu"``, or a
    composite such as ``"dnnl.conv_add_relu"``, following TVM). ``label`` keeps the
    source node's name for messages. ``shapes``/``dtypes`` describe each output.
    """

    op: NodeKind
    name: str
    inputs: tuple[JSONGraphNodeEntry, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)
    shapes: tuple[Shape | None, ...] = ()
    dtypes: tuple[str, ...] = ()
    label: str = ""

    @property
    def num_outputs(self) -> int:
        """Number of outputs (one per shape)."""
        return len(self.shapes)

    def spec(self, index: int = 0) -> TensorSpec:
        """Shape and dtype of output ``index``."""
        return TensorSpec(self.shapes[index], self.dtypes[index])

    def describe(self, node_id: int | None = None) -> str:
        """Human name for messages: ``node #3 Conv 'conv1'``."""
        where = f"node #{node_id} " if node_id is not None else ""
        label = f" {self.label!r}" if self.label else ""
        return f"{where}{self.name}{label}"


@dataclass(frozen=True)
class Graph:
    """An immutable, topologically ordered JSON graph.

    ``head_names`` names the graph outputs (same length as ``heads``); for an
    imported model they are the ONNX output names, for a subgraph the names of
    the tensors it produces.
    """

    nodes: tuple[JSONGraphNode, ...]
    heads: tuple[JSONGraphNodeEntry, ...]
    head_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _validate(self)

    # -- derived layout (TVM's names) ------------------------------------

    @cached_property
    def arg_nodes(self) -> tuple[int, ...]:
        """Indices of the ``input`` and ``const`` nodes, in order."""
        return tuple(i for i, n in enumerate(self.nodes) if n.op != "kernel")

    @cached_property
    def node_row_ptr(self) -> tuple[int, ...]:
        """Prefix sums of output counts: entry id = ``node_row_ptr[nid] + index``."""
        ptr = [0]
        for node in self.nodes:
            ptr.append(ptr[-1] + node.num_outputs)
        return tuple(ptr)

    def entry_id(self, entry: JSONGraphNodeEntry) -> int:
        """Flat index of an entry, as TVM's runtime computes it."""
        return self.node_row_ptr[entry.node_id] + entry.index

    @cached_property
    def input_ids(self) -> tuple[int, ...]:
        """Indices of ``input`` nodes (the graph's runtime arguments)."""
        return tuple(i for i, n in enumerate(self.nodes) if n.op == "input")

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the graph inputs, in node order."""
        return tuple(self.nodes[i].name for i in self.input_ids)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the graph outputs (``head_names`` or ``output0``...)."""
        return self.head_names or tuple(f"output{i}" for i in range(len(self.heads)))

    def spec(self, entry: JSONGraphNodeEntry) -> TensorSpec:
        """Shape and dtype of the tensor ``entry`` refers to."""
        return self.nodes[entry.node_id].spec(entry.index)

    # -- shapes -------------------------------------------------------------

    def bind_dims(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
        """The sizes of the inputs' symbolic dims, read from concrete input shapes.

        ``shapes`` maps input names to the shapes of the arrays given for them.
        Raises ValueError when an input's rank or a static dim does not match,
        or when one dim name gets two sizes. Unnamed dims (``"?"``) bind nothing.
        """
        dims: dict[str, int] = {}
        for nid in self.input_ids:
            node = self.nodes[nid]
            want, got = node.shapes[0], shapes[node.name]
            if want is None:
                continue
            if len(want) != len(got):
                raise ValueError(
                    f"input {node.name!r} has shape {list(got)}; expected {list(want)}"
                )
            for axis, (w, g) in enumerate(zip(want, got, strict=True)):
                if isinstance(w, int):
                    if w != g:
                        raise ValueError(
                            f"input {node.name!r} has shape {list(got)}; "
                            f"expected {list(want)} (axis {axis})"
                        )
                elif w != "?" and dims.setdefault(w, g) != g:
                    raise ValueError(
                        f"dim {w!r} is {dims[w]} in one input and {g} in {node.name!r}"
                    )
        return dims

    def with_dims(self, dims: Mapping[str, int]) -> Graph:
        """This graph with the symbolic dims in ``dims`` replaced by their sizes.

        For backends whose engines are built per concrete shape (oneDNN
        primitives, static TensorRT profiles): bind the sizes with
        :meth:`bind_dims`, then build for the specialized graph. Dims not in
        ``dims`` stay symbolic; composite bodies are specialized too.
        """

        def shape(s: Shape | None) -> Shape | None:
            if s is None:
                return None
            return tuple(dims.get(d, d) if isinstance(d, str) else d for d in s)

        nodes = tuple(
            JSONGraphNode(
                n.op,
                n.name,
                n.inputs,
                {
                    k: v.with_dims(dims) if isinstance(v, Graph) else v
                    for k, v in n.attrs.items()
                },
                tuple(shape(s) for s in n.shapes),
                n.dtypes,
                n.label,
            )
            for n in self.nodes
        )
        return Graph(nodes, self.heads, self.head_names)

    @cached_property
    def consumers(self) -> tuple[tuple[int, ...], ...]:
        """For each node, the ids of kernel nodes reading any of its outputs."""
        users: list[list[int]] = [[] for _ in self.nodes]
        for nid, node in enumerate(self.nodes):
            for e in node.inputs:
                if not e.absent and (
                    not users[e.node_id] or users[e.node_id][-1] != nid
                ):
                    users[e.node_id].append(nid)
        return tuple(tuple(u) for u in users)

    # -- serialization ----------------------------------------------------

    def to_dict(self, codecs: Mapping[str, AttrCodec] | None = None) -> dict[str, Any]:
        """Plain-data form (JSON and msgpack safe), TVM field names plus a version."""
        nodes = []
        for node in self.nodes:
            d: dict[str, Any] = {
                "op": node.op,
                "name": node.name,
                "inputs": [[e.node_id, e.index, e.version] for e in node.inputs],
                "attrs": {k: encode_attr(v, codecs) for k, v in node.attrs.items()},
                "shape": [None if s is None else list(s) for s in node.shapes],
                "dtype": list(node.dtypes),
            }
            if node.label:
                d["label"] = node.label
            nodes.append(d)
        return {
            "version": GRAPH_FORMAT_VERSION,
            "nodes": nodes,
            "arg_nodes": list(self.arg_nodes),
            "heads": [[e.node_id, e.index, e.version] for e in self.heads],
            "head_names": list(self.head_names),
            "node_row_ptr": list(self.node_row_ptr),
        }

    def to_json(
        self, codecs: Mapping[str, AttrCodec] | None = None, indent: int | None = None
    ) -> str:
        """JSON text; ``Graph.from_json(g.to_json()) == g`` exactly."""
        return json.dumps(self.to_dict(codecs), indent=indent, allow_nan=False)

    @staticmethod
    def from_dict(
        data: Any,
        codecs: Mapping[str, AttrCodec] | None = None,
        plugins: Mapping[str, str] | None = None,
        depth: int = 0,
    ) -> Graph:
        """Parse and fully validate a graph dict; anything malformed is a "
        "FormatError."""
        if depth > MAX_DEPTH:
            raise FormatError("graph nested too deeply")
        _need(isinstance(data, dict), "graph must be a mapping")
        version = data.get("version")
        _need(
            isinstance(version, int) and not isinstance(version, bool),
            "graph version missing",
        )
        if version > GRAPH_FORMAT_VERSION:
            raise FormatError(
                f"graph format version {version} is newer than this byoc reads "
                f"({GRAPH_FORMAT_VERSION}); upgrade byoc-core",
            )
        raw_nodes = data.get("nodes")
        _need(isinstance(raw_nodes, list), "graph.nodes must be a list")
        nodes = tuple(_node_from_dict(n, codecs, plugins, depth) for n in raw_nodes)
        heads = _entries(data.get("heads"), "graph.heads")
        names = data.get("head_names", [])
        _need(
            isinstance(names, list) and all(isinstance(x, str) for x in names),
            "graph.head_names must be a list of strings",
        )
        try:
            graph = Graph(nodes, heads, tuple(names))
        except GraphError as exc:
            raise FormatError(f"inconsistent graph: {exc}") from exc
        for key, derived in (
            ("arg_nodes", graph.arg_nodes),
            ("node_row_ptr", graph.node_row_ptr),
        ):
            if key in data and data[key] != list(derived):
                raise FormatError(f"graph.{key} does not match the nodes")
        return graph

    @staticmethod
    def from_json(
        text: str | bytes, codecs: Mapping[str, AttrCodec] | None = None
    ) -> Graph:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise FormatError(f"graph JSON does not parse: {exc}") from exc
        return Graph.from_dict(data, codecs)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise FormatError(f"malformed graph: {what}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _entries(raw: Any, where: str) -> tuple[JSONGraphNodeEntry, ...]:
    _need(isinstance(raw, list), f"{where} must be a list")
    out = []
    for e in raw:
        _need(
            isinstance(e, list) and len(e) == 3 and all(_is_int(x) for x in e),
            f"{where} entries must be [node_id, index, version]",
        )
        out.append(JSONGraphNodeEntry(*e))
    return tuple(out)


def _node_from_dict(
    raw: Any,
    codecs: Mapping[str, AttrCodec] | None,
    plugins: Mapping[str, str] | None,
    depth: int,
) -> JSONGraphNode:
    _need(isinstance(raw, dict), "node must be a mapping")
    op, name = raw.get("op"), raw.get("name")
    _need(op in NODE_KINDS, f"node op must be one of {NODE_KINDS}, got {op!r:.40}")
    _need(isinstance(name, str), "node name must be a string")
    attrs = raw.get("attrs", {})
    _need(
        isinstance(attrs, dict) and all(isinstance(k, str) for k in attrs),
        "node attrs must be a mapping",
    )
    shapes = raw.get("shape")
    dtypes = raw.get("dtype")
    _need(
        isinstance(shapes, list) and isinstance(dtypes, list),
        "node shape/dtype missing",
    )
    parsed_shapes: list[Shape | None] = []
    for s in shapes:
        if s is None:
            parsed_shapes.append(None)
            continue
        _need(
            isinstance(s, list)
            and all((_is_int(d) and d >= 0) or isinstance(d, str) for d in s),
            "bad shape",
        )
        parsed_shapes.append(tuple(s))
    _need(all(isinstance(d, str) for d in dtypes), "dtypes must be strings")
    label = raw.get("label", "")
    _need(isinstance(label, str), "node label must be a string")
    return JSONGraphNode(
        op=op,
        name=name,
        inputs=_entries(raw.get("inputs", []), "node.inputs"),
        attrs={k: decode_attr(v, codecs, plugins, depth + 1) for k, v in attrs.items()},
        shapes=tuple(parsed_shapes),
        dtypes=tuple(dtypes),
        label=label,
    )


def _validate(graph: Graph) -> None:
    """Check the invariants every consumer of a Graph relies on."""
    seen_inputs: set[str] = set()
    for nid, node in enumerate(graph.nodes):
        where = node.describe(nid)
        if node.op not in NODE_KINDS:
            raise GraphError(f"{where}: op must be one of {NODE_KINDS}")
        if not isinstance(node.inputs, tuple) or not isinstance(node.shapes, tuple):
            raise GraphError(f"{where}: inputs and shapes must be tuples")
        if len(node.shapes) != len(node.dtypes) or not node.shapes:
            raise GraphError(
                f"{where}: needs one shape and one dtype per output (at least one)"
            )
        if node.op != "kernel":
            if node.inputs or node.num_outputs != 1:
                raise GraphError(
                    f"{where}: {node.op} nodes have no inputs and one output"
                )
            if node.op == "input":
                if node.name in seen_inputs:
                    raise GraphError(f"{where}: duplicate input name {node.name!r}")
                seen_inputs.add(node.name)
        for d in node.dtypes:
            if d not in _KNOWN_DTYPES:
                raise GraphError(f"{where}: unknown dtype {d!r:.40}")
        for e in node.inputs:
            if e.absent:
                if e != ABSENT:  # only (-1, 0, 0) marks an omitted input
                    raise GraphError(f"{where}: bad input entry {e}")
                continue
            if not 0 <= e.node_id < nid:
                raise GraphError(
                    f"{where}: input ({e.node_id}, {e.index}) must refer to an "
                    "earlier node"
                )
            if not 0 <= e.index < graph.nodes[e.node_id].num_outputs:
                raise GraphError(
                    f"{where}: input ({e.node_id}, {e.index}) has no such output"
                )
    for e in graph.heads:
        if (
            not 0 <= e.node_id < len(graph.nodes)
            or not 0 <= e.index < graph.nodes[e.node_id].num_outputs
        ):
            raise GraphError(f"head ({e.node_id}, {e.index}) has no such output")
    if graph.head_names and len(graph.head_names) != len(graph.heads):
        raise GraphError("head_names must name every head")
