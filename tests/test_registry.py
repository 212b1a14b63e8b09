"""Registry: entry points, allow-list, isolation of broken plugins, name clashes."""

from __future__ import annotations

import importlib.metadata as md
import sys
import types

import pytest
from conftest import NumpyBackend, Plugin

import byoc
from byoc.registry import Registry


class Other(NumpyBackend):
    name = "other"
    priority = 5


def fake_entry_points(monkeypatch, modules: dict[str, object]) -> None:
    """Make ``importlib.metadata.entry_points(group="byoc")`` list ``modules``."""
    eps = []
    for name, module in modules.items():
        mod_name = f"_byoc_test_plugin_{name}"
        if module is not None:
            monkeypatch.setitem(sys.modules, mod_name, module)
        eps.append(md.EntryPoint(name, mod_name, "byoc"))
    monkeypatch.setattr(
        md, "entry_points", lambda group=None: eps if group == "byoc" else []
    )


def plugin_module(*classes) -> types.ModuleType:
    module = types.ModuleType("plugin")
    module.byoc_register_backends = Plugin(*classes).byoc_register_backends
    return module


def test_entry_points_load_and_the_allow_list_filters(monkeypatch):
    fake_entry_points(
        monkeypatch,
        {"fake": plugin_module(NumpyBackend), "other": plugin_module(Other)},
    )
    reg = Registry()
    reg.load_entry_points(None)
    assert [b.name for b in reg.backends()] == ["other", "fake"]
    only = Registry()
    only.load_entry_points("other")
    assert [b.name for b in only.backends()] == ["other"]
    none = Registry()
    none.load_entry_points("")
    assert none.backends() == []


def test_global_registry_honours_the_env_allow_list(monkeypatch):
    fake_entry_points(monkeypatch, {"fake": plugin_module(NumpyBackend)})
    monkeypatch.setenv("BYOC_LOAD_PLUGINS", "")
    monkeypatch.setattr(byoc.registry, "_REGISTRY", None)
    assert byoc.backends() == []
    monkeypatch.setattr(byoc.registry, "_REGISTRY", None)
    monkeypatch.delenv("BYOC_LOAD_PLUGINS")
    assert [b.name for b in byoc.backends()] == ["fake"]


def test_plugin_that_fails_to_import_is_listed_and_others_work(monkeypatch):
    fake_entry_points(
        monkeypatch, {"broken": None, "fake": plugin_module(NumpyBackend)}
    )
    reg = Registry()
    reg.load_entry_points(None)
    rows = {b.name: b for b in reg.backends()}
    assert rows["fake"].available
    assert not rows["broken"].available
    assert "failed to import" in rows["broken"].reason
    assert "ModuleNotFoundError" in rows["broken"].reason


class CheckRaises(NumpyBackend):
    name = "checkraises"

    @classmethod
    def available(cls):
        raise OSError("driver crashed")


def test_availability_check_that_raises_marks_only_that_backend(empty_registry):
    empty_registry.add_plugin(Plugin(CheckRaises, NumpyBackend), "mixed")
    rows = {b.name: b for b in empty_registry.backends()}
    assert rows["fake"].available
    assert not rows["checkraises"].available
    assert (
        rows["checkraises"].reason
        == "availability check raised OSError: driver crashed"
    )
    assert empty_registry.default_backends() == ["fake"]


def test_hook_that_raises_is_recorded(empty_registry):
    class Raises:
        @byoc.hookimpl
        def byoc_register_backends(self, register):
            raise RuntimeError("half-installed")

    empty_registry.add_plugin(Raises(), "raises")
    empty_registry.add_plugin(Plugin(NumpyBackend), "good")
    rows = {b.name: b for b in empty_registry.backends()}
    assert rows["fake"].available
    assert (
        "hook byoc_register_backends raised RuntimeError: half-installed"
        in rows["raises"].reason
    )


def test_duplicate_backend_name_is_an_error_naming_both_distributions(empty_registry):
    empty_registry.add_plugin(Plugin(NumpyBackend), "byoc-fake")
    twin = type("Twin", (NumpyBackend,), {"name": "fake"})
    errors = []

    class Collect:
        @byoc.hookimpl
        def byoc_register_backends(self, register):
            try:
                register(twin)
            except byoc.PluginError as exc:
                errors.append(exc)
                raise

    empty_registry.add_plugin(Collect(), "byoc-fake-fork")
    (err,) = errors
    assert err.distributions == ("byoc-fake", "byoc-fake-fork")
    assert "'byoc-fake' and 'byoc-fake-fork'" in str(err)
    assert empty_registry.backend("fake") is NumpyBackend
    broken = {b.name: b for b in empty_registry.backends()}["byoc-fake-fork"]
    assert "registered by both" in broken.reason


@pytest.mark.parametrize(
    "bad",
    [
        object,
        type("NoName", (NumpyBackend,), {"name": ""}),
        type("Caps", (NumpyBackend,), {"name": "Bad-Name"}),
    ],
)
def test_invalid_backend_classes_are_refused(empty_registry, bad):
    empty_registry.add_plugin(Plugin(bad), "bad")
    assert [b.name for b in empty_registry.backends()] == ["bad"]
    assert not empty_registry.backends()[0].available


def test_unknown_backend_error_lists_installed_ones(registry):
    with pytest.raises(byoc.BackendError, match="'nope' is not installed.*accel, fake"):
        registry.backend("nope")


def test_plugin_context_manager_unregisters(empty_registry):
    with empty_registry.plugin(Plugin(Other), "tmp"):
        assert empty_registry.default_backends() == ["other"]
    assert empty_registry.backends() == []


class Target(NumpyBackend):
    name = "target"
    priority = -1


def test_negative_priority_backends_are_opt_in(empty_registry):
    empty_registry.add_plugin(Plugin(Target, NumpyBackend), "mixed")
    assert empty_registry.default_backends() == ["fake"]
    assert [b.name for b in empty_registry.backends()] == ["fake", "target"]
