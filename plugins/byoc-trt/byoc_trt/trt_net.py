"""The :class:`~byoc_trt.net.Net` interface on TensorRT's network-definition API.

Only constructed inside ``init`` on a machine where TensorRT imported and a CUDA
device exists. Weights handed to TensorRT are referenced, not copied, until the
engine is built, so the net keeps every array alive.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from .net import Net, Tensor


class TrtNet(Net):
    """Builds a ``tensorrt.INetworkDefinition``."""

    def __init__(self, trt: ModuleType, network: Any) -> None:
        self.trt = trt
        self.network = network
        self._keep: list[np.ndarray] = []

    def _w(self, array: np.ndarray | None) -> Any:
        if array is None:
            return self.trt.Weights()
        array = np.asarray(array, dtype=np.float32, order="C")  # 0-d stays 0-d
        self._keep.append(array)
        return self.trt.Weights(array)

    def _checked(self, layer: Any, what: str) -> Tensor:
        if layer is None:
            raise RuntimeError(f"TensorRT refused to add a {what} layer")
        return layer.get_output(0)

    def input(self, name: str, shape: Sequence[int]) -> Tensor:
        return self.network.add_input(name, self.trt.float32, tuple(shape))

    def constant(self, array: np.ndarray) -> Tensor:
        array = np.asarray(array, dtype=np.float32, order="C")  # 0-d stays 0-d
        self._keep.append(array)
        return self._checked(
            self.network.add_constant(array.shape, self._w(array)), "constant"
        )

    def conv(
        self,
        x: Tensor,
        weight: np.ndarray,
        bias: np.ndarray | None,
        *,
        strides: Sequence[int],
        pre_pad: Sequence[int],
        post_pad: Sequence[int],
        dilations: Sequence[int],
        groups: int,
        transpose: bool,
    ) -> Tensor:
        kernel = tuple(weight.shape[2:])
        if transpose:
            maps = weight.shape[1] * groups
            layer = self.network.add_deconvolution_nd(
                x, maps, kernel, self._w(weight), self._w(bias)
            )
        else:
            layer = self.network.add_convolution_nd(
                x, weight.shape[0], kernel, self._w(weight), self._w(bias)
            )
        if layer is None:
            raise RuntimeError("TensorRT refused a convolution layer")
        layer.stride_nd = tuple(strides)
        layer.pre_padding = tuple(pre_pad)
        layer.post_padding = tuple(post_pad)
        if not transpose:
            layer.dilation_nd = tuple(dilations)
        layer.num_groups = groups
        return layer.get_output(0)

    def matmul(
        self, a: Tensor, b: Tensor, *, transpose_a: bool, transpose_b: bool
    ) -> Tensor:
        op = self.trt.MatrixOperation
        return self._checked(
            self.network.add_matrix_multiply(
                a,
                op.TRANSPOSE if transpose_a else op.NONE,
                b,
                op.TRANSPOSE if transpose_b else op.NONE,
            ),
            "matrix multiply",
        )

    def activation(
        self, x: Tensor, kind: str, alpha: float = 0.0, beta: float = 0.0
    ) -> Tensor:
        types = self.trt.ActivationType
        kinds = {
            "relu": types.RELU,
            "leaky_relu": types.LEAKY_RELU,
            "sigmoid": types.SIGMOID,
            "tanh": types.TANH,
            "elu": types.ELU,
            "clip": types.CLIP,
            "gelu_erf": types.GELU_ERF,
            "gelu_tanh": types.GELU_TANH,
        }
        layer = self.network.add_activation(x, kinds[kind])
        if layer is None:
            raise RuntimeError(f"TensorRT refused a {kind} activation")
        layer.alpha, layer.beta = alpha, beta
        return layer.get_output(0)

    def unary(self, x: Tensor, kind: str) -> Tensor:
        ops = self.trt.UnaryOperation
        table = {
            "exp": ops.EXP,
            "log": ops.LOG,
            "sqrt": ops.SQRT,
            "abs": ops.ABS,
            "neg": ops.NEG,
            "recip": ops.RECIP,
            "erf": ops.ERF,
        }
        return self._checked(self.network.add_unary(x, table[kind]), kind)

    def elementwise(self, a: Tensor, b: Tensor, kind: str) -> Tensor:
        ops = self.trt.ElementWiseOperation
        table = {
            "sum": ops.SUM,
            "sub": ops.SUB,
            "prod": ops.PROD,
            "div": ops.DIV,
            "pow": ops.POW,
            "max": ops.MAX,
            "min": ops.MIN,
        }
        return self._checked(self.network.add_elementwise(a, b, table[kind]), kind)

    def pool(
        self,
        x: Tensor,
        kind: str,
        *,
        kernel: Sequence[int],
        strides: Sequence[int],
        pre_pad: Sequence[int],
        post_pad: Sequence[int],
        exclude_pad: bool,
        ceil: bool,
    ) -> Tensor:
        ptype = (
            self.trt.PoolingType.MAX if kind == "max" else self.trt.PoolingType.AVERAGE
        )
        layer = self.network.add_pooling_nd(x, ptype, tuple(kernel))
        if layer is None:
            raise RuntimeError("TensorRT refused a pooling layer")
        layer.stride_nd = tuple(strides)
        layer.pre_padding = tuple(pre_pad)
        layer.post_padding = tuple(post_pad)
        layer.average_count_excludes_padding = exclude_pad
        if ceil:
            layer.padding_mode = self.trt.PaddingMode.EXPLICIT_ROUND_UP
        return layer.get_output(0)

    def reduce(
        self, x: Tensor, kind: str, axes: Sequence[int], keepdims: bool
    ) -> Tensor:
        ops = self.trt.ReduceOperation
        table = {"avg": ops.AVG, "max": ops.MAX, "sum": ops.SUM}
        mask = sum(1 << a for a in axes)
        return self._checked(
            self.network.add_reduce(x, table[kind], mask, keepdims), "reduce"
        )

    def scale(self, x: Tensor, shift: np.ndarray, scale: np.ndarray) -> Tensor:
        power = np.ones_like(scale, dtype=np.float32)
        return self._checked(
            self.network.add_scale_nd(
                x,
                self.trt.ScaleMode.CHANNEL,
                self._w(shift),
                self._w(scale),
                self._w(power),
                1,
            ),
            "scale",
        )

    def softmax(self, x: Tensor, axis: int) -> Tensor:
        layer = self.network.add_softmax(x)
        if layer is None:
            raise RuntimeError("TensorRT refused a softmax layer")
        layer.axes = 1 << axis
        return layer.get_output(0)

    def normalization(
        self, x: Tensor, scale: Tensor, bias: Tensor, axes: Sequence[int], eps: float
    ) -> Tensor:
        layer = self.network.add_normalization(
            x, scale, bias, sum(1 << a for a in axes)
        )
        if layer is None:
            raise RuntimeError("TensorRT refused a normalization layer")
        layer.epsilon = eps
        return layer.get_output(0)

    def concat(self, xs: Sequence[Tensor], axis: int) -> Tensor:
        layer = self.network.add_concatenation(list(xs))
        if layer is None:
            raise RuntimeError("TensorRT refused a concatenation layer")
        layer.axis = axis
        return layer.get_output(0)

    def shuffle(
        self,
        x: Tensor,
        *,
        perm: Sequence[int] | None = None,
        reshape: Sequence[int] | None = None,
    ) -> Tensor:
        layer = self.network.add_shuffle(x)
        if layer is None:
            raise RuntimeError("TensorRT refused a shuffle layer")
        if perm is not None:
            layer.first_transpose = tuple(perm)
        if reshape is not None:
            layer.reshape_dims = tuple(reshape)
        return layer.get_output(0)

    def slice(
        self,
        x: Tensor,
        start: Sequence[int],
        size: Sequence[int],
        stride: Sequence[int],
    ) -> Tensor:
        return self._checked(
            self.network.add_slice(x, tuple(start), tuple(size), tuple(stride)), "slice"
        )

    def resize(
        self, x: Tensor, *, sizes: Sequence[int], mode: str, coord: str, rounding: str
    ) -> Tensor:
        trt = self.trt
        layer = self.network.add_resize(x)
        if layer is None:
            raise RuntimeError("TensorRT refused a resize layer")
        layer.shape = tuple(sizes)
        layer.resize_mode = (
            trt.InterpolationMode.NEAREST
            if mode == "nearest"
            else trt.InterpolationMode.LINEAR
        )
        layer.coordinate_transformation = {
            "half_pixel": trt.ResizeCoordinateTransformation.HALF_PIXEL,
            "asymmetric": trt.ResizeCoordinateTransformation.ASYMMETRIC,
            "align_corners": trt.ResizeCoordinateTransformation.ALIGN_CORNERS,
        }[coord]
        layer.nearest_rounding = {
            "floor": trt.ResizeRoundMode.FLOOR,
            "ceil": trt.ResizeRoundMode.CEIL,
            "half_up": trt.ResizeRoundMode.HALF_UP,
            "half_down": trt.ResizeRoundMode.HALF_DOWN,
        }[rounding]
        return layer.get_output(0)

    def output(self, x: Tensor, name: str) -> None:
        x.name = name
        self.network.mark_output(x)
