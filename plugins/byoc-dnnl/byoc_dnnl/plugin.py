"""Entry-point module: the hook implementations byoc loads for byoc-dnnl."""

from __future__ import annotations

from collections.abc import Callable

import byoc

from .backend import DnnlBackend


@byoc.hookimpl
def byoc_register_backends(register: Callable[[type[byoc.Backend]], None]) -> None:
    """Register the oneDNN backend (it probes the library lazily, in ``available``)."""
    register(DnnlBackend)
