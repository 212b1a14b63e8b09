"""Entry-point module: the hook implementations byoc loads for byoc-trt."""

from __future__ import annotations

from collections.abc import Callable

import byoc

from .backend import TrtBackend


@byoc.hookimpl
def byoc_register_backends(register: Callable[[type[byoc.Backend]], None]) -> None:
    """Register the TensorRT backend (it reports itself unavailable without a GPU)."""
    register(TrtBackend)
