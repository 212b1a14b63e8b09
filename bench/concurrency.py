"""Thread-safety strategies of the dnnl engine: context pool vs one context + lock.

Run from the repository root::

    python -m bench.concurrency --models mobilenetv2,mlp --callers 1,2,4

For each model, caller-thread count and dnnl ``threads`` option, N Python
threads call ``Module.run`` on ONE loaded module concurrently; reported is
the throughput (inferences/s, median of rounds) with ``concurrency="pool"``
(each concurrent run gets its own execution context: arena, scratchpad,
memory objects) and ``concurrency="lock"`` (one context, runs serialized).
The two strategies alternate round by round in one process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.models import MODELS, example_inputs  # noqa: E402


def throughput(mod: Any, feeds: dict, callers: int, runs_each: int) -> float:
    """Inferences per second with ``callers`` threads sharing ``mod``."""
    barrier = threading.Barrier(callers + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(runs_each):
            mod.run(feeds)

    threads = [threading.Thread(target=work) for _ in range(callers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return callers * runs_each / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mobilenetv2,mlp")
    parser.add_argument("--callers", default="1,2,4")
    parser.add_argument("--threads", default="1,2", help="dnnl threads option values")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--runs", type=int, default=20, help="runs per caller per round"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import byoc

    rows = []
    for name in args.models.split(","):
        model = MODELS[name]()
        feeds = example_inputs(model)
        for threads in (int(t) for t in args.threads.split(",")):
            mods = {
                mode: byoc.compile(
                    model,
                    backends=["dnnl", "ref"],
                    quiet=True,
                    options={"dnnl": {"threads": threads, "concurrency": mode}},
                )
                for mode in ("pool", "lock")
            }
            for mod in mods.values():
                mod.init()
                mod.run(feeds)
            for callers in (int(c) for c in args.callers.split(",")):
                got: dict[str, list[float]] = {"pool": [], "lock": []}
                for r in range(args.rounds):
                    order = ("pool", "lock") if r % 2 == 0 else ("lock", "pool")
                    for mode in order:
                        time.sleep(0.1)  # let idle spinning workers go to sleep
                        got[mode].append(
                            throughput(mods[mode], feeds, callers, args.runs)
                        )
                row = {
                    "model": name,
                    "threads": threads,
                    "callers": callers,
                    "pool_per_s": statistics.median(got["pool"]),
                    "lock_per_s": statistics.median(got["lock"]),
                }
                row["pool_over_lock"] = row["pool_per_s"] / row["lock_per_s"]
                rows.append(row)
                print(
                    f"{name:12s} threads={threads} callers={callers}: pool "
                    f"{row['pool_per_s']:8.1f}/s  lock {row['lock_per_s']:8.1f}/s  "
                    f"pool/lock {row['pool_over_lock']:.2f}",
                    flush=True,
                )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
