"""Per layer: where byoc's dnnl program gains or loses against onnxruntime.

Run from the repository root::

    python -m bench.layers --model resnet50 --threads 2 --rounds 12

``run.py`` says how much faster or slower a model is; this says which layers
make the difference. Everything happens in ONE process: onnxruntime with
profiling on (its per-node kernel times) and the dnnl program timing each
step as it runs in the model (``Program.step_seconds``) alternate in blocks,
each after a quiet gap and one untimed run, as in ``run.py``. Both sides'
times are attributed to the ONNX Conv, ConvTranspose, Gemm or MatMul each
fused kernel starts from, so a row pairs the same layer; whatever has no
such host (reorders, pooling, softmax ...) is summed as "other". Profiling
costs onnxruntime microseconds per node, so its per-layer times are above
its unprofiled ones; the report gives both runtimes' whole runs, and
onnxruntime's profiled and not, to size that.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import onnx

if __package__ in (None, ""):  # python bench/layers.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.models import MODELS, example_inputs  # noqa: E402
from bench.run import RESULTS, ort_session  # noqa: E402

HOSTS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
"""The ops a fused kernel is named after (its first node) on both sides."""
EPILOGUES = ("BatchNormalization", "Relu", "Clip", "Sigmoid", "Add", "LeakyRelu")
"""The ops fused after a host that either runtime may name a kernel after."""


def host_finder(model: onnx.ModelProto) -> Callable[[str], str | None]:
    """Node name -> the host node its fused kernel starts from, walking first
    inputs up through epilogue ops (Relu <- BatchNormalization <- Conv), or
    None (a pooling, a reorder, a softmax ...)."""
    producer = {out: n for n in model.graph.node for out in n.output}
    by_name = {n.name: n for n in model.graph.node}

    def find(name: str) -> str | None:
        node = by_name.get(name)
        while node is not None and node.op_type in EPILOGUES:
            node = producer.get(node.input[0])
        return node.name if node is not None and node.op_type in HOSTS else None

    return find


def ort_node_us(profile: Path, every: int = 2) -> dict[str, float]:
    """Median microseconds per onnxruntime node in ``profile``, of the last
    of each ``every`` runs (the others were untimed warm-ups)."""
    samples: dict[str, list[float]] = defaultdict(list)
    for event in json.loads(profile.read_text()):
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            samples[name.removesuffix("_kernel_time")].append(float(event["dur"]))
    return {
        n: statistics.median(v[every - 1 :: every] or v) for n, v in samples.items()
    }


def compare(
    model: onnx.ModelProto,
    threads: int,
    rounds: int,
    gap: float = 0.1,
    dnnl_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Per-layer medians of both runtimes on ``model`` (seeded inputs);
    ``dnnl_options`` are added to dnnl's ``threads`` (``conv_layout`` ...)."""
    import byoc

    name = model.graph.name
    feeds = example_inputs(model)
    host = host_finder(model)
    mod = byoc.compile(
        model,
        backends=["dnnl", "ref"],
        quiet=True,
        options={"dnnl": {**(dnnl_options or {}), "threads": threads}},
    )
    dnnl = [r for r in mod.subgraphs if r.backend == "dnnl"]
    if len(dnnl) != 1:
        raise SystemExit(f"{name}: {len(dnnl)} dnnl subgraphs; this compares one")
    engine = mod.get_function(dnnl[0].symbol).engine()
    program = getattr(engine, "_program", None)
    if program is None:
        raise SystemExit(f"{name}: the dnnl engine has no static program")
    missing = [n for n in engine.graph.input_names if n not in feeds]
    if missing:
        raise SystemExit(f"{name}: the dnnl subgraph reads {missing}, not model inputs")
    sub_feeds = {n: feeds[n] for n in engine.graph.input_names}

    # Whole runs too, onnxruntime unprofiled as well: profiling costs it
    # microseconds per node, which on a model of small kernels is no longer
    # "a little" (the report shows both).
    plain = ort_session(model, threads)
    runs: dict[str, list[float]] = {"byoc": [], "ort": [], "ort_profiled": []}

    def settled(fn: Callable[[], object]) -> None:
        # Every timed run is the second after a quiet gap, as in run.py. Steps
        # timed right after the whole run (no gap) summed to 5-15 % less than
        # it on the MLP and MobileNetV2: the machine was still warm.
        time.sleep(gap)
        fn()

    def timed(key: str, fn: Callable[[], object]) -> None:
        settled(fn)
        t = time.perf_counter()
        fn()
        runs[key].append((time.perf_counter() - t) * 1e3)

    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(model, threads, profile_prefix=os.path.join(tmp, "ort"))
        steps: list[list[float]] = [[] for _ in program.steps]
        for _ in range(rounds):
            timed("ort_profiled", lambda: sess.run(None, feeds))
            timed("ort", lambda: plain.run(None, feeds))
            timed("byoc", lambda: program.run(sub_feeds))
            settled(lambda: program.run(sub_feeds))
            for i, secs in enumerate(program.step_seconds(sub_feeds)):
                steps[i].append(secs * 1e6)
        ort_us = ort_node_us(Path(sess.end_profiling()), every=2)

    rows: dict[str, dict[str, Any]] = {}
    other = {"byoc_us": 0.0, "ort_us": 0.0}
    for step, samples in zip(program.steps, steps, strict=True):
        us = statistics.median(samples)
        h = host(step.label)
        if h is None:
            other["byoc_us"] += us
            continue
        row = rows.setdefault(
            h, {"layer": h, "impl": "", "byoc_us": 0.0, "ort_us": 0.0}
        )
        row["impl"] = row["impl"] or step.impl
        row["byoc_us"] += us
    for node, us in ort_us.items():
        # onnxruntime names a fused node after one of its nodes: "relu_8_nchwc",
        # "matmul_10/MatMulAddFusion", "fused gemm_3".
        h = host(node.split("/")[0].split(" ")[-1].removesuffix("_nchwc"))
        if h is not None and h in rows:
            rows[h]["ort_us"] += us
        else:
            other["ort_us"] += us
    by_impl: dict[str, dict[str, float]] = {}
    for row in rows.values():
        agg = by_impl.setdefault(
            row["impl"], {"layers": 0, "byoc_us": 0.0, "ort_us": 0.0}
        )
        agg["layers"] += 1
        agg["byoc_us"] += row["byoc_us"]
        agg["ort_us"] += row["ort_us"]
    return {
        "model": name,
        "threads": threads,
        "rounds": rounds,
        "layers": list(rows.values()),
        "by_impl": by_impl,
        "other": other,
        "run_ms": {k: statistics.median(v) for k, v in runs.items()},
    }


def _report(result: dict[str, Any]) -> str:
    lines = [
        f"{'layer':28s} {'dnnl kernel':20s} {'byoc us':>9s} {'ort us':>9s} "
        f"{'ratio':>6s}"
    ]
    for r in result["layers"]:
        ratio = r["byoc_us"] / r["ort_us"] if r["ort_us"] else float("nan")
        lines.append(
            f"{r['layer']:28s} {r['impl']:20s} {r['byoc_us']:9.0f} {r['ort_us']:9.0f} "
            f"{ratio:6.2f}"
        )
    lines.append("")
    lines.append(
        f"{'dnnl kernel':20s} {'layers':>6s} {'byoc ms':>8s} {'ort ms':>8s} "
        f"{'diff ms':>8s}"
    )
    for impl, a in sorted(result["by_impl"].items(), key=lambda kv: -kv[1]["byoc_us"]):
        lines.append(
            f"{impl:20s} {a['layers']:6d} {a['byoc_us'] / 1e3:8.2f} "
            f"{a['ort_us'] / 1e3:8.2f} {(a['byoc_us'] - a['ort_us']) / 1e3:+8.2f}"
        )
    o = result["other"]
    lines.append(
        f"{'other':20s} {'':6s} {o['byoc_us'] / 1e3:8.2f} {o['ort_us'] / 1e3:8.2f}"
    )
    tb = sum(r["byoc_us"] for r in result["layers"]) + o["byoc_us"]
    to = sum(r["ort_us"] for r in result["layers"]) + o["ort_us"]
    lines.append(
        f"{'total':20s} {'':6s} {tb / 1e3:8.2f} {to / 1e3:8.2f} {(tb - to) / 1e3:+8.2f}"
    )
    ms = result["run_ms"]
    lines.append(
        f"\nwhole runs: byoc {ms['byoc']:.2f} ms, onnxruntime {ms['ort']:.2f} ms "
        f"(profiled: {ms['ort_profiled']:.2f} ms, which the per-layer times carry)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50", choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--gap", type=float, default=0.1)
    parser.add_argument(
        "--out", default=None, help="JSON path (default: bench/results/)"
    )
    parser.add_argument(
        "--dnnl-options",
        default="{}",
        help='more dnnl options as JSON, e.g. \'{"conv_layout": "blocked"}\'',
    )
    args = parser.parse_args(argv)
    extra = json.loads(args.dnnl_options)
    result = compare(MODELS[args.model](), args.threads, args.rounds, args.gap, extra)
    result["dnnl_options"] = extra
    print(_report(result))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else RESULTS / f"layers-{args.model}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
