"""The reference op table: one function per ONNX op, keyed by op name.

Each op is ``fn(node, *inputs) -> tuple[np.ndarray, ...]``: ``node`` is the
JSONGraphNode (attributes in ``node.attrs``, output dtypes in ``node.dtypes``),
``inputs`` are numpy arrays, or None for omitted optional inputs. An op may
register a ``check(info) -> Support`` that refuses attribute values or dtypes it
does not implement, with the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import byoc

OpFn = Callable[..., tuple[np.ndarray, ...]]
CheckFn = Callable[[byoc.NodeInfo], byoc.Support]


@dataclass(frozen=True)
class OpEntry:
    """One registered op: the kernel and its optional support check."""

    fn: OpFn
    check: CheckFn | None = None


OPS: dict[str, OpEntry] = {}


def op(*names: str, check: CheckFn | None = None) -> Callable[[OpFn], OpFn]:
    """Register ``fn`` as the kernel of each ONNX op in ``names``.

    The registered kernel runs with numpy's floating-point warnings silenced:
    inf and NaN results (log(0), 0/0, overflow) are the defined IEEE outcome of
    the op, not something to report on every call.
    """

    def deco(fn: OpFn) -> OpFn:
        @functools.wraps(fn)
        def kernel(node: Any, *inputs: Any) -> tuple[np.ndarray, ...]:
            with np.errstate(all="ignore"):
                return fn(node, *inputs)

        for name in names:
            if name in OPS:
                raise RuntimeError(f"byoc-ref op {name} registered twice")
            OPS[name] = OpEntry(kernel, check)
        return fn

    return deco


def attr(node: Any, key: str, default: Any = None) -> Any:
    """Attribute ``key`` of ``node`` or ``default``."""
    return node.attrs.get(key, default)


def _load_families() -> None:
    # Importing a family module fills OPS through the decorator.
    from . import (  # noqa: F401
        elementwise,
        nn,
        reduce,
        resize,
        shape,
    )


_load_families()
