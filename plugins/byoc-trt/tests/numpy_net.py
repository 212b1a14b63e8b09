"""A :class:`byoc_trt.net.Net` that computes each TensorRT layer with numpy.

It enforces TensorRT's layer rules (equal ranks for elementwise and matmul,
explicit pads, per-channel scale, shuffle's 0/-1 reshape) so a translation that
would be rejected or misread by TensorRT fails here too. Heavy layers re-state
their TensorRT parameters as ONNX attributes and run byoc-ref's kernels: that
checks the translation's own arithmetic (explicit pads, folded BatchNorm,
broadcast reshapes) against the reference's semantics, on any machine.
"""

from __future__ import annotations

import math

import numpy as np

import byoc
from byoc_ref.ops import OPS as REF
from byoc_trt.net import Net


def _ref(op: str, *inputs, outputs: int = 1, **attrs) -> np.ndarray:
    node = byoc.JSONGraphNode(
        "kernel", op, attrs=attrs, shapes=((),) * outputs, dtypes=("float32",) * outputs
    )
    return REF[op].fn(node, *inputs)[0]


def _erf(x: np.ndarray) -> np.ndarray:
    return _ref("Erf", x)


class NumpyNet(Net):
    """Evaluates eagerly: every tensor handle is a numpy array."""

    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        self.feeds = feeds
        self.outputs: dict[str, np.ndarray] = {}

    def input(self, name, shape):
        x = self.feeds[name].astype(np.float32)
        assert len(shape) == x.ndim and all(
            d in (-1, s) for d, s in zip(shape, x.shape, strict=False)
        )
        return x

    def constant(self, array):
        return np.asarray(array, np.float32)

    def conv(
        self,
        x,
        weight,
        bias,
        *,
        strides,
        pre_pad,
        post_pad,
        dilations,
        groups,
        transpose,
    ):
        op = "ConvTranspose" if transpose else "Conv"
        args = [x, weight] + ([bias] if bias is not None else [])
        return _ref(
            op,
            *args,
            strides=tuple(strides),
            pads=(*pre_pad, *post_pad),
            dilations=tuple(dilations),
            group=groups,
            kernel_shape=tuple(weight.shape[2:]),
        )

    def matmul(self, a, b, *, transpose_a, transpose_b):
        assert a.ndim == b.ndim, "TensorRT matmul needs equal ranks"
        a = np.swapaxes(a, -1, -2) if transpose_a else a
        b = np.swapaxes(b, -1, -2) if transpose_b else b
        return np.matmul(a, b)

    def activation(self, x, kind, alpha=0.0, beta=0.0):
        if kind == "relu":
            return np.maximum(x, 0)
        if kind == "leaky_relu":
            return np.where(x >= 0, x, alpha * x).astype(np.float32)
        if kind == "sigmoid":
            return (1 / (1 + np.exp(-x.astype(np.float64)))).astype(np.float32)
        if kind == "tanh":
            return np.tanh(x)
        if kind == "elu":
            return np.where(x >= 0, x, alpha * (np.exp(x) - 1)).astype(np.float32)
        if kind == "clip":
            return np.clip(x, alpha, beta)
        if kind == "gelu_erf":
            return (0.5 * x * (1 + _erf(x / math.sqrt(2)))).astype(np.float32)
        if kind == "gelu_tanh":
            inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
            return (0.5 * x * (1 + np.tanh(inner))).astype(np.float32)
        raise AssertionError(kind)

    def unary(self, x, kind):
        table = {
            "exp": np.exp,
            "log": np.log,
            "sqrt": np.sqrt,
            "abs": np.abs,
            "neg": np.negative,
            "recip": lambda v: 1 / v,
            "erf": _erf,
        }
        return table[kind](x).astype(np.float32)

    def elementwise(self, a, b, kind):
        assert a.ndim == b.ndim, (
            f"TensorRT elementwise needs equal ranks: {a.shape} {b.shape}"
        )
        table = {
            "sum": np.add,
            "sub": np.subtract,
            "prod": np.multiply,
            "div": np.divide,
            "pow": np.power,
            "max": np.maximum,
            "min": np.minimum,
        }
        return table[kind](a, b).astype(np.float32)

    def pool(self, x, kind, *, kernel, strides, pre_pad, post_pad, exclude_pad, ceil):
        op = "MaxPool" if kind == "max" else "AveragePool"
        extra = {} if kind == "max" else {"count_include_pad": int(not exclude_pad)}
        return _ref(
            op,
            x,
            kernel_shape=tuple(kernel),
            strides=tuple(strides),
            pads=(*pre_pad, *post_pad),
            ceil_mode=int(ceil),
            **extra,
        )

    def reduce(self, x, kind, axes, keepdims):
        table = {"avg": np.mean, "max": np.max, "sum": np.sum}
        return table[kind](x, axis=tuple(axes), keepdims=keepdims).astype(np.float32)

    def scale(self, x, shift, scale):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x * scale.reshape(shape) + shift.reshape(shape)).astype(np.float32)

    def softmax(self, x, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)

    def normalization(self, x, scale, bias, axes, eps):
        assert scale.ndim == x.ndim and bias.ndim == x.ndim, (
            "TensorRT needs equal ranks"
        )
        mean = x.mean(axis=tuple(axes), keepdims=True)
        var = ((x - mean) ** 2).mean(axis=tuple(axes), keepdims=True)
        return ((x - mean) / np.sqrt(var + eps) * scale + bias).astype(np.float32)

    def concat(self, xs, axis):
        return np.concatenate(xs, axis=axis)

    def shuffle(self, x, *, perm=None, reshape=None):
        if perm is not None:
            x = np.transpose(x, perm)
        if reshape is not None:
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(reshape)]
            x = x.reshape(dims)
        return x

    def slice(self, x, start, size, stride):
        assert len(start) == len(size) == len(stride) == x.ndim
        index = tuple(
            slice(b, b + n * s if n else b, s)
            if s > 0
            else slice(b, (b + n * s) if b + n * s >= 0 else None, s)
            for b, n, s in zip(start, size, stride, strict=True)
        )
        out = x[index]
        assert out.shape == tuple(size), (out.shape, size)
        return out

    def resize(self, x, *, sizes, mode, coord, rounding):
        nearest = {
            "half_down": "round_prefer_floor",
            "half_up": "round_prefer_ceil",
            "floor": "floor",
            "ceil": "ceil",
        }[rounding]
        return _ref(
            "Resize",
            x,
            None,
            None,
            np.array(sizes, np.int64),
            mode=mode,
            coordinate_transformation_mode=coord,
            nearest_mode=nearest,
        )

    def output(self, x, name):
        self.outputs[name] = x


def run(graph: byoc.Graph, consts, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Translate ``graph`` into a NumpyNet and return its outputs in head order."""
    from byoc_trt.translate import translate

    net = NumpyNet(feeds)
    translate(graph, consts, net)
    return [net.outputs[name] for name in graph.output_names]
