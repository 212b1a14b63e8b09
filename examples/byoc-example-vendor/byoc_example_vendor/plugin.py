"""Entry-point module: the hook implementations byoc loads for this plugin."""

from __future__ import annotations

from collections.abc import Callable

import byoc

from .backend import ExampleBackend
from .tiling import TILING_CODEC


@byoc.hookimpl
def byoc_register_backends(register: Callable[[type[byoc.Backend]], None]) -> None:
    """Register the example backend."""
    register(ExampleBackend)


@byoc.hookimpl
def byoc_register_codecs(register: Callable[[byoc.AttrCodec], None]) -> None:
    """Register the codec storing :class:`~byoc_example_vendor.Tiling` attributes."""
    register(TILING_CODEC)
