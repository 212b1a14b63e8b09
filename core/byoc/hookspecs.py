"""Hook specifications: the only way plugins extend byoc.

Plugins implement these with :data:`byoc.hookimpl` in the module their ``byoc``
entry point names. Gathering hooks receive a ``register`` callback; the core owns
the policy (name clashes, validation) and attributes each registration to the
plugin's distribution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .attrs import AttrCodec
    from .runtime import Backend

PROJECT = "byoc"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# --------------------------------------------------------------------------
# registration phase: called once per plugin when the registry loads
# --------------------------------------------------------------------------


@hookspec
def byoc_register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register the backend classes this plugin provides.

    :param register: call ``register(MyBackend)`` once per :class:`byoc.Backend`
        subclass. Raises :class:`byoc.PluginError` for an invalid class or a name
        another distribution already registered.
    :returns: nothing; registrations go through ``register``.
    """


@hookspec
def byoc_register_codecs(register: Callable[[AttrCodec], None]) -> None:
    """Register attribute codecs for attribute types the core does not know.

    :param register: call ``register(AttrCodec(...))`` once per codec; the tag
        must contain a dot (``"vendor.thing"``) and be unique across plugins.
    :returns: nothing; registrations go through ``register``.
    """
