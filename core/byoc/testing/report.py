"""The conformance kit's score: per-category outcomes, a table, and JSON.

Part of the kit (``byoc.testing``). The plugin feeds every kit test's pytest
reports to a :class:`Tally`; at the end it prints :meth:`Tally.table` and writes
:meth:`Tally.to_json` for a vendor's CI badge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed")
_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "xpassed": 1, "failed": 2}


def _message(report: pytest.TestReport) -> str:
    """One line saying why a test skipped or failed."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, msg)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).removeprefix("Failed: ")
    return str(longrepr or "").strip().splitlines()[-1:][0] if longrepr else ""


class Tally:
    """Outcome of every kit test, by id; categories are the id's first part."""

    def __init__(self, categories: Iterable[str]) -> None:
        self.categories = tuple(categories)
        self.results: dict[str, tuple[str, str]] = {}

    def record(self, item_id: str, report: pytest.TestReport) -> None:
        """Fold one setup/call/teardown report into the test's outcome."""
        outcome = None
        if hasattr(report, "wasxfail"):
            if report.skipped:
                outcome, message = "xfailed", str(report.wasxfail)
            elif report.passed and report.when == "call":
                outcome, message = "xpassed", str(report.wasxfail)
        elif report.failed:
            outcome, message = "failed", _message(report)
        elif report.skipped:
            outcome, message = "skipped", _message(report)
        elif report.passed and report.when == "call":
            outcome, message = "passed", ""
        if outcome is None:
            return
        previous = self.results.get(item_id)
        if previous is None or _RANK[outcome] >= _RANK[previous[0]]:
            self.results[item_id] = (outcome, message)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per category (and ``total``): how many tests had each outcome."""
        table = {c: dict.fromkeys(OUTCOMES, 0) for c in self.categories}
        for item_id, (outcome, _) in self.results.items():
            cat = item_id.split("/", 1)[0]
            table.setdefault(cat, dict.fromkeys(OUTCOMES, 0))[outcome] += 1
        table["total"] = {o: sum(row[o] for row in table.values()) for o in OUTCOMES}
        return table

    @staticmethod
    def score(row: Mapping[str, int]) -> float | None:
        """Passed over passed + failed, or None when nothing was decided."""
        decided = row["passed"] + row["failed"]
        return row["passed"] / decided if decided else None

    @property
    def failed(self) -> bool:
        """True when any kit test failed."""
        return any(outcome == "failed" for outcome, _ in self.results.values())

    @property
    def verdict(self) -> str:
        """``failed``, ``passed``, or ``not run`` when nothing passed or failed
        (e.g. the backend is unavailable on this machine: every test skips)."""
        if self.failed:
            return "failed"
        passed = any(outcome == "passed" for outcome, _ in self.results.values())
        return "passed" if passed else "not run"

    def table(self) -> list[str]:
        """The per-category score table, one string per line."""
        head = ("category", *OUTCOMES, "score")
        rows = []
        for cat, row in self.counts().items():
            score = self.score(row)
            rows.append(
                (
                    cat,
                    *(str(row[o]) for o in OUTCOMES),
                    "-" if score is None else f"{100 * score:.1f}%",
                )
            )
        widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]

        def fmt(r: tuple[str, ...]) -> str:
            first = r[0].ljust(widths[0])
            rest = (v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True))
            return "  ".join((first, *rest))

        lines = [fmt(head)]
        lines += [fmt(r) for r in rows[:-1]]
        lines.append("-" * len(lines[0]))
        lines.append(fmt(rows[-1]))
        return lines

    def to_json(self, about: Mapping[str, Any], exitstatus: int) -> dict[str, Any]:
        """The report as plain data (what ``--byoc-report`` writes)."""
        counts = self.counts()
        total = counts.pop("total")
        return {
            "kit": "byoc.testing",
            **about,
            "passed": self.verdict == "passed",
            "verdict": self.verdict,
            "exitstatus": int(exitstatus),
            "score": self.score(total),
            "total": total,
            "categories": {
                cat: {**row, "score": self.score(row)} for cat, row in counts.items()
            },
            "tests": [
                {
                    "id": item_id,
                    "category": item_id.split("/", 1)[0],
                    "outcome": outcome,
                    "message": message,
                }
                for item_id, (outcome, message) in self.results.items()
            ],
        }
