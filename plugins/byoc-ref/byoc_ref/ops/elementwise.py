"""Elementwise ops: arithmetic, comparisons, logic, and activations."""

from __future__ import annotations

import numpy as np

from . import op


@op("Relu")
def relu(node, x):
    return (np.maximum(x, x.dtype.type(0)),)


@op("Add")
def add(node, a, b):
    return (a + b,)
