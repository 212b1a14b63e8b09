"""Human-readable reports: the partition table, ``--explain``, and CLI tables.

Reports are plain text built from data the other modules already hold; nothing
here changes behaviour.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .graph import Graph

if TYPE_CHECKING:
    from .artifact import SubgraphRecord
    from .partition import Partition
    from .registry import BackendInfo


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """Left-aligned text table with a header rule."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def backends_table(rows: Sequence[BackendInfo]) -> str:
    """The ``byoc backends`` table."""
    return table(
        [
            (
                b.name,
                b.version,
                b.distribution,
                b.priority,
                "yes" if b.available else "no",
                b.reason,
            )
            for b in rows
        ],
        ("backend", "version", "distribution", "priority", "available", "reason"),
    )


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def kernel_ops(graph: Graph) -> Counter[str]:
    """Operator counts of a graph, composites counted by their body's ops."""
    counts: Counter[str] = Counter()
    for node in graph.nodes:
        if node.op != "kernel":
            continue
        body = node.attrs.get("body")
        if isinstance(body, Graph):
            counts.update(kernel_ops(body))
        else:
            counts[node.name] += 1
    return counts


def subgraph_table(
    subgraphs: Sequence[SubgraphRecord], consts: Mapping[str, np.ndarray]
) -> str:
    """One row per subgraph: symbol, backend, #nodes, ops, constant bytes."""
    from .partition import const_names

    rows = []
    for rec in subgraphs:
        ops = kernel_ops(rec.graph)
        listed = ", ".join(
            f"{op}({n})" if n > 1 else op for op, n in ops.most_common(6)
        )
        if len(ops) > 6:
            listed += f", +{len(ops) - 6} more"
        nbytes = sum(
            int(consts[n].nbytes) for n in const_names(rec.graph) if n in consts
        )
        rows.append(
            (rec.symbol, rec.backend, sum(ops.values()), listed, human_bytes(nbytes))
        )
    return table(rows, ("subgraph", "backend", "#nodes", "ops", "const bytes"))


def explain(
    partition: Partition | None,
    subgraphs: Sequence[SubgraphRecord],
    consts: Mapping[str, np.ndarray],
) -> str:
    """The ``--explain`` report: the subgraph table, then why nodes fell back."""
    out = [subgraph_table(subgraphs, consts)]
    if partition is None:
        out.append("\n(per-node reasons are only known at compile time)")
        return "\n".join(out)
    fallback = partition.backends[-1] if partition.backends else ""
    rows = [
        (
            d.label,
            d.op,
            d.symbol,
            "; ".join(reason for _, reason in d.declined),
        )
        for d in partition.decisions
        if d.declined and d.backend == fallback
    ]
    if len(partition.backends) > 1:
        out.append("")
        if rows:
            out.append(
                f"nodes left to the fallback ({fallback}) and why the others declined:"
            )
            out.append(table(rows, ("node", "op", "subgraph", "declined by")))
        else:
            out.append(f"no node was left to the fallback ({fallback}).")
    return "\n".join(out)
