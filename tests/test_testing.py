"""The conformance kit (byoc.testing): idle when unused, and able to fail.

The kit runs in subprocesses (``python -m pytest --byoc-backend NAME``) against
backends installed for the occasion (``fakedist``), so these tests see exactly
what a vendor sees: the exit code, the score table and the JSON report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from fakedist import env, install, run_pytest

from byoc.onnx_import import import_onnx
from byoc.testing import cases
from byoc.testing.oracles import compare, identical
from byoc.testing.report import Tally

# The broken backend claims Add (computes a - b), refuses Sub with no reason,
# and runs Relu correctly; a run restricted to those is quick.
BROKEN_SELECTION = [
    "--byoc-include=ops/Add/*",
    "--byoc-include=ops/Relu/*",
    "--byoc-include=partition/Add",
    "--byoc-include=partition/Sub",
    "--byoc-include=partition/Relu",
]


ALLOW = "byoc-kit-broken,byoc-kit-flaky,ref"


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    install(site, "byoc-kit-broken", "byoc_kit_broken", "broken")
    install(site, "byoc-kit-flaky", "byoc_kit_flaky", "flaky")
    return site


def run_kit(site: Path, tmp: Path, *args: str) -> tuple[int, str, dict | None]:
    report = tmp / "report.json"
    proc = run_pytest(
        ["-q", "--byoc-report", str(report), *args], cwd=tmp, env=env(site, ALLOW)
    )
    data = json.loads(report.read_text()) if report.exists() else None
    return proc.returncode, proc.stdout + proc.stderr, data


# --------------------------------------------------------------------------
# the kit can fail
# --------------------------------------------------------------------------


def test_the_kit_fails_a_backend_that_computes_an_op_wrongly(broken_site, tmp_path):
    code, out, report = run_kit(
        broken_site, tmp_path, "--byoc-backend", "broken", *BROKEN_SELECTION
    )
    assert code == 1, out
    assert report is not None and report["passed"] is False
    ops = report["categories"]["ops"]
    add_cases = [
        c for c in cases.catalog(["Add"]) if c.args[0].value.dtype == "float32"
    ]
    assert ops["failed"] == len(add_cases)
    assert ops["passed"] == len(
        [c for c in cases.catalog(["Relu"]) if c.args[0].value.dtype == "float32"]
    )
    failed = {
        t["id"]: t["message"] for t in report["tests"] if t["outcome"] == "failed"
    }
    assert all(i.startswith(("ops/Add/", "partition/Sub")) for i in failed)
    assert "differs from" in failed["ops/Add/3x1x5+5/float32"]
    # Non-float32 Add cases are declined with the backend's reason: skips.
    skipped = {
        t["id"]: t["message"] for t in report["tests"] if t["outcome"] == "skipped"
    }
    assert (
        skipped["ops/Add/3x1x5+5/int32"]
        == "broken declines: broken: Add runs float32 only"
    )
    # The table is printed, per category, and says the run failed.
    assert "byoc conformance: broken 1.0" in out
    assert "conformance FAILED" in out


# backend (tests/fake_plugins/byoc_kit_flaky.py) -> the tests run, the category
# that must fail
FLAKY = {
    "reuses_buffers": (["threads/*"], "threads"),
    "reinits": (["caching/*"], "caching"),
    "trusts_blobs": (["artifact/*"], "artifact"),
    "unguarded": (["errors/*"], "errors"),
    "overclaims": (["partition/Softmax", "ops/Softmax/*"], "partition"),
    "fixes_shapes": (["shapes/*"], "shapes"),
}


@pytest.mark.parametrize("backend", sorted(FLAKY))
def test_every_category_can_fail(broken_site, tmp_path, backend):
    include, category = FLAKY[backend]
    code, out, report = run_kit(
        broken_site,
        tmp_path,
        "--byoc-backend",
        backend,
        *(f"--byoc-include={glob}" for glob in include),
    )
    assert code == 1, out
    assert report is not None
    assert report["categories"][category]["failed"] >= 1, report["categories"]
    failed = [t for t in report["tests"] if t["outcome"] == "failed"]
    assert {t["category"] for t in failed} <= {category, "ops"}, failed


def test_the_kit_fails_a_support_query_that_refuses_without_a_reason(
    broken_site, tmp_path
):
    code, out, report = run_kit(
        broken_site, tmp_path, "--byoc-backend", "broken", "--byoc-include=partition/*"
    )
    assert code == 1, out
    assert report is not None
    outcome = {t["id"]: t for t in report["tests"]}
    assert outcome["partition/Sub"]["outcome"] == "failed"
    assert "refused without a reason" in outcome["partition/Sub"]["message"]
    assert outcome["partition/Relu"]["outcome"] == "passed"
    assert outcome["partition/Conv"]["outcome"] == "skipped"
    assert report["categories"]["partition"]["failed"] == 1


def test_expected_failures_and_exclusions_turn_the_run_green(broken_site, tmp_path):
    xfail = tmp_path / "xfail.txt"
    xfail.write_text(
        "# known problems of the broken backend\n"
        "ops/Add/*: computes a - b\n"
        "\n"
        "partition/Sub: refuses Sub without a reason\n"
    )
    code, out, report = run_kit(
        broken_site,
        tmp_path,
        "--byoc-backend",
        "broken",
        *BROKEN_SELECTION,
        "--byoc-xfail",
        str(xfail),
        "--byoc-exclude",
        "ops/Relu/13/*",
    )
    assert code == 0, out
    assert report is not None and report["passed"] is True
    outcome = {t["id"]: t for t in report["tests"]}
    assert outcome["ops/Add/3x1x5+5/float32"]["outcome"] == "xfailed"
    assert outcome["ops/Add/3x1x5+5/float32"]["message"] == "ops/Add/*: computes a - b"
    assert outcome["partition/Sub"]["outcome"] == "xfailed"
    # Excluded and not-included tests are reported as skips, never dropped.
    assert outcome["ops/Relu/13/float32"] == {
        "id": "ops/Relu/13/float32",
        "category": "ops",
        "outcome": "skipped",
        "message": "excluded by --byoc-exclude ops/Relu/13/*",
    }
    assert outcome["ops/Conv/1x3x7x7-k3/float32"]["message"] == (
        "not selected by --byoc-include"
    )
    assert report["categories"]["ops"]["failed"] == 0
    assert report["total"]["skipped"] > 500


def test_an_expected_failure_without_a_reason_is_a_usage_error(broken_site, tmp_path):
    xfail = tmp_path / "xfail.txt"
    xfail.write_text("ops/Add/*\n")
    code, out, _ = run_kit(
        broken_site, tmp_path, "--byoc-backend", "broken", "--byoc-xfail", str(xfail)
    )
    assert code == 4, out
    assert "every expected failure needs a reason" in out


def test_an_unknown_backend_is_a_usage_error_listing_the_installed_ones(
    broken_site, tmp_path
):
    code, out, _ = run_kit(broken_site, tmp_path, "--byoc-backend", "nope")
    assert code == 4, out
    assert "'nope' is not installed" in out and "broken" in out


# --------------------------------------------------------------------------
# the idle plugin changes nothing
# --------------------------------------------------------------------------


def test_without_options_the_plugin_collects_nothing(broken_site, tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_one():\n    assert True\n")
    proc = run_pytest(["-q", "-rA"], cwd=tmp_path, env=env(broken_site, "ref"))
    assert proc.returncode == 0, proc.stdout
    assert "1 passed" in proc.stdout
    assert "byoc conformance" not in proc.stdout
    assert "kit.py" not in proc.stdout


def test_kit_options_need_a_backend_and_are_documented(broken_site, tmp_path):
    proc = run_pytest(
        ["--byoc-report", "r.json"], cwd=tmp_path, env=env(broken_site, "ref")
    )
    assert proc.returncode == 4
    assert "--byoc-report need --byoc-backend NAME" in proc.stderr
    helptext = run_pytest(["--help"], cwd=tmp_path, env=env(broken_site, "")).stdout
    for option in ("--byoc-backend", "--byoc-include", "--byoc-xfail", "--byoc-report"):
        assert option in helptext


# --------------------------------------------------------------------------
# the case catalog
# --------------------------------------------------------------------------


def test_catalog_cases_are_valid_single_node_models_with_runtime_inputs():
    catalog = cases.catalog()
    assert len(catalog) > 400
    assert len({c.id for c in catalog}) == len(catalog)
    for case in catalog:
        assert case.feeds(), f"{case.id} has no runtime input: the importer folds it"
        onnx.checker.check_model(case.model)
        graph = import_onnx(case.model).graph
        kernels = [n for n in graph.nodes if n.op == "kernel"]
        assert [n.name for n in kernels] == [case.op], case.id


def test_catalog_data_is_deterministic():
    first = {c.id: c.feeds() for c in cases.catalog(["Conv", "Div"])}
    again = {c.id: c.feeds() for c in cases.catalog(["Conv", "Div"])}
    for key, feeds in first.items():
        assert not identical(again[key], feeds), key


def test_catalog_sweeps_edge_sizes_negative_axes_and_padding_modes():
    ids = {c.id for c in cases.catalog()}
    for expected in (
        "Add/1+2x7/float32",  # broadcasting a size-1 dim
        "Add/2x3+scalar/float32",  # a 0-d operand
        "Relu/13/float32",  # a prime size
        "Softmax/2x3x5-axis-1/float32",  # a negative axis
        "Conv/1x3x7x7-k3-s2-same_lower/float32",  # auto_pad
        "Pad/3x4-reflect/float32",  # padding modes
        "MatMul/3x4+4x5/float16",  # dtypes beyond float32
    ):
        assert expected in ids


# --------------------------------------------------------------------------
# comparisons and the report
# --------------------------------------------------------------------------


def test_compare_uses_the_tolerance_and_reports_the_worst_element():
    want = {"y": np.array([1.0, 2.0, 3.0], np.float32)}
    near = {"y": np.array([1.0, 2.0 + 1e-6, 3.0], np.float32)}
    far = {"y": np.array([1.0, 2.5, 3.0], np.float32)}
    assert compare(near, want, cases.ACCUM) == []
    assert compare(near, want, cases.EXACT) != []
    (problem,) = compare(far, want, cases.ACCUM)
    assert "1 of 3 elements differ" in problem and "first at [1]" in problem
    wrong_dtype = {"y": want["y"].astype(np.float64)}
    assert (
        "is float64[3], expected float32[3]"
        in compare(wrong_dtype, want, cases.EXACT)[0]
    )
    nan = {"y": np.array([np.nan], np.float32)}
    assert compare(nan, nan, cases.EXACT) == []
    assert identical(nan, nan) == []


def test_float16_tolerances_are_wider_and_exact_stays_exact():
    assert cases.EXACT.for_dtype(np.dtype("float16")) == (0.0, 0.0)
    assert cases.MATH.for_dtype(np.dtype("float16"))[0] >= 1e-3
    assert cases.ACCUM.for_dtype(np.dtype("int32")) == (0.0, 0.0)


class _Report:
    """The parts of a pytest TestReport the tally reads."""

    def __init__(self, when, outcome, longrepr=None, **extra):
        self.when, self.outcome, self.longrepr = when, outcome, longrepr
        self.passed = outcome == "passed"
        self.failed = outcome == "failed"
        self.skipped = outcome == "skipped"
        self.__dict__.update(extra)


def test_tally_counts_outcomes_per_category_and_scores():
    tally = Tally(["ops", "partition"])
    tally.record("ops/a", _Report("setup", "passed"))
    tally.record("ops/a", _Report("call", "passed"))
    tally.record("ops/b", _Report("call", "failed", "AssertionError: boom"))
    tally.record("ops/c", _Report("setup", "skipped", ("f", 1, "Skipped: declined")))
    tally.record("partition/x", _Report("call", "skipped", None, wasxfail="known"))
    counts = tally.counts()
    assert counts["ops"] == {
        "passed": 1,
        "failed": 1,
        "skipped": 1,
        "xfailed": 0,
        "xpassed": 0,
    }
    assert counts["partition"]["xfailed"] == 1
    assert counts["total"]["passed"] == 1
    assert Tally.score(counts["ops"]) == 0.5
    data = tally.to_json({"backend": "x"}, 1)
    assert data["passed"] is False and data["categories"]["ops"]["score"] == 0.5
    assert {
        "id": "ops/c",
        "category": "ops",
        "outcome": "skipped",
        "message": "declined",
    } in data["tests"]
    assert tally.table()[0].split() == [
        "category",
        "passed",
        "failed",
        "skipped",
        "xfailed",
        "xpassed",
        "score",
    ]
