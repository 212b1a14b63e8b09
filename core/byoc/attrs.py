"""Typed node attributes, symbolic dimension expressions, and plugin codecs.

Every attribute value in a graph is encoded as ``[tag, payload]`` where the payload
is plain data (JSON- and msgpack-safe), so graphs round-trip exactly through both
``Graph.to_json`` and the artifact header, and nothing is ever pickled. Types the
core does not know are handled by :class:`AttrCodec` objects that plugins register;
their tags contain a dot (``"vendor.thing"``) so they can never clash with the
built-in tags below.

:class:`Sym` is a small integer expression over named dimensions (``"batch"``,
``"seq"``). The importer folds shape arithmetic such as ``Range(0, Shape(x)[1], 1)``
into these, and the driver evaluates them at run time once input shapes are known.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .dtypes import DTypeError, dtype_name, to_numpy
from .errors import ByocError, FormatError, InputError, PluginError

MAX_DEPTH = 32
"""Deepest nesting of lists/expressions/graphs a decoder accepts (hostile files)."""

# --------------------------------------------------------------------------
# symbolic expressions
# --------------------------------------------------------------------------

SymLike = Union["Sym", int]


def _trunc_div(a: int, b: int) -> int:
    # ONNX integer Div truncates toward zero; keep that meaning for folded shapes.
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


_BINARY_OPS: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": _trunc_div,
    "max": max,
    "min": min,
}


@dataclass(frozen=True)
class Sym:
    """An integer expression over named dims: ``Sym.dim("seq") - 1``.

    ``op`` is ``"dim"`` (``args == (name,)``) or a binary op in
    ``add sub mul div max min`` with two operands, each a ``Sym`` or an ``int``.
    Arithmetic with ints folds eagerly, so ``Sym.dim("n") * 1`` is ``Sym.dim("n")``.
    """

    op: str
    args: tuple[Any, ...]

    @staticmethod
    def dim(name: str) -> Sym:
        """The value of the named dimension, bound from input shapes at run time."""
        return Sym("dim", (name,))

    @staticmethod
    def binary(op: str, a: SymLike, b: SymLike) -> SymLike:
        """``a <op> b``, folded to an int when both sides are ints."""
        if op not in _BINARY_OPS:
            raise ValueError(f"unknown Sym op {op!r}")
        if isinstance(a, int) and isinstance(b, int):
            if op == "div" and b == 0:
                raise ZeroDivisionError("division by zero in a shape expression")
            return _BINARY_OPS[op](a, b)
        if op in ("add", "sub") and b == 0:
            return a
        if op == "add" and a == 0:
            return b
        if op in ("mul", "div") and b == 1:
            return a
        if op == "mul" and a == 1:
            return b
        return Sym(op, (a, b))

    def __add__(self, other: SymLike) -> SymLike:
        return Sym.binary("add", self, other)

    def __radd__(self, other: SymLike) -> SymLike:
        return Sym.binary("add", other, self)

    def __sub__(self, other: SymLike) -> SymLike:
        return Sym.binary("sub", self, other)

    def __rsub__(self, other: SymLike) -> SymLike:
        return Sym.binary("sub", other, self)

    def __mul__(self, other: SymLike) -> SymLike:
        return Sym.binary("mul", self, other)

    def __rmul__(self, other: SymLike) -> SymLike:
        return Sym.binary("mul", other, self)

    def dims(self) -> Iterator[str]:
        """Names of every dimension the expression reads."""
        if self.op == "dim":
            yield self.args[0]
            return
        for arg in self.args:
            if isinstance(arg, Sym):
                yield from arg.dims()

    def __str__(self) -> str:
        if self.op == "dim":
            return str(self.args[0])
        a, b = (str(x) for x in self.args)
        if self.op in ("max", "min"):
            return f"{self.op}({a}, {b})"
        sign = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[self.op]
        return f"({a} {sign} {b})"


def evaluate(value: SymLike, dims: Mapping[str, int]) -> int:
    """Integer value of ``value`` with every named dim taken from ``dims``."""
    if isinstance(value, int):
        return value
    if value.op == "dim":
        name = value.args[0]
        if name not in dims:
            raise InputError(
                f"shape expression needs dim {name!r}, which no input binds; "
                f"bound dims: {dict(dims)}",
                dim=name,
            )
        return dims[name]
    a, b = (evaluate(arg, dims) for arg in value.args)
    if value.op == "div" and b == 0:
        raise InputError(
            f"shape expression {value} divides by zero for dims {dict(dims)}"
        )
    return _BINARY_OPS[value.op](a, b)


# --------------------------------------------------------------------------
# small tensors
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorAttr:
    """A small constant tensor held inside an attribute (e.g. ConstantOfShape's value).

    Stored as raw little-endian bytes so equality and hashing are exact; large
    tensors belong in the constant table, not in attributes.
    """

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    @staticmethod
    def from_array(array: np.ndarray) -> TensorAttr:
        """Capture ``array`` (copied, little-endian, C order)."""
        arr = np.asarray(array, order="C")
        name = dtype_name(arr.dtype)
        arr = arr.astype(to_numpy(name).newbyteorder("<"), copy=False)
        return TensorAttr(name, tuple(int(d) for d in arr.shape), arr.tobytes())

    def array(self) -> np.ndarray:
        """A read-only numpy view of the data."""
        dt = to_numpy(self.dtype).newbyteorder("<")
        return np.frombuffer(self.data, dtype=dt).reshape(self.shape)


# --------------------------------------------------------------------------
# plugin codecs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AttrCodec:
    """How a plugin stores attribute values of a type the core does not know.

    ``encode`` must return plain data (None, bool, int, float, str, lists, and dicts
    with str keys); ``decode`` turns that back into the value. ``tag`` must contain
    a dot, e.g. ``"acme.tile_config"``. ``plugin`` is filled in by the registry
    with the distribution that registered the codec, so a file that needs it can
    name what to install.
    """

    tag: str
    type: type
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    plugin: str = ""


_BUILTIN_TAGS = frozenset(
    {
        "bool",
        "int",
        "float",
        "str",
        "bytes",
        "ints",
        "floats",
        "strs",
        "list",
        "dtype",
        "tensor",
        "expr",
        "graph",
    }
)


def is_plain(obj: Any, depth: int = 0) -> bool:
    """True for JSON/msgpack-safe data: None, bool, int, float, str, list, dict."""
    if depth > MAX_DEPTH:
        return False
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return True
    if isinstance(obj, list):
        return all(is_plain(x, depth + 1) for x in obj)
    if isinstance(obj, dict):
        return all(
            isinstance(k, str) and is_plain(v, depth + 1) for k, v in obj.items()
        )
    return False


def _int64(x: int) -> int:
    # Both encodings (and ONNX) carry 64-bit integers; refuse wider ones early.
    if not -(2**63) <= x < 2**63:
        raise ValueError(f"attribute integer {x} does not fit in int64")
    return x


def _enc_float(x: float) -> float | str:
    # JSON has no NaN/Infinity; spell them as strings so both encodings agree.
    return x if math.isfinite(x) else repr(x)


def _dec_float(x: Any) -> float:
    if isinstance(x, str) and x in ("nan", "inf", "-inf"):
        return float(x)
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    raise FormatError(f"bad float attribute payload {x!r}")


def _enc_expr(value: SymLike) -> Any:
    if isinstance(value, int):
        return _int64(value)
    if value.op == "dim":
        return ["dim", value.args[0]]
    return [value.op, _enc_expr(value.args[0]), _enc_expr(value.args[1])]


def _dec_expr(obj: Any, depth: int = 0) -> SymLike:
    if depth > MAX_DEPTH:
        raise FormatError("shape expression nested too deeply")
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj
    if (
        isinstance(obj, list)
        and len(obj) == 2
        and obj[0] == "dim"
        and isinstance(obj[1], str)
    ):
        return Sym.dim(obj[1])
    if isinstance(obj, list) and len(obj) == 3 and obj[0] in _BINARY_OPS:
        return Sym(obj[0], (_dec_expr(obj[1], depth + 1), _dec_expr(obj[2], depth + 1)))
    raise FormatError(f"bad shape expression {obj!r:.80}")


def encode_attr(value: Any, codecs: Mapping[str, AttrCodec] | None = None) -> list[Any]:
    """``[tag, payload]`` for ``value``; plugin types go through ``codecs``."""
    from .graph import Graph  # graph.py imports this module

    if isinstance(value, bool | np.bool_):
        return ["bool", bool(value)]
    if isinstance(value, int | np.integer):
        return ["int", _int64(int(value))]
    if isinstance(value, float | np.floating):
        return ["float", _enc_float(float(value))]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, bytes):
        return ["bytes", base64.b64encode(value).decode("ascii")]
    if isinstance(value, np.dtype):
        return ["dtype", dtype_name(value)]
    if isinstance(value, TensorAttr):
        return [
            "tensor",
            [
                value.dtype,
                list(value.shape),
                base64.b64encode(value.data).decode("ascii"),
            ],
        ]
    if isinstance(value, Sym):
        return ["expr", _enc_expr(value)]
    if isinstance(value, Graph):
        return ["graph", value.to_dict(codecs)]
    if isinstance(value, tuple):
        kinds = {type(v) for v in value}
        if value and kinds == {int}:
            return ["ints", [_int64(v) for v in value]]
        if value and kinds == {float}:
            return ["floats", [_enc_float(v) for v in value]]
        if value and kinds == {str}:
            return ["strs", list(value)]
        return ["list", [encode_attr(v, codecs) for v in value]]
    if isinstance(value, list):
        raise TypeError("attribute sequences must be tuples (graphs are immutable)")
    if codecs is None:
        from .registry import get_registry

        codecs = get_registry().codecs()
    for codec in codecs.values():
        if isinstance(value, codec.type):
            payload = codec.encode(value)
            if not is_plain(payload):
                raise PluginError(
                    f"attribute codec {codec.tag!r} (from "
                    f"{codec.plugin or 'unknown plugin'}) "
                    f"encoded a {type(value).__name__} into non-plain data; encode "
                    "must "
                    "return None/bool/int/float/str/list/dict",
                    codec=codec.tag,
                )
            return [codec.tag, payload]
    raise TypeError(
        f"no attribute encoding for {type(value).__name__}; register an AttrCodec "
        "through the byoc_register_codecs hook"
    )


def decode_attr(
    obj: Any,
    codecs: Mapping[str, AttrCodec] | None = None,
    plugins: Mapping[str, str] | None = None,
    depth: int = 0,
) -> Any:
    """Inverse of :func:`encode_attr`; raises :class:`FormatError` on bad data.

    ``plugins`` maps codec tags to the distribution that wrote them (from the
    artifact header) so a missing codec names the package to install.
    """
    if depth > MAX_DEPTH:
        raise FormatError("attribute nested too deeply")
    if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str)):
        raise FormatError(f"attribute must be [tag, payload], got {obj!r:.80}")
    tag, payload = obj
    try:
        return _decode_payload(tag, payload, codecs, plugins, depth)
    except DTypeError as exc:
        raise FormatError(f"bad {tag!r} attribute payload: {exc}") from exc
    except ByocError:
        raise
    except Exception as exc:  # malformed payloads surface as many built-in errors
        raise FormatError(f"bad {tag!r} attribute payload: {exc}") from exc


def _decode_payload(
    tag: str,
    payload: Any,
    codecs: Mapping[str, AttrCodec] | None,
    plugins: Mapping[str, str] | None,
    depth: int,
) -> Any:
    def need(cond: bool) -> None:
        if not cond:
            raise FormatError(f"bad {tag!r} attribute payload {payload!r:.80}")

    if tag == "bool":
        need(isinstance(payload, bool))
        return payload
    if tag == "int":
        need(isinstance(payload, int) and not isinstance(payload, bool))
        return payload
    if tag == "float":
        return _dec_float(payload)
    if tag == "str":
        need(isinstance(payload, str))
        return payload
    if tag == "bytes":
        need(isinstance(payload, str))
        return base64.b64decode(payload, validate=True)
    if tag == "ints":
        need(
            isinstance(payload, list)
            and all(isinstance(x, int) and not isinstance(x, bool) for x in payload)
        )
        return tuple(payload)
    if tag == "floats":
        need(isinstance(payload, list))
        return tuple(_dec_float(x) for x in payload)
    if tag == "strs":
        need(isinstance(payload, list) and all(isinstance(x, str) for x in payload))
        return tuple(payload)
    if tag == "list":
        need(isinstance(payload, list))
        return tuple(decode_attr(x, codecs, plugins, depth + 1) for x in payload)
    if tag == "dtype":
        need(isinstance(payload, str))
        return to_numpy(payload)
    if tag == "tensor":
        need(isinstance(payload, list) and len(payload) == 3)
        dt, shape, data = payload
        need(isinstance(dt, str) and isinstance(shape, list) and isinstance(data, str))
        need(all(isinstance(d, int) and 0 <= d < 2**31 for d in shape))
        raw = base64.b64decode(data, validate=True)
        need(len(raw) == math.prod(shape) * to_numpy(dt).itemsize)
        return TensorAttr(dtype_name(dt), tuple(shape), raw)
    if tag == "expr":
        return _dec_expr(payload)
    if tag == "graph":
        from .graph import Graph

        return Graph.from_dict(payload, codecs, plugins, depth=depth + 1)
    if codecs is None:
        from .registry import get_registry

        codecs = get_registry().codecs()
    codec = codecs.get(tag)
    if codec is None:
        plugin = (plugins or {}).get(tag)
        if plugin:
            raise FormatError(
                f"attribute type {tag!r} needs the plugin {plugin!r}, which is not "
                f"installed or not loaded; install it (pip install {plugin}) or allow "
                "it in BYOC_LOAD_PLUGINS",
                plugin=plugin,
                codec=tag,
            )
        raise FormatError(
            f"unknown attribute type {tag!r}; it was written by a plugin codec that "
            "is not installed",
            codec=tag,
        )
    return codec.decode(payload)


def is_builtin_tag(tag: str) -> bool:
    """True for the tags the core encodes itself."""
    return tag in _BUILTIN_TAGS
