"""The conformance kit's core: one :class:`Kit` per pytest session.

Part of the kit (``byoc.testing``), not of the compile/run flow. The kit drives
the backend under test only through the public byoc API, as a user would:
``byoc.compile`` -> ``Module.run`` / ``save`` -> ``byoc.load``. What a backend
claims is found by asking it: a probe backend (registered only while it
compiles) captures the :class:`byoc.NodeInfo` the partitioner builds for a
case's node, and the kit hands that same object to the backend's ``supports``.
A claimed case must then compile, run and match the oracles; a refused one must
carry a reason and be refused at compile time.

This module holds the per-case evaluation (cached: the ``ops`` and
``partition`` categories share it), those two categories, and the choice of
models the other categories (``checks.py``) run.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import onnx
import pytest

import byoc

from .cases import OpCase, Tol, catalog
from .chains import MIXED_CHAIN, Scenario, chain_model
from .oracles import (
    REF,
    Outputs,
    Result,
    compare,
    describe,
    load_onnxruntime,
    run_onnxruntime,
    run_ref,
)

PROBE = "byoc_kit_probe"
CATEGORIES = (
    "ops",
    "partition",
    "artifact",
    "caching",
    "errors",
    "threads",
    "shapes",
)
"""Report categories, in the order the kit runs them."""
CHECKS = {
    "artifact": ("round-trip", "engines", "corrupt-engine"),
    "caching": ("init-once", "init-once-threads", "per-module"),
    "errors": (
        "input-names",
        "input-shapes",
        "input-dtypes",
        "backend-run",
        "backend-init",
    ),
    "threads": ("8x200",),
    "shapes": ("symbolic-batch",),
}
"""The fixed tests of the categories that run :meth:`Kit.scenarios`."""

# Ops whose cases the other categories prefer: constant weights exercise the
# constant table and engine export.
_SCENARIO_OPS = ("MatMul", "Conv", "Gemm", "Add", "Relu", "Softmax")
_SCENARIO_CASES = 3
CHAIN_TOL = Tol(1e-4, 1e-5, 2e-2, 5e-2)
"""Tolerance of model-level comparisons (chains, patterns, shapes)."""


# --------------------------------------------------------------------------
# the probe: captures NodeInfo exactly as the partitioner builds it
# --------------------------------------------------------------------------


class _Probe(byoc.Backend):
    """Claims every node and records what it was asked; never runs."""

    name = PROBE
    version = "0"
    priority = -1
    seen: ClassVar[list[byoc.NodeInfo]] = []

    @classmethod
    def supports(cls, node: byoc.NodeInfo) -> byoc.Support:
        cls.seen.append(node)
        return byoc.Support.yes()

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        raise byoc.ByocError("the conformance kit's probe backend never runs")


class _ProbePlugin:
    @byoc.hookimpl
    def byoc_register_backends(
        self, register: Callable[[type[byoc.Backend]], None]
    ) -> None:
        register(_Probe)


# --------------------------------------------------------------------------
# items and evaluations
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class KitItem:
    """One test of the kit: ``id`` is ``"<category>/<rest>"``; ``target`` is
    what it checks (an OpCase, an op name, a Pattern, a check name)."""

    id: str
    target: Any = None

    @property
    def category(self) -> str:
        return self.id.split("/", 1)[0]


@dataclass
class Evaluation:
    """What the backend under test did with one op case."""

    case: OpCase
    skip: str = ""
    """Non-empty when the case cannot be asked at all (the importer refused it)."""
    answer: byoc.Support | None = None
    query_problem: str = ""
    """How the support query broke the contract (raised, no reason, wrong type)."""
    compile_error: BaseException | None = None
    outputs: dict[str, np.ndarray] | None = None
    run_error: BaseException | None = None
    placed: str | None = None
    """Which backend got the node when compiling for [backend, ref]."""
    placed_error: BaseException | None = None

    @property
    def claimed(self) -> bool:
        return self.answer is not None and self.answer.ok


def fail_on(problems: Sequence[str]) -> None:
    """Fail with every problem; the first line names the first one."""
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        pytest.fail(f"{problems[0]}{more}\n" + "\n".join(problems[1:]), pytrace=False)


def matches(item_id: str, patterns: Sequence[str]) -> str | None:
    """The first glob in ``patterns`` matching ``item_id``, or None."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(item_id, pattern):
            return pattern
    return None


def patterns_of(cls: type[byoc.Backend]) -> list[byoc.Pattern]:
    """The backend's composite patterns ([] when ``patterns()`` raises, as the
    partitioner also ignores them then)."""
    try:
        return list(cls.patterns())
    except Exception:
        return []


class Kit:
    """The kit for one backend in one pytest session (see the module docstring).

    ``excluded(item_id)`` tells whether the vendor excluded a test: excluded op
    cases are also left out of the partition checks and of the models the
    other categories run (``--byoc-include`` only picks which tests report).
    """

    def __init__(
        self,
        name: str,
        excluded: Callable[[str], bool] | None = None,
        cases: Sequence[OpCase] | None = None,
    ) -> None:
        self.name = name
        self.excluded = excluded or (lambda item_id: False)
        self.cases = tuple(cases) if cases is not None else catalog()
        self.registry = byoc.get_registry()
        self.cls = self.registry.backend(name, need_available=False)
        self.unavailable = self.registry.availability(name)
        self.ref_ok, self.ref_reason = self._find_ref()
        self.ort, self.ort_reason = load_onnxruntime()
        self._evals: dict[str, Evaluation] = {}
        self._oracle: dict[tuple[str, str], Result] = {}
        self._patterns: dict[tuple[str, tuple[str, ...]], tuple[Scenario | None, str]]
        self._patterns = {}
        self._scenarios: list[Scenario] | None = None

    def _find_ref(self) -> tuple[bool, str]:
        if self.name == REF:
            return False, "the backend under test is byoc-ref itself"
        try:
            self.registry.backend(REF)
        except byoc.BackendError as exc:
            return False, f"byoc-ref is not usable ({exc})"
        return True, ""

    def describe(self) -> dict[str, Any]:
        """The backend and the oracles, for the report header and JSON."""
        return {
            "backend": self.name,
            "version": self.cls.version,
            "distribution": self.cls.distribution,
            "available": self.unavailable is None,
            "unavailable_reason": self.unavailable or "",
            "oracles": {
                "byoc-ref": self.ref_ok,
                "byoc-ref_reason": self.ref_reason,
                "onnxruntime": getattr(self.ort, "__version__", None),
                "onnxruntime_reason": self.ort_reason,
            },
        }

    # -- items -----------------------------------------------------------------

    def items(self, category: str) -> list[KitItem]:
        """The tests of ``category``, in order."""
        if category == "ops":
            found = [KitItem(f"ops/{c.id}", c) for c in self.cases]
            if not self.ref_ok and self.name != REF:
                found.insert(0, KitItem("ops/oracle-byoc-ref", self.ref_reason))
            if self.ort is None:
                found.insert(0, KitItem("ops/oracle-onnxruntime", self.ort_reason))
            return found
        if category == "partition":
            ops = dict.fromkeys(c.op for c in self.cases)
            found = [KitItem(f"partition/{op}", op) for op in ops]
            patterns = patterns_of(self.cls)
            found += [
                KitItem(f"partition/patterns/{p.name}/{'-'.join(p.ops)}", p)
                for p in patterns
            ]
            if not patterns:
                found.append(KitItem("partition/patterns", None))
            return found
        return [KitItem(f"{category}/{check}", check) for check in CHECKS[category]]

    # -- evaluation --------------------------------------------------------------

    def probe(self, model: onnx.ModelProto) -> list[byoc.NodeInfo]:
        """The NodeInfo of every kernel node of ``model``, as partitioning sees it."""
        with self.registry.plugin(_ProbePlugin(), "byoc-kit-probe"):
            _Probe.seen.clear()
            try:
                byoc.compile(model, backends=[PROBE], quiet=True)
                return list(_Probe.seen)
            finally:
                _Probe.seen.clear()

    def ask(self, info: byoc.NodeInfo) -> tuple[byoc.Support, str]:
        """The backend's answer for ``info``, and how it broke the contract."""
        try:
            answer = self.cls.supports(info)
        except Exception as exc:
            return byoc.Support.no("(support query raised)"), f"raised {describe(exc)}"
        if not isinstance(answer, byoc.Support):
            ok = bool(answer)
            wrong = f"returned {type(answer).__name__}, not byoc.Support"
            return byoc.Support(ok, "" if ok else "(no reason)"), wrong
        if not answer.ok and not answer.reason.strip():
            return byoc.Support.no("(no reason)"), "refused without a reason"
        return answer, ""

    def evaluate(self, case: OpCase) -> Evaluation:
        """Ask, compile, run and place ``case`` (once per session)."""
        ev = self._evals.get(case.id)
        if ev is not None:
            return ev
        ev = self._evals[case.id] = Evaluation(case)
        try:
            infos = self.probe(case.model)
        except byoc.ByocError as exc:
            ev.skip = f"byoc cannot import this case: {describe(exc)}"
            return ev
        if len(infos) != 1:
            ev.skip = f"the importer left {len(infos)} kernel nodes, not 1"
            return ev
        ev.answer, ev.query_problem = self.ask(infos[0])
        try:
            mod = byoc.compile(case.model, backends=[self.name], quiet=True)
        except Exception as exc:
            ev.compile_error = exc
        else:
            try:
                ev.outputs = mod.run(case.feeds())
            except Exception as exc:
                ev.run_error = exc
        if self.ref_ok:
            try:
                mixed = byoc.compile(case.model, backends=[self.name, REF], quiet=True)
                ev.placed = mixed.subgraphs[0].backend
            except Exception as exc:
                ev.placed_error = exc
        return ev

    def oracle(
        self, which: str, key: str, model: onnx.ModelProto, feeds: dict[str, Any]
    ) -> Result:
        """``which`` ("ref" or "ort") run on ``model``, cached under ``key``."""
        if (which, key) not in self._oracle:
            if which == REF:
                result = run_ref(self.ref_ok, self.ref_reason, model, feeds)
            else:
                result = run_onnxruntime(self.ort, self.ort_reason, model, feeds)
            self._oracle[(which, key)] = result
        return self._oracle[(which, key)]

    def against_oracles(
        self,
        got: Outputs,
        what: str,
        model: onnx.ModelProto,
        feeds: dict[str, Any],
        tol: Tol,
        ort_note: str = "",
    ) -> None:
        """Fail on a mismatch with an oracle; skip when no oracle can run it.

        byoc-ref defines semantics: where onnxruntime disagrees with it, the
        onnxruntime comparison is dropped (with a note), not held against the
        backend.
        """
        ref_out, ref_note = self.oracle(REF, what, model, feeds)
        if ort_note:
            ort_out: dict[str, np.ndarray] | None = None
        else:
            ort_out, ort_note = self.oracle("ort", what, model, feeds)
        compared, notes = [], []
        if ref_out is not None:
            problems = compare(got, ref_out, tol)
            if problems:
                pytest.fail(
                    f"{what}: {self.name} differs from byoc-ref: " + "; ".join(problems)
                )
            compared.append("byoc-ref")
        elif self.name != REF:
            notes.append(ref_note)
        if (
            ort_out is not None
            and ref_out is not None
            and compare(ort_out, ref_out, tol)
        ):
            notes.append("onnxruntime disagrees with byoc-ref here (ref defines it)")
        elif ort_out is not None:
            problems = compare(got, ort_out, tol)
            if problems:
                pytest.fail(
                    f"{what}: {self.name} differs from onnxruntime: "
                    + "; ".join(problems)
                )
            compared.append("onnxruntime")
        else:
            notes.append(ort_note)
        if not compared:
            pytest.skip(f"no oracle could run this case: {'; '.join(notes)}")

    # -- category: ops -----------------------------------------------------------

    def check_op(self, case: OpCase) -> None:
        """A claimed case compiles, runs and matches the oracles; a refusal skips."""
        ev = self.evaluate(case)
        if ev.skip:
            pytest.skip(ev.skip)
        assert ev.answer is not None
        if not ev.answer.ok:
            pytest.skip(f"{self.name} declines: {ev.answer.reason}")
        if ev.compile_error is not None:
            pytest.fail(
                f"{self.name} claims this node but compile failed: "
                f"{describe(ev.compile_error)}"
            )
        if ev.run_error is not None:
            pytest.fail(
                f"{self.name} claims this node but run failed: {describe(ev.run_error)}"
            )
        assert ev.outputs is not None
        note = f"onnxruntime is not an oracle here: {case.ort}" if case.ort else ""
        self.against_oracles(
            ev.outputs, case.id, case.model, case.feeds(), case.tol, ort_note=note
        )

    # -- category: partition -------------------------------------------------------

    def check_partition(self, op: str) -> None:
        """Claims run; refusals carry a reason and happen at compile time."""
        cases = [
            c for c in self.cases if c.op == op and not self.excluded(f"ops/{c.id}")
        ]
        if not cases:
            pytest.skip(f"every {op} case is excluded")
        problems: list[str] = []
        declined: list[str] = []
        claimed = 0
        for case in cases:
            ev = self.evaluate(case)
            if ev.skip:
                continue
            assert ev.answer is not None
            if ev.claimed:
                claimed += 1
            else:
                declined.append(f"{case.id}: {ev.answer.reason}")
            problems += [f"{case.id}: {p}" for p in self._honesty(ev)]
        fail_on(problems)
        if not claimed:
            first = declined[0] if declined else "no case could be asked"
            pytest.skip(f"{self.name} claims no {op} case ({first})")

    def _honesty(self, ev: Evaluation) -> list[str]:
        """How one case's answer disagrees with what compiling and running did."""
        problems = []
        name = self.name
        if ev.query_problem:
            problems.append(f"the support query {ev.query_problem}")
        if ev.claimed:
            if ev.compile_error is not None:
                problems.append(
                    f"claimed, but compile failed: {describe(ev.compile_error)}"
                )
            elif ev.run_error is not None:
                problems.append(
                    f"claimed, but crashed at run time: {describe(ev.run_error)}"
                )
            if ev.placed is not None and ev.placed != name:
                problems.append(
                    f"supports() says yes, yet compiling for [{name}, ref] gave the "
                    f"node to {ev.placed}"
                )
        else:
            err = ev.compile_error
            if err is None:
                problems.append(
                    f"supports() refuses, yet compile for [{name}] succeeded"
                )
            elif not isinstance(err, byoc.UnsupportedError):
                problems.append(
                    f"refused, but compile raised {describe(err)} instead of "
                    "UnsupportedError"
                )
            if ev.placed is not None and ev.placed != REF:
                problems.append(
                    f"refused, yet compiling for [{name}, ref] gave the node to "
                    f"{ev.placed}"
                )
        if ev.placed_error is not None:
            problems.append(
                f"compile for [{name}, ref] failed: {describe(ev.placed_error)}"
            )
        return problems

    def check_pattern(self, pattern: byoc.Pattern | None) -> None:
        """A composite pattern the backend declares applies, runs and matches."""
        # Explicit returns after skip/fail: pytest may be untyped where mypy runs.
        if pattern is None:
            pytest.skip(f"{self.name} declares no composite patterns")
            return
        scenario, note = self.pattern_scenario(pattern)
        if scenario is None:
            pytest.skip(note)
            return
        mod = byoc.compile(scenario.model, backends=list(scenario.backends), quiet=True)
        try:
            got = mod.run(scenario.feeds)
        except Exception as exc:
            pytest.fail(
                f"pattern {pattern.name} applies but its model fails to run: "
                f"{describe(exc)}"
            )
            return
        self.against_oracles(
            got, scenario.name, scenario.model, scenario.feeds, CHAIN_TOL
        )

    def pattern_scenario(self, pattern: byoc.Pattern) -> tuple[Scenario | None, str]:
        """The chain model for ``pattern`` if the backend applies it, else why not."""
        key = (pattern.name, tuple(pattern.ops))
        if key not in self._patterns:
            self._patterns[key] = self._pattern_scenario(pattern)
        return self._patterns[key]

    def _pattern_scenario(self, pattern: byoc.Pattern) -> tuple[Scenario | None, str]:
        chain = "->".join(pattern.ops)
        built = chain_model(pattern.ops, f"pattern-{pattern.name}")
        if isinstance(built, str):
            return None, built
        model, feeds = built
        backends = (self.name, REF) if self.ref_ok else (self.name,)
        try:
            mod = byoc.compile(model, backends=list(backends), quiet=True)
        except Exception as exc:
            return None, f"the kit's {chain} chain does not compile: {describe(exc)}"
        used = any(
            node.name == pattern.name
            for rec in mod.subgraphs
            if rec.backend == self.name
            for node in rec.graph.nodes
        )
        if not used:
            return None, (
                f"{pattern.name} did not match the kit's {chain} chain (its check "
                "may refuse that chain)"
            )
        return Scenario(f"pattern:{pattern.name}:{chain}", model, feeds, backends), ""

    # -- models for the other categories -------------------------------------------

    def scenarios(self) -> list[Scenario]:
        """Models the backend runs (all or part of), for the other categories:
        up to three claimed cases (constant weights first), the applied patterns,
        and a chain split across the backend and byoc-ref."""
        if self._scenarios is not None:
            return self._scenarios
        found: list[Scenario] = []
        seen: set[str] = set()

        def rank(i: int) -> tuple[int, bool, int]:
            op = self.cases[i].op
            first = _SCENARIO_OPS.index(op) if op in _SCENARIO_OPS else 99
            return first, not self.cases[i].consts(), i

        for i in sorted(range(len(self.cases)), key=rank):
            case = self.cases[i]
            if len(found) == _SCENARIO_CASES:
                break
            if case.op in seen or self.excluded(f"ops/{case.id}"):
                continue
            ev = self.evaluate(case)
            if ev.claimed and ev.outputs is not None:
                seen.add(case.op)
                found.append(
                    Scenario(f"ops/{case.id}", case.model, case.feeds(), (self.name,))
                )
        for pattern in patterns_of(self.cls):
            scenario, _ = self.pattern_scenario(pattern)
            if scenario is not None:
                found.append(scenario)
        chain = self._chain_scenario()
        if chain is not None:
            found.append(chain)
        self._scenarios = found
        return found

    def _chain_scenario(self) -> Scenario | None:
        built = chain_model(MIXED_CHAIN, "chain")
        assert not isinstance(built, str)
        model, feeds = built
        options = [(self.name,)] + ([(self.name, REF)] if self.ref_ok else [])
        for backends in options:
            try:
                mod = byoc.compile(model, backends=list(backends), quiet=True)
                mod.run(feeds)
            except Exception:
                continue
            if any(rec.backend == self.name for rec in mod.subgraphs):
                name = "chain:" + "->".join(MIXED_CHAIN)
                return Scenario(name, model, feeds, backends)
        return None

    def need_scenarios(self) -> list[Scenario]:
        """The scenarios, or skip when the backend runs none of them."""
        found = self.scenarios()
        if not found:
            pytest.skip(
                f"{self.name} runs none of the kit's candidate models (no claimed "
                "case compiles and runs)"
            )
        return found

    def own_symbols(self, mod: byoc.Module) -> list[str]:
        """Symbols of the subgraphs the backend under test runs."""
        return [rec.symbol for rec in mod.subgraphs if rec.backend == self.name]
