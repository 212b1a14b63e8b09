"""The conformance kit's tests, one function per report category.

Part of the kit (``byoc.testing``): collected only when ``--byoc-backend`` is
given, and parametrized by the plugin with the kit's items (``ops/<case>``,
``partition/<op>``, ``artifact/round-trip`` ...). The checks live in
:mod:`byoc.testing.harness` (ops, partition) and :mod:`byoc.testing.checks`;
the functions here are in report order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from byoc.testing import checks
from byoc.testing.harness import Kit, KitItem
from byoc.testing.plugin import get_kit


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kit_item" not in metafunc.fixturenames:
        return
    kit = get_kit(metafunc.config)
    if kit is None:
        metafunc.parametrize(
            "kit_item",
            [
                pytest.param(
                    None, marks=pytest.mark.skip(reason="needs --byoc-backend NAME")
                )
            ],
        )
        return
    items = kit.items(metafunc.function.__name__.removeprefix("test_"))
    metafunc.parametrize("kit_item", items, ids=[i.id for i in items])


@pytest.fixture(scope="session")
def byoc_kit(pytestconfig: pytest.Config) -> Kit:
    """The session's kit; every test skips when the backend is unavailable here."""
    kit = get_kit(pytestconfig)
    assert kit is not None
    if kit.unavailable is not None:
        pytest.skip(f"backend {kit.name!r} is unavailable here: {kit.unavailable}")
    return kit


def test_ops(byoc_kit: Kit, kit_item: KitItem) -> None:
    """A claimed op case compiles, runs and matches byoc-ref and onnxruntime."""
    if isinstance(kit_item.target, str):  # an oracle that is not installed
        pytest.skip(kit_item.target)
    byoc_kit.check_op(kit_item.target)


def test_partition(byoc_kit: Kit, kit_item: KitItem) -> None:
    """Support answers are honest; composite patterns apply and run."""
    if kit_item.id.startswith("partition/patterns"):
        byoc_kit.check_pattern(kit_item.target)
    else:
        byoc_kit.check_partition(kit_item.target)


def test_artifact(byoc_kit: Kit, kit_item: KitItem, tmp_path: Path) -> None:
    """compile -> save -> load -> run is identical; engine blobs reload or rebuild."""
    checks.check_artifact(byoc_kit, kit_item.target, tmp_path)


def test_caching(byoc_kit: Kit, kit_item: KitItem, tmp_path: Path) -> None:
    """init runs once per subgraph per loaded module."""
    checks.check_caching(byoc_kit, kit_item.target, tmp_path)


def test_errors(byoc_kit: Kit, kit_item: KitItem) -> None:
    """Bad inputs raise InputError; backend failures are BackendErrors."""
    checks.check_errors(byoc_kit, kit_item.target)


def test_threads(byoc_kit: Kit, kit_item: KitItem, tmp_path: Path) -> None:
    """Concurrent runs on one loaded module match a single-thread run."""
    checks.check_threads(byoc_kit, tmp_path)


def test_shapes(byoc_kit: Kit, kit_item: KitItem) -> None:
    """With a symbolic batch, what the backend claims runs right at every size."""
    checks.check_shapes(byoc_kit, kit_item.target)
