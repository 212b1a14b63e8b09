"""The ``byoc`` command line: backends, compile, run, inspect, demo.

A thin layer over the public API; every command maps to a few calls a user
could make from Python, and errors surface as one line (exit code 2) instead of
a traceback, since a ByocError message already says what to do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .artifact import read_artifact
from .cache import describe_events
from .compiler import compile
from .demo import run_demo
from .driver import Module, load
from .errors import ByocError, InputError
from .registry import backends, get_registry
from .report import backends_table, human_bytes, subgraph_table, table


def _cmd_backends(args: argparse.Namespace) -> int:
    rows = backends()
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
    elif rows:
        print(backends_table(rows))
    else:
        print("no backends installed (pip install byoc-ref)")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    names = args.backends.split(",") if args.backends else None
    if args.target:
        names = [args.target]  # a deployment target: everything on it, no fallback
    t0 = time.perf_counter()
    mod = compile(args.model, backends=names, min_subgraph_size=args.min_subgraph_size)
    elapsed = (time.perf_counter() - t0) * 1e3
    if args.explain:
        print(mod.explain())
    out = Path(args.output or Path(args.model).with_suffix(".byoc"))
    mod.save(out, engines=args.engines)
    print(f"wrote {out} ({human_bytes(out.stat().st_size)}) in {elapsed:.0f} ms")
    return 0


def _parse_pairs(items: Sequence[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"{what} must look like name=value, got {item!r}")
        pairs[name] = value
    return pairs


def _random_inputs(
    mod: Module, given: dict[str, np.ndarray], dims: dict[str, int], seed: int
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = dict(given)
    for t in mod.inputs:
        if t.name in feeds:
            continue
        shape = [d if isinstance(d, int) else dims.get(d, 1) for d in (t.shape or ())]
        if t.dtype == "bool":
            feeds[t.name] = rng.random(shape) > 0.5
        elif t.dtype.startswith(("int", "uint")):
            feeds[t.name] = rng.integers(0, 4, shape).astype(t.dtype)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
    return feeds


def _cmd_run(args: argparse.Namespace) -> int:
    mod = load(args.artifact)
    given = {k: np.load(v) for k, v in _parse_pairs(args.input, "--input").items()}
    dims = {k: int(v) for k, v in _parse_pairs(args.dim, "--dim").items()}
    feeds = _random_inputs(mod, given, dims, args.seed)
    t0 = time.perf_counter()
    outs = mod.run(feeds)
    first = (time.perf_counter() - t0) * 1e3
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        mod.run(feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    rows = [(n, str(a.dtype), list(a.shape)) for n, a in outs.items()]
    print(table(rows, ("output", "dtype", "shape")))
    print(f"first run (with engine init): {first:.3f} ms")
    if times:
        print(
            f"latency over {args.repeat} runs: median {np.median(times):.3f} ms, "
            f"min {np.min(times):.3f} ms"
        )
    if args.verbose:
        print(mod.placement())
        for line in describe_events():
            print(line)
    if args.save_outputs:
        out_dir = Path(args.save_outputs)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, array in outs.items():
            np.save(out_dir / f"{name.replace('/', '_')}.npy", array)
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    path = Path(args.artifact)
    art = read_artifact(path, get_registry().codecs())
    if args.json:
        doc = {
            "host": art.host.to_dict(),
            "subgraphs": [
                {
                    "symbol": s.symbol,
                    "backend": s.backend,
                    "backend_version": s.backend_version,
                    "graph": s.graph.to_dict(),
                    "meta": dict(s.meta),
                }
                for s in art.subgraphs
            ],
            "constants": {
                k: {"dtype": v.dtype.name, "shape": list(v.shape)}
                for k, v in art.consts.items()
            },
            "engines": {
                k: {
                    "backend": e.backend,
                    "backend_version": e.backend_version,
                    "bytes": len(e.data),
                }
                for k, e in art.engines.items()
            },
        }
        print(json.dumps(doc, indent=1))
        return 0
    host = art.host
    print(
        f"{path}: {human_bytes(path.stat().st_size)}, written by byoc "
        f"{art.meta.get('byoc_version', '?')}"
    )
    print(
        "inputs:  "
        + ", ".join(
            f"{host.nodes[i].name}: {host.nodes[i].dtypes[0]}"
            f"{list(host.nodes[i].shapes[0] or ['?'])}"
            for i in host.input_ids
        )
    )
    print(
        "outputs: "
        + ", ".join(
            f"{n}: {host.spec(h).dtype}{list(host.spec(h).shape or ['?'])}"
            for n, h in zip(host.output_names, host.heads, strict=True)
        )
    )
    print()
    print(subgraph_table(art.subgraphs, art.consts))
    for rec in art.subgraphs:
        if rec.meta:
            shown = ", ".join(
                f"{k}={_short(json.dumps(v))}" for k, v in rec.meta.items()
            )
            print(f"{rec.symbol} plan: {shown}")
    total = sum(int(a.nbytes) for a in art.consts.values())
    print(f"\nconstants: {len(art.consts)} tensors, {human_bytes(total)}")
    if art.engines:
        print(
            "prebuilt engines: "
            + ", ".join(
                f"{k} ({e.backend} {e.backend_version}, {human_bytes(len(e.data))})"
                for k, e in art.engines.items()
            )
        )
    return 0


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cmd_demo(args: argparse.Namespace) -> int:
    names = args.backends.split(",") if args.backends else None
    return run_demo(names, repeat=args.repeat)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="byoc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"byoc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("backends", help="list installed backends")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_cmd_backends)

    p = sub.add_parser("compile", help="compile an ONNX model into one artifact")
    p.add_argument("model")
    p.add_argument("-o", "--output", help="artifact path (default: model name + .byoc)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "-b", "--backends", help="comma-separated, priority order, fallback last"
    )
    where.add_argument(
        "-t",
        "--target",
        help="one backend for the whole model (e.g. micro): what it cannot run is "
        "refused with reasons instead of falling back",
    )
    p.add_argument(
        "--explain", action="store_true", help="print the partition and reasons"
    )
    p.add_argument("--min-subgraph-size", type=int, default=1)
    p.add_argument("--engines", action="store_true", help="store prebuilt engines")
    p.set_defaults(fn=_cmd_compile)

    p = sub.add_parser("run", help="run an artifact (random inputs unless given)")
    p.add_argument("artifact")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    p.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="size of a symbolic dim for random inputs (default 1)",
    )
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-outputs", metavar="DIR")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(fn=_cmd_run)

    p = sub.add_parser("inspect", help="show what an artifact holds")
    p.add_argument("artifact")
    p.add_argument("--json", action="store_true", help="dump the JSON graphs")
    p.set_defaults(fn=_cmd_inspect)

    p = sub.add_parser("demo", help="compile, run and check the bundled example CNN")
    p.add_argument(
        "-b", "--backends", help="comma-separated, priority order, fallback last"
    )
    p.add_argument("--repeat", type=int, default=20)
    p.set_defaults(fn=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``byoc`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except ByocError as exc:
        print(f"byoc: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
