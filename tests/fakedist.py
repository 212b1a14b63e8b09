"""Install the fake plugins of ``tests/fake_plugins`` for a subprocess.

A fake plugin becomes a real installed distribution: its module is copied into
a temporary site directory next to a ``.dist-info`` folder whose
``entry_points.txt`` names it, and the subprocess gets that directory on
``PYTHONPATH``. byoc then finds it through ``importlib.metadata`` exactly as it
finds a pip-installed plugin.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

FAKES = Path(__file__).with_name("fake_plugins")


def install(site: Path, dist: str, module: str, key: str, group: str = "byoc") -> None:
    """Make ``tests/fake_plugins/<module>.py`` the distribution ``dist`` in ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    shutil.copy(FAKES / f"{module}.py", site / f"{module}.py")
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[{group}]\n{key} = {module}\n")


def env(site: Path, allow: str | None) -> dict[str, str]:
    """The environment of a subprocess that sees ``site``; ``allow`` limits plugins."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    out["PYTHONPATH"] = os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    out.pop("BYOC_LOAD_PLUGINS", None)
    if allow is not None:
        out["BYOC_LOAD_PLUGINS"] = allow
    return out


def kit_plugin_args() -> list[str]:
    """``-p byoc.testing`` unless the pytest11 entry point already loads the kit."""
    installed = any(
        ep.value == "byoc.testing" for ep in md.entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "byoc.testing"]


def run_pytest(
    args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m pytest ARGS`` in ``cwd`` (no cache dir, kit plugin loaded)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            *kit_plugin_args(),
            *args,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
