"""Packaging rules every distribution in the repo must follow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECTS = sorted(
    p
    for p in ROOT.rglob("pyproject.toml")
    if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
)


def requirement_names(project: dict) -> list[str]:
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return [re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower() for r in reqs]


def test_core_is_published_as_byoc_core():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["name"] == "byoc-core"


@pytest.mark.parametrize("path", PYPROJECTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_distribution_depends_on_the_unrelated_byoc_package(path):
    project = tomllib.loads(path.read_text())["project"]
    assert "byoc" not in requirement_names(project), (
        f"{path}: depends on 'byoc', an unrelated project on the package index; "
        "use 'byoc-core'"
    )


@pytest.mark.parametrize(
    "path",
    [p for p in PYPROJECTS if p.parent != ROOT],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_plugins_depend_on_a_core_version_range_and_declare_an_entry_point(path):
    project = tomllib.loads(path.read_text())["project"]
    core = [
        r for r in project.get("dependencies", []) if r.lower().startswith("byoc-core")
    ]
    assert core, f"{path}: must depend on byoc-core"
    assert "<" in core[0] and ">=" in core[0], (
        f"{path}: byoc-core needs a version range"
    )
    eps = project.get("entry-points", {}).get("byoc", {})
    assert len(eps) == 1, f"{path}: one entry point in group 'byoc'"


def _readme_block_after(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1]
    return section.split("```bash\n", 1)[1].split("\n```", 1)[0].strip()


def test_ci_runs_exactly_the_readme_test_command():
    command = _readme_block_after("## Run the tests")
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines(), f".ci/run must run {command!r}"
    assert "tox" in command


def test_readme_try_it_installs_core_and_runs_the_demo():
    command = _readme_block_after("## Try it")
    assert "byoc demo" in command and "./plugins/byoc-ref" in command
