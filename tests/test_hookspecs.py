"""Hookspecs: typed, empty, and documented parameter by parameter."""

from __future__ import annotations

import inspect
import re

from byoc import hookspecs


def specs():
    return [
        f
        for name, f in vars(hookspecs).items()
        if name.startswith("byoc_") and callable(f)
    ]


def test_there_are_hookspecs_and_all_use_the_project_marker():
    assert specs()
    for fn in specs():
        assert hasattr(fn, "byoc_spec"), fn.__name__


def test_every_parameter_is_documented_and_typed():
    for fn in specs():
        doc = inspect.getdoc(fn) or ""
        params = list(inspect.signature(fn).parameters)
        documented = re.findall(r":param (\w+):", doc)
        assert documented == params, f"{fn.__name__}: {documented} != {params}"
        assert ":returns:" in doc, fn.__name__
        for p in inspect.signature(fn).parameters.values():
            assert p.annotation is not inspect.Parameter.empty, (
                f"{fn.__name__}({p.name})"
            )
        if getattr(fn, "byoc_spec", {}).get("firstresult"):
            assert "stops at first non-None result" in doc


def test_hookimpl_is_reexported():
    import byoc

    assert byoc.hookimpl is hookspecs.hookimpl
