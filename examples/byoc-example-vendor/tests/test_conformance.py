"""The conformance kit passes on the example backend (as a vendor's CI runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_the_conformance_kit_passes(tmp_path):
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--byoc-backend",
            "example",
            "--byoc-report",
            str(report),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "byoc conformance: example 0.1.0" in proc.stdout
    data = json.loads(report.read_text())
    assert data["passed"] and data["total"]["failed"] == 0
    categories = data["categories"]
    assert categories["ops"]["passed"] >= 40
    for category in ("artifact", "caching", "errors", "threads", "shapes"):
        assert categories[category]["skipped"] == 0, category
    outcome = {t["id"]: t["outcome"] for t in data["tests"]}
    assert outcome["partition/patterns/example.matmul_bias/MatMul-Add"] == "passed"
    assert outcome["artifact/corrupt-engine"] == "passed"
