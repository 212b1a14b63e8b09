"""Summarize several ``bench/run.py`` result files: the spread across processes.

One process can land in a slow state for its whole life on a shared machine
(the same model's ratio has differed by 2x between back-to-back processes), so
a single run's ratios are not the answer. Run ``python -m bench.run`` a few
times, then::

    python -m bench.summary bench/results/A.json bench/results/B.json ...

prints, per model and thread count, the median of the runs' ratios with their
range, the median % of peak of both runtimes, and for 2 threads whether the
median meets the target of issue #4 (:data:`TARGETS`) and in how many runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.memory import format_mb

TARGETS: dict[str, tuple[float, float | None]] = {
    "resnet50": (1.0, 90.0),
    "mobilenetv2": (0.85, None),
    "bert_layer": (0.9, None),
    "mlp": (0.85, None),
}
"""Model -> (highest ratio byoc/ort, lowest byoc % of peak or None), at 2 threads."""
TARGET_THREADS = 2


def _target(model: str, threads: int) -> tuple[float, float | None] | None:
    return TARGETS.get(model) if threads == TARGET_THREADS else None


def _meets(target: tuple[float, float | None], ratio: float, pct: float) -> bool:
    most, least = target
    return ratio <= most and (least is None or pct >= least)


def verdict(row: dict[str, Any]) -> str:
    """'met', 'not met' or '' (no target for this model and thread count), with
    how many runs met it on their own: a median that just meets a target on a
    noisy machine is not the same as every run meeting it."""
    target = _target(row["model"], row["threads"])
    if target is None:
        return ""
    ratio, pct = target
    ok = _meets(target, row["ratio_median"], row["byoc_pct_peak"])
    want = f"<= {ratio:.2f}" + (f", >= {pct:.0f} %" if pct is not None else "")
    return (
        f"{'met' if ok else 'not met'} ({want}; "
        f"{row['runs_meeting']} of {row['runs']} runs)"
    )


def _median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    """The median of ``key`` over the rows that have it (older files do not)."""
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


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
        target = _target(model, threads)
        meeting = (
            None
            if target is None
            else sum(_meets(target, r["ratio"], r["byoc_pct_peak"]) for r in rows)
        )
        out.append(
            {
                "model": model,
                "threads": threads,
                "runs": len(rows),
                "runs_meeting": meeting,
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "byoc_pct_peak": statistics.median(r["byoc_pct_peak"] for r in rows),
                "ort_pct_peak": statistics.median(r["ort_pct_peak"] for r in rows),
                "byoc_anon_mb": _median_of(rows, "byoc_anon_mb"),
                "ort_anon_mb": _median_of(rows, "ort_anon_mb"),
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
        f"{'byoc %peak':>10s} {'ort %peak':>9s} {'MB byoc':>7s} {'MB ort':>6s}  target"
    )
    for r in rows:
        print(
            f"{r['model']:12s} {r['threads']:3d} {r['runs']:4d} "
            f"{r['ratio_median']:6.3f} {r['ratio_min']:6.3f}-{r['ratio_max']:6.3f} "
            f"{r['byoc_pct_peak']:10.1f} {r['ort_pct_peak']:9.1f} "
            f"{format_mb(r['byoc_anon_mb']):>7s} {format_mb(r['ort_anon_mb']):>6s}  "
            f"{verdict(r)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
