"""A content-addressed on-disk cache for built engines, open to every backend.

Sits beside init in the flow (load -> init -> run): a backend whose engines are
slow to build (TensorRT) asks the cache before building and stores what it
built. Keys are digests of *everything* the engine depends on (subgraph JSON,
constants, library version, device, build options) - never a symbol name, which
would silently reuse a stale engine after the model or library changed.

Entries are written atomically (temp file + rename) and carry a checksum; a
corrupt or mismatched entry is a miss with a warning and gets rebuilt. A full or
read-only directory only costs a warning. The directory has a size limit with
least-recently-used pruning (a hit refreshes the entry's mtime). Every lookup is
recorded with its outcome and, for a miss, its reason, so ``byoc run --verbose``
can show why an engine was (re)built.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .graph import Graph
from .partition import const_names

_MAGIC = b"BYOCENG1"
_HEAD = struct.Struct("<8s32sQ")  # magic, blake2b-256 of the payload, payload length
DEFAULT_MAX_BYTES = 4 << 30


def xdg_cache_home() -> Path:
    """``$XDG_CACHE_HOME``, else ``~/.cache``: where per-user caches go.

    Plugins whose cache has its own documented directory (byoc-micro's
    ``byoc-micro``) start from here, so the fallback lives in one place.
    """
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def user_cache_dir(*parts: str) -> Path:
    """``$BYOC_CACHE_DIR`` or ``$XDG_CACHE_HOME/byoc`` (``~/.cache/byoc``), joined."""
    base = os.environ.get("BYOC_CACHE_DIR")
    return Path(base, *parts) if base else xdg_cache_home().joinpath("byoc", *parts)


def cache_key(*parts: bytes | str) -> str:
    """Digest of every part (length-prefixed, so part boundaries count)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def consts_digest(graph: Graph, consts: Mapping[str, np.ndarray]) -> str:
    """Digest of every constant ``graph`` reads (name, dtype, shape, bytes): the
    key part that makes an entry follow the weights, not just the structure.

    SHA-256, which CPUs with SHA extensions hash at ~1.5 GB/s (2.5x blake2b's
    speed on the bench machine): ResNet-50's 100 MB of weights cost 65 ms.
    """
    h = hashlib.sha256()
    for name in sorted(const_names(graph)):
        array = np.ascontiguousarray(consts[name])
        h.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        h.update(array.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


@dataclass(frozen=True)
class CacheEvent:
    """One lookup or store: what happened and, for misses, why."""

    cache: str
    key: str
    outcome: str  # "hit" | "miss" | "stored" | "not stored"
    reason: str = ""
    label: str = ""


_EVENTS: list[CacheEvent] = []
_EVENTS_LOCK = threading.Lock()


def events() -> list[CacheEvent]:
    """Every cache event in this process, oldest first."""
    with _EVENTS_LOCK:
        return list(_EVENTS)


class EngineCache:
    """An engine cache in one directory (see the module docstring)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        read_only: bool = False,
        name: str = "engines",
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.read_only = read_only
        self.name = name
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are lowercase hex digests, got {key!r}")
        return self.directory / key[:2] / f"{key}.engine"

    def _record(
        self, key: str, outcome: str, reason: str = "", label: str = ""
    ) -> None:
        with _EVENTS_LOCK:
            _EVENTS.append(CacheEvent(self.name, key, outcome, reason, label))

    def get(self, key: str, *, label: str = "") -> bytes | None:
        """The cached engine for ``key``, or None (a miss, recorded with why)."""
        path = self._path(key)
        payload, problem = _read_entry(path)
        if payload is not None:
            self.hits += 1
            self._record(key, "hit", label=label)
            try:
                os.utime(path)  # least-recently-used pruning goes by mtime
            except OSError:
                pass
            return payload
        if problem.startswith("corrupt"):
            warnings.warn(
                f"{self.name} cache entry {path} is {problem}; rebuilding it",
                RuntimeWarning,
                stacklevel=2,
            )
            if not self.read_only:
                try:
                    path.unlink()
                except OSError:
                    pass
        self.misses += 1
        self._record(key, "miss", problem, label)
        return None

    def put(self, key: str, data: bytes, *, label: str = "") -> bool:
        """Store ``data`` atomically; False (with a warning) when that is impossible."""
        if self.read_only:
            self._record(key, "not stored", "cache is read-only", label)
            return False
        path = self._path(key)
        digest = hashlib.blake2b(data, digest_size=32).digest()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as out:
                out.write(_HEAD.pack(_MAGIC, digest, len(data)))
                out.write(data)
        except OSError as exc:
            warnings.warn(
                f"could not store an engine in the {self.name} cache at "
                f"{self.directory} ({exc}); the engine works but will be rebuilt "
                "next time",
                RuntimeWarning,
                stacklevel=2,
            )
            self._record(key, "not stored", str(exc), label)
            return False
        self._record(key, "stored", label=label)
        self.prune(keep=(path,))
        return True

    def entries(self) -> list[tuple[Path, int, float]]:
        """(path, size, mtime) of every entry."""
        out: list[tuple[Path, int, float]] = []
        if not self.directory.is_dir():
            return out
        for path in self.directory.glob("??/*.engine"):
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((path, st.st_size, st.st_mtime))
        return out

    def size(self) -> int:
        """Bytes used by all entries."""
        return sum(size for _, size, _ in self.entries())

    def prune(self, keep: Iterable[Path] = ()) -> int:
        """Delete least-recently-used entries until under max_bytes; count them."""
        if self.read_only:
            return 0
        keep = set(keep)
        entries = sorted(self.entries(), key=lambda e: e[2])
        total = sum(size for _, size, _ in entries)
        removed = 0
        for path, size, _ in entries:
            if total <= self.max_bytes:
                break
            if path in keep:
                continue
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            removed += 1
        return removed


def _read_entry(path: Path) -> tuple[bytes | None, str]:
    """(payload, "") for a valid entry, else (None, why not)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, "not cached"
    except OSError as exc:
        return None, f"unreadable: {exc}"
    if len(raw) < _HEAD.size:
        return None, "corrupt: truncated entry"
    magic, digest, length = _HEAD.unpack(raw[: _HEAD.size])
    payload = raw[_HEAD.size :]
    if magic != _MAGIC:
        return None, "corrupt: not an engine cache entry"
    if length != len(payload):
        return None, "corrupt: truncated entry"
    if hashlib.blake2b(payload, digest_size=32).digest() != digest:
        return None, "corrupt: checksum mismatch"
    return payload, ""


def describe_events(items: list[CacheEvent] | None = None) -> list[str]:
    """Lines for ``byoc run --verbose``: counts per cache, then each miss's reason."""
    items = events() if items is None else items
    lines = []
    for cache in dict.fromkeys(e.cache for e in items):
        mine = [e for e in items if e.cache == cache]
        hits = sum(e.outcome == "hit" for e in mine)
        misses = [e for e in mine if e.outcome == "miss"]
        lines.append(f"{cache} cache: {hits} hits, {len(misses)} misses")
        for e in misses:
            lines.append(f"  miss {e.label or e.key[:12]}: {e.reason}")
        for e in mine:
            if e.outcome == "not stored":
                lines.append(f"  not stored {e.label or e.key[:12]}: {e.reason}")
    return lines
