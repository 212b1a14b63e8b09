"""Model builders and oracles shared by the dnnl tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import byoc

OPSET = 17


def single_node(
    op: str,
    inputs: Sequence[tuple[str, Sequence[int] | np.ndarray]],
    n_outputs: int = 1,
    opset: int = OPSET,
    **attrs: Any,
) -> onnx.ModelProto:
    """A one-node model; an input given as an array becomes an initializer."""
    graph_inputs, inits, names = [], [], []
    for name, spec in inputs:
        names.append(name)
        if not name:
            continue
        if isinstance(spec, np.ndarray):
            inits.append(numpy_helper.from_array(spec, name))
        else:
            graph_inputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, list(spec))
            )
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outs, **attrs)
    graph = helper.make_graph(
        [node],
        "t",
        graph_inputs,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def graph_model(
    nodes: list[onnx.NodeProto],
    inputs: Mapping[str, Sequence[int]],
    outputs: Sequence[str],
    inits: Mapping[str, np.ndarray] | None = None,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """A model from nodes, float32 inputs by shape, and initializers."""
    graph = helper.make_graph(
        nodes,
        "t",
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s))
            for n, s in inputs.items()
        ],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def feeds_for(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded float32 inputs for every graph input."""
    rng = np.random.default_rng(seed)
    out = {}
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        out[vi.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def run_ort(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """onnxruntime's CPU results (no graph optimizations: the plain semantics)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(
        model.SerializeToString(), so, providers=["CPUExecutionProvider"]
    )
    return sess.run(None, dict(feeds))


def run_ref(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> list[np.ndarray] | None:
    """byoc-ref's results, or None when ref cannot run the model (yet)."""
    try:
        mod = byoc.compile(model, backends=["ref"], quiet=True)
        out = mod.run(dict(feeds))
    except byoc.ByocError:
        return None
    return list(out.values())


def assert_close(
    got: np.ndarray, want: np.ndarray, rel: float = 1e-4, what: str = ""
) -> None:
    """Equal within ``rel`` of the output's scale (and elementwise ``rel``)."""
    want = np.asarray(want, np.float32)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = float(np.abs(want).max()) if want.size else 1.0
    np.testing.assert_allclose(
        got, want, rtol=rel, atol=rel * max(scale, 1e-3), err_msg=what
    )


def claims(mod: byoc.Module) -> list[str]:
    """Nodes that did not go to dnnl, with dnnl's reasons."""
    assert mod.partition is not None
    return [
        f"{d.op}: {dict(d.declined).get('dnnl', '?')}"
        for d in mod.partition.decisions
        if d.backend not in ("dnnl", "host")
    ]


def check_model(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray] | None = None,
    *,
    rel: float = 1e-4,
    options: Mapping[str, Any] | None = None,
) -> byoc.Module:
    """dnnl must claim every node and match onnxruntime and byoc-ref."""
    feeds = feeds if feeds is not None else feeds_for(model)
    mod = byoc.compile(
        model,
        backends=["dnnl", "ref"],
        quiet=True,
        options={"dnnl": dict(options)} if options else None,
    )
    assert not claims(mod), claims(mod)
    got = list(mod.run(dict(feeds)).values())
    for i, want in enumerate(run_ort(model, feeds)):
        assert_close(got[i], want, rel, f"output {i} vs onnxruntime")
    ref = run_ref(model, feeds)
    if ref is not None:
        for i, want in enumerate(ref):
            assert_close(got[i], want, rel, f"output {i} vs byoc-ref")
    return mod


def engine_steps(mod: byoc.Module) -> list[tuple[str, str, tuple[str, ...]]]:
    """(label, impl, post-op kinds) of every primitive of every dnnl subgraph."""
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for rec in mod.subgraphs:
        if rec.backend == "dnnl":
            out += mod.get_function(rec.symbol).engine().describe()  # type: ignore[attr-defined]
    return out
