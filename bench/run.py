"""Interleaved latency comparison: byoc (dnnl + ref) against onnxruntime's CPU path.

Run from the repository root::

    python -m bench.run                       # all models, 1 and 2 threads
    python -m bench.run --models resnet50 --threads 2 --rounds 15

Everything happens in ONE process. For every model and thread count the two
runtimes alternate in blocks (``--block`` timed runs each, after one untimed
run that lets the other runtime's spinning worker threads go idle), for
``--rounds`` rounds. Reported per runtime: the median over all timed runs;
the ratio is the median of the per-round ratios, which is robust to the slow
drifts of a noisy machine. See bench/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

if __package__ in (None, ""):  # python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory import format_mb  # noqa: E402
from bench.memory import measure as measure_memory  # noqa: E402
from bench.models import MODELS, example_inputs, flops  # noqa: E402
from bench.peak import cpuinfo  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def ort_session(
    model: onnx.ModelProto, threads: int, profile_prefix: str | None = None
) -> Any:
    """onnxruntime's CPU session as the bench runs it; ``profile_prefix``
    turns its per-node profiling on (``bench/layers.py``)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        model.SerializeToString(), so, providers=["CPUExecutionProvider"]
    )


def _time(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def interleave(
    a: Callable[[], object],
    b: Callable[[], object],
    rounds: int,
    block: int,
    gap: float = 0.1,
) -> tuple[list[float], list[float], list[float]]:
    """Timed runs of ``a`` and ``b`` in alternating blocks, and per-round ratios.

    Both runtimes keep idle worker threads spinning for a while after a run
    (OpenMP for oneDNN, its own pool for onnxruntime); on a small machine those
    spinners would steal the other runtime's cores. Each block therefore starts
    after ``gap`` seconds of quiet and one untimed run.
    """
    ta: list[float] = []
    tb: list[float] = []
    ratios: list[float] = []
    for r in range(rounds):
        first, second = (a, b) if r % 2 == 0 else (b, a)  # alternate who goes first
        time.sleep(gap)
        first()
        x = _time(first, block)
        time.sleep(gap)
        second()
        y = _time(second, block)
        xa, xb = (x, y) if r % 2 == 0 else (y, x)
        ta += xa
        tb += xb
        ratios.append(statistics.median(xa) / statistics.median(xb))
    return ta, tb, ratios


# -- machine peak --------------------------------------------------------------------


def _matmul_model(n: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "peak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def measure_peak(threads: int, n: int = 2048, runs: int = 24) -> dict[str, float]:
    """The fp32 peak: an AVX-512 or AVX2 FMA loop (bench/peak.py), and a large matmul.

    ``peak`` is the FMA loop's GFLOP/s where it runs, else the best large-matmul
    run of oneDNN (byoc) or onnxruntime (on a noisy machine the fastest run is
    the closest to what the cores can do).
    """
    import byoc
    from bench.peak import fma_peak

    model = _matmul_model(n)
    x = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    work = 2.0 * n**3
    mod = byoc.compile(
        model, backends=["dnnl"], quiet=True, options={"dnnl": {"threads": threads}}
    )
    sess = ort_session(model, threads)
    tb, to, _ = interleave(
        lambda: mod.run({"x": x}),
        lambda: sess.run(None, {"x": x}),
        rounds=max(2, runs // 4),
        block=4,
    )
    best = {
        "matmul_dnnl": work / min(tb) / 1e9,
        "matmul_onnxruntime": work / min(to) / 1e9,
    }
    best["matmul"] = max(best.values())
    fma = fma_peak(threads)
    if fma is not None:
        best["fma_loop"] = fma
    best["peak"] = fma if fma is not None else best["matmul"]
    return best


def _choice(choice: Any) -> dict[str, Any]:
    """A dnnl engine's layout choice for the results file; the implementation
    picks (one per timed problem) as a count per implementation name."""
    out = dict(vars(choice))
    out["impls"] = dict(Counter(out.get("impls", {}).values()))
    return out


# -- driver overhead -----------------------------------------------------------------


def driver_overhead(threads: int, runs: int = 3000) -> dict[str, float]:
    """Microseconds per call of a one-primitive subgraph at each layer of the stack.

    ``module_run``: byoc.Module.run (input checks, host plan, Backend.__call__
    result checks, the engine); ``engine_run``: the dnnl engine's run alone;
    ``primitives``: only the dnnl_primitive_execute calls. The driver's
    overhead per subgraph call is ``module_run - primitives``.
    """
    import byoc

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    mod = byoc.compile(
        model, backends=["dnnl"], quiet=True, options={"dnnl": {"threads": threads}}
    )
    x = np.zeros((1, 16), np.float32)
    feeds = {"x": x}
    engine = mod.get_function(mod.symbols[0]).engine()
    name = engine.graph.input_names[0]
    prog = engine._program  # type: ignore[attr-defined]
    ctx = prog._pool[0]
    calls, execute, stream = ctx.calls, ctx._execute, ctx.stream.h
    out_buf = np.empty((1, 16), np.float32)

    def primitives() -> None:
        for prim, n, args in calls:
            execute(prim, stream, n, args)

    if ctx._loop_call is not None:  # the engine runs its steps from C
        loop_call, n_steps = ctx._loop_call, len(calls)

        def primitives() -> None:
            loop_call(0, n_steps)

    def bind() -> None:
        # The run path points the I/O memory objects at the arrays of the last
        # run, which are gone by now: point them at arrays that stay alive.
        for mem, _, _ in ctx.in_bind:
            ctx._set_handle(mem, x.ctypes.data)
        for mem, _, _ in ctx.out_bind:
            ctx._set_handle(mem, out_buf.ctypes.data)

    def best(fn: Callable[[], object]) -> float:
        for _ in range(200):
            fn()
        samples = []
        for _ in range(7):
            t = time.perf_counter()
            for _ in range(runs // 7):
                fn()
            samples.append((time.perf_counter() - t) / (runs // 7))
        return min(samples) * 1e6

    out = {
        "module_run_us": best(lambda: mod.run(feeds)),
        "engine_run_us": best(lambda: engine.run({name: x})),
    }
    bind()
    out["primitives_us"] = best(primitives)
    out["driver_overhead_us"] = out["module_run_us"] - out["primitives_us"]
    return out


# -- one model -------------------------------------------------------------------------


def bench_model(
    name: str, threads: int, rounds: int, block: int, gap: float, peak: float, tmp: Path
) -> dict[str, Any]:
    """Compile, load, check and time one model at one thread count."""
    import byoc

    model = MODELS[name]()
    feeds = example_inputs(model)
    work = flops(model)
    # A decision cache of its own, empty at first: init below times (a miss),
    # the second init further down reads what the first stored (a hit).
    cache_dir = tmp / f"dnnl-cache-{name}-{threads}"
    opts = {"dnnl": {"threads": threads, "cache_dir": str(cache_dir)}}

    t0 = time.perf_counter()
    mod = byoc.compile(model, backends=["dnnl", "ref"], quiet=True, options=opts)
    t1 = time.perf_counter()
    path = mod.save(tmp / f"{name}.byoc")
    t2 = time.perf_counter()
    loaded = byoc.load(path, options=opts)
    t3 = time.perf_counter()
    loaded.init()
    t4 = time.perf_counter()
    sess = ort_session(model, threads)
    t5 = time.perf_counter()

    # A deployment that ships the engines (the timed layout choice) skips the timing.
    shipped = loaded.save(tmp / f"{name}.engines.byoc", engines=True)
    t6 = time.perf_counter()
    byoc.load(shipped, options=opts).init()
    t7 = time.perf_counter()
    byoc.load(path, options=opts).init()
    t8 = time.perf_counter()

    # Each runtime's memory, in a fresh process of its own.
    onnx_path = tmp / f"{name}.onnx"
    onnx.save(model, onnx_path)
    mem_byoc = measure_memory("byoc", shipped, feeds, threads, opts)
    mem_ort = measure_memory("onnxruntime", onnx_path, feeds, threads)

    got = next(iter(loaded.run(feeds).values()))
    want = sess.run(None, feeds)[0]
    err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))

    tb, to, ratios = interleave(
        lambda: loaded.run(feeds), lambda: sess.run(None, feeds), rounds, block, gap
    )
    mb, mo = statistics.median(tb), statistics.median(to)
    placement = {r.symbol: r.backend for r in loaded.subgraphs}
    layouts = {
        r.symbol: _choice(loaded.get_function(r.symbol).engine().layout_choice)  # type: ignore[attr-defined]
        for r in loaded.subgraphs
        if r.backend == "dnnl"
    }
    return {
        "model": name,
        "threads": threads,
        "gflop": work / 1e9,
        "byoc_ms": mb * 1e3,
        "ort_ms": mo * 1e3,
        "byoc_min_ms": min(tb) * 1e3,
        "ort_min_ms": min(to) * 1e3,
        "ratio": statistics.median(ratios),
        "ratio_quartiles": quartiles(ratios),
        "ratio_of_medians": mb / mo,
        "byoc_gflops": work / mb / 1e9,
        "ort_gflops": work / mo / 1e9,
        "byoc_pct_peak": 100 * work / mb / 1e9 / peak,
        "ort_pct_peak": 100 * work / mo / 1e9 / peak,
        "compile_s": t1 - t0,
        "save_s": t2 - t1,
        "load_s": t3 - t2,
        "init_s": t4 - t3,
        "prebuilt_load_init_s": t7 - t6,
        "cached_load_init_s": t8 - t7,
        "ort_session_s": t5 - t4,
        "byoc_anon_mb": mem_byoc["anon_mb"] if mem_byoc else None,
        "ort_anon_mb": mem_ort["anon_mb"] if mem_ort else None,
        "max_rel_err_vs_ort": err,
        "subgraphs": placement,
        "conv_layout": layouts,
        "samples": len(tb),
    }


def quartiles(xs: list[float]) -> list[float]:
    """First and third quartile: how far single rounds' ratios spread around
    the median (the machine's noise, which one ratio alone hides)."""
    if len(xs) < 2:
        return [*xs, *xs]
    q1, _, q3 = statistics.quantiles(xs, n=4)
    return [q1, q3]


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'model':12s} {'thr':>3s} {'byoc ms':>9s} {'ort ms':>9s} {'ratio':>6s} "
        f"{'byoc GF/s':>9s} {'%peak':>6s} {'ort GF/s':>9s} {'%peak':>6s} "
        f"{'compile s':>9s} {'load s':>7s} {'init s':>7s} {'prebuilt':>8s} "
        f"{'cached':>7s} {'MB byoc':>7s} {'MB ort':>6s} {'subgr':>5s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:12s} {r['threads']:3d} {r['byoc_ms']:9.2f} "
            f"{r['ort_ms']:9.2f} "
            f"{r['ratio']:6.3f} {r['byoc_gflops']:9.1f} {r['byoc_pct_peak']:6.1f} "
            f"{r['ort_gflops']:9.1f} {r['ort_pct_peak']:6.1f} {r['compile_s']:9.3f} "
            f"{r['load_s']:7.4f} {r['init_s']:7.3f} {r['prebuilt_load_init_s']:8.3f} "
            f"{r['cached_load_init_s']:7.3f} {format_mb(r['byoc_anon_mb']):>7s} "
            f"{format_mb(r['ort_anon_mb']):>6s} {len(r['subgraphs']):5d}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated subset of {','.join(MODELS)}",
    )
    parser.add_argument(
        "--threads", default="1,2", help="comma-separated thread counts"
    )
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds")
    parser.add_argument("--block", type=int, default=5, help="timed runs per block")
    parser.add_argument(
        "--gap",
        type=float,
        default=0.1,
        help="seconds of quiet before each block (idle spinners sleep)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="JSON path (default: bench/results/<UTC timestamp>.json)",
    )
    args = parser.parse_args(argv)

    import byoc

    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    thread_counts = [int(t) for t in args.threads.split(",") if t]
    rows: list[dict[str, Any]] = []
    peaks: dict[int, dict[str, float]] = {}
    overheads: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        for threads in thread_counts:
            peaks[threads] = measure_peak(threads)
            overheads[threads] = driver_overhead(threads)
            pk = peaks[threads]
            print(
                f"[{threads} thread(s)] peak {pk['peak']:.1f} GFLOP/s (FMA loop "
                f"{pk.get('fma_loop', float('nan')):.1f}; 2048^3 matmul: dnnl "
                f"{pk['matmul_dnnl']:.1f}, onnxruntime "
                f"{pk['matmul_onnxruntime']:.1f}); "
                "driver overhead per subgraph call "
                f"{overheads[threads]['driver_overhead_us']:.1f} us",
                flush=True,
            )
            for name in names:
                row = bench_model(
                    name,
                    threads,
                    args.rounds,
                    args.block,
                    args.gap,
                    peaks[threads]["peak"],
                    Path(tmpdir),
                )
                rows.append(row)
                q1, q3 = row["ratio_quartiles"]
                print(
                    f"  {name:12s} byoc {row['byoc_ms']:8.2f} ms  "
                    f"ort {row['ort_ms']:8.2f} ms  ratio {row['ratio']:.3f} "
                    f"(rounds {q1:.3f} - {q3:.3f})  "
                    f"err {row['max_rel_err_vs_ort']:.1e}",
                    flush=True,
                )
    print()
    print(_table(rows))
    for t in thread_counts:
        o = overheads[t]
        print(
            f"driver overhead ({t} thr): Module.run {o['module_run_us']:.1f} us, "
            "engine "
            f"{o['engine_run_us']:.1f} us, primitives {o['primitives_us']:.1f} us -> "
            f"{o['driver_overhead_us']:.1f} us per subgraph call"
        )
    import onnxruntime

    from byoc_dnnl import runloop

    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            # results from different machines must not mix
            "cpu_model": cpuinfo("model name") or platform.processor(),
            "cpus": os.cpu_count(),
        },
        "versions": {
            "byoc": byoc.__version__,
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
        },
        "settings": {"rounds": args.rounds, "block": args.block, "gap_s": args.gap},
        # how dnnl ran its steps: "compiled" (byoc_dnnl/runloop.c) or why not
        "dnnl_run_loop": runloop.unavailable_reason() or "compiled",
        "peak_gflops": peaks,
        "driver_overhead": overheads,
        "results": rows,
    }
    out = (
        Path(args.out)
        if args.out
        else RESULTS / (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, sort_keys=True))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
