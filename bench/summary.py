"""Summarize several ``bench/run.py`` result files: the spread across processes.

One process can land in a slow state for its whole life on a shared machine
(the same model's ratio has differed by 2x between back-to-back processes), so
a single run's ratios are not the answer. Run ``python -m bench.run`` a few
times, then::

    python -m bench.summary bench/results/A.json bench/results/B.json ...

prints, per model and thread count, the median of the runs' ratios with their
range, and the median % of peak of both runtimes.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any


def summarize(paths: list[Path]) -> list[dict[str, Any]]:
    """One row per (model, threads) over every result file given."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        for row in json.loads(path.read_text())["results"]:
            groups[(row["model"], row["threads"])].append(row)
    out = []
    for (model, threads), rows in sorted(
        groups.items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        ratios = [r["ratio"] for r in rows]
        out.append(
            {
                "model": model,
                "threads": threads,
                "runs": len(rows),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "byoc_pct_peak": statistics.median(r["byoc_pct_peak"] for r in rows),
                "ort_pct_peak": statistics.median(r["ort_pct_peak"] for r in rows),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="bench/run.py JSON files")
    args = parser.parse_args(argv)
    rows = summarize(args.files)
    print(
        f"{'model':12s} {'thr':>3s} {'runs':>4s} {'ratio':>6s} {'range':>13s} "
        f"{'byoc %peak':>10s} {'ort %peak':>9s}"
    )
    for r in rows:
        print(
            f"{r['model']:12s} {r['threads']:3d} {r['runs']:4d} "
            f"{r['ratio_median']:6.3f} {r['ratio_min']:6.3f}-{r['ratio_max']:6.3f} "
            f"{r['byoc_pct_peak']:10.1f} {r['ort_pct_peak']:9.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
