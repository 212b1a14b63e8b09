"""Entry-point module: the hook implementations byoc loads for byoc-micro."""

from __future__ import annotations

from collections.abc import Callable

import byoc

from .backend import MicroBackend


@byoc.hookimpl
def byoc_register_backends(register: Callable[[type[byoc.Backend]], None]) -> None:
    """Register the micro backend."""
    register(MicroBackend)
