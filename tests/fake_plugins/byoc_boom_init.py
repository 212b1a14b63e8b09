"""A plugin whose backend's ``init`` raises (building the engine fails)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from byoc_good import GoodBackend

import byoc


class InitBoom(GoodBackend):
    """Claims what ``good`` claims, but cannot build an engine."""

    name = "initboom"
    priority = 20

    def init(self, consts: Mapping[str, np.ndarray]) -> None:
        raise RuntimeError("out of device memory")


@byoc.hookimpl
def byoc_register_backends(register: Callable[[type[byoc.Backend]], None]) -> None:
    """Register the backend."""
    register(InitBoom)
