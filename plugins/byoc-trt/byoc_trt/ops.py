"""ONNX ops -> TensorRT layers: one check and one lowering per op, in one table.

The check is what ``TrtBackend.supports`` answers; the lowering is what
translation runs. Keeping both beside each other, keyed by the op name, is what
makes the capability check exact: an op is claimed only for the attribute values
its lowering implements, and every refusal says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import byoc
from byoc import NodeInfo, Support

from .net import Net, Tensor

Check = Callable[[NodeInfo], Support]


class Lowering:
    """State while one subgraph is translated: values so far, constants, the net."""

    def __init__(self, graph: byoc.Graph, consts: Mapping[str, np.ndarray], net: Net):
        self.graph = graph
        self.consts = consts
        self.net = net
        self.values: dict[tuple[int, int], Tensor] = {}

    def const(self, e: byoc.JSONGraphNodeEntry) -> np.ndarray | None:
        """The value of input ``e`` when it is a constant node."""
        if e.absent:
            return None
        node = self.graph.nodes[e.node_id]
        return np.asarray(self.consts[node.name]) if node.op == "const" else None

    def tensor(self, e: byoc.JSONGraphNodeEntry) -> Tensor:
        key = (e.node_id, e.index)
        if key not in self.values:
            value = self.const(e)
            assert value is not None, "non-constant inputs are produced before use"
            self.values[key] = self.net.constant(value.astype(np.float32))
        return self.values[key]

    def rank(self, e: byoc.JSONGraphNodeEntry) -> int:
        shape = self.graph.spec(e).shape
        assert shape is not None
        return len(shape)

    def at_rank(self, e: byoc.JSONGraphNodeEntry, rank: int) -> Tensor:
        """Input ``e`` with leading 1-dims added up to ``rank`` (TRT broadcasting)."""
        shape = self.graph.spec(e).shape
        assert shape is not None
        t = self.tensor(e)
        if len(shape) == rank:
            return t
        return self.net.shuffle(t, reshape=(1,) * (rank - len(shape)) + tuple(shape))


Lower = Callable[[Lowering, byoc.JSONGraphNode], Sequence[Tensor]]


@dataclass(frozen=True)
class Op:
    """One supported op: its exact check and its lowering."""

    check: Check
    lower: Lower


OPS: dict[str, Op] = {}


def op(*names: str, check: Check | None = None) -> Callable[[Lower], Lower]:
    """Register a lowering (and its check) for each ONNX op in ``names``."""

    def deco(fn: Lower) -> Lower:
        for name in names:
            OPS[name] = Op(check or _float_io, fn)
        return fn

    return deco


# --------------------------------------------------------------------------
# shared checks
# --------------------------------------------------------------------------


def _no(info: NodeInfo, why: str) -> Support:
    return Support.no(f"trt: {info.op} {why}")


def _float_io(info: NodeInfo) -> Support:
    """Every tensor float32 with a known rank (the common precondition)."""
    for i, spec in enumerate(info.inputs):
        if spec is None:
            continue
        if spec.shape is None:
            return _no(info, f"input {i} has an unknown rank")
        if spec.dtype != "float32" and i not in info.consts:
            return _no(info, f"input {i} is {spec.dtype}; only float32 is supported")
    for spec in info.outputs:
        if spec.dtype != "float32" or spec.shape is None:
            return _no(info, "output must be float32 with a known rank")
    return Support.yes()


def _static(info: NodeInfo, index: int) -> tuple[int, ...] | None:
    spec = info.inputs[index] if index < len(info.inputs) else None
    if spec is None or spec.shape is None or not spec.is_static:
        return None
    return tuple(int(d) for d in spec.shape)  # type: ignore[arg-type]


def _need_consts(info: NodeInfo, *indices: int) -> Support | None:
    for i in indices:
        if i < len(info.inputs) and info.inputs[i] is not None and i not in info.consts:
            return _no(info, f"input {i} must be a constant")
    return None


def _all_of(*checks: Check) -> Check:
    def check(info: NodeInfo) -> Support:
        for c in checks:
            answer = c(info)
            if not answer:
                return answer
        return Support.yes()

    return check


def _only_outputs(n: int) -> Check:
    def check(info: NodeInfo) -> Support:
        if len(info.outputs) > n:
            return _no(info, f"with {len(info.outputs)} outputs is not supported")
        return Support.yes()

    return check


# --------------------------------------------------------------------------
# elementwise, activations, unary
# --------------------------------------------------------------------------

_BINARY = {
    "Add": "sum",
    "Sub": "sub",
    "Mul": "prod",
    "Div": "div",
    "Pow": "pow",
    "Max": "max",
    "Min": "min",
}


def _check_binary(info: NodeInfo) -> Support:
    if len(info.inputs) != 2:
        return _no(info, "with other than two inputs is not supported")
    ranks = [len(s.shape) for s in info.inputs if s is not None and s.shape is not None]
    if len(ranks) != 2:
        return _no(info, "needs inputs of known rank")
    for i, spec in enumerate(info.inputs):
        assert spec is not None and spec.shape is not None
        if len(spec.shape) < max(ranks) and not spec.is_static:
            return _no(info, f"input {i} needs a static shape to broadcast")
    return Support.yes()


@op(*_BINARY, check=_all_of(_float_io, _check_binary))
def _binary(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    a, b = node.inputs
    rank = max(lo.rank(a), lo.rank(b))
    return [
        lo.net.elementwise(lo.at_rank(a, rank), lo.at_rank(b, rank), _BINARY[node.name])
    ]


_UNARY = {
    "Exp": "exp",
    "Log": "log",
    "Sqrt": "sqrt",
    "Abs": "abs",
    "Neg": "neg",
    "Reciprocal": "recip",
    "Erf": "erf",
}


@op(*_UNARY)
def _unary(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    return [lo.net.unary(lo.tensor(node.inputs[0]), _UNARY[node.name])]


@op("Relu", "Sigmoid", "Tanh")
def _simple_activation(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    return [lo.net.activation(lo.tensor(node.inputs[0]), node.name.lower())]


@op("LeakyRelu")
def _leaky(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    alpha = float(node.attrs.get("alpha", 0.01))
    return [lo.net.activation(lo.tensor(node.inputs[0]), "leaky_relu", alpha)]


@op("Elu")
def _elu(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    alpha = float(node.attrs.get("alpha", 1.0))
    return [lo.net.activation(lo.tensor(node.inputs[0]), "elu", alpha)]


def _check_clip(info: NodeInfo) -> Support:
    answer = _need_consts(info, 1, 2)
    if answer is not None:
        return answer
    return Support.yes()


@op("Clip", check=_all_of(_float_io, _check_clip))
def _clip(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    bounds = [lo.const(e) for e in node.inputs[1:3]]
    lo_v = float(bounds[0]) if len(bounds) > 0 and bounds[0] is not None else -math.inf
    hi_v = float(bounds[1]) if len(bounds) > 1 and bounds[1] is not None else math.inf
    # TensorRT's CLIP takes finite bounds; float32 max is the same as no bound.
    lo_v = max(lo_v, float(np.finfo(np.float32).min))
    hi_v = min(hi_v, float(np.finfo(np.float32).max))
    return [lo.net.activation(lo.tensor(node.inputs[0]), "clip", lo_v, hi_v)]


def _check_gelu(info: NodeInfo) -> Support:
    if info.attrs.get("approximate", "none") not in ("none", "tanh"):
        return _no(info, f"approximate={info.attrs['approximate']!r} is not supported")
    return Support.yes()


@op("Gelu", check=_all_of(_float_io, _check_gelu))
def _gelu(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    kind = (
        "gelu_tanh" if node.attrs.get("approximate", "none") == "tanh" else "gelu_erf"
    )
    return [lo.net.activation(lo.tensor(node.inputs[0]), kind)]


# --------------------------------------------------------------------------
# convolution, matmul, normalization
# --------------------------------------------------------------------------


def _spatial_pads(
    info: NodeInfo,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> tuple[list[int], list[int]] | Support:
    """(pre, post) explicit pads from ``pads``/``auto_pad``, or a refusal."""
    n = len(kernel)
    auto = info.attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        pads = (
            list(info.attrs.get("pads", (0,) * 2 * n))
            if auto == "NOTSET"
            else [0] * 2 * n
        )
        return pads[:n], pads[n:]
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        return _no(info, f"auto_pad={auto!r} is not supported")
    shape = _static(info, 0)
    if shape is None:
        return _no(info, f"auto_pad={auto} needs static spatial dims")
    pre, post = [], []
    for size, k, s, d in zip(shape[2:], kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        pre.append(small if auto == "SAME_UPPER" else big)
        post.append(big if auto == "SAME_UPPER" else small)
    return pre, post


def _conv_params(
    info_or_node: Any, kernel: Sequence[int]
) -> tuple[list[int], list[int]]:
    attrs = info_or_node.attrs
    n = len(kernel)
    return list(attrs.get("strides", (1,) * n)), list(attrs.get("dilations", (1,) * n))


def _check_conv(info: NodeInfo) -> Support:
    refusal = _need_consts(info, 1, 2)
    if refusal is not None:
        return refusal
    weight = info.consts[1]
    if weight.ndim not in (3, 4, 5):
        return _no(info, f"with a {weight.ndim}-d weight is not supported")
    kernel = weight.shape[2:]
    strides, dilations = _conv_params(info, kernel)
    pads = _spatial_pads(info, kernel, strides, dilations)
    if isinstance(pads, Support):
        return pads
    if info.op == "ConvTranspose":
        if any(info.attrs.get(k) for k in ("output_shape",)):
            return _no(info, "output_shape is not supported (give pads instead)")
        if any(info.attrs.get("output_padding", ())):
            return _no(info, "output_padding is not supported")
        if any(d != 1 for d in dilations):
            return _no(info, "dilations are not supported")
    return Support.yes()


@op("Conv", "ConvTranspose", check=_all_of(_float_io, _check_conv))
def _conv(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    weight = lo.const(node.inputs[1])
    bias = lo.const(node.inputs[2]) if len(node.inputs) > 2 else None
    assert weight is not None
    kernel = weight.shape[2:]
    strides, dilations = _conv_params(node, kernel)
    info = byoc.NodeInfo(node, (lo.graph.spec(node.inputs[0]),), ())
    pads = _spatial_pads(info, kernel, strides, dilations)
    assert not isinstance(pads, Support)
    return [
        lo.net.conv(
            lo.tensor(node.inputs[0]),
            weight.astype(np.float32),
            None if bias is None else bias.astype(np.float32),
            strides=strides,
            pre_pad=pads[0],
            post_pad=pads[1],
            dilations=dilations,
            groups=int(node.attrs.get("group", 1)),
            transpose=node.name == "ConvTranspose",
        )
    ]


def _check_matmul(info: NodeInfo) -> Support:
    ranks = [len(s.shape) for s in info.inputs if s is not None and s.shape is not None]
    if len(ranks) != 2 or min(ranks) < 2:
        return _no(info, "needs two inputs of rank >= 2 (vector operands unsupported)")
    for i, spec in enumerate(info.inputs):
        assert spec is not None and spec.shape is not None
        if len(spec.shape) < max(ranks) and not spec.is_static:
            return _no(info, f"input {i} needs a static shape to broadcast")
    return Support.yes()


@op("MatMul", check=_all_of(_float_io, _check_matmul))
def _matmul(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    a, b = node.inputs
    rank = max(lo.rank(a), lo.rank(b))
    return [
        lo.net.matmul(
            lo.at_rank(a, rank),
            lo.at_rank(b, rank),
            transpose_a=False,
            transpose_b=False,
        )
    ]


def _check_gemm(info: NodeInfo) -> Support:
    if len(info.inputs) > 2 and info.inputs[2] is not None:
        c = info.inputs[2]
        if c.shape is None or not c.is_static:
            return _no(info, "C needs a static shape")
    return Support.yes()


@op("Gemm", check=_all_of(_float_io, _check_gemm))
def _gemm(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    net = lo.net
    y = net.matmul(
        lo.tensor(node.inputs[0]),
        lo.tensor(node.inputs[1]),
        transpose_a=bool(node.attrs.get("transA", 0)),
        transpose_b=bool(node.attrs.get("transB", 0)),
    )
    alpha = float(node.attrs.get("alpha", 1.0))
    if alpha != 1.0:
        y = net.elementwise(y, net.constant(np.full((1, 1), alpha, np.float32)), "prod")
    if len(node.inputs) > 2 and not node.inputs[2].absent:
        c = lo.at_rank(node.inputs[2], 2)
        beta = float(node.attrs.get("beta", 1.0))
        if beta != 1.0:
            c = net.elementwise(
                c, net.constant(np.full((1, 1), beta, np.float32)), "prod"
            )
        y = net.elementwise(y, c, "sum")
    return [y]


def _check_batchnorm(info: NodeInfo) -> Support:
    refusal = _need_consts(info, 1, 2, 3, 4)
    if refusal is not None:
        return refusal
    if info.attrs.get("training_mode", 0):
        return _no(info, "training_mode=1 is not supported")
    shape = info.inputs[0].shape if info.inputs[0] is not None else None
    if shape is None or len(shape) < 3:
        return _no(info, "needs an N,C,spatial... input")
    return Support.yes()


@op("BatchNormalization", check=_all_of(_check_batchnorm, _only_outputs(1), _float_io))
def _batchnorm(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    gamma, beta, mean, var = (lo.const(e) for e in node.inputs[1:5])
    assert (
        gamma is not None and beta is not None and mean is not None and var is not None
    )
    eps = float(node.attrs.get("epsilon", 1e-5))
    # Folded in float64 so the scale layer is as exact as the reference.
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    shift = beta - mean.astype(np.float64) * scale
    return [
        lo.net.scale(
            lo.tensor(node.inputs[0]),
            shift.astype(np.float32),
            scale.astype(np.float32),
        )
    ]


def _check_layernorm(info: NodeInfo) -> Support:
    refusal = _need_consts(info, 1, 2)
    if refusal is not None:
        return refusal
    if info.attrs.get("stash_type", 1) != 1:
        return _no(info, "stash_type other than float32 is not supported")
    return _only_outputs(1)(info)


@op("LayerNormalization", check=_all_of(_float_io, _check_layernorm))
def _layernorm(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    rank = lo.rank(node.inputs[0])
    axis = int(node.attrs.get("axis", -1)) % rank
    axes = tuple(range(axis, rank))
    scale = lo.at_rank(node.inputs[1], rank)
    if len(node.inputs) > 2 and not node.inputs[2].absent:
        bias = lo.at_rank(node.inputs[2], rank)
    else:
        shape = lo.graph.spec(node.inputs[1]).shape
        assert shape is not None
        bias = lo.net.constant(
            np.zeros((1,) * (rank - len(shape)) + tuple(shape), np.float32)
        )
    eps = float(node.attrs.get("epsilon", 1e-5))
    return [lo.net.normalization(lo.tensor(node.inputs[0]), scale, bias, axes, eps)]


@op("Softmax")
def _softmax(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    rank = lo.rank(node.inputs[0])
    return [
        lo.net.softmax(
            lo.tensor(node.inputs[0]), int(node.attrs.get("axis", -1)) % rank
        )
    ]


# --------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------


def _check_pool(info: NodeInfo) -> Support:
    if info.op == "MaxPool":
        if len(info.outputs) > 1:
            return _no(info, "Indices output is not supported")
        if any(d != 1 for d in info.attrs.get("dilations", ())):
            return _no(info, "dilations are not supported")
        if info.attrs.get("storage_order", 0):
            return _no(info, "storage_order=1 is not supported")
    kernel = info.attrs.get("kernel_shape", ())
    if not kernel:
        return _no(info, "needs kernel_shape")
    strides = info.attrs.get("strides", (1,) * len(kernel))
    pads = _spatial_pads(info, kernel, strides, (1,) * len(kernel))
    if isinstance(pads, Support):
        return pads
    if (
        info.attrs.get("ceil_mode", 0)
        and info.attrs.get("auto_pad", "NOTSET") != "NOTSET"
    ):
        return _no(info, "ceil_mode with auto_pad is not supported")
    return Support.yes()


@op("MaxPool", "AveragePool", check=_all_of(_check_pool, _float_io))
def _pool(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    kernel = list(node.attrs["kernel_shape"])
    strides = list(node.attrs.get("strides", (1,) * len(kernel)))
    info = byoc.NodeInfo(node, (lo.graph.spec(node.inputs[0]),), ())
    pads = _spatial_pads(info, kernel, strides, (1,) * len(kernel))
    assert not isinstance(pads, Support)
    kind = "max" if node.name == "MaxPool" else "avg"
    return [
        lo.net.pool(
            lo.tensor(node.inputs[0]),
            kind,
            kernel=kernel,
            strides=strides,
            pre_pad=pads[0],
            post_pad=pads[1],
            exclude_pad=not node.attrs.get("count_include_pad", 0),
            ceil=bool(node.attrs.get("ceil_mode", 0)),
        )
    ]


@op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    rank = lo.rank(node.inputs[0])
    kind = "avg" if node.name == "GlobalAveragePool" else "max"
    return [lo.net.reduce(lo.tensor(node.inputs[0]), kind, tuple(range(2, rank)), True)]


# --------------------------------------------------------------------------
# shape ops
# --------------------------------------------------------------------------


@op("Concat")
def _concat(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    rank = lo.rank(node.inputs[0])
    axis = int(node.attrs["axis"]) % rank
    return [lo.net.concat([lo.tensor(e) for e in node.inputs], axis)]


@op("Transpose")
def _transpose(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    rank = lo.rank(node.inputs[0])
    perm = tuple(node.attrs.get("perm", tuple(reversed(range(rank)))))
    return [lo.net.shuffle(lo.tensor(node.inputs[0]), perm=perm)]


def _check_reshape(info: NodeInfo) -> Support:
    refusal = _need_consts(info, 1)
    if refusal is not None:
        return refusal
    if info.attrs.get("allowzero", 0) and 0 in info.consts[1].tolist():
        return _no(info, "allowzero=1 with a 0 in the shape is not supported")
    return Support.yes()


@op("Reshape", check=_all_of(_float_io, _check_reshape))
def _reshape(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    shape = lo.const(node.inputs[1])
    assert shape is not None
    return [
        lo.net.shuffle(
            lo.tensor(node.inputs[0]), reshape=tuple(int(d) for d in shape.reshape(-1))
        )
    ]


def _check_flatten(info: NodeInfo) -> Support:
    spec = info.inputs[0]
    assert spec is not None and spec.shape is not None
    axis = int(info.attrs.get("axis", 1)) % (len(spec.shape) + 1)
    if axis > 1 and not all(isinstance(d, int) for d in spec.shape[:axis]):
        return _no(info, f"axis={axis} needs static leading dims")
    return Support.yes()


@op("Flatten", check=_all_of(_float_io, _check_flatten))
def _flatten(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    shape = lo.graph.spec(node.inputs[0]).shape
    assert shape is not None
    axis = int(node.attrs.get("axis", 1)) % (len(shape) + 1)
    if axis == 0:
        target: tuple[int, ...] = (1, -1)
    elif axis == 1:
        target = (0, -1)  # 0 copies the (possibly dynamic) batch dim
    else:
        target = (math.prod(int(d) for d in shape[:axis]), -1)
    return [lo.net.shuffle(lo.tensor(node.inputs[0]), reshape=target)]


def _check_slice(info: NodeInfo) -> Support:
    refusal = _need_consts(info, 1, 2, 3, 4)
    if refusal is not None:
        return refusal
    if _static(info, 0) is None:
        return _no(info, "needs a static input shape")
    steps = info.consts.get(4)
    if steps is not None and (steps == 0).any():
        return _no(info, "step 0 is invalid")
    return Support.yes()


def _optional_const(
    lo: Lowering, node: byoc.JSONGraphNode, i: int
) -> np.ndarray | None:
    return lo.const(node.inputs[i]) if i < len(node.inputs) else None


@op("Slice", check=_all_of(_float_io, _check_slice))
def _slice(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    shape = [int(d) for d in lo.graph.spec(node.inputs[0]).shape or ()]
    starts, ends = _optional_const(lo, node, 1), _optional_const(lo, node, 2)
    assert starts is not None and ends is not None
    axes = _optional_const(lo, node, 3)
    steps = _optional_const(lo, node, 4)
    axes = np.arange(len(starts)) if axes is None else axes
    steps = np.ones(len(starts), np.int64) if steps is None else steps
    start, size, stride = [0] * len(shape), list(shape), [1] * len(shape)
    for s, e, ax, st in zip(
        starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist(), strict=True
    ):
        ax %= len(shape)
        begin, end, step = slice(s, e, st).indices(shape[ax])
        start[ax], stride[ax] = begin, step
        size[ax] = len(range(begin, end, step))
    return [lo.net.slice(lo.tensor(node.inputs[0]), start, size, stride)]


_COORD = {
    "half_pixel": "half_pixel",
    "asymmetric": "asymmetric",
    "align_corners": "align_corners",
}
_ROUND = {
    "round_prefer_floor": "half_down",
    "round_prefer_ceil": "half_up",
    "floor": "floor",
    "ceil": "ceil",
}


def _check_resize(info: NodeInfo) -> Support:
    refusal = _need_consts(info, 1, 2, 3)
    if refusal is not None:
        return refusal
    attrs = info.attrs
    mode = attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        return _no(info, f"mode={mode!r} is not supported")
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    if coord not in _COORD:
        return _no(info, f"coordinate_transformation_mode={coord!r} is not supported")
    if (
        mode == "nearest"
        and attrs.get("nearest_mode", "round_prefer_floor") not in _ROUND
    ):
        return _no(info, f"nearest_mode={attrs['nearest_mode']!r} is not supported")
    for key in ("antialias", "exclude_outside"):
        if attrs.get(key, 0):
            return _no(info, f"{key}=1 is not supported")
    if (
        attrs.get("axes")
        or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch"
    ):
        return _no(info, "axes/keep_aspect_ratio_policy are not supported")
    out = info.outputs[0].shape
    if out is None or not all(isinstance(d, int) for d in out):
        return _no(info, "needs a static output shape")
    src = _static(info, 0)
    if src is not None and tuple(out[:2]) != src[:2]:
        return _no(info, "resizing the batch or channel dims is not supported")
    scales = info.consts.get(2)
    if scales is not None and scales.size:
        # ONNX maps coordinates with the given scale, TensorRT with out/in: they
        # agree only when in * scale is a whole number.
        if src is None or any(
            abs(d * float(sc) - round(d * float(sc))) > 1e-6
            for d, sc in zip(src, scales.tolist(), strict=False)
        ):
            return _no(
                info, "scales that do not give whole output sizes are unsupported"
            )
    return Support.yes()


@op("Resize", check=_all_of(_float_io, _check_resize))
def _resize(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    attrs = node.attrs
    sizes = [int(d) for d in node.shapes[0] or ()]
    mode = attrs.get("mode", "nearest")
    return [
        lo.net.resize(
            lo.tensor(node.inputs[0]),
            sizes=sizes,
            mode=mode,
            coord=_COORD[attrs.get("coordinate_transformation_mode", "half_pixel")],
            rounding=_ROUND[attrs.get("nearest_mode", "round_prefer_floor")],
        )
    ]


def _check_dropout(info: NodeInfo) -> Support:
    if len(info.inputs) > 2 and info.inputs[2] is not None:
        mode = info.consts.get(2)
        if mode is None or bool(mode):
            return _no(info, "in training mode is not supported")
    return Support.yes()


@op("Identity", "Dropout", check=_all_of(_float_io, _only_outputs(1), _check_dropout))
def _identity(lo: Lowering, node: byoc.JSONGraphNode) -> Sequence[Tensor]:
    rank = lo.rank(node.inputs[0])
    return [lo.net.shuffle(lo.tensor(node.inputs[0]), perm=tuple(range(rank)))]
