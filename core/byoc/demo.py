"""The bundled example model and the ``byoc demo`` job.

The demo is the README's first command: build a small ResNet-style CNN (fixed
seed, built with onnx.helper so nothing is downloaded), compile it on every
available backend, save and reload the artifact, run it, compare with
onnxruntime, and print the partition and timings. It exercises the whole flow a
user meets: import -> partition -> serialize -> load -> init -> run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .compiler import compile
from .driver import load
from .registry import backends as installed_backends
from .report import backends_table, human_bytes, table


def demo_cnn(seed: int = 0, batch: int | str = 1, size: int = 32) -> onnx.ModelProto:
    """A small ResNet-style CNN: stem, two residual blocks, pooling, classifier.

    Covers Conv(+BatchNormalization), Relu, residual Add, MaxPool,
    GlobalAveragePool, Flatten, Gemm and Softmax at opset 17.
    """
    rng = np.random.default_rng(seed)
    inits: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv_bn(
        x: str, cin: int, cout: int, k: int, stride: int, name: str, relu: bool
    ) -> str:
        fan_in = cin * k * k
        w = const(f"{name}.w", rng.normal(0, (2 / fan_in) ** 0.5, (cout, cin, k, k)))
        nodes.append(
            helper.make_node(
                "Conv",
                [x, w],
                [f"{name}.conv"],
                name=f"{name}.conv",
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
            )
        )
        bn = [
            const(f"{name}.bn.{p}", v)
            for p, v in (
                ("scale", rng.uniform(0.5, 1.5, cout)),
                ("bias", rng.normal(0, 0.1, cout)),
                ("mean", rng.normal(0, 0.1, cout)),
                ("var", rng.uniform(0.5, 1.5, cout)),
            )
        ]
        out = f"{name}.bn"
        nodes.append(
            helper.make_node(
                "BatchNormalization",
                [f"{name}.conv", *bn],
                [out],
                name=out,
                epsilon=1e-5,
            )
        )
        if relu:
            nodes.append(
                helper.make_node("Relu", [out], [f"{name}.relu"], name=f"{name}.relu")
            )
            out = f"{name}.relu"
        return out

    def block(x: str, cin: int, cout: int, stride: int, name: str) -> str:
        h = conv_bn(x, cin, cout, 3, stride, f"{name}.a", relu=True)
        h = conv_bn(h, cout, cout, 3, 1, f"{name}.b", relu=False)
        skip = (
            x
            if stride == 1 and cin == cout
            else conv_bn(x, cin, cout, 1, stride, f"{name}.down", relu=False)
        )
        nodes.append(
            helper.make_node("Add", [h, skip], [f"{name}.add"], name=f"{name}.add")
        )
        nodes.append(
            helper.make_node(
                "Relu", [f"{name}.add"], [f"{name}.out"], name=f"{name}.out"
            )
        )
        return f"{name}.out"

    x = conv_bn("input", 3, 16, 3, 1, "stem", relu=True)
    nodes.append(
        helper.make_node(
            "MaxPool", [x], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]
        )
    )
    x = block("pool", 16, 16, 1, "block1")
    x = block(x, 16, 32, 2, "block2")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flat", axis=1))
    fc_w = const("fc.w", rng.normal(0, 0.1, (10, 32)))
    fc_b = const("fc.b", rng.normal(0, 0.1, (10,)))
    nodes.append(
        helper.make_node("Gemm", ["flat", fc_w, fc_b], ["logits"], name="fc", transB=1)
    )
    nodes.append(
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)
    )
    graph = helper.make_graph(
        nodes,
        "byoc_demo_cnn",
        [
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, [batch, 3, size, size]
            )
        ],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="byoc.demo"
    )
    onnx.checker.check_model(model)
    return model


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``repeat`` calls."""
    return interleaved_ms([fn], repeat)[0]


def interleaved_ms(fns: Sequence[Callable[[], object]], repeat: int) -> list[float]:
    """Median milliseconds per call of each of ``fns``, timed in alternating
    blocks of a few calls (``repeat`` in all, each).

    Timing one runtime after the other measures the machine's drift as much as
    the runtimes: on a shared machine the second often ran in another state.
    Each block starts with an untimed call, which also waits out the other
    runtime's spinning worker threads.
    """
    block = 5
    times: list[list[float]] = [[] for _ in fns]
    while len(times[0]) < repeat:
        for fn, samples in zip(fns, times, strict=True):
            fn()
            for _ in range(min(block, repeat - len(samples))):
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
    return [float(np.median(t) * 1e3) if t else float("nan") for t in times]


def run_demo(
    backend_names: Sequence[str] | None = None,
    repeat: int = 20,
    out: TextIO | None = None,
) -> int:
    """The README's main job; returns a process exit code (0 = outputs match)."""
    out = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    model = demo_cnn()
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32), dtype=np.float32)
    say("installed backends:")
    say(backends_table(installed_backends()))
    say()
    t0 = time.perf_counter()
    mod = compile(model, backends=backend_names, quiet=True)
    compile_ms = (time.perf_counter() - t0) * 1e3
    say(mod.placement())
    say(mod.explain())
    say()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.byoc"
        t0 = time.perf_counter()
        mod.save(path)
        save_ms = (time.perf_counter() - t0) * 1e3
        size = path.stat().st_size
        t0 = time.perf_counter()
        loaded = load(path)
        load_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        got = loaded.run({"input": x})["probs"]
        first_ms = (time.perf_counter() - t0) * 1e3
        rows = [
            ("compile", f"{compile_ms:.1f} ms"),
            (f"save ({human_bytes(size)})", f"{save_ms:.1f} ms"),
            ("load", f"{load_ms:.2f} ms"),
            ("first run (builds engines)", f"{first_ms:.2f} ms"),
        ]
        try:
            import onnxruntime as ort
        except ImportError:
            say(
                "onnxruntime is not installed: skipping the comparison (pip install "
                "onnxruntime)"
            )
            run_ms = median_ms(lambda: loaded.run({"input": x}), repeat)
            rows.append((f"run, median of {repeat}", f"{run_ms:.3f} ms"))
            say(table(rows, ("step", "time")))
            return 0
        sess = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        want = sess.run(None, {"input": x})[0]
        run_ms, ort_ms = interleaved_ms(
            [lambda: loaded.run({"input": x}), lambda: sess.run(None, {"input": x})],
            repeat,
        )
    rows.append((f"run, median of {repeat} (alternating)", f"{run_ms:.3f} ms"))
    rows.append((f"onnxruntime run, median of {repeat}", f"{ort_ms:.3f} ms"))
    err = float(np.max(np.abs(got - want)))
    ok = err <= 1e-4 and got.shape == want.shape
    say(
        f"max |byoc - onnxruntime| = {err:.2e} -> {'OK' if ok else 'MISMATCH'} "
        "(tolerance 1e-4)"
    )
    say(table(rows, ("step", "time")))
    return 0 if ok else 1
