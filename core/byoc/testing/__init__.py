"""byoc's conformance kit for backend vendors: a pytest plugin.

Installed with byoc-core through the ``pytest11`` entry point, so every pytest
in an environment with byoc-core knows the options below. Without
``--byoc-backend`` the plugin only declares them: it collects nothing,
registers no other hook and imports nothing beyond ``byoc`` itself.

``pytest --byoc-backend NAME`` (or ``pytest --pyargs byoc.testing
--byoc-backend NAME``) checks the installed backend NAME, by category:

* ``ops``: every catalog case (:mod:`byoc.testing.cases`) the backend claims
  compiles, runs and matches byoc-ref and onnxruntime within per-op
  tolerances; a declined case is a skip carrying the backend's reason;
* ``partition``: claims run, refusals carry a reason and happen at compile
  time; declared composite patterns apply and run;
* ``artifact``: compile -> save -> load -> run is bit-identical; prebuilt
  engines reload; a corrupted engine blob is rebuilt with a warning;
* ``caching``: ``init`` runs once per subgraph per loaded module;
* ``errors``: bad inputs raise ``InputError``; backend exceptions surface as
  ``BackendError`` naming backend and symbol;
* ``threads``: 8 threads x 200 runs on one module match a single-thread run;
* ``shapes``: with the batch dim symbolic, claimed parts run and match at
  several batch sizes.

It ends with a per-category score table, writes it as JSON with
``--byoc-report``, and exits non-zero when a test fails. Vendors narrow it with
``--byoc-include``/``--byoc-exclude`` globs on test ids (excluded tests show as
skips) and ``--byoc-xfail FILE`` (lines ``test-id-glob: reason``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

_KIT_ONLY = ("byoc_include", "byoc_exclude", "byoc_xfail", "byoc_report")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the kit's options (the only thing the plugin does when idle)."""
    group = parser.getgroup("byoc", "byoc conformance kit (byoc.testing)")
    group.addoption(
        "--byoc-backend",
        metavar="NAME",
        default=None,
        help="run the byoc conformance kit against the installed backend NAME",
    )
    group.addoption(
        "--byoc-include",
        metavar="GLOB",
        action="append",
        default=[],
        help="run only kit tests whose id matches GLOB (e.g. 'ops/Conv/*'); "
        "repeatable; the others show as skips",
    )
    group.addoption(
        "--byoc-exclude",
        metavar="GLOB",
        action="append",
        default=[],
        help="skip kit tests whose id matches GLOB; repeatable",
    )
    group.addoption(
        "--byoc-xfail",
        metavar="FILE",
        default=None,
        help="expected failures: lines 'test-id-glob: reason'",
    )
    group.addoption(
        "--byoc-report",
        metavar="PATH",
        default=None,
        help="write the kit's per-category report as JSON to PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Activate the kit when ``--byoc-backend`` is given; otherwise do nothing."""
    if not config.getoption("byoc_backend"):
        given = [f"--{o.replace('_', '-')}" for o in _KIT_ONLY if config.getoption(o)]
        if given:
            import pytest

            raise pytest.UsageError(f"{', '.join(given)} need --byoc-backend NAME")
        return
    from .plugin import KitPlugin

    config.pluginmanager.register(KitPlugin(config), "byoc-kit")
