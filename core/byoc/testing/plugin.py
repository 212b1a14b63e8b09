"""The conformance kit's pytest side: collection, vendor knobs, the report.

Part of the kit (``byoc.testing``). :class:`KitPlugin` is registered only when
``--byoc-backend`` is given (see ``byoc/testing/__init__.py``). It points
collection at ``kit.py`` (whose tests the kit parametrizes), turns the
vendor's include/exclude patterns into skips and the expected-failure list
into xfails, tallies every kit test by category, prints the score table and
writes the JSON report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import byoc

from .harness import CATEGORIES, Kit, KitItem, matches
from .report import Tally

KIT_FILE = Path(__file__).with_name("kit.py")
KIT_KEY = pytest.StashKey["Kit"]()


def read_xfail_file(path: str) -> list[tuple[str, str]]:
    """``(pattern, reason)`` pairs from lines ``case-id-pattern: reason``.

    Blank lines and ``#`` comments are ignored; a line without a reason is a
    usage error, since an expected failure nobody can explain is a hidden one.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise pytest.UsageError(f"--byoc-xfail: cannot read {path}: {exc}") from exc
    entries = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, sep, reason = line.partition(":")
        if not sep or not pattern.strip() or not reason.strip():
            raise pytest.UsageError(
                f"--byoc-xfail {path}:{n}: expected 'case-id-pattern: reason', got "
                f"{line!r}; every expected failure needs a reason"
            )
        entries.append((pattern.strip(), reason.strip()))
    return entries


class KitPlugin:
    """Hooks of an active kit run (one backend, one session)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.backend: str = config.getoption("byoc_backend")
        self.include: list[str] = config.getoption("byoc_include") or []
        self.exclude: list[str] = config.getoption("byoc_exclude") or []
        xfail = config.getoption("byoc_xfail")
        self.xfail = read_xfail_file(xfail) if xfail else []
        self.report_path: str | None = config.getoption("byoc_report")
        try:
            self.kit = Kit(self.backend, lambda i: bool(matches(i, self.exclude)))
        except byoc.BackendError as exc:
            raise pytest.UsageError(f"--byoc-backend {self.backend}: {exc}") from exc
        config.stash[KIT_KEY] = self.kit
        self.tally = Tally(CATEGORIES)
        self.ids: dict[str, str] = {}  # pytest nodeid -> kit test id
        self._point_collection_at_the_kit()

    def _point_collection_at_the_kit(self) -> None:
        """Run the kit when no paths were given; add it to paths that lack it."""
        config = self.config
        explicit = config.args_source == pytest.Config.ArgsSource.ARGS
        if not explicit:
            config.args[:] = [str(KIT_FILE)]
            return
        here = KIT_FILE.parent.resolve()
        for arg in config.args:
            name = arg.split("::", 1)[0]
            if config.option.pyargs and name.startswith("byoc.testing"):
                return
            path = Path(config.invocation_params.dir, name).resolve()
            if path == here or here in path.parents or path in here.parents:
                return
        config.args.append(str(KIT_FILE))

    def selected(self, item_id: str) -> bool:
        """Whether include/exclude patterns keep the kit test ``item_id``."""
        if self.include and not matches(item_id, self.include):
            return False
        return not matches(item_id, self.exclude)

    # -- pytest hooks ----------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        about = self.kit.describe()
        oracles = about["oracles"]
        ref = (
            "byoc-ref"
            if oracles["byoc-ref"]
            else f"no byoc-ref ({oracles['byoc-ref_reason']})"
        )
        ort = (
            f"onnxruntime {oracles['onnxruntime']}"
            if oracles["onnxruntime"]
            else f"no onnxruntime ({oracles['onnxruntime_reason']})"
        )
        dist = about["distribution"] or "unknown distribution"
        line = (
            f"byoc conformance kit: backend {self.backend} {about['version']} "
            f"({dist}); oracles: {ref}, {ort}"
        )
        if not about["available"]:
            line += f"; UNAVAILABLE here: {about['unavailable_reason']}"
        return [line]

    def pytest_collect_file(
        self, file_path: Path, parent: pytest.Collector
    ) -> pytest.Module | None:
        # Explicit paths are collected by pytest's python plugin already; the
        # kit file does not match test_*.py, so a directory walk needs this.
        if file_path == KIT_FILE and not parent.session.isinitpath(file_path):
            return pytest.Module.from_parent(parent, path=file_path)
        return None

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            kit_item = _kit_item(item)
            if kit_item is None:
                continue
            self.ids[item.nodeid] = kit_item.id
            if not self.selected(kit_item.id):
                why = (
                    f"excluded by --byoc-exclude {matches(kit_item.id, self.exclude)}"
                    if matches(kit_item.id, self.exclude)
                    else "not selected by --byoc-include"
                )
                item.add_marker(pytest.mark.skip(reason=why))
                continue
            for pattern, reason in self.xfail:
                if matches(kit_item.id, [pattern]):
                    item.add_marker(
                        pytest.mark.xfail(reason=f"{pattern}: {reason}", strict=False)
                    )
                    break

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        item_id = self.ids.get(report.nodeid)
        if item_id is not None:
            self.tally.record(item_id, report)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int) -> None:
        if not self.tally.results:  # --collect-only, or nothing of the kit ran
            return
        tr = terminalreporter
        about = self.kit.describe()
        tr.write_sep("=", f"byoc conformance: {self.backend} {about['version']}")
        if not about["available"]:
            tr.write_line(f"backend unavailable here: {about['unavailable_reason']}")
        for line in self.tally.table():
            tr.write_line(line)
        verdict = {
            "failed": "conformance FAILED",
            "passed": "conformance passed",
            "not run": "conformance NOT RUN: every test was skipped",
        }[self.tally.verdict]
        tr.write_line(f"{verdict} (score = passed / (passed + failed))")
        if self.report_path:
            tr.write_line(f"report written to {self.report_path}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.report_path:
            return
        data = self.tally.to_json(self.kit.describe(), exitstatus)
        path = Path(self.report_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)


def _kit_item(item: pytest.Item) -> KitItem | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    value = callspec.params.get("kit_item")
    return value if isinstance(value, KitItem) else None


def get_kit(config: pytest.Config) -> Kit | None:
    """The session's kit, or None when ``--byoc-backend`` was not given."""
    return config.stash.get(KIT_KEY, None)
