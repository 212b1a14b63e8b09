"""What an engine keeps after init: only the constants its primitives read."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
from onnx import helper

import byoc
from byoc_dnnl import handles, passes
from byoc_dnnl.lowering import CONST, Builder

from .helpers import graph_model, run_ort

R = np.random.default_rng(7)
C = 32


def _conv_bn_model():  # noqa: ANN202 - Conv+BatchNormalization, folded at init
    w = lambda *s: (R.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], epsilon=1e-5
        ),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    inits = {
        "w": w(C, C, 3, 3),
        "s": w(C),
        "b": w(C),
        "m": w(C),
        "v": np.abs(w(C)) + 0.5,
    }
    return graph_model(nodes, {"x": (1, C, 10, 10)}, ["y"], inits), inits


@pytest.mark.parametrize("conv_layout", ["auto", "native", "blocked"])
def test_init_drops_the_folded_weights_once_packed(
    conv_layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folded (plain) weights are dead once packed: neither the program
    nor the IR's reference cycles may keep them (they doubled ResNet-50's
    engine memory)."""
    made: list[tuple[tuple[int, ...], weakref.ref[np.ndarray]]] = []
    real = passes._new_const

    def tracking(ir: object, array: np.ndarray) -> object:
        made.append((array.shape, weakref.ref(array)))
        return real(ir, array)  # type: ignore[arg-type]

    monkeypatch.setattr(passes, "_new_const", tracking)
    model, inits = _conv_bn_model()
    mod = byoc.compile(
        model,
        backends=["dnnl"],
        quiet=True,
        options={"dnnl": {"conv_layout": conv_layout}},
    )
    mod.init()
    assert (C, C, 3, 3) in [shape for shape, _ in made], "nothing folded: no subject"
    # Only what a primitive reads stays: the folded bias (plain, as oneDNN
    # takes it), never the plain weights the packed copy was made from.
    prog = mod.get_function(mod.symbols[0]).engine()._program
    kept = {id(b.key) for b in prog.buffers if b.kind == CONST and b.key is not None}
    alive = [a for a in (r() for _, r in made) if a is not None]
    assert [a.shape for a in alive if id(a) not in kept] == []
    assert all(a.ndim == 1 for a in alive)
    feeds = {"x": R.standard_normal((1, C, 10, 10)).astype(np.float32)}
    got = mod.run(feeds)["y"]
    np.testing.assert_allclose(got, run_ort(model, feeds)[0], rtol=1e-4, atol=1e-5)


def test_program_keeps_only_constants_a_step_reads() -> None:
    model, inits = _conv_bn_model()
    mod = byoc.compile(model, backends=["dnnl"], quiet=True)
    mod.init()
    prog = mod.get_function(mod.symbols[0]).engine()._program
    read = {prog.slots[s].buffer for step in prog.steps for _, s in step.args}
    live = [
        i for i, b in enumerate(prog.buffers) if b.kind == CONST and b.key is not None
    ]
    assert live and set(live) <= read
    # The packed weights and the bias, not a second (plain) copy of them.
    assert prog.const_bytes < 1.5 * inits["w"].nbytes


def test_folded_weights_die_while_the_next_layers_are_lowered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Peak memory: a layer's plain weights go once it is lowered, not when
    the whole program is done (else init holds every weight twice)."""
    w = lambda *s: (R.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    nodes, inits, x = [], {}, "x"
    for i in range(3):
        nodes += [
            helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node(
                "BatchNormalization",
                [f"c{i}", f"s{i}", f"b{i}", f"m{i}", f"v{i}"],
                [f"n{i}"],
            ),
            helper.make_node("Relu", [f"n{i}"], [f"r{i}"]),
        ]
        inits.update({f"w{i}": w(C, C, 3, 3), f"s{i}": w(C), f"b{i}": w(C)})
        inits.update({f"m{i}": w(C), f"v{i}": np.abs(w(C)) + 0.5})
        x = f"r{i}"
    model = graph_model(nodes, {"x": (1, C, 8, 8)}, [x], inits)
    weights: list[weakref.ref[np.ndarray]] = []
    real_const, real_step = passes._new_const, Builder.add_step

    def tracking(ir: object, array: np.ndarray) -> object:
        if array.ndim == 4:
            weights.append(weakref.ref(array))
        return real_const(ir, array)  # type: ignore[arg-type]

    alive_at_conv: list[list[bool]] = []

    def step(self: Builder, pd: object, args: object, label: str) -> None:
        if label.lower().startswith("conv") and not self.dry:
            alive_at_conv.append([r() is not None for r in weights])
        real_step(self, pd, args, label)  # type: ignore[arg-type]

    monkeypatch.setattr(passes, "_new_const", tracking)
    monkeypatch.setattr(Builder, "add_step", step)
    options = {"dnnl": {"conv_layout": "native", "tune": False}}
    byoc.compile(model, backends=["dnnl"], quiet=True, options=options).init()
    assert len(weights) == 3
    # One step per fused Conv block (support queries lower dry: not counted).
    assert alive_at_conv == [[True] * 3, [False, True, True], [False, False, True]]


def test_release_free_heap_is_safe_to_call() -> None:
    handles.release_free_heap()
    handles.release_free_heap()
