"""Random small graphs against onnxruntime.

Each seed builds a chain of the ops dnnl fuses and lays out, in one of two
families: NCHW images (convolutions, depthwise ones, activations, binary ops
in every broadcast form and either operand order, residual binaries, pooling,
BatchNormalization, Concat) and row matrices (Linear layers, Gemm, erf GELU,
LayerNormalization, Softmax, transposes, activation products), with an
intermediate value sometimes kept as an extra output. The fusion, in-place
and layout logic then meets combinations no hand-written test thought of:
the image family found five wrong-result or failed-init bugs at once (the
regression tests in ``test_fusion.py`` pin each). A failure names the family
and seed; ``image_graph(seed)`` or ``row_graph(seed)`` gives the model back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from onnx import helper

import byoc

from .helpers import assert_close, graph_model, run_ort

ACTIVATIONS = {
    "Relu": {},
    "Sigmoid": {},
    "Tanh": {},
    "LeakyRelu": {"alpha": 0.1},
    "Elu": {"alpha": 0.7},
}


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def _binary_const(
    r: np.random.Generator,
    cur: str,
    out: str,
    forms: dict[str, tuple[int, ...]],
    const: Callable[[np.ndarray], str],
) -> onnx.NodeProto:
    """``cur`` with a constant of a broadcast form drawn from ``forms``, by a
    binary op, the constant first in some (never for Div: no zero divisors)."""
    form = str(r.choice(list(forms)))
    op = str(r.choice(["Add", "Mul", "Sub", "Div"]))
    k = r.standard_normal(forms[form])
    if op == "Div":
        k = np.abs(k) + 0.5
    pair = [cur, const(k)]
    if op != "Div" and r.random() < 0.3:
        pair.reverse()
    return helper.make_node(op, pair, [out])


def _residual(
    r: np.random.Generator,
    cur: str,
    out: str,
    values: list[tuple[str, tuple[int, ...]]],
    shape: tuple[int, ...],
) -> onnx.NodeProto | None:
    """``cur`` with an earlier value of its shape (None when there is none)."""
    same = [v for v, s_ in values if s_ == shape and v != cur]
    if not same:
        return None
    pair = [cur, same[int(r.integers(len(same)))]]
    r.shuffle(pair)
    return helper.make_node(str(r.choice(["Add", "Mul", "Sub"])), pair, [out])


@dataclass
class _Chain:
    """What a family's builder accumulates: nodes, constants, every value with
    its shape, and the values kept as extra outputs."""

    r: np.random.Generator
    values: list[tuple[str, tuple[int, ...]]]
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    def const(self, a: np.ndarray | float) -> str:
        name = f"c{len(self.inits)}"
        self.inits[name] = np.asarray(a, np.float32)
        return name

    def advance(self, out: str, shape: tuple[int, ...]) -> None:
        """``out`` is the chain's new value; sometimes an extra output too."""
        self.values.append((out, shape))
        if self.r.random() < 0.15:
            self.outputs.append(out)

    def finish(self, cur: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
        """The model (``cur`` and the extra outputs) and its input."""
        heads = [cur] + [o for o in self.outputs if o != cur]
        x_shape = self.values[0][1]
        model = graph_model(self.nodes, {"x": x_shape}, heads, self.inits)
        return model, {"x": self.r.standard_normal(x_shape).astype(np.float32)}


def image_graph(seed: int) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """An NCHW chain: the model and input of ``seed``."""
    r = np.random.default_rng(seed)
    shape = (int(r.choice([1, 2])), int(r.choice([3, 4, 8, 16])))
    shape += (int(r.integers(4, 13)), int(r.integers(4, 13)))
    g = _Chain(r, [("x", shape)])

    cur = "x"
    for i in range(int(r.integers(2, 8))):
        n, c, h, w = shape
        out = f"v{i}"
        kind = str(
            r.choice(
                ["conv", "conv", "dw", "bn", "act", "act", "clip", "residual"]
                + ["binary", "binary", "pool", "gap", "concat"]
            )
        )
        if kind == "conv":
            oc, k = int(r.choice([4, 8, 16, 24])), int(r.choice([1, 3]))
            s, p = int(r.choice([1, 1, 2])), int(r.integers(0, k // 2 + 1))
            if _conv_out(h, k, s, p) < 1 or _conv_out(w, k, s, p) < 1:
                continue
            ins = [cur, g.const(r.standard_normal((oc, c, k, k)) * 0.3)]
            if r.random() < 0.7:
                ins.append(g.const(r.standard_normal(oc)))
            g.nodes.append(
                helper.make_node("Conv", ins, [out], strides=[s, s], pads=[p] * 4)
            )
            shape = (n, oc, _conv_out(h, k, s, p), _conv_out(w, k, s, p))
        elif kind == "dw":
            s = int(r.choice([1, 2]))
            ins = [cur, g.const(r.standard_normal((c, 1, 3, 3)) * 0.3)]
            if r.random() < 0.5:
                ins.append(g.const(r.standard_normal(c)))
            g.nodes.append(
                helper.make_node(
                    "Conv", ins, [out], group=c, strides=[s, s], pads=[1] * 4
                )
            )
            shape = (n, c, (h - 1) // s + 1, (w - 1) // s + 1)
        elif kind == "bn":
            stats = [r.random(c) + 0.5, r.standard_normal(c)]
            stats += [r.standard_normal(c) * 0.1, r.random(c) + 0.5]
            ins = [cur, *(g.const(a) for a in stats)]
            g.nodes.append(helper.make_node("BatchNormalization", ins, [out]))
        elif kind == "act":
            op = str(r.choice(list(ACTIVATIONS)))
            g.nodes.append(helper.make_node(op, [cur], [out], **ACTIVATIONS[op]))
        elif kind == "clip":
            bounds = [g.const(np.array(0.0)), g.const(np.array(6.0))]
            g.nodes.append(helper.make_node("Clip", [cur, *bounds], [out]))
        elif kind == "residual":  # with an earlier value of the same shape
            node = _residual(r, cur, out, g.values, shape)
            if node is None:
                continue
            g.nodes.append(node)
        elif kind == "binary":  # with a constant of some broadcast form
            forms = {"channel": (1, c, 1, 1), "scalar": (), "full": shape[1:]}
            forms["row"] = (w,)
            g.nodes.append(_binary_const(r, cur, out, forms, g.const))
        elif kind == "pool":
            k, s = int(r.choice([2, 3])), int(r.choice([1, 2]))
            p = int(r.integers(0, k // 2 + 1))
            if _conv_out(h, k, s, p) < 1 or _conv_out(w, k, s, p) < 1:
                continue
            attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": [p] * 4}
            op = str(r.choice(["MaxPool", "AveragePool"]))
            if op == "AveragePool":
                attrs["count_include_pad"] = int(r.integers(0, 2))
            g.nodes.append(helper.make_node(op, [cur], [out], **attrs))
            shape = (n, c, _conv_out(h, k, s, p), _conv_out(w, k, s, p))
        elif kind == "gap":
            g.nodes.append(helper.make_node("GlobalAveragePool", [cur], [out]))
            shape = (n, c, 1, 1)
        else:  # concat with an earlier value of the same spatial shape
            same = [(v, s_) for v, s_ in g.values if s_[0] == n and s_[2:] == shape[2:]]
            other, other_shape = same[int(r.integers(len(same)))]
            g.nodes.append(helper.make_node("Concat", [cur, other], [out], axis=1))
            shape = (n, c + other_shape[1], h, w)
        cur = out
        g.advance(out, shape)
    return g.finish(cur)


def row_graph(seed: int) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A chain on (batch..., rows, features) tensors (MLP and attention
    pieces): Linear layers (run as 1x1 convolutions from 32 rows), Gemm with
    its attributes, erf GELU, LayerNormalization, Softmax, transposes,
    activation products, binary ops in every broadcast form."""
    r = np.random.default_rng(seed)
    lead: tuple[int, ...] = () if r.random() < 0.5 else (int(r.choice([1, 2, 3])),)
    shape = (*lead, int(r.choice([1, 4, 16, 33, 64])), int(r.choice([8, 16, 64])))
    g = _Chain(r, [("x", shape)])

    def swap_last(rank: int) -> list[int]:
        return [*range(rank - 2), rank - 1, rank - 2]

    cur = "x"
    for i in range(int(r.integers(2, 8))):
        d, out = shape[-1], f"v{i}"
        kind = str(
            r.choice(
                ["linear", "linear", "gemm", "act", "gelu", "binary", "residual"]
                + ["layernorm", "softmax", "transpose", "scores"]
            )
        )
        if kind == "linear":
            n = int(r.choice([8, 16, 48]))
            w = g.const(r.standard_normal((d, n)) * 0.3)
            g.nodes.append(helper.make_node("MatMul", [cur, w], [out]))
            shape = (*shape[:-1], n)
        elif kind == "gemm":
            if len(shape) != 2:
                continue
            n, trans_b = int(r.choice([8, 16])), int(r.integers(2))
            ins = [cur, g.const(r.standard_normal((n, d) if trans_b else (d, n)) * 0.3)]
            if r.random() < 0.7:
                ins.append(
                    g.const(r.standard_normal(n if r.random() < 0.7 else (1, n)))
                )
            alpha, beta = float(r.choice([1.0, 0.5])), float(r.choice([1.0, 2.0]))
            g.nodes.append(
                helper.make_node(
                    "Gemm", ins, [out], transB=trans_b, alpha=alpha, beta=beta
                )
            )
            shape = (shape[0], n)
        elif kind == "act":
            op = str(r.choice(["Relu", "Sigmoid", "Tanh"]))
            g.nodes.append(helper.make_node(op, [cur], [out]))
        elif kind == "gelu":  # x * 0.5 * (1 + erf(x / sqrt 2)), one pattern
            t = [f"{out}_{j}" for j in range(4)]
            g.nodes += [
                helper.make_node("Div", [cur, g.const(np.sqrt(2.0))], [t[0]]),
                helper.make_node("Erf", [t[0]], [t[1]]),
                helper.make_node("Add", [t[1], g.const(1.0)], [t[2]]),
                helper.make_node("Mul", [cur, t[2]], [t[3]]),
                helper.make_node("Mul", [t[3], g.const(0.5)], [out]),
            ]
        elif kind == "binary":
            forms = {"column": (d,), "full": shape, "scalar": ()}
            forms["per_row"] = (*shape[:-1], 1)
            g.nodes.append(_binary_const(r, cur, out, forms, g.const))
        elif kind == "residual":
            node = _residual(r, cur, out, g.values, shape)
            if node is None:
                continue
            g.nodes.append(node)
        elif kind == "layernorm":
            ins = [cur, g.const(r.random(d) + 0.5), g.const(r.standard_normal(d))]
            g.nodes.append(helper.make_node("LayerNormalization", ins, [out], axis=-1))
        elif kind == "softmax":
            axis = int(r.choice([-1, len(shape) - 2]))
            g.nodes.append(helper.make_node("Softmax", [cur], [out], axis=axis))
        elif kind == "transpose":
            perm = swap_last(len(shape))
            g.nodes.append(helper.make_node("Transpose", [cur], [out], perm=perm))
            shape = tuple(shape[p] for p in perm)
        else:  # scores: this value times an earlier one of its shape, transposed
            same = [v for v, s_ in g.values if s_ == shape]
            other, t = same[int(r.integers(len(same)))], f"{out}_t"
            perm = swap_last(len(shape))
            g.nodes.append(helper.make_node("Transpose", [other], [t], perm=perm))
            g.nodes.append(helper.make_node("MatMul", [cur, t], [out]))
            shape = (*shape[:-1], shape[-2])
        cur = out
        g.advance(out, shape)
    return g.finish(cur)


FAMILIES = {"image": (image_graph, range(150)), "rows": (row_graph, range(100))}
CASES = [(f, seed) for f, (_, seeds) in FAMILIES.items() for seed in seeds]


@pytest.mark.parametrize("layout", ["native", "blocked"])
@pytest.mark.parametrize(("family", "seed"), CASES)
def test_random_graph_matches_onnxruntime(family: str, seed: int, layout: str) -> None:
    model, feeds = FAMILIES[family][0](seed)
    if not model.graph.node:
        pytest.skip("every drawn op was rejected for this shape")
    mod = byoc.compile(
        model,
        backends=["dnnl", "ref"],
        quiet=True,
        options={"dnnl": {"threads": 2, "conv_layout": layout}},
    )
    got = mod.run(feeds)
    for head, want in zip(model.graph.output, run_ort(model, feeds), strict=True):
        assert_close(got[head.name], want, 1e-4, f"{family} {seed}: {head.name}")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_random_graphs_run_on_dnnl(family: str) -> None:
    # The comparison above proves little if the graphs went to the fallback.
    build, seeds = FAMILIES[family]
    placed = {"dnnl": 0, "other": 0}
    for seed in seeds[:40]:
        model, _ = build(seed)
        if not model.graph.node:
            continue
        mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True)
        assert mod.partition is not None
        for d in mod.partition.decisions:
            placed["dnnl" if d.backend == "dnnl" else "other"] += 1
    assert placed["dnnl"] >= 0.95 * sum(placed.values()), placed
