"""A plugin whose availability check raises instead of returning a reason."""

from __future__ import annotations

from collections.abc import Callable

from byoc_good import GoodBackend

import byoc


class AvailBoom(GoodBackend):
    """Claims what ``good`` claims, but probing the device crashes."""

    name = "availboom"
    priority = 30

    @classmethod
    def available(cls) -> str | None:
        raise OSError("device probe crashed")


@byoc.hookimpl
def byoc_register_backends(register: Callable[[type[byoc.Backend]], None]) -> None:
    """Register the backend."""
    register(AvailBoom)
