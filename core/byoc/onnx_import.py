"""ONNX import: ModelProto -> one JSON :class:`~byoc.graph.Graph` plus constants.

First step of the flow (import -> partition -> serialize -> load -> run). The
importer is deliberately backend-agnostic: every op is imported, known or not;
only partitioning decides who runs it.

What it does on the way:

* brings the default-domain opset into 13..21 (older models are upgraded with
  ``onnx.version_converter``; newer ones are lowered to 21 where that is exact);
* runs ONNX shape inference; dims without a size stay symbolic (strings), and an
  input dim with neither size nor name gets the name ``<input>_d<axis>``;
* turns initializers and ``Constant`` nodes into ``const`` nodes and folds
  nodes whose inputs are all constant;
* folds shape arithmetic on symbolic dims (``Shape -> Gather -> Range`` ...) into
  :class:`~byoc.attrs.Sym` expressions held by ``byoc.sym`` host nodes, which the
  driver evaluates at run time once input shapes are known.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .attrs import Sym, SymLike, TensorAttr
from .dtypes import UNKNOWN, DTypeError, dtype_name, onnx_code
from .errors import ModelError
from .graph import ABSENT, Graph, JSONGraphNode, JSONGraphNodeEntry, Shape

MIN_OPSET = 13
MAX_OPSET = 21
SYM_OP = "byoc.sym"
"""Kernel name of host nodes whose value is a symbolic shape expression."""

# Folding these would bake one random draw (or training behaviour) into the model.
_NO_FOLD = frozenset(
    {
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "Dropout",
        "If",
        "Loop",
        "Scan",
    }
)
_FOLD_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class ImportedModel:
    """An imported model: the graph and the constants its const nodes name."""

    graph: Graph
    consts: Mapping[str, np.ndarray]
    opset: int


def import_onnx(model: onnx.ModelProto | str | os.PathLike[str]) -> ImportedModel:
    """Import an ONNX model (a ModelProto or a path to a .onnx file)."""
    proto = _load(model)
    proto = _normalize_opset(proto)
    if proto.functions:
        from onnx import inliner

        proto = inliner.inline_local_functions(proto)
    _check(proto)
    proto = _name_unknown_input_dims(proto)
    try:
        proto = onnx.shape_inference.infer_shapes(
            proto, strict_mode=False, data_prop=True
        )
    except Exception:  # inference is best effort: missing shapes stay unknown
        pass
    return _Importer(proto).run()


def _check(proto: onnx.ModelProto) -> None:
    """``onnx.checker`` on ``proto``, tolerating graph outputs without a shape.

    Exporters often leave them out and shape inference fills them in, so that
    is not worth rejecting a model. But the checker stops at its first
    complaint: skipping past that one hid every check after it (a Conv with
    four inputs, a Sigmoid with an alpha ran). So the missing shapes are
    given for the check (unknown rank for it: an empty, present field) and
    taken away again.
    """
    bare = [
        o.type.tensor_type
        for o in proto.graph.output
        if o.type.HasField("tensor_type") and not o.type.tensor_type.HasField("shape")
    ]
    for t in bare:
        t.shape.SetInParent()
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the ONNX model is invalid: {exc}") from exc
    finally:
        for t in bare:
            t.ClearField("shape")


def _load(model: onnx.ModelProto | str | os.PathLike[str]) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (str, os.PathLike)):
        try:
            return onnx.load(os.fspath(model))
        except FileNotFoundError:
            raise ModelError(
                f"model file {os.fspath(model)!r} does not exist"
            ) from None
        except Exception as exc:
            raise ModelError(
                f"cannot read ONNX model {os.fspath(model)!r}: {exc}"
            ) from exc
    raise ModelError(
        f"expected an onnx.ModelProto or a path, got {type(model).__name__}"
    )


def default_opset(proto: onnx.ModelProto) -> int:
    """Opset of the default ONNX domain (1 when the model does not say)."""
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1


def _normalize_opset(proto: onnx.ModelProto) -> onnx.ModelProto:
    version = default_opset(proto)
    if MIN_OPSET <= version <= MAX_OPSET:
        return proto
    target = MIN_OPSET if version < MIN_OPSET else MAX_OPSET
    try:
        return onnx.version_converter.convert_version(proto, target)
    except Exception as exc:
        if version > MAX_OPSET and _unchanged_since(proto, MAX_OPSET):
            return _relabel_opset(proto, MAX_OPSET)
        raise ModelError(
            f"the model uses ONNX opset {version}; byoc imports opsets {MIN_OPSET}-"
            f"{MAX_OPSET} and onnx.version_converter could not convert it to {target}: "
            f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}. "
            "Re-export "
            f"the model at an opset in {MIN_OPSET}-{MAX_OPSET}.",
            opset=version,
        ) from exc


def _unchanged_since(proto: onnx.ModelProto, target: int) -> bool:
    """True when every op's newer revision only widened types the model doesn't use.

    The version converter lacks some downgrade adapters (e.g. GlobalMaxPool 22->21)
    for revisions that only added element types; for those, relabelling the opset is
    exact as long as every tensor type the node uses was already allowed at ``target``.
    """
    types = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info)
    }
    types.update({t.name: t.data_type for t in proto.graph.initializer})
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            old = onnx.defs.get_schema(node.op_type, target, "")
        except Exception:
            return False
        allowed_attrs = set(old.attributes)
        if any(a.name not in allowed_attrs for a in node.attribute):
            return False
        for name in (*node.input, *node.output):
            code = types.get(name)
            if code is None:
                continue
            tname = (
                f"tensor({helper.tensor_dtype_to_string(code).split('.')[-1].lower()})"
            )
            if not any(tname in c.allowed_type_strs for c in old.type_constraints):
                return False
    return True


def _relabel_opset(proto: onnx.ModelProto, target: int) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for entry in out.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = target
    return out


def _name_unknown_input_dims(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed, unsized input dim a name so run time can bind it."""
    inits = {t.name for t in proto.graph.initializer}
    todo = [
        (vi, axis, dim)
        for vi in proto.graph.input
        if vi.name not in inits
        for axis, dim in enumerate(vi.type.tensor_type.shape.dim)
        if not dim.HasField("dim_value") and not dim.dim_param
    ]
    if not todo:
        return proto
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    by_name = {vi.name: vi for vi in out.graph.input}
    for vi, axis, _ in todo:
        by_name[vi.name].type.tensor_type.shape.dim[
            axis
        ].dim_param = f"{vi.name}_d{axis}"
    return out


def _spec_of(vi: onnx.ValueInfoProto) -> tuple[Shape | None, str]:
    t = vi.type.tensor_type
    try:
        dtype = dtype_name(t.elem_type) if t.elem_type else UNKNOWN
    except DTypeError:
        dtype = UNKNOWN
    if not t.HasField("shape"):
        return None, dtype
    dims: list[int | str] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return tuple(dims), dtype


def convert_attribute(attr: onnx.AttributeProto) -> Any:
    """ONNX attribute -> byoc attribute value (see the module docs of byoc.attrs)."""
    value = helper.get_attribute_value(attr)
    if attr.type == onnx.AttributeProto.STRING:
        return value.decode("utf-8", errors="surrogateescape")
    if attr.type == onnx.AttributeProto.STRINGS:
        return tuple(v.decode("utf-8", errors="surrogateescape") for v in value)
    if attr.type in (onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS):
        return tuple(value)
    if attr.type == onnx.AttributeProto.TENSOR:
        return TensorAttr.from_array(numpy_helper.to_array(value))
    if attr.type == onnx.AttributeProto.GRAPH:
        # Control-flow bodies travel as serialized GraphProto bytes.
        return value.SerializeToString()
    if attr.type in (onnx.AttributeProto.INT, onnx.AttributeProto.FLOAT):
        return value
    raise ModelError(
        f"attribute {attr.name!r} has ONNX type "
        f"{onnx.AttributeProto.AttributeType.Name(attr.type)}, which byoc does not "
        "import"
    )


def _to_array(tensor: onnx.TensorProto, base_dir: str | None = None) -> np.ndarray:
    try:
        array = numpy_helper.to_array(tensor, base_dir or "")
        dtype_name(array.dtype)
    except (DTypeError, Exception) as exc:
        raise ModelError(
            f"constant {tensor.name!r} has element type "
            f"{helper.tensor_dtype_to_string(tensor.data_type)}, which byoc cannot "
            f"store: {exc}"
        ) from exc
    return np.asarray(array, order="C")


@dataclass(frozen=True)
class _SymValue:
    """A small int tensor (scalar or 1-D) whose elements are dims expressions."""

    elems: tuple[SymLike, ...]
    scalar: bool

    def concrete(self) -> np.ndarray | None:
        if all(isinstance(e, int) for e in self.elems):
            arr = np.array(self.elems, dtype=np.int64)
            return arr.reshape(()) if self.scalar else arr
        return None


class _Importer:
    """One-shot conversion state; see :func:`import_onnx`."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.proto = proto
        g = proto.graph
        self.opset = default_opset(proto)
        self.specs: dict[str, tuple[Shape | None, str]] = {}
        for vi in (*g.input, *g.value_info, *g.output):
            self.specs[vi.name] = _spec_of(vi)
        self.nodes: list[JSONGraphNode] = []
        self.entry: dict[str, JSONGraphNodeEntry] = {}
        self.consts: dict[str, np.ndarray] = {}
        # tensor name -> compile-time value: an array (constant) or a _SymValue
        self.known: dict[str, np.ndarray | _SymValue] = {}
        self.bound_dims: set[str] = set()
        self.labels: set[str] = set()

    # -- main ------------------------------------------------------------

    def run(self) -> ImportedModel:
        g = self.proto.graph
        inits = {t.name for t in g.initializer}
        for t in g.initializer:
            self.known[t.name] = _to_array(t)
        for vi in g.input:
            if vi.name in inits:
                continue
            shape, dtype = self.specs[vi.name]
            if dtype == UNKNOWN:
                raise ModelError(
                    f"graph input {vi.name!r} has no tensor type byoc supports"
                )
            self.bound_dims.update(d for d in shape or () if isinstance(d, str))
            self._emit(
                JSONGraphNode("input", vi.name, shapes=(shape,), dtypes=(dtype,)),
                [vi.name],
            )
        for i, node in enumerate(g.node):
            self._node(i, node)
        heads = tuple(self._materialize(o.name) for o in g.output)
        graph = _prune(tuple(self.nodes), heads, tuple(o.name for o in g.output))
        used = {n.name for n in graph.nodes if n.op == "const"}
        return ImportedModel(
            graph, {k: v for k, v in self.consts.items() if k in used}, self.opset
        )

    def _emit(self, node: JSONGraphNode, outputs: list[str]) -> None:
        nid = len(self.nodes)
        self.nodes.append(node)
        for i, name in enumerate(outputs):
            if name:
                self.entry[name] = JSONGraphNodeEntry(nid, i, 0)

    def _materialize(self, name: str) -> JSONGraphNodeEntry:
        """Entry for tensor ``name``, emitting a const or sym node on first use."""
        if not name:
            return ABSENT
        if name in self.entry:
            return self.entry[name]
        value = self.known.get(name)
        if isinstance(value, np.ndarray):
            self.consts[name] = value
            self._emit(
                JSONGraphNode(
                    "const",
                    name,
                    shapes=(tuple(value.shape),),
                    dtypes=(dtype_name(value.dtype),),
                ),
                [name],
            )
        elif isinstance(value, _SymValue):
            shape: Shape = () if value.scalar else (len(value.elems),)
            self._emit(
                JSONGraphNode(
                    "kernel",
                    SYM_OP,
                    attrs={"value": value.elems},
                    shapes=(shape,),
                    dtypes=("int64",),
                    label=name,
                ),
                [name],
            )
        else:
            raise ModelError(f"tensor {name!r} is used but never produced")
        return self.entry[name]

    def _node(self, index: int, node: onnx.NodeProto) -> None:
        default = node.domain in ("", "ai.onnx")
        if default and node.op_type == "Constant":
            self.known[node.output[0]] = _constant_value(node)
            return
        if default:
            self._check_types(index, node)
        if default and self._fold_sym(node):
            return
        if default and self._fold_const(node):
            return
        inputs = list(node.input)
        while inputs and not inputs[-1]:
            inputs.pop()
        outputs = list(node.output)
        while outputs and not outputs[-1]:
            outputs.pop()
        shapes, dtypes = [], []
        for out in outputs:
            shape, dtype = self.specs.get(out, (None, UNKNOWN))
            shapes.append(shape)
            dtypes.append(dtype)
        op = node.op_type if default else f"{node.domain}:{node.op_type}"
        label = node.name or f"{node.op_type}_{index}"
        if label in self.labels:  # labels name tensors across subgraphs: keep unique
            label = f"{label}_{index}"
        self.labels.add(label)
        self._emit(
            JSONGraphNode(
                "kernel",
                op,
                inputs=tuple(self._materialize(i) for i in inputs),
                attrs={a.name: convert_attribute(a) for a in node.attribute},
                shapes=tuple(shapes),
                dtypes=tuple(dtypes),
                label=label,
            ),
            outputs,
        )

    def _check_types(self, index: int, node: onnx.NodeProto) -> None:
        """Each input's element type against the operator's type constraints.

        onnxruntime checks them when it loads a model and ``onnx.checker``
        does not: without this a Gather with float indices or a Pad with
        float pads ran (found by mutating models), with whatever a backend
        made of them.
        """
        try:
            schema = onnx.defs.get_schema(node.op_type, self.opset, "")
        except onnx.defs.SchemaError:
            return  # unknown ops are the partitioner's to refuse
        formals = schema.inputs
        allowed = {
            c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints
        }
        bound: dict[str, str] = {}
        variadic = onnx.defs.OpSchema.FormalParameterOption.Variadic
        for i, name in enumerate(node.input):
            if not name or not formals:
                continue
            formal = formals[min(i, len(formals) - 1)]
            if i >= len(formals) and formal.option != variadic:
                return  # too many inputs: the checker has said so
            dtype = self._dtype_of(name)
            if dtype == UNKNOWN:
                continue
            got = f"tensor({onnx.TensorProto.DataType.Name(onnx_code(dtype)).lower()})"
            want = allowed.get(formal.type_str, {formal.type_str})
            where = f"{node.op_type} node {node.name or index!r}: input {i} ({name!r})"
            if got not in want:
                raise ModelError(
                    f"{where} is {got}; its parameter {formal.name!r} takes "
                    f"{', '.join(sorted(want))}"
                )
            if formal.type_str in allowed and formal.is_homogeneous:
                first = bound.setdefault(formal.type_str, got)
                if first != got:
                    raise ModelError(
                        f"{where} is {got}, but an earlier input of type "
                        f"{formal.type_str} is {first}: they must match"
                    )

    def _dtype_of(self, name: str) -> str:
        known = self.known.get(name)
        if isinstance(known, np.ndarray):
            try:
                return dtype_name(known.dtype)
            except DTypeError:
                return UNKNOWN
        return self.specs.get(name, (None, UNKNOWN))[1]

    # -- folding -----------------------------------------------------------

    def _fold_const(self, node: onnx.NodeProto) -> bool:
        """Evaluate a node whose inputs are all constants, if that stays small."""
        if (
            node.op_type in _NO_FOLD
            or not node.input
            or any(a.g.node for a in node.attribute)
        ):
            return False
        values: list[np.ndarray | None] = []
        for name in node.input:
            value = self.known.get(name) if name else None
            if name and not isinstance(value, np.ndarray):
                return False
            values.append(value if isinstance(value, np.ndarray) else None)
        in_bytes = sum(v.nbytes for v in values if v is not None)
        budget = min(_FOLD_MAX_BYTES, 2 * in_bytes + 4096)
        for out in node.output:
            shape, dtype = self.specs.get(out, (None, UNKNOWN))
            if shape is None or dtype == UNKNOWN:
                return False
            sizes = [d for d in shape if isinstance(d, int)]
            if len(sizes) != len(shape):
                return False
            if math.prod(sizes) * np.dtype(dtype).itemsize > budget:
                return False
        try:
            results = _evaluate(node, values, self.opset)
        except Exception:  # unfoldable here; the node simply stays in the graph
            return False
        for name, result in zip(node.output, results, strict=False):
            if name:
                self.known[name] = np.asarray(result, order="C")
        return True

    def _fold_sym(self, node: onnx.NodeProto) -> bool:
        """Fold shape arithmetic over bound symbolic dims into Sym expressions."""
        try:
            value = _sym_eval(self, node)
        except (KeyError, ValueError, IndexError, TypeError, ZeroDivisionError):
            return False
        if value is None:
            return False
        concrete = value.concrete()
        self.known[node.output[0]] = concrete if concrete is not None else value
        return True

    def sym_input(self, name: str) -> _SymValue | None:
        """The value of ``name`` as a _SymValue when it is a small int tensor."""
        value = self.known.get(name)
        if isinstance(value, _SymValue):
            return value
        if (
            isinstance(value, np.ndarray)
            and value.dtype.kind in "iu"
            and value.ndim <= 1
            and value.size <= 64
        ):
            return _SymValue(tuple(int(x) for x in value.reshape(-1)), value.ndim == 0)
        return None


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    attr = node.attribute[0]
    if attr.name == "value":
        return _to_array(attr.t)
    value = helper.get_attribute_value(attr)
    if attr.name == "value_float":
        return np.array(value, dtype=np.float32)
    if attr.name == "value_floats":
        return np.array(value, dtype=np.float32)
    if attr.name == "value_int":
        return np.array(value, dtype=np.int64)
    if attr.name == "value_ints":
        return np.array(value, dtype=np.int64)
    raise ModelError(
        f"Constant {node.name!r} uses {attr.name}, which byoc does not import"
    )


def _evaluate(
    node: onnx.NodeProto, values: list[np.ndarray | None], opset: int
) -> list[Any]:
    """Run one node with onnx's reference evaluator (compile-time folding only)."""
    from onnx.reference import ReferenceEvaluator

    feeds = {
        name: v for name, v in zip(node.input, values, strict=True) if v is not None
    }
    inputs = [
        helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape
        )
        for name, v in feeds.items()
    ]
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return list(ReferenceEvaluator(model).run(None, feeds))


def _sym_eval(imp: _Importer, node: onnx.NodeProto) -> _SymValue | None:
    """Symbolic value of ``node``'s first output, or None when not foldable."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type in ("Shape", "Size"):
        return _sym_shape(imp, node, attrs)
    rule = _SYM_RULES.get(node.op_type)
    if rule is None or not node.input:
        return None
    ins = [imp.sym_input(i) if i else None for i in node.input]
    if ins[0] is None or not any(
        isinstance(imp.known.get(i), _SymValue) for i in node.input if i
    ):
        return None  # all constant: ordinary constant folding handles it
    return rule(ins, attrs)


def _sym_shape(
    imp: _Importer, node: onnx.NodeProto, attrs: dict[str, Any]
) -> _SymValue | None:
    shape, _ = imp.specs.get(node.input[0], (None, UNKNOWN))
    if shape is None or any(
        isinstance(d, str) and d not in imp.bound_dims for d in shape
    ):
        return None
    dims: list[SymLike] = [Sym.dim(d) if isinstance(d, str) else d for d in shape]
    if node.op_type == "Size":
        total: SymLike = 1
        for d in dims:
            total = Sym.binary("mul", total, d)
        return _SymValue((total,), True)
    rank = len(dims)
    bounds = [attrs.get("start", 0), attrs.get("end", rank)]
    start, end = (max(0, min(rank, x + rank if x < 0 else x)) for x in bounds)
    return _SymValue(tuple(dims[start:end]), False)


def _ints(value: _SymValue | None) -> tuple[int, ...] | None:
    """The elements of a constant index/axes input, or None if any is symbolic."""
    if value is None or not all(isinstance(e, int) for e in value.elems):
        return None
    return tuple(int(e) for e in value.elems)  # type: ignore[arg-type]


_SymIns = list[_SymValue | None]


def _sym_identity(ins: _SymIns, attrs: dict[str, Any]) -> _SymValue | None:
    return ins[0]


def _sym_cast(ins: _SymIns, attrs: dict[str, Any]) -> _SymValue | None:
    return ins[0] if dtype_name(attrs["to"]) in ("int64", "int32") else None


def _sym_gather(ins: _SymIns, attrs: dict[str, Any]) -> _SymValue | None:
    x, idx = ins[0], _ints(ins[1] if len(ins) > 1 else None)
    if x is None or x.scalar or idx is None or attrs.get("axis", 0) != 0:
        return None
    n = len(x.elems)
    if not all(-n <= i < n for i in idx):
        return None
    assert ins[1] is not None
    return _SymValue(tuple(x.elems[i] for i in idx), ins[1].scalar)


def _sym_unsqueeze(ins: _SymIns, attrs: dict[str, Any]) -> _SymValue | None:
    x = ins[0]
    axes = _ints(ins[1]) if len(ins) > 1 else tuple(attrs.get("axes", ()))
    if x is None or not x.scalar or axes not in ((0,), (-1,)):
        return None
    return _SymValue(x.elems, False)


def _sym_squeeze(ins: _SymIns, attrs: dict[str, Any]) -> _SymValue | None:
    x = ins[0]
    if x is None or x.scalar or len(x.elems) != 1:
        return None
    return _SymValue(x.elems, True)


def _sym_concat(ins: _SymIns, attrs: dict[str, Any]) -> _SymValue | None:
    if attrs.get("axis") not in (0, -1):
        return None
    parts = [v for v in ins if v is not None and not v.scalar]
    if len(parts) != len(ins):
        return None
    return _SymValue(tuple(e for v in parts for e in v.elems), False)


def _sym_slice(ins: _SymIns, attrs: dict[str, Any]) -> _SymValue | None:
    x = ins[0]
    params = [_ints(v) for v in ins[1:]]
    if x is None or x.scalar or len(params) < 2:
        return None
    starts, ends = params[0], params[1]
    axes = params[2] if len(params) > 2 and ins[3] is not None else (0,)
    steps = params[3] if len(params) > 3 and ins[4] is not None else (1,)
    if starts is None or ends is None or axes not in ((0,), (-1,)) or not steps:
        return None
    return _SymValue(tuple(x.elems[slice(starts[0], ends[0], steps[0])]), False)


def _sym_arith(op: str) -> Any:
    def rule(ins: _SymIns, attrs: dict[str, Any]) -> _SymValue | None:
        if len(ins) != 2 or ins[0] is None or ins[1] is None:
            return None
        a, b = ins[0], ins[1]
        n = max(len(a.elems), len(b.elems))
        if {len(a.elems), len(b.elems)} - {1, n}:
            return None
        ea = a.elems * n if len(a.elems) == 1 else a.elems
        eb = b.elems * n if len(b.elems) == 1 else b.elems
        values = tuple(Sym.binary(op, p, q) for p, q in zip(ea, eb, strict=True))
        return _SymValue(values, a.scalar and b.scalar)

    return rule


# Shape-arithmetic ops the importer folds, one small rule per op.
_SYM_RULES: dict[str, Any] = {
    "Identity": _sym_identity,
    "Cast": _sym_cast,
    "Gather": _sym_gather,
    "Unsqueeze": _sym_unsqueeze,
    "Squeeze": _sym_squeeze,
    "Concat": _sym_concat,
    "Slice": _sym_slice,
    **{op: _sym_arith(op.lower()) for op in ("Add", "Sub", "Mul", "Div", "Max", "Min")},
}


def _prune(
    nodes: tuple[JSONGraphNode, ...],
    heads: tuple[JSONGraphNodeEntry, ...],
    names: tuple[str, ...],
) -> Graph:
    """Drop nodes no head depends on (inputs always stay: they are the signature)."""
    live = [n.op == "input" for n in nodes]
    for e in heads:
        live[e.node_id] = True
    for nid in range(len(nodes) - 1, -1, -1):
        if live[nid]:
            for e in nodes[nid].inputs:
                if not e.absent:
                    live[e.node_id] = True
    remap: dict[int, int] = {}
    kept: list[JSONGraphNode] = []
    for nid, node in enumerate(nodes):
        if not live[nid]:
            continue
        remap[nid] = len(kept)
        kept.append(_reindex(node, remap))
    new_heads = tuple(
        JSONGraphNodeEntry(remap[e.node_id], e.index, e.version) for e in heads
    )
    return Graph(tuple(kept), new_heads, names)


def _reindex(node: JSONGraphNode, remap: Mapping[int, int]) -> JSONGraphNode:
    if not node.inputs:
        return node
    from dataclasses import replace

    return replace(
        node,
        inputs=tuple(
            e if e.absent else JSONGraphNodeEntry(remap[e.node_id], e.index, e.version)
            for e in node.inputs
        ),
    )
