"""The example backend's op table: one numpy function per ONNX op.

``fn(node, *inputs) -> tuple of arrays``, registered with :func:`kernel` under
the op name; the backend claims exactly the ops in :data:`KERNELS` (float32
only, see ``backend.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Kernel = Callable[..., tuple[np.ndarray, ...]]
KERNELS: dict[str, Kernel] = {}


def kernel(*ops: str) -> Callable[[Kernel], Kernel]:
    """Register ``fn`` as the kernel of each op in ``ops``."""

    def deco(fn: Kernel) -> Kernel:
        for op in ops:
            KERNELS[op] = fn
        return fn

    return deco


@kernel("Relu")
def relu(node: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    return (np.maximum(x, np.float32(0)),)


@kernel("Neg")
def neg(node: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    return (np.negative(x),)


@kernel("Abs")
def abs_(node: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    return (np.abs(x),)


@kernel("Exp")
def exp(node: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    return (np.exp(x),)


@kernel("Tanh")
def tanh(node: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    return (np.tanh(x),)


@kernel("Sigmoid")
def sigmoid(node: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    # 0.5 * (1 + tanh(x / 2)) never overflows, unlike 1 / (1 + exp(-x)).
    return ((np.float32(0.5) * (np.float32(1) + np.tanh(x * np.float32(0.5)))),)


@kernel("Add")
def add(node: Any, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    return (np.add(a, b),)


@kernel("Sub")
def sub(node: Any, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    return (np.subtract(a, b),)


@kernel("Mul")
def mul(node: Any, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    return (np.multiply(a, b),)


@kernel("MatMul")
def matmul(node: Any, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    return (np.matmul(a, b),)


def matmul_blocks(a: np.ndarray, b: np.ndarray, rows: int) -> np.ndarray:
    """``a @ b`` computed ``rows`` output rows at a time (what a tiling selects)."""
    if rows >= a.shape[-2]:
        return np.matmul(a, b)
    blocks = [
        np.matmul(a[..., i : i + rows, :], b) for i in range(0, a.shape[-2], rows)
    ]
    return np.concatenate(blocks, axis=-2)
