"""Element types: the one place where dtype names, numpy dtypes and ONNX codes meet.

byoc names element types by their numpy name ("float32", "int64", "bool"). Every
other module parses dtypes through :func:`dtype_name` so the spelling is uniform
in graphs, artifacts and error messages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ByocError

# ONNX TensorProto.DataType codes for the element types byoc can hold in numpy.
_ONNX_CODES: dict[str, int] = {
    "float32": 1,
    "uint8": 2,
    "int8": 3,
    "uint16": 4,
    "int16": 5,
    "int32": 6,
    "int64": 7,
    "bool": 9,
    "float16": 10,
    "float64": 11,
    "uint32": 12,
    "uint64": 13,
}
_FROM_ONNX = {code: name for name, code in _ONNX_CODES.items()}

DTYPES: tuple[str, ...] = tuple(sorted(_ONNX_CODES))
"""Every element type byoc stores and moves between backends."""

UNKNOWN = "unknown"
"""Placeholder dtype for tensors whose type the importer could not infer."""


class DTypeError(ByocError, TypeError):
    """A dtype byoc does not know (or cannot store) was given."""


def dtype_name(value: Any) -> str:
    """Canonical byoc name of ``value`` (a name, numpy dtype/type, or ONNX code)."""
    if isinstance(value, str) and value in _ONNX_CODES:
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        try:
            return _FROM_ONNX[int(value)]
        except KeyError:
            raise DTypeError(
                f"ONNX element type {int(value)} is not supported; byoc handles "
                f"{', '.join(DTYPES)}"
            ) from None
    try:
        name = np.dtype(value).name
    except (TypeError, ValueError):
        name = None
    if name in _ONNX_CODES:
        return name
    raise DTypeError(f"unsupported dtype {value!r}; byoc handles {', '.join(DTYPES)}")


def to_numpy(name: str) -> np.dtype:
    """numpy dtype for a byoc dtype name."""
    return np.dtype(dtype_name(name))


def onnx_code(name: str) -> int:
    """ONNX TensorProto.DataType code for a byoc dtype name."""
    return _ONNX_CODES[dtype_name(name)]
