"""The plugin registry: the only global mutable state in byoc.

It discovers plugins through the ``byoc`` entry-point group, registers them with
pluggy, and gathers their backends and attribute codecs. It loads lazily, once,
on first use. ``BYOC_LOAD_PLUGINS`` (comma-separated distribution names or
entry-point keys) limits which plugins load; set but empty means none.

A plugin that fails to import, or whose hooks raise, is recorded with the reason
and never stops the others from loading.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs
from .attrs import AttrCodec, is_builtin_tag
from .errors import BackendError, PluginError
from .runtime import Backend

log = logging.getLogger("byoc")

ENTRY_POINT_GROUP = "byoc"
ENV_ALLOW = "BYOC_LOAD_PLUGINS"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class BackendInfo:
    """One row of ``byoc.backends()``."""

    name: str
    version: str
    distribution: str
    available: bool
    reason: str
    priority: int


class Registry:
    """Plugins, their backends and codecs; see the module docstring."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._backends: dict[str, type[Backend]] = {}
        self._codecs: dict[str, AttrCodec] = {}
        self._broken: dict[str, BackendInfo] = {}
        self._availability: dict[str, str | None] = {}
        # plugin name -> backend names and codec tags it registered
        self._owned: dict[str, list[str]] = {}
        self._lock = threading.RLock()

    # -- loading ---------------------------------------------------------

    def load_entry_points(self, allow: str | None = None) -> None:
        """Load every plugin in the ``byoc`` entry-point group (``allow`` filters)."""
        allowed = (
            None
            if allow is None
            else {a.strip() for a in allow.split(",") if a.strip()}
        )
        for ep in sorted(
            md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
        ):
            dist = ep.dist.name if ep.dist is not None else ep.name
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not break the others
                self._record_broken(
                    ep.name,
                    dist,
                    f"failed to import {ep.value}: {type(exc).__name__}: {exc}",
                )
                continue
            self.add_plugin(module, ep.name, dist)

    def add_plugin(self, plugin: Any, name: str, distribution: str = "") -> None:
        """Register ``plugin`` (a module or object with hookimpls) and gather from "
        "it."""
        distribution = distribution or name
        with self._lock:
            try:
                self.pm.register(plugin, name=name)
            except Exception as exc:
                self._record_broken(name, distribution, f"could not register: {exc}")
                return
            gather = (
                ("byoc_register_backends", self._backend_registrar(name, distribution)),
                ("byoc_register_codecs", self._codec_registrar(name, distribution)),
            )
            for hook_name, register in gather:
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin_name != name:
                        continue
                    try:
                        impl.function(register=register)
                    except Exception as exc:
                        self._record_broken(
                            name,
                            distribution,
                            f"hook {hook_name} raised {type(exc).__name__}: {exc}",
                        )

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and forget what it registered (used by tests)."""
        with self._lock:
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                self.pm.unregister(plugin)
            for bname in self._owned.pop(name, ()):
                self._backends.pop(bname, None)
                self._availability.pop(bname, None)
                self._codecs.pop(bname, None)
            self._broken.pop(name, None)

    @contextmanager
    def plugin(self, plugin: Any, name: str) -> Iterator[None]:
        """Register ``plugin`` for the duration of a ``with`` block."""
        self.add_plugin(plugin, name, name)
        try:
            yield
        finally:
            self.remove_plugin(name)

    def _record_broken(self, name: str, distribution: str, reason: str) -> None:
        log.warning("byoc plugin %s (%s) is unusable: %s", name, distribution, reason)
        self._broken[name] = BackendInfo(name, "?", distribution, False, reason, -1)

    def _backend_registrar(self, plugin_name: str, distribution: str) -> Any:
        def register(cls: type[Backend]) -> None:
            if not (isinstance(cls, type) and issubclass(cls, Backend)):
                raise PluginError(
                    f"{distribution} registered {cls!r}, which is not a "
                    "byoc.Backend subclass"
                )
            if not _NAME_RE.match(cls.name or ""):
                raise PluginError(
                    f"{distribution} registered backend class {cls.__name__} with "
                    "invalid "
                    f"name {cls.name!r}; use lowercase letters, digits and _",
                )
            other = self._backends.get(cls.name)
            if other is not None:
                raise PluginError(
                    f"backend name {cls.name!r} is registered by both "
                    f"{other.distribution!r} "
                    f"and {distribution!r}; uninstall one, or limit loading with "
                    f"{ENV_ALLOW}",
                    backend=cls.name,
                    distributions=(other.distribution, distribution),
                )
            cls.distribution = distribution
            self._backends[cls.name] = cls
            self._owned.setdefault(plugin_name, []).append(cls.name)

        return register

    def _codec_registrar(self, plugin_name: str, distribution: str) -> Any:
        def register(codec: AttrCodec) -> None:
            if (
                not isinstance(codec, AttrCodec)
                or "." not in codec.tag
                or is_builtin_tag(codec.tag)
            ):
                raise PluginError(
                    f"{distribution} registered an invalid codec {codec!r}; tags must "
                    "contain a dot, e.g. 'vendor.thing'"
                )
            other = self._codecs.get(codec.tag)
            if other is not None:
                raise PluginError(
                    f"attribute codec {codec.tag!r} is registered by both "
                    f"{other.plugin!r} "
                    f"and {distribution!r}"
                )
            self._codecs[codec.tag] = AttrCodec(
                codec.tag, codec.type, codec.encode, codec.decode, distribution
            )
            self._owned.setdefault(plugin_name, []).append(codec.tag)

        return register

    # -- queries -----------------------------------------------------------

    def codecs(self) -> dict[str, AttrCodec]:
        """Registered attribute codecs by tag."""
        return dict(self._codecs)

    def availability(self, name: str) -> str | None:
        """None if backend ``name`` is usable, else why not (cached)."""
        with self._lock:
            if name not in self._availability:
                cls = self._backends[name]
                try:
                    reason = cls.available()
                except Exception as exc:
                    reason = f"availability check raised {type(exc).__name__}: {exc}"
                self._availability[name] = (
                    None if reason is None else str(reason) or "unavailable"
                )
            return self._availability[name]

    def backends(self) -> list[BackendInfo]:
        """Every installed backend, available or not, plus broken plugins."""
        rows = []
        for name, cls in self._backends.items():
            reason = self.availability(name)
            rows.append(
                BackendInfo(
                    name,
                    cls.version,
                    cls.distribution,
                    reason is None,
                    reason or "",
                    cls.priority,
                )
            )
        rows.sort(key=lambda r: (-r.priority, r.name))
        return rows + sorted(self._broken.values(), key=lambda r: r.name)

    def default_backends(self) -> list[str]:
        """Names of the available backends, highest priority first.

        Backends with a negative priority (deployment targets such as ``micro``)
        are opt-in: they run only when named.
        """
        return [r.name for r in self.backends() if r.available and r.priority >= 0]

    def backend(self, name: str, *, need_available: bool = True) -> type[Backend]:
        """The backend class called ``name``; BackendError with a fix if absent."""
        cls = self._backends.get(name)
        if cls is None:
            known = ", ".join(sorted(self._backends)) or "none"
            broken = self._broken.get(name)
            extra = f" (its plugin is broken: {broken.reason})" if broken else ""
            raise BackendError(
                f"backend {name!r} is not installed{extra}; installed backends: "
                f"{known}. "
                f"Install it (e.g. pip install byoc-{name}) or check {ENV_ALLOW}",
                backend=name,
            )
        if need_available:
            reason = self.availability(name)
            if reason is not None:
                raise BackendError(
                    f"backend {name!r} is unavailable: {reason}", backend=name
                )
        return cls


_REGISTRY: Registry | None = None
_GLOBAL_LOCK = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, loading entry points on first call."""
    global _REGISTRY
    if _REGISTRY is None:
        with _GLOBAL_LOCK:
            if _REGISTRY is None:
                reg = Registry()
                reg.load_entry_points(os.environ.get(ENV_ALLOW))
                _REGISTRY = reg
    return _REGISTRY


@contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the process-wide one inside a ``with`` block (tests)."""
    global _REGISTRY
    previous = _REGISTRY
    _REGISTRY = registry
    try:
        yield registry
    finally:
        _REGISTRY = previous


def backends() -> list[BackendInfo]:
    """Installed backends: name, version, distribution, available, reason, priority."""
    return get_registry().backends()
