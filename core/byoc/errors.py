"""Typed errors: every failure a user can cause or meet is one of these.

Each error keeps structured fields (backend, op, node, symbol, ...) so callers can
react programmatically, and its message says what failed, where, and what to do.
"""

from __future__ import annotations


class ByocError(Exception):
    """Root of every error byoc raises on purpose."""

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        for key, value in fields.items():
            setattr(self, key, value)


class ModelError(ByocError):
    """The input model is malformed or uses something the importer cannot read."""


class GraphError(ByocError, ValueError):
    """A JSON graph is internally inconsistent (bad entry, cycle, wrong counts)."""


class UnsupportedError(ByocError):
    """No selected backend can run a node; raised at compile time, never at init.

    Fields: ``op``, ``node`` (name or index), ``backends`` (names asked),
    ``reasons`` (backend name -> why it declined).
    """


class FormatError(ByocError):
    """An artifact (or serialized graph) is malformed, truncated, or too new.

    ``plugin`` is set when the file needs a plugin that is not installed.
    """


class InputError(ByocError, ValueError):
    """Inputs given to ``run`` do not match the model's signature."""


class BackendError(ByocError):
    """A backend failed (missing, unavailable, or raised while building or running).

    Fields: ``backend``, ``symbol`` (subgraph), ``stage`` ("init", "run", ...).
    """


class NativeBuildError(ByocError):
    """A backend's C sources cannot be compiled or loaded here (no compiler, a
    failed build); the message says why. See :mod:`byoc.native`."""


class PluginError(ByocError):
    """A plugin broke the plugin contract (duplicate name, bad registration)."""


def pip_hint(backend: str) -> str:
    """The install command for a first-party style backend distribution."""
    return f"pip install byoc-{backend}"
