"""The small network-building interface the translation is written against.

Each method is one TensorRT layer with TensorRT's semantics (explicit-batch,
same-rank elementwise broadcasting, NCHW convolution and pooling). The real
implementation (:mod:`byoc_trt.trt_net`) calls ``tensorrt.INetworkDefinition``;
keeping translation behind this seam lets every GPU-free part - ONNX attribute
mapping, padding, broadcasting, BatchNorm folding - be tested on any machine
with an implementation that computes the same layers in numpy.

Tensors are opaque handles; static facts about them come from the JSON graph.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

Tensor = Any
"""An implementation's tensor handle (``tensorrt.ITensor``, an array, ...)."""

ACTIVATIONS = (
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "elu",
    "clip",
    "gelu_erf",
    "gelu_tanh",
)
UNARY = ("exp", "log", "sqrt", "abs", "neg", "recip", "erf")
ELEMENTWISE = ("sum", "sub", "prod", "div", "pow", "max", "min")
POOLS = ("max", "avg")
REDUCES = ("avg", "max", "sum")


class Net(ABC):
    """A network under construction; see the module docstring."""

    @abstractmethod
    def input(self, name: str, shape: Sequence[int]) -> Tensor:
        """A float32 network input; ``-1`` marks a dynamic dim."""

    @abstractmethod
    def constant(self, array: np.ndarray) -> Tensor:
        """A constant tensor (kept alive by the net until the build ends)."""

    @abstractmethod
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
        """Convolution (or deconvolution when ``transpose``), weights in ONNX layout."""

    @abstractmethod
    def matmul(
        self, a: Tensor, b: Tensor, *, transpose_a: bool, transpose_b: bool
    ) -> Tensor:
        """Batched matrix multiply over the last two dims (same rank)."""

    @abstractmethod
    def activation(
        self, x: Tensor, kind: str, alpha: float = 0.0, beta: float = 0.0
    ) -> Tensor:
        """One of :data:`ACTIVATIONS`; clip uses alpha=min, beta=max."""

    @abstractmethod
    def unary(self, x: Tensor, kind: str) -> Tensor:
        """One of :data:`UNARY`."""

    @abstractmethod
    def elementwise(self, a: Tensor, b: Tensor, kind: str) -> Tensor:
        """One of :data:`ELEMENTWISE`; operands have equal rank, size-1 dims "
        "broadcast."""

    @abstractmethod
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
        """Max or average pooling over the trailing spatial dims."""

    @abstractmethod
    def reduce(
        self, x: Tensor, kind: str, axes: Sequence[int], keepdims: bool
    ) -> Tensor:
        """One of :data:`REDUCES` over ``axes`` (non-negative)."""

    @abstractmethod
    def scale(self, x: Tensor, shift: np.ndarray, scale: np.ndarray) -> Tensor:
        """Per-channel (axis 1) ``x * scale + shift``."""

    @abstractmethod
    def softmax(self, x: Tensor, axis: int) -> Tensor:
        """Softmax along ``axis`` (non-negative)."""

    @abstractmethod
    def normalization(
        self, x: Tensor, scale: Tensor, bias: Tensor, axes: Sequence[int], eps: float
    ) -> Tensor:
        """Layer normalization over ``axes``; scale/bias broadcast at x's rank."""

    @abstractmethod
    def concat(self, xs: Sequence[Tensor], axis: int) -> Tensor:
        """Concatenation along ``axis`` (non-negative)."""

    @abstractmethod
    def shuffle(
        self,
        x: Tensor,
        *,
        perm: Sequence[int] | None = None,
        reshape: Sequence[int] | None = None,
    ) -> Tensor:
        """Transpose by ``perm``, then reshape (0 copies a dim, -1 is inferred)."""

    @abstractmethod
    def slice(
        self,
        x: Tensor,
        start: Sequence[int],
        size: Sequence[int],
        stride: Sequence[int],
    ) -> Tensor:
        """Static strided slice (every axis given)."""

    @abstractmethod
    def resize(
        self, x: Tensor, *, sizes: Sequence[int], mode: str, coord: str, rounding: str
    ) -> Tensor:
        """Resize to ``sizes``; mode nearest/linear; coord half_pixel/asymmetric/
        align_corners; rounding (nearest) floor/ceil/half_up/half_down."""

    @abstractmethod
    def output(self, x: Tensor, name: str) -> None:
        """Mark ``x`` as the network output ``name``."""
