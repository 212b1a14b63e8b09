"""The conformance kit's op case catalog: single-node ONNX models with inputs.

Part of the kit (``byoc.testing``), not of the compile/run flow. One generator
per op, registered with :func:`generates`, yields :class:`OpCase` objects: one
ONNX node (``onnx.helper``), its runtime inputs and constant inputs, and the
tolerance its outputs are compared with. The generators sweep what backends
get wrong: broadcasting, sizes 1 and primes, 0-d tensors, negative axes,
padding modes and ``auto_pad``, strides and dilations, dtypes.

Cases are deterministic: each op draws its data from a generator seeded by the
op name, so a case id always means the same model and the same inputs. Every
case has at least one runtime input, so the importer cannot fold the node away.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

OPSET = 17
"""Default opset of the case models (reductions, Split, Pad and Resize use 18)."""

# --------------------------------------------------------------------------
# tolerances
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tol:
    """Per-op comparison tolerance for float outputs (``np.isclose`` semantics).

    ``rtol``/``atol`` apply to float32 and float64; float16 gets ``rtol16`` and
    ``atol16``, by default the float32 values widened to float16's precision.
    Integer and bool outputs are always compared exactly.
    """

    rtol: float
    atol: float
    rtol16: float | None = None
    atol16: float | None = None

    def for_dtype(self, dtype: np.dtype) -> tuple[float, float]:
        """``(rtol, atol)`` for outputs of ``dtype``; ``(0, 0)`` means exact."""
        if not np.issubdtype(dtype, np.floating):
            return 0.0, 0.0
        if dtype == np.float16:
            rtol16 = self.rtol16 if self.rtol16 is not None else self._widen(self.rtol)
            atol16 = self.atol16 if self.atol16 is not None else self._widen(self.atol)
            return rtol16, atol16
        return self.rtol, self.atol

    @staticmethod
    def _widen(value: float) -> float:
        # 0 stays exact (Relu, Max, shape ops); anything rounded gets ~4 float16 ulps.
        return 0.0 if value == 0 else max(value * 100, 4e-3)


EXACT = Tol(0.0, 0.0)
"""Results are exactly defined (selection, data movement, comparisons)."""
ARITH = Tol(1e-6, 1e-7)
"""One rounding per element; leaves room for e.g. division by reciprocal."""
MATH = Tol(1e-5, 1e-6)
"""Transcendental functions: a few ulps of float32."""
ACCUM = Tol(1e-4, 1e-5, 1e-2, 3e-2)
"""Sums over many terms (MatMul, Conv, reductions, norms): order matters."""


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """One node input: its name, value, and whether it is an initializer."""

    name: str
    value: np.ndarray
    const: bool = False


@dataclass(frozen=True, eq=False)
class OpCase:
    """One single-node model with its inputs; ``id`` is ``"<op>/<variant>/<dtype>"``.

    ``args`` are the node's inputs in position order (None for an omitted
    optional input). ``ort`` is non-empty when onnxruntime is known not to be a
    valid oracle for this case, and says why.
    """

    id: str
    op: str
    args: tuple[Arg | None, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    num_outputs: int = 1
    opset: int = OPSET
    tol: Tol = EXACT
    ort: str = ""

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the node's outputs (and the model's)."""
        if self.num_outputs == 1:
            return ("out",)
        return tuple(f"out{i}" for i in range(self.num_outputs))

    def feeds(self) -> dict[str, np.ndarray]:
        """Runtime inputs, fresh copies (a backend may not keep them)."""
        return {
            a.name: a.value.copy() for a in self.args if a is not None and not a.const
        }

    def consts(self) -> dict[str, np.ndarray]:
        """Initializers by name."""
        return {a.name: a.value for a in self.args if a is not None and a.const}

    @functools.cached_property
    def model(self) -> onnx.ModelProto:
        """The ONNX model: one node, typed inputs, outputs typed by inference."""
        node = helper.make_node(
            self.op,
            [a.name if a is not None else "" for a in self.args],
            list(self.output_names),
            name=self.op.lower(),
            **dict(self.attrs),
        )
        inputs = [
            helper.make_tensor_value_info(
                a.name, helper.np_dtype_to_tensor_dtype(a.value.dtype), a.value.shape
            )
            for a in self.args
            if a is not None and not a.const
        ]
        inits = [numpy_helper.from_array(v, k) for k, v in self.consts().items()]
        outputs = [onnx.ValueInfoProto(name=n) for n in self.output_names]
        graph = helper.make_graph([node], self.id, inputs, outputs, inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", self.opset)]
        )
        model.ir_version = min(model.ir_version, 10)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        untyped = [
            o.name for o in model.graph.output if not o.type.tensor_type.elem_type
        ]
        if untyped:  # a catalog bug: the op needs a newer opset
            raise ValueError(f"case {self.id}: outputs {untyped} have no inferred type")
        return model


Generator = Callable[[str, "Data"], Iterator[OpCase]]
GENERATORS: dict[str, Generator] = {}
"""Op name -> its case generator, in registration order."""


def generates(*ops: str) -> Callable[[Generator], Generator]:
    """Register a case generator for each op in ``ops`` (it gets the op name)."""

    def deco(fn: Generator) -> Generator:
        for op in ops:
            if op in GENERATORS:
                raise RuntimeError(f"case generator for {op} registered twice")
            GENERATORS[op] = fn
        return fn

    return deco


def catalog(ops: Sequence[str] | None = None) -> tuple[OpCase, ...]:
    """Every case of every op (or of ``ops``), ops in catalog order."""
    cases: list[OpCase] = []
    for op, gen in GENERATORS.items():
        if ops is None or op in ops:
            cases.extend(gen(op, Data(op)))
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise RuntimeError(f"duplicate case ids in the catalog: {dup[:5]}")
    return tuple(cases)


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

F32, F16, F64 = np.dtype("float32"), np.dtype("float16"), np.dtype("float64")
I32, I64, U8 = np.dtype("int32"), np.dtype("int64"), np.dtype("uint8")
BOOL = np.dtype("bool")


class Data:
    """Deterministic input data for one op's cases."""

    def __init__(self, op: str) -> None:
        self.rng = np.random.default_rng(zlib.crc32(op.encode()))

    def __call__(
        self, shape: Sequence[int], dtype: np.dtype, kind: str = "normal"
    ) -> np.ndarray:
        """An array of ``shape``/``dtype``; ``kind`` picks the value domain.

        Kinds: ``normal``; ``positive`` (away from 0); ``unit`` (inside
        (-1, 1)); ``above1``; ``nonzero`` (either sign, away from 0); ``small``
        (integers -3..3, as floats for float dtypes); ``special`` (normal with
        NaN and infinities mixed in).
        """
        rng, shape = self.rng, tuple(shape)
        if dtype == BOOL:
            return np.asarray(rng.random(shape) > 0.5)
        values: np.ndarray
        if np.issubdtype(dtype, np.integer):
            lo = 0 if np.issubdtype(dtype, np.unsignedinteger) else -8
            if kind == "positive":
                values = rng.integers(1, 9, shape)
            elif kind == "nonzero":
                values = rng.integers(1, 9, shape) * rng.choice([-1, 1], shape)
                if lo == 0:
                    values = np.abs(values)
            elif kind == "small":
                values = rng.integers(max(lo, -3), 4, shape)
            else:
                values = rng.integers(lo, 9, shape)
            return np.asarray(values).astype(dtype)
        if kind == "positive":
            values = rng.uniform(0.1, 4.0, shape)
        elif kind == "unit":
            values = rng.uniform(-0.9, 0.9, shape)
        elif kind == "above1":
            values = rng.uniform(1.1, 4.0, shape)
        elif kind == "nonzero":
            values = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
        elif kind == "small":
            values = rng.integers(-3, 4, shape).astype(np.float64)
        else:
            values = rng.standard_normal(shape)
        array = np.asarray(values).astype(dtype)
        if kind == "special" and array.size >= 3:
            flat = array.reshape(-1)
            flat[:: max(1, array.size // 3)][:3] = [np.nan, np.inf, -np.inf]
        return array


def sid(shape: Sequence[int]) -> str:
    """``(3, 1, 5)`` -> ``"3x1x5"``; ``()`` -> ``"scalar"``."""
    return "x".join(str(d) for d in shape) if len(shape) else "scalar"


def x(name: str, value: np.ndarray) -> Arg:
    """A runtime input."""
    return Arg(name, value)


def c(name: str, value: Any, dtype: Any = None) -> Arg:
    """A constant (initializer) input."""
    return Arg(name, np.asarray(value, dtype=dtype), True)


def ints(values: Sequence[int]) -> np.ndarray:
    """A 1-D int64 array (shape, axes, pads, starts... inputs)."""
    return np.asarray(values, dtype=np.int64)


def case(
    op: str,
    variant: str,
    args: Sequence[Arg | None],
    *,
    dtype: np.dtype | str | None = None,
    attrs: Mapping[str, Any] | None = None,
    num_outputs: int = 1,
    opset: int = OPSET,
    tol: Tol = EXACT,
    ort: str = "",
) -> OpCase:
    """An OpCase; the id's dtype defaults to the first argument's."""
    first = next(a for a in args if a is not None)
    dt = np.dtype(dtype) if dtype is not None else first.value.dtype
    return OpCase(
        f"{op}/{variant}/{dt.name}",
        op,
        tuple(args),
        dict(attrs or {}),
        num_outputs,
        opset,
        tol,
        ort,
    )


# --------------------------------------------------------------------------
# elementwise: unary
# --------------------------------------------------------------------------

_UNARY_SHAPES = ((1,), (13,), (3, 1, 7))
_FLOATS = (F32, F16)

# op -> (value kind, tolerance, dtypes); the first dtype gets every shape.
_UNARY: dict[str, tuple[str, Tol, tuple[np.dtype, ...]]] = {
    "Abs": ("normal", EXACT, (F32, F16, F64, I32, I64)),
    "Neg": ("normal", EXACT, (F32, F16, I32, I64)),
    "Sign": ("normal", EXACT, (F32, I32)),
    "Floor": ("normal", EXACT, _FLOATS),
    "Ceil": ("normal", EXACT, _FLOATS),
    "Round": ("normal", EXACT, _FLOATS),
    "Relu": ("normal", EXACT, (F32, F16, F64, I32)),
    "Reciprocal": ("nonzero", ARITH, _FLOATS),
    "Sqrt": ("positive", ARITH, (F32, F16, F64)),
    "Exp": ("normal", MATH, (F32, F16, F64)),
    "Log": ("positive", MATH, (F32, F16, F64)),
    "Sigmoid": ("normal", MATH, (F32, F16, F64)),
    "Tanh": ("normal", MATH, (F32, F16, F64)),
    "Erf": ("normal", MATH, _FLOATS),
    "Sin": ("normal", MATH, _FLOATS),
    "Cos": ("normal", MATH, _FLOATS),
    "Tan": ("unit", MATH, (F32,)),
    "Asin": ("unit", MATH, (F32,)),
    "Acos": ("unit", MATH, (F32,)),
    "Atan": ("normal", MATH, (F32,)),
    "Sinh": ("normal", MATH, (F32,)),
    "Cosh": ("normal", MATH, (F32,)),
    "Asinh": ("normal", MATH, (F32,)),
    "Acosh": ("above1", MATH, (F32,)),
    "Atanh": ("unit", MATH, (F32,)),
    "Softplus": ("normal", MATH, _FLOATS),
    "Softsign": ("normal", MATH, _FLOATS),
    "Mish": ("normal", MATH, (F32,)),
    "HardSwish": ("normal", MATH, _FLOATS),
    "IsNaN": ("special", EXACT, _FLOATS),
    "IsInf": ("special", EXACT, _FLOATS),
}


_UNARY_OPSET = {"Mish": 18, "IsInf": 20, "IsNaN": 20}  # float16 IsNaN/IsInf: opset 20


@generates(*_UNARY)
def unary(op: str, data: Data) -> Iterator[OpCase]:
    """Shape-preserving one-input ops: sizes 1 and primes, every dtype."""
    kind, tol, dtypes = _UNARY[op]
    opset = _UNARY_OPSET.get(op, OPSET)
    for i, dt in enumerate(dtypes):
        for shape in _UNARY_SHAPES if i == 0 else ((2, 5),):
            args = [x("x", data(shape, dt, kind))]
            yield case(op, sid(shape), args, tol=tol, opset=opset)


@generates("Not")
def not_(op: str, data: Data) -> Iterator[OpCase]:
    """Logical not on bool tensors."""
    for shape in ((1,), (3, 1, 7)):
        yield case(op, sid(shape), [x("x", data(shape, BOOL))])


@generates("BitwiseNot")
def bitwise_not(op: str, data: Data) -> Iterator[OpCase]:
    """Bitwise not (opset 18) on signed and unsigned integers."""
    for dt in (I32, U8):
        yield case(op, "3x5", [x("x", data((3, 5), dt))], opset=18)


# op -> attribute sets (the first is the default); float32 gets every set.
_ACTIVATIONS: dict[str, tuple[dict[str, Any], ...]] = {
    "LeakyRelu": ({}, {"alpha": 0.2}, {"alpha": 1.5}),
    "Elu": ({}, {"alpha": 0.5}),
    "Celu": ({}, {"alpha": 2.0}),
    "Selu": ({}, {"alpha": 1.5, "gamma": 2.0}),
    "ThresholdedRelu": ({}, {"alpha": 0.3}),
    "HardSigmoid": ({}, {"alpha": 0.5, "beta": 0.1}),
}


def _attr_id(attrs: Mapping[str, Any]) -> str:
    if not attrs:
        return "default"
    return "-".join(f"{k}={v}" for k, v in attrs.items())


@generates(*_ACTIVATIONS)
def activation(op: str, data: Data) -> Iterator[OpCase]:
    """Activations with attribute values beyond their defaults."""
    for attrs in _ACTIVATIONS[op]:
        yield case(
            op,
            f"3x1x7-{_attr_id(attrs)}",
            [x("x", data((3, 1, 7), F32))],
            attrs=attrs,
            tol=MATH,
        )
    if op != "Celu":  # Celu is float32-only in ONNX
        yield case(op, "2x5-default", [x("x", data((2, 5), F16))], tol=MATH)


@generates("Gelu")
def gelu(op: str, data: Data) -> Iterator[OpCase]:
    """Gelu (opset 20), exact erf form and tanh approximation."""
    for approx in ("none", "tanh"):
        for dt in _FLOATS:
            yield case(
                op,
                f"3x7-{approx}",
                [x("x", data((3, 7), dt))],
                attrs={"approximate": approx},
                opset=20,
                tol=MATH,
            )


@generates("Clip")
def clip(op: str, data: Data) -> Iterator[OpCase]:
    """Clip with min and max as constant, runtime or omitted inputs."""
    v = data((3, 1, 7), F32)
    lo, hi = c("lo", -0.5, F32), c("hi", 0.7, F32)
    yield case(op, "min-max", [x("x", v), lo, hi])
    yield case(op, "min-only", [x("x", v), lo])
    yield case(op, "max-only", [x("x", v), None, hi])
    yield case(op, "no-bounds", [x("x", v)])
    yield case(
        op,
        "min-max-runtime",
        [x("x", v), x("lo", np.asarray(-0.3, F32)), x("hi", np.asarray(0.4, F32))],
    )
    yield case(
        op, "min-max", [x("x", data((2, 5), I32)), c("lo", -2, I32), c("hi", 3, I32)]
    )
    yield case(
        op,
        "min-max",
        [x("x", data((2, 5), F16)), c("lo", -0.5, F16), c("hi", 0.7, F16)],
    )


@generates("PRelu")
def prelu(op: str, data: Data) -> Iterator[OpCase]:
    """PRelu with per-channel, last-axis and scalar slopes."""
    v = data((2, 3, 4, 5), F32)
    yield case(op, "slope-c3x1x1", [x("x", v), c("slope", data((3, 1, 1), F32))])
    yield case(op, "slope-5", [x("x", v), c("slope", data((5,), F32))])
    yield case(op, "slope-1", [x("x", v), c("slope", data((1,), F32))])
    yield case(op, "slope-runtime", [x("x", v), x("slope", data((3, 1, 1), F32))])


# --------------------------------------------------------------------------
# elementwise: binary and variadic
# --------------------------------------------------------------------------

_BCAST = (
    ((3, 1, 5), (5,)),
    ((1,), (2, 7)),
    ((2, 3, 5), (2, 3, 5)),
    ((4, 1), (1, 3)),
    ((2, 3), ()),
)


def _pair_id(a: Sequence[int], b: Sequence[int], const: bool = False) -> str:
    return f"{sid(a)}+{'c' if const else ''}{sid(b)}"


# op -> (kind of the second operand, tolerance, extra dtypes)
_ARITH: dict[str, tuple[str, Tol, tuple[np.dtype, ...]]] = {
    "Add": ("normal", ARITH, (I32, I64, F16, F64)),
    "Sub": ("normal", ARITH, (I32, I64, F16)),
    "Mul": ("normal", ARITH, (I32, I64, F16)),
    "Div": ("nonzero", ARITH, (I32, I64, F16)),
}


@generates(*_ARITH)
def arithmetic(op: str, data: Data) -> Iterator[OpCase]:
    """Binary arithmetic: every broadcast pair, constant operands, every dtype."""
    kind, tol, dtypes = _ARITH[op]
    for sa, sb in _BCAST:
        yield case(
            op,
            _pair_id(sa, sb),
            [x("a", data(sa, F32)), x("b", data(sb, F32, kind))],
            tol=tol,
        )
    yield case(
        op,
        _pair_id((2, 3, 5), (3, 1), const=True),
        [x("a", data((2, 3, 5), F32)), c("b", data((3, 1), F32, kind))],
        tol=tol,
    )
    yield case(
        op,
        "c1x5+2x3x1",
        [c("a", data((1, 5), F32, kind)), x("b", data((2, 3, 1), F32, kind))],
        tol=tol,
    )
    for dt in dtypes:
        # Integer Div truncates toward zero: negative operands on both sides.
        yield case(
            op,
            "3x1x5+5",
            [x("a", data((3, 1, 5), dt)), x("b", data((5,), dt, kind))],
            tol=tol,
        )


@generates("Pow")
def pow_(op: str, data: Data) -> Iterator[OpCase]:
    """Pow: broadcast, constant exponents, integer exponent on a float base."""
    base = data((3, 1, 5), F32, "positive")
    yield case(op, "3x1x5+5", [x("a", base), x("b", data((5,), F32))], tol=MATH)
    yield case(
        op,
        "3x1x5+cscalar-2",
        [x("a", data((3, 1, 5), F32)), c("b", 2.0, F32)],
        tol=MATH,
    )
    yield case(op, "3x1x5+cscalar-0.5", [x("a", base), c("b", 0.5, F32)], tol=MATH)
    yield case(
        op,
        "3x1x5+int32-exponent",
        [x("a", data((3, 1, 5), F32)), x("b", data((5,), I32, "small") % 4)],
        tol=MATH,
    )
    yield case(
        op,
        "2x5+2x5",
        [
            x("a", data((2, 5), I32, "small")),
            x("b", np.abs(data((2, 5), I32, "small"))),
        ],
    )


@generates("Max", "Min", "Sum", "Mean")
def variadic(op: str, data: Data) -> Iterator[OpCase]:
    """Variadic ops with one, two and three broadcasting inputs."""
    tol = EXACT if op in ("Max", "Min") else ARITH
    shapes = ((3, 1, 5), (5,), (2, 1, 1, 1))
    for n in (1, 2, 3):
        args = [x(f"x{i}", data(s, F32)) for i, s in enumerate(shapes[:n])]
        yield case(op, f"{n}-inputs", args, tol=tol)
    yield case(
        op, "2-inputs", [x("x0", data((2, 5), F16)), x("x1", data((5,), F16))], tol=tol
    )
    if op in ("Max", "Min"):  # Sum and Mean are float-only in ONNX
        yield case(
            op, "2-inputs", [x("x0", data((2, 5), I32)), x("x1", data((5,), I32))]
        )


@generates("Mod")
def mod(op: str, data: Data) -> Iterator[OpCase]:
    """Mod: integer (sign of the divisor) and fmod (sign of the dividend)."""
    for dt in (I32, I64):
        args = [x("a", data((3, 5), dt)), x("b", data((5,), dt, "nonzero"))]
        yield case(op, "3x5+5-fmod0", args)
        yield case(op, "3x5+5-fmod1", args, attrs={"fmod": 1})
    yield case(
        op,
        "3x5+5-fmod1",
        [x("a", data((3, 5), F32) * 4), x("b", data((5,), F32, "nonzero"))],
        attrs={"fmod": 1},
        tol=ARITH,
    )


@generates("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual")
def compare(op: str, data: Data) -> Iterator[OpCase]:
    """Comparisons with ties (small integer values) and broadcasting."""
    for sa, sb in _BCAST[:4]:
        yield case(
            op,
            _pair_id(sa, sb),
            [x("a", data(sa, F32, "small")), x("b", data(sb, F32, "small"))],
        )
    yield case(
        op,
        "3x1x5+5",
        [x("a", data((3, 1, 5), I64, "small")), x("b", data((5,), I64, "small"))],
    )
    yield case(
        op,
        "3x5+c5",
        [x("a", data((3, 5), I32, "small")), c("b", data((5,), I32, "small"))],
    )
    if op == "Equal":
        yield case(op, "3x5+5", [x("a", data((3, 5), BOOL)), x("b", data((5,), BOOL))])


@generates("And", "Or", "Xor")
def logical(op: str, data: Data) -> Iterator[OpCase]:
    """Boolean logic with broadcasting."""
    for sa, sb in _BCAST[:4]:
        yield case(
            op, _pair_id(sa, sb), [x("a", data(sa, BOOL)), x("b", data(sb, BOOL))]
        )


@generates("BitwiseAnd", "BitwiseOr", "BitwiseXor")
def bitwise(op: str, data: Data) -> Iterator[OpCase]:
    """Bitwise ops (opset 18) on signed and unsigned integers."""
    for dt in (I32, U8):
        yield case(
            op, "3x5+5", [x("a", data((3, 5), dt)), x("b", data((5,), dt))], opset=18
        )


@generates("BitShift")
def bitshift(op: str, data: Data) -> Iterator[OpCase]:
    """BitShift both ways on unsigned integers."""
    for direction in ("LEFT", "RIGHT"):
        for dt in (U8, np.dtype("uint32")):
            yield case(
                op,
                f"3x5+5-{direction.lower()}",
                [x("a", data((3, 5), dt)), x("b", (data((5,), dt) % 4).astype(dt))],
                attrs={"direction": direction},
            )


@generates("Where")
def where(op: str, data: Data) -> Iterator[OpCase]:
    """Where with the condition, X and Y broadcasting against each other."""
    yield case(
        op,
        "3x1x5+5+3x1x1",
        [
            x("cond", data((3, 1, 5), BOOL)),
            x("a", data((5,), F32)),
            x("b", data((3, 1, 1), F32)),
        ],
        dtype=F32,
    )
    yield case(
        op,
        "4x1+1x3+scalar",
        [x("cond", data((4, 1), BOOL)), x("a", data((1, 3), I64)), c("b", 0, I64)],
        dtype=I64,
    )


# --------------------------------------------------------------------------
# linear algebra
# --------------------------------------------------------------------------


@generates("MatMul")
def matmul(op: str, data: Data) -> Iterator[OpCase]:
    """MatMul: 1-D promotion, batch broadcasting, constant weights, prime sizes."""
    pairs = (
        ((3, 4), (4, 5), False),
        ((1, 7), (7, 1), False),
        ((5, 13), (13, 1), True),
        ((2, 3, 4), (4, 5), True),
        ((2, 1, 3, 4), (3, 4, 2), False),
        ((4,), (4, 5), False),
        ((3, 4), (4,), True),
    )
    for sa, sb, const in pairs:
        b = data(sb, F32)
        yield case(
            op,
            _pair_id(sa, sb, const),
            [x("a", data(sa, F32)), c("b", b) if const else x("b", b)],
            tol=ACCUM,
        )
    yield case(
        op, "3x4+4x5", [x("a", data((3, 4), F16)), x("b", data((4, 5), F16))], tol=ACCUM
    )
    yield case(op, "3x4+4x5", [x("a", data((3, 4), I32)), x("b", data((4, 5), I32))])


@generates("Gemm")
def gemm(op: str, data: Data) -> Iterator[OpCase]:
    """Gemm: transposes, alpha/beta, every broadcast form of C, no C."""
    a, b = data((3, 4), F32), data((4, 5), F32)
    variants: tuple[tuple[str, list[Arg | None], dict[str, Any]], ...] = (
        ("c5", [x("a", a), c("b", b), c("c", data((5,), F32))], {}),
        ("c3x5-runtime", [x("a", a), x("b", b), x("c", data((3, 5), F32))], {}),
        ("c3x1", [x("a", a), c("b", b), c("c", data((3, 1), F32))], {}),
        ("c1x5", [x("a", a), c("b", b), c("c", data((1, 5), F32))], {}),
        ("cscalar", [x("a", a), c("b", b), c("c", data((), F32))], {}),
        ("no-c", [x("a", a), c("b", b)], {}),
        (
            "transA",
            [x("a", a.T.copy()), c("b", b), c("c", data((5,), F32))],
            {"transA": 1},
        ),
        (
            "transB",
            [x("a", a), c("b", b.T.copy()), c("c", data((5,), F32))],
            {"transB": 1},
        ),
        (
            "alpha0.5-beta2",
            [x("a", a), c("b", b), c("c", data((5,), F32))],
            {"alpha": 0.5, "beta": 2.0},
        ),
    )
    for name, args, attrs in variants:
        yield case(op, f"3x4x5-{name}", args, attrs=attrs, tol=ACCUM)


# --------------------------------------------------------------------------
# convolution and pooling
# --------------------------------------------------------------------------


@generates("Conv")
def conv(op: str, data: Data) -> Iterator[OpCase]:
    """Conv: pads, auto_pad modes, strides, dilations, groups, 1-D, bias."""
    xs = data((1, 3, 7, 7), F32)
    w = data((4, 3, 3, 3), F32)
    variants: tuple[tuple[str, dict[str, Any]], ...] = (
        ("k3", {}),
        ("k3-pad1", {"pads": [1, 1, 1, 1]}),
        ("k3-pads0112", {"pads": [0, 1, 1, 2]}),
        ("k3-s2", {"strides": [2, 2]}),
        ("k3-d2", {"dilations": [2, 2]}),
        ("k3-s2-same_upper", {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
        ("k3-s2-same_lower", {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
        ("k3-valid", {"auto_pad": "VALID"}),
        (
            "k3-s2-pad1-d2",
            {"strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [2, 2]},
        ),
    )
    for name, attrs in variants:
        yield case(
            op, f"1x3x7x7-{name}", [x("x", xs), c("w", w)], attrs=attrs, tol=ACCUM
        )
    yield case(
        op,
        "1x3x7x7-k3-bias",
        [x("x", xs), c("w", w), c("b", data((4,), F32))],
        attrs={"pads": [1, 1, 1, 1]},
        tol=ACCUM,
    )
    yield case(
        op,
        "1x3x7x7-depthwise",
        [x("x", xs), c("w", data((3, 1, 3, 3), F32))],
        attrs={"group": 3, "pads": [1, 1, 1, 1]},
        tol=ACCUM,
    )
    yield case(
        op,
        "1x4x5x5-group2",
        [x("x", data((1, 4, 5, 5), F32)), c("w", data((6, 2, 3, 3), F32))],
        attrs={"group": 2},
        tol=ACCUM,
    )
    yield case(
        op,
        "2x3x5x5-k1",
        [x("x", data((2, 3, 5, 5), F32)), c("w", data((5, 3, 1, 1), F32))],
        tol=ACCUM,
    )
    yield case(
        op,
        "1x3x7x7-k2x3",
        [x("x", xs), c("w", data((2, 3, 2, 3), F32))],
        attrs={"strides": [1, 2]},
        tol=ACCUM,
    )
    yield case(
        op,
        "1x2x11-conv1d-s2-pad1",
        [x("x", data((1, 2, 11), F32)), c("w", data((3, 2, 3), F32))],
        attrs={"strides": [2], "pads": [1, 1]},
        tol=ACCUM,
    )
    yield case(op, "1x3x7x7-w-runtime", [x("x", xs), x("w", w)], tol=ACCUM)
    yield case(
        op,
        "1x3x7x7-k3-pad1",
        [x("x", xs.astype(F16)), c("w", w.astype(F16))],
        attrs={"pads": [1, 1, 1, 1]},
        tol=ACCUM,
    )


@generates("ConvTranspose")
def conv_transpose(op: str, data: Data) -> Iterator[OpCase]:
    """ConvTranspose: strides, pads, output_padding, groups, bias."""
    xs = data((1, 2, 4, 4), F32)
    w = data((2, 3, 3, 3), F32)
    variants: tuple[tuple[str, dict[str, Any]], ...] = (
        ("k3", {}),
        ("k3-s2", {"strides": [2, 2]}),
        (
            "k3-s2-pad1-outpad1",
            {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
        ),
    )
    for name, attrs in variants:
        yield case(
            op, f"1x2x4x4-{name}", [x("x", xs), c("w", w)], attrs=attrs, tol=ACCUM
        )
    yield case(
        op,
        "1x2x4x4-k3-bias",
        [x("x", xs), c("w", w), c("b", data((3,), F32))],
        tol=ACCUM,
    )
    yield case(
        op,
        "1x4x3x3-group2",
        [x("x", data((1, 4, 3, 3), F32)), c("w", data((4, 1, 3, 3), F32))],
        attrs={"group": 2},
        tol=ACCUM,
    )


_POOLS: tuple[tuple[str, tuple[int, ...], dict[str, Any]], ...] = (
    ("k2-s2", (1, 2, 7, 7), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("k3-s1-pad1", (1, 2, 7, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    (
        "k3-s2-ceil",
        (1, 2, 8, 8),
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    ),
    (
        "k3-s2-same_upper",
        (1, 2, 8, 8),
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    ),
    (
        "k3-s2-same_lower",
        (1, 2, 8, 8),
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
    ),
    ("k3-pads0112", (1, 2, 7, 7), {"kernel_shape": [3, 3], "pads": [0, 1, 1, 2]}),
    ("1d-k3-s2", (1, 3, 11), {"kernel_shape": [3], "strides": [2]}),
)


@generates("MaxPool")
def max_pool(op: str, data: Data) -> Iterator[OpCase]:
    """MaxPool: padding, ceil mode, auto_pad, dilations, 1-D, uint8."""
    for name, shape, attrs in _POOLS:
        yield case(op, name, [x("x", data(shape, F32))], attrs=attrs)
    yield case(
        op,
        "k2-d2",
        [x("x", data((1, 2, 7, 7), F32))],
        attrs={"kernel_shape": [2, 2], "dilations": [2, 2]},
    )
    yield case(
        op,
        "k2-s2",
        [x("x", data((1, 2, 7, 7), U8))],
        attrs={"kernel_shape": [2, 2], "strides": [2, 2]},
    )


@generates("AveragePool")
def average_pool(op: str, data: Data) -> Iterator[OpCase]:
    """AveragePool: padding counted or not, ceil mode, auto_pad, 1-D."""
    for name, shape, attrs in _POOLS:
        yield case(op, name, [x("x", data(shape, F32))], attrs=attrs, tol=ACCUM)
    yield case(
        op,
        "k3-s1-pad1-count_include_pad",
        [x("x", data((1, 2, 7, 7), F32))],
        attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        tol=ACCUM,
    )


@generates("GlobalAveragePool", "GlobalMaxPool")
def global_pool(op: str, data: Data) -> Iterator[OpCase]:
    """Global pools over 2-D, 1-D and already-1x1 spatial dims."""
    tol = ACCUM if op == "GlobalAveragePool" else EXACT
    for shape in ((1, 3, 5, 7), (2, 4, 1, 1), (1, 2, 13)):
        yield case(op, sid(shape), [x("x", data(shape, F32))], tol=tol)


# --------------------------------------------------------------------------
# normalization and softmax
# --------------------------------------------------------------------------


@generates("BatchNormalization")
def batch_norm(op: str, data: Data) -> Iterator[OpCase]:
    """Inference BatchNormalization on 4-D and 2-D inputs."""
    for shape, eps in (((2, 3, 4, 5), None), ((5, 3), 1e-3)):
        args = [
            x("x", data(shape, F32)),
            c("scale", data((3,), F32)),
            c("bias", data((3,), F32)),
            c("mean", data((3,), F32)),
            c("var", data((3,), F32, "positive")),
        ]
        attrs = {} if eps is None else {"epsilon": eps}
        yield case(op, sid(shape), args, attrs=attrs, opset=15, tol=ACCUM)


@generates("InstanceNormalization")
def instance_norm(op: str, data: Data) -> Iterator[OpCase]:
    """InstanceNormalization on 4-D and 3-D inputs."""
    for shape in ((2, 3, 4, 5), (1, 2, 7)):
        ch = shape[1]
        args = [
            x("x", data(shape, F32)),
            c("scale", data((ch,), F32)),
            c("bias", data((ch,), F32)),
        ]
        yield case(op, sid(shape), args, tol=ACCUM)


@generates("LayerNormalization")
def layer_norm(op: str, data: Data) -> Iterator[OpCase]:
    """LayerNormalization over the last axis and over several axes."""
    v = data((2, 3, 8), F32)
    yield case(
        op,
        "2x3x8-axis-1",
        [x("x", v), c("scale", data((8,), F32)), c("bias", data((8,), F32))],
        attrs={"axis": -1},
        tol=ACCUM,
    )
    yield case(
        op,
        "2x3x8-axis1-no-bias",
        [x("x", v), c("scale", data((3, 8), F32))],
        attrs={"axis": 1},
        tol=ACCUM,
    )
    yield case(
        op,
        "2x3x8-axis-2-eps1e-3",
        [x("x", v), c("scale", data((3, 8), F32)), c("bias", data((3, 8), F32))],
        attrs={"axis": -2, "epsilon": 1e-3},
        tol=ACCUM,
    )


@generates("Softmax", "LogSoftmax", "Hardmax")
def softmax(op: str, data: Data) -> Iterator[OpCase]:
    """Softmax family along negative, first and middle axes."""
    tol = EXACT if op == "Hardmax" else ACCUM
    v = data((2, 3, 5), F32)
    for axis in (-1, 0, 1):
        yield case(op, f"2x3x5-axis{axis}", [x("x", v)], attrs={"axis": axis}, tol=tol)
    yield case(
        op, "1x13-axis-1", [x("x", data((1, 13), F32))], attrs={"axis": -1}, tol=tol
    )
    yield case(
        op, "2x5-axis-1", [x("x", data((2, 5), F16))], attrs={"axis": -1}, tol=tol
    )


# --------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------

_REDUCE_KIND = {"ReduceLogSum": "positive", "ReduceProd": "nonzero"}
_REDUCE_INT = ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd")


@generates(
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSum",
    "ReduceLogSumExp",
)
def reduce(op: str, data: Data) -> Iterator[OpCase]:
    """Reductions (opset 18, axes as an input): negative axes, keepdims, all axes."""
    kind = _REDUCE_KIND.get(op, "normal")
    tol = EXACT if op in ("ReduceMax", "ReduceMin") else ACCUM
    v = data((2, 3, 5), F32, kind)
    for axes, keep in (((-1,), 1), ((0, 2), 0), ((1,), 1), (None, 0)):
        name = "all" if axes is None else ",".join(map(str, axes))
        args: list[Arg | None] = [x("x", v)]
        if axes is not None:
            args.append(c("axes", ints(axes)))
        yield case(
            op,
            f"2x3x5-axes{name}-keepdims{keep}",
            args,
            attrs={"keepdims": keep},
            opset=18,
            tol=tol,
        )
    yield case(
        op,
        "2x5-axes-1-keepdims1",
        [x("x", data((2, 5), F16, kind)), c("axes", ints([-1]))],
        opset=18,
        tol=tol,
    )
    if op in _REDUCE_INT:
        yield case(
            op,
            "2x3x5-axes1-keepdims0",
            [x("x", data((2, 3, 5), I32, "small")), c("axes", ints([1]))],
            attrs={"keepdims": 0},
            opset=18,
        )
    if op == "ReduceSum":
        yield case(
            op,
            "2x3x5-noop_with_empty_axes",
            [x("x", v)],
            attrs={"noop_with_empty_axes": 1},
            opset=18,
        )


@generates("ArgMax", "ArgMin")
def arg_reduce(op: str, data: Data) -> Iterator[OpCase]:
    """ArgMax/ArgMin: negative axes, keepdims, ties with select_last_index."""
    v = data((2, 3, 5), F32)
    yield case(op, "2x3x5-axis-1", [x("x", v)], attrs={"axis": -1})
    yield case(
        op, "2x3x5-axis0-keepdims0", [x("x", v)], attrs={"axis": 0, "keepdims": 0}
    )
    ties = data((3, 7), I32, "small")
    yield case(op, "3x7-ties-first", [x("x", ties)], attrs={"axis": 1})
    yield case(
        op, "3x7-ties-last", [x("x", ties)], attrs={"axis": 1, "select_last_index": 1}
    )


# --------------------------------------------------------------------------
# data movement (all exact)
# --------------------------------------------------------------------------


@generates("Reshape")
def reshape(op: str, data: Data) -> Iterator[OpCase]:
    """Reshape with -1, 0 (copy a dim) and added unit dims."""
    v = data((2, 3, 4), F32)
    for shape in ((4, -1), (0, -1), (1, 2, 12, 1), (-1,)):
        yield case(
            op,
            f"2x3x4-to-{','.join(map(str, shape))}",
            [x("x", v), c("shape", ints(shape))],
        )
    yield case(op, "6-to-1,2,3", [x("x", data((6,), I64)), c("shape", ints((1, 2, 3)))])


@generates("Transpose")
def transpose(op: str, data: Data) -> Iterator[OpCase]:
    """Transpose with the default (reversing) and explicit permutations."""
    v = data((2, 3, 4), F32)
    yield case(op, "2x3x4-default", [x("x", v)])
    yield case(op, "2x3x4-perm1,0,2", [x("x", v)], attrs={"perm": [1, 0, 2]})
    yield case(
        op,
        "1x2x3x5-perm0,2,3,1",
        [x("x", data((1, 2, 3, 5), F32))],
        attrs={"perm": [0, 2, 3, 1]},
    )
    yield case(op, "3x5-default", [x("x", data((3, 5), I64))])


@generates("Squeeze", "Unsqueeze")
def squeeze(op: str, data: Data) -> Iterator[OpCase]:
    """Squeeze/Unsqueeze with negative axes, several axes, and (Squeeze) none."""
    if op == "Squeeze":
        v = data((1, 3, 1, 5), F32)
        yield case(op, "1x3x1x5-axes-2", [x("x", v), c("axes", ints([-2]))])
        yield case(op, "1x3x1x5-axes0,2", [x("x", v), c("axes", ints([0, 2]))])
        yield case(op, "1x3x1x5-all", [x("x", v)])
    else:
        yield case(
            op, "3x5-axes0,-1", [x("x", data((3, 5), F32)), c("axes", ints([0, -1]))]
        )
        yield case(op, "3-axes1", [x("x", data((3,), I64)), c("axes", ints([1]))])
        yield case(op, "scalar-axes0", [x("x", data((), F32)), c("axes", ints([0]))])


@generates("Flatten")
def flatten(op: str, data: Data) -> Iterator[OpCase]:
    """Flatten at the first, a middle, the last and a negative axis."""
    v = data((2, 3, 4, 5), F32)
    for axis in (0, 1, -1, 4):
        yield case(op, f"2x3x4x5-axis{axis}", [x("x", v)], attrs={"axis": axis})


@generates("Concat")
def concat(op: str, data: Data) -> Iterator[OpCase]:
    """Concat along negative and first axes, with a constant input."""
    yield case(
        op,
        "2x3+2x5-axis-1",
        [x("a", data((2, 3), F32)), x("b", data((2, 5), F32))],
        attrs={"axis": -1},
    )
    yield case(
        op,
        "1x4+c2x4+3x4-axis0",
        [
            x("a", data((1, 4), F32)),
            c("b", data((2, 4), F32)),
            x("c", data((3, 4), F32)),
        ],
        attrs={"axis": 0},
    )
    yield case(
        op,
        "2x3+2x1-axis1",
        [x("a", data((2, 3), I64)), x("b", data((2, 1), I64))],
        attrs={"axis": 1},
    )
    yield case(
        op,
        "2x3+2x5-axis-1",
        [x("a", data((2, 3), F16)), x("b", data((2, 5), F16))],
        attrs={"axis": -1},
    )


@generates("Split")
def split(op: str, data: Data) -> Iterator[OpCase]:
    """Split (opset 18): even, uneven num_outputs, explicit sizes, negative axis."""
    yield case(
        op,
        "6x4-axis0-n3",
        [x("x", data((6, 4), F32))],
        attrs={"axis": 0, "num_outputs": 3},
        num_outputs=3,
        opset=18,
    )
    yield case(
        op,
        "7x3-axis0-n3-uneven",
        [x("x", data((7, 3), F32))],
        attrs={"axis": 0, "num_outputs": 3},
        num_outputs=3,
        opset=18,
    )
    yield case(
        op,
        "2x3-axis-1-split1,2",
        [x("x", data((2, 3), F32)), c("split", ints([1, 2]))],
        attrs={"axis": -1},
        num_outputs=2,
        opset=18,
    )


@generates("Slice")
def slice_(op: str, data: Data) -> Iterator[OpCase]:
    """Slice: negative starts/ends, negative steps, clamping, negative axes."""
    v = data((5, 7), F32)
    variants = (
        ("start1-end-1-axis1", (1,), (-1,), (1,), None),
        ("reverse-step-2", (-1,), (-6,), (1,), (-2,)),
        ("clamp-0-to-100", (0,), (100,), (0,), None),
        ("axes-2,-1", (1, 2), (4, 6), (-2, -1), (2, 3)),
        ("full-reverse", (-1,), (-(2**62),), (0,), (-1,)),
    )
    for name, starts, ends, axes, steps in variants:
        args: list[Arg | None] = [
            x("x", v),
            c("starts", ints(starts)),
            c("ends", ints(ends)),
            c("axes", ints(axes)),
        ]
        if steps is not None:
            args.append(c("steps", ints(steps)))
        yield case(op, f"5x7-{name}", args)
    yield case(
        op,
        "2x3x4-axis1",
        [
            x("x", data((2, 3, 4), I64)),
            c("starts", ints([1])),
            c("ends", ints([3])),
            c("axes", ints([1])),
        ],
    )


@generates("Gather")
def gather(op: str, data: Data) -> Iterator[OpCase]:
    """Gather with negative indices, 2-D and 0-d indices, runtime indices."""
    v = data((5, 4), F32)
    yield case(
        op, "5x4-axis0-neg", [x("x", v), c("i", ints([0, -1, 2]))], attrs={"axis": 0}
    )
    yield case(
        op,
        "5x4-axis-1-2d",
        [x("x", v), c("i", np.asarray([[0, 1], [3, -2]], np.int64))],
        attrs={"axis": -1},
    )
    yield case(
        op,
        "5x4-axis1-scalar",
        [x("x", v), c("i", np.asarray(2, np.int64))],
        attrs={"axis": 1},
    )
    yield case(
        op,
        "5x4-axis0-runtime",
        [x("x", v), x("i", np.asarray([4, 0, 4], np.int64))],
        attrs={"axis": 0},
    )
    yield case(
        op,
        "6x3-axis0-int32-idx",
        [x("x", data((6, 3), I64)), c("i", np.asarray([5, 1], np.int32))],
    )


@generates("GatherElements")
def gather_elements(op: str, data: Data) -> Iterator[OpCase]:
    """GatherElements along both axes, with negative indices."""
    v = data((3, 4), F32)
    yield case(
        op,
        "3x4-axis1",
        [x("x", v), c("i", np.asarray([[0, -1], [2, 1], [3, 0]], np.int64))],
        attrs={"axis": 1},
    )
    yield case(
        op,
        "3x4-axis0",
        [x("x", v), c("i", np.asarray([[0, 2, 1, -1]], np.int64))],
        attrs={"axis": 0},
    )


@generates("GatherND")
def gather_nd(op: str, data: Data) -> Iterator[OpCase]:
    """GatherND with slices, full indices, and batch_dims=1."""
    v = data((2, 3, 4), F32)
    yield case(
        op, "2x3x4-idx2x1", [x("x", v), c("i", np.asarray([[1], [0]], np.int64))]
    )
    yield case(
        op, "2x3x4-idx2x2", [x("x", v), c("i", np.asarray([[1, 2], [0, 1]], np.int64))]
    )
    yield case(
        op,
        "2x3x4-batch1",
        [x("x", v), c("i", np.asarray([[2], [0]], np.int64))],
        attrs={"batch_dims": 1},
    )


@generates("Expand")
def expand(op: str, data: Data) -> Iterator[OpCase]:
    """Expand to larger ranks, with 1s in the target shape."""
    yield case(
        op, "3x1-to-2,3,4", [x("x", data((3, 1), F32)), c("shape", ints([2, 3, 4]))]
    )
    yield case(op, "1-to-5", [x("x", data((1,), I64)), c("shape", ints([5]))])
    yield case(
        op,
        "2x1x3-to-2,4,1",
        [x("x", data((2, 1, 3), F32)), c("shape", ints([2, 4, 1]))],
    )


@generates("Tile")
def tile(op: str, data: Data) -> Iterator[OpCase]:
    """Tile along one and several axes."""
    yield case(op, "2x3-repeats2,1", [x("x", data((2, 3), F32)), c("r", ints([2, 1]))])
    yield case(
        op,
        "1x2x3-repeats1,3,2",
        [x("x", data((1, 2, 3), I64)), c("r", ints([1, 3, 2]))],
    )


@generates("Pad")
def pad(op: str, data: Data) -> Iterator[OpCase]:
    """Pad (opset 18): every mode, asymmetric and negative pads, axes input."""
    v = data((3, 4), F32)
    yield case(op, "3x4-constant", [x("x", v), c("pads", ints([0, 1, 1, 2]))], opset=18)
    yield case(
        op,
        "3x4-constant-value1.5",
        [x("x", v), c("pads", ints([1, 0, 0, 1])), c("value", 1.5, F32)],
        opset=18,
    )
    for mode in ("reflect", "edge", "wrap"):
        yield case(
            op,
            f"3x4-{mode}",
            [x("x", v), c("pads", ints([1, 2, 2, 1]))],
            attrs={"mode": mode},
            opset=19 if mode == "wrap" else 18,
        )
    yield case(
        op, "3x4-negative", [x("x", v), c("pads", ints([0, -1, 1, 0]))], opset=18
    )
    yield case(
        op,
        "1x2x3x3-axes-2,-1",
        [
            x("x", data((1, 2, 3, 3), F32)),
            c("pads", ints([1, 0, 1, 2])),
            None,
            c("axes", ints([-2, -1])),
        ],
        attrs={"mode": "reflect"},
        opset=18,
    )


@generates("DepthToSpace", "SpaceToDepth")
def depth_space(op: str, data: Data) -> Iterator[OpCase]:
    """DepthToSpace in both modes; SpaceToDepth."""
    if op == "DepthToSpace":
        v = data((1, 8, 2, 3), F32)
        for mode in ("DCR", "CRD"):
            yield case(
                op,
                f"1x8x2x3-b2-{mode}",
                [x("x", v)],
                attrs={"blocksize": 2, "mode": mode},
            )
    else:
        yield case(
            op, "1x2x4x6-b2", [x("x", data((1, 2, 4, 6), F32))], attrs={"blocksize": 2}
        )


@generates("Identity", "Dropout")
def passthrough(op: str, data: Data) -> Iterator[OpCase]:
    """Identity, and Dropout in inference mode (also the identity)."""
    yield case(op, "3x5", [x("x", data((3, 5), F32))])


# (from, to, value kind): float -> int truncates toward zero, float -> bool is != 0.
_CASTS: tuple[tuple[np.dtype, np.dtype, str], ...] = (
    (F32, I32, "normal"),
    (F32, F16, "normal"),
    (F32, F64, "normal"),
    (I64, F32, "normal"),
    (F32, BOOL, "small"),
    (BOOL, F32, "normal"),
    (I32, I64, "normal"),
    (F16, F32, "normal"),
    (U8, I32, "normal"),
)


@generates("Cast")
def cast(op: str, data: Data) -> Iterator[OpCase]:
    """Cast between float, integer and bool dtypes."""
    for src, dst, kind in _CASTS:
        v = data((3, 5), src, kind)
        if src.kind == "f" and dst.kind in "iu":
            v = (v * 5).astype(src)
        yield case(
            op,
            f"3x5-to-{dst.name}",
            [x("x", v)],
            attrs={"to": helper.np_dtype_to_tensor_dtype(dst)},
        )


@generates("CastLike")
def cast_like(op: str, data: Data) -> Iterator[OpCase]:
    """CastLike from float32 to the dtype of an int64 constant."""
    v = (data((3, 5), F32) * 5).astype(F32)
    yield case(op, "3x5-like-int64", [x("x", v), c("like", np.zeros(1, np.int64))])


@generates("Resize")
def resize(op: str, data: Data) -> Iterator[OpCase]:
    """Resize (opset 18): nearest and linear modes, scales and sizes, cubic."""
    v = data((1, 2, 3, 4), F32)
    scales = c("scales", np.asarray([1, 1, 2, 2], np.float32))
    variants: tuple[tuple[str, list[Arg | None], dict[str, Any]], ...] = (
        (
            "nearest-scales2-asymmetric-floor",
            [x("x", v), None, scales],
            {
                "mode": "nearest",
                "coordinate_transformation_mode": "asymmetric",
                "nearest_mode": "floor",
            },
        ),
        (
            "nearest-sizes5x7-half_pixel",
            [x("x", v), None, None, c("sizes", ints([1, 2, 5, 7]))],
            {"mode": "nearest"},
        ),
        ("linear-scales2-half_pixel", [x("x", v), None, scales], {"mode": "linear"}),
        (
            "linear-sizes5x6-align_corners",
            [x("x", v), None, None, c("sizes", ints([1, 2, 5, 6]))],
            {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
        ),
        (
            "linear-scales0.5-pytorch_half_pixel",
            [
                x("x", data((1, 2, 6, 8), F32)),
                None,
                c("scales", np.asarray([1, 1, 0.5, 0.5], np.float32)),
            ],
            {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
        ),
        ("cubic-scales2", [x("x", v), None, scales], {"mode": "cubic"}),
    )
    for name, args, attrs in variants:
        yield case(op, f"1x2x3x4-{name}", args, attrs=attrs, opset=18, tol=ACCUM)
