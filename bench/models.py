"""Benchmark models built with onnx.helper and seeded random weights.

Four models, shaped like what exporters emit (Conv and BatchNormalization as
separate nodes, Linear as Gemm(transB=1), attention as MatMul/Reshape/
Transpose/Softmax, GELU as the erf chain, LayerNormalization opset 17):

* :func:`resnet50` - ResNet-50 v1 (stride on the bottleneck's first 1x1 conv);
* :func:`mobilenetv2` - MobileNetV2 1.0 (Relu6 as Clip, depthwise 3x3 convs);
* :func:`bert_layer` - one BERT-base encoder layer (hidden 768, 12 heads,
  FFN 3072), sequence 128;
* :func:`mlp` - three 1024-wide Gemm layers with Relu, batch 64.

:data:`MODELS` maps names to builders; :func:`flops` counts the
multiply-adds (x2) of Conv/Gemm/MatMul nodes, the work "% of peak" refers to.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class _Builder:
    """Collects nodes and initializers; names are unique and readable."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base: str, array: np.ndarray) -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs: object) -> str:
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=outs[0], **attrs))
        return outs[0]

    def weight(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(
            np.float32
        )

    def model(
        self,
        name: str,
        inputs: list[onnx.ValueInfoProto],
        output: str,
        out_shape: list[int],
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            name,
            inputs,
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
            self.inits,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="byoc-bench",
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    # -- layers ----------------------------------------------------------------

    def conv_bn(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        group: int = 1,
        act: str | None = "relu",
    ) -> str:
        w = self.const(
            "w", self.weight((cout, cin // group, k, k), cin // group * k * k)
        )
        y = self.node(
            "Conv",
            [x, w],
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[k // 2] * 4,
            group=group,
        )
        rng = self.rng
        scale = self.const(
            "bn_scale", (0.5 + 0.5 * rng.random(cout)).astype(np.float32)
        )
        shift = self.const(
            "bn_shift", (0.1 * rng.standard_normal(cout)).astype(np.float32)
        )
        mean = self.const(
            "bn_mean", (0.1 * rng.standard_normal(cout)).astype(np.float32)
        )
        var = self.const("bn_var", (0.5 + rng.random(cout)).astype(np.float32))
        y = self.node("BatchNormalization", [y, scale, shift, mean, var], epsilon=1e-5)
        if act == "relu":
            y = self.node("Relu", [y])
        elif act == "relu6":
            lo = self.const("clip_min", np.array(0.0, np.float32))
            hi = self.const("clip_max", np.array(6.0, np.float32))
            y = self.node("Clip", [y, lo, hi])
        return y

    def linear(self, x: str, cin: int, cout: int) -> str:
        w = self.const("fc_w", self.weight((cout, cin), cin))
        b = self.const(
            "fc_b", (0.01 * self.rng.standard_normal(cout)).astype(np.float32)
        )
        return self.node("Gemm", [x, w, b], transB=1)

    def head(self, x: str, cin: int, classes: int = 1000) -> str:
        y = self.node("GlobalAveragePool", [x])
        y = self.node("Flatten", [y], axis=1)
        return self.linear(y, cin, classes)


def resnet50(batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """ResNet-50 v1, 224x224 input, 1000 classes."""
    b = _Builder(seed)
    x = b.conv_bn("data", 3, 64, 7, stride=2)
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            s = stride if i == 0 else 1
            out = width * 4
            y = b.conv_bn(x, cin, width, 1, stride=s)
            y = b.conv_bn(y, width, width, 3)
            y = b.conv_bn(y, width, out, 1, act=None)
            short = b.conv_bn(x, cin, out, 1, stride=s, act=None) if i == 0 else x
            x = b.node("Relu", [b.node("Add", [y, short])])
            cin = out
    logits = b.head(x, cin)
    data = helper.make_tensor_value_info(
        "data", TensorProto.FLOAT, [batch, 3, 224, 224]
    )
    return b.model("resnet50_v1", [data], logits, [batch, 1000])


def mobilenetv2(batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """MobileNetV2 1.0, 224x224 input, 1000 classes."""
    b = _Builder(seed)
    x = b.conv_bn("data", 3, 32, 3, stride=2, act="relu6")
    cin = 32
    for t, c, n, s in (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ):
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = x if t == 1 else b.conv_bn(x, cin, hidden, 1, act="relu6")
            y = b.conv_bn(
                y, hidden, hidden, 3, stride=stride, group=hidden, act="relu6"
            )
            y = b.conv_bn(y, hidden, c, 1, act=None)
            x = b.node("Add", [x, y]) if stride == 1 and cin == c else y
            cin = c
    x = b.conv_bn(x, cin, 1280, 1, act="relu6")
    logits = b.head(x, 1280)
    data = helper.make_tensor_value_info(
        "data", TensorProto.FLOAT, [batch, 3, 224, 224]
    )
    return b.model("mobilenetv2", [data], logits, [batch, 1000])


def bert_layer(
    batch: int = 1,
    seq: int = 128,
    hidden: int = 768,
    heads: int = 12,
    ffn: int = 3072,
    seed: int = 0,
) -> onnx.ModelProto:
    """One BERT-base encoder layer (post-LayerNorm), as PyTorch exports it."""
    b = _Builder(seed)
    d = hidden // heads
    rng = b.rng

    def dense(x: str, cin: int, cout: int) -> str:
        w = b.const("w", (rng.standard_normal((cin, cout)) * 0.02).astype(np.float32))
        bias = b.const("b", (rng.standard_normal(cout) * 0.02).astype(np.float32))
        return b.node("Add", [b.node("MatMul", [x, w]), bias])

    def heads_of(x: str, perm: list[int]) -> str:
        shape = b.const("shape", np.array([batch, seq, heads, d], np.int64))
        return b.node("Transpose", [b.node("Reshape", [x, shape])], perm=perm)

    def layer_norm(x: str) -> str:
        g = b.const(
            "ln_g", (1.0 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)
        )
        beta = b.const("ln_b", (0.1 * rng.standard_normal(hidden)).astype(np.float32))
        return b.node("LayerNormalization", [x, g, beta], axis=-1, epsilon=1e-12)

    x = "hidden"
    q = heads_of(dense(x, hidden, hidden), [0, 2, 1, 3])
    k = heads_of(dense(x, hidden, hidden), [0, 2, 3, 1])
    v = heads_of(dense(x, hidden, hidden), [0, 2, 1, 3])
    scores = b.node(
        "Div",
        [
            b.node("MatMul", [q, k]),
            b.const("sqrt_d", np.array(math.sqrt(d), np.float32)),
        ],
    )
    probs = b.node("Softmax", [scores], axis=-1)
    ctx = b.node("Transpose", [b.node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    ctx = b.node(
        "Reshape", [ctx, b.const("shape", np.array([batch, seq, hidden], np.int64))]
    )
    attn = layer_norm(b.node("Add", [dense(ctx, hidden, hidden), x]))
    h = dense(attn, hidden, ffn)
    # GELU exactly as torch.onnx exports nn.GELU(): x * 0.5 * (1 + erf(x / sqrt 2))
    e = b.node(
        "Erf",
        [b.node("Div", [h, b.const("sqrt2", np.array(math.sqrt(2), np.float32))])],
    )
    e = b.node("Add", [e, b.const("one", np.array(1.0, np.float32))])
    g = b.node(
        "Mul", [b.node("Mul", [h, e]), b.const("half", np.array(0.5, np.float32))]
    )
    out = layer_norm(b.node("Add", [dense(g, ffn, hidden), attn]))
    inp = helper.make_tensor_value_info(
        "hidden", TensorProto.FLOAT, [batch, seq, hidden]
    )
    return b.model("bert_layer", [inp], out, [batch, seq, hidden])


def mlp(
    batch: int = 64, width: int = 1024, layers: int = 3, seed: int = 0
) -> onnx.ModelProto:
    """``layers`` Gemm(transB=1)+bias layers, Relu between them."""
    b = _Builder(seed)
    x = "x"
    for i in range(layers):
        x = b.linear(x, width, width)
        if i < layers - 1:
            x = b.node("Relu", [x])
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])
    return b.model("mlp", [inp], x, [batch, width])


MODELS: dict[str, Callable[..., onnx.ModelProto]] = {
    "resnet50": resnet50,
    "mobilenetv2": mobilenetv2,
    "bert_layer": bert_layer,
    "mlp": mlp,
}


def example_inputs(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    """Seeded standard-normal float32 inputs for every graph input."""
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def flops(model: onnx.ModelProto) -> int:
    """2 x multiply-adds of every Conv, ConvTranspose, Gemm and MatMul."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for vi in (
        *inferred.graph.input,
        *inferred.graph.value_info,
        *inferred.graph.output,
    ):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    for t in model.graph.initializer:
        shapes[t.name] = list(t.dims)
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            w, y = shapes[node.input[1]], shapes[node.output[0]]
            total += 2 * math.prod(y) * math.prod(w[1:])
        elif node.op_type in ("Gemm", "MatMul"):
            a, y = shapes[node.input[0]], shapes[node.output[0]]
            trans = any(at.name == "transA" and at.i for at in node.attribute)
            k = a[0] if (node.op_type == "Gemm" and trans) else a[-1]
            total += 2 * math.prod(y) * k
    return total
