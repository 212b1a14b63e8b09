"""A plugin whose registration hook raises."""

from __future__ import annotations

from typing import Any

import byoc


@byoc.hookimpl
def byoc_register_backends(register: Any) -> None:
    """Fail while registering."""
    raise RuntimeError("license server unreachable")
