"""The artifact: one versioned file holding a whole compiled model.

Third step of the flow (import -> partition -> serialize -> load -> run). The
byte layout is specified normatively in ``docs/FORMAT.md``; in short::

    0   magic  b"\\x89BYOC\\r\\n\\x1a"
    8   u16 major, u16 minor, u32 flags (0)      little-endian
    16  u64 header_len, u64 data_offset
    32  header: msgpack map (graphs, constant table, engine table)
    data_offset (64-aligned): blobs, each at a 64-aligned offset

Constants are raw little-endian blobs, identical ones stored once (content hash),
and are loaded as read-only numpy views of a memory map: nothing is copied and
nothing is ever unpickled. Readers validate every count, offset and size before
touching memory, so a malformed file is a :class:`~byoc.FormatError`, never a
crash, hang, or allocation larger than the file.
"""

from __future__ import annotations

import hashlib
import io
import math
import mmap
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgpack
import numpy as np

from .atomic import atomic_write
from .attrs import AttrCodec, is_builtin_tag, is_plain
from .dtypes import DTypeError, dtype_name, to_numpy
from .errors import ByocError, FormatError
from .graph import GRAPH_FORMAT_VERSION, Graph

MAGIC = b"\x89BYOC\r\n\x1a"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
ALIGN = 64
_PREFIX = struct.Struct("<8sHHIQQ")
MAX_HEADER = 1 << 30
"""Largest header a reader accepts (and never more than the file holds)."""


@dataclass(frozen=True)
class SubgraphRecord:
    """One subgraph as stored: symbol, backend name and version, JSON graph."""

    symbol: str
    backend: str
    backend_version: str
    graph: Graph
    meta: Mapping[str, Any] = field(default_factory=dict)
    """What the backend's ``plan`` hook computed at compile time (plain data)."""


@dataclass(frozen=True)
class EngineRecord:
    """A prebuilt engine blob, valid only for the same backend name and version."""

    symbol: str
    backend: str
    backend_version: str
    data: bytes


@dataclass(frozen=True)
class Artifact:
    """Everything in one artifact file, decoded."""

    host: Graph
    subgraphs: tuple[SubgraphRecord, ...]
    consts: Mapping[str, np.ndarray]
    engines: Mapping[str, EngineRecord] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Writer version and other informational header keys."""


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


def _collect_tags(obj: Any, out: set[str]) -> None:
    """Plugin codec tags used anywhere in an encoded graph dict."""
    if isinstance(obj, dict):
        for node in obj.get("nodes", ()):
            for value in node.get("attrs", {}).values():
                _collect_tags_attr(value, out)


def _collect_tags_attr(value: Any, out: set[str]) -> None:
    tag, payload = value
    if not is_builtin_tag(tag):
        out.add(tag)
    elif tag == "list":
        for item in payload:
            _collect_tags_attr(item, out)
    elif tag == "graph":
        _collect_tags(payload, out)


def _blob_layout(
    artifact: Artifact,
) -> tuple[list[dict[str, Any]], list[tuple[int, memoryview]], int]:
    """Constant table entries and deduplicated, aligned blobs."""
    table: list[dict[str, Any]] = []
    blobs: list[tuple[int, memoryview]] = []
    by_hash: dict[bytes, int] = {}
    offset = 0
    for name in sorted(artifact.consts):
        array = np.asarray(artifact.consts[name])
        dt = dtype_name(array.dtype)
        le = np.ascontiguousarray(array, dtype=to_numpy(dt).newbyteorder("<"))
        data = le.reshape(-1).view(np.uint8).data if le.size else memoryview(b"")
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if digest not in by_hash:
            by_hash[digest] = offset
            blobs.append((offset, data))
            offset += _align(len(data))
        table.append(
            {
                "name": name,
                "dtype": dt,
                "shape": list(array.shape),
                "offset": by_hash[digest],
                "nbytes": len(data),
            }
        )
    return table, blobs, offset


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _write(
    out: IO[bytes], artifact: Artifact, codecs: Mapping[str, AttrCodec] | None
) -> None:
    table, blobs, end = _blob_layout(artifact)
    engines = []
    for eng in artifact.engines.values():
        engines.append(
            {
                "symbol": eng.symbol,
                "backend": eng.backend,
                "backend_version": eng.backend_version,
                "offset": end,
                "nbytes": len(eng.data),
            }
        )
        blobs.append((end, memoryview(eng.data)))
        end += _align(len(eng.data))
    host = artifact.host.to_dict(codecs)
    subs = []
    tags: set[str] = set()
    _collect_tags(host, tags)
    for rec in artifact.subgraphs:
        g = rec.graph.to_dict(codecs)
        _collect_tags(g, tags)
        subs.append(
            {
                "symbol": rec.symbol,
                "backend": rec.backend,
                "backend_version": rec.backend_version,
                "graph": g,
                "meta": dict(rec.meta),
            }
        )
    if codecs is None:
        from .registry import get_registry

        codecs = get_registry().codecs()
    header = {
        **artifact.meta,
        "graph_version": GRAPH_FORMAT_VERSION,
        "host": host,
        "subgraphs": subs,
        "constants": table,
        "engines": engines,
        "codecs": {t: codecs[t].plugin if t in codecs else "" for t in sorted(tags)},
        "data_size": end,
    }
    head = msgpack.packb(header, use_bin_type=True)
    data_offset = _align(_PREFIX.size + len(head))
    out.write(
        _PREFIX.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, 0, len(head), data_offset)
    )
    out.write(head)
    pos = _PREFIX.size + len(head)
    out.write(b"\0" * (data_offset - pos))
    pos = 0
    for off, data in blobs:
        out.write(b"\0" * (off - pos))
        out.write(data)
        pos = off + len(data)
    out.write(b"\0" * (end - pos))


def artifact_bytes(
    artifact: Artifact, codecs: Mapping[str, AttrCodec] | None = None
) -> bytes:
    """The artifact file's bytes (SaveToBinary)."""
    buf = io.BytesIO()
    _write(buf, artifact, codecs)
    return buf.getvalue()


def write_artifact(
    path: str | os.PathLike[str],
    artifact: Artifact,
    codecs: Mapping[str, AttrCodec] | None = None,
) -> Path:
    """Write atomically: a temp file beside ``path``, fsync, then rename over it."""
    with atomic_write(path) as out:
        _write(out, artifact, codecs)
    return Path(path)


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------


def read_artifact(
    path: str | os.PathLike[str], codecs: Mapping[str, AttrCodec] | None = None
) -> Artifact:
    """Load an artifact with mmap; constants are read-only views of the map."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _PREFIX.size:
                raise FormatError(f"{p} is not a byoc artifact: only {size} bytes")
            buf: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise FormatError(f"artifact {str(p)!r} does not exist") from None
    except IsADirectoryError:
        raise FormatError(f"artifact path {str(p)!r} is a directory") from None
    except OSError as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"cannot read artifact {str(p)!r}: {exc}") from exc
    return parse_artifact(buf, codecs, source=str(p))


def parse_artifact(
    buffer: bytes | bytearray | memoryview | mmap.mmap,
    codecs: Mapping[str, AttrCodec] | None = None,
    source: str = "<bytes>",
) -> Artifact:
    """Decode artifact bytes (LoadFromBinary); constants are views of ``buffer``."""
    try:
        return _parse(buffer, codecs, source)
    except ByocError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
        RecursionError,
        MemoryError,
        msgpack.exceptions.ExtraData,
        DTypeError,
    ) as exc:
        raise FormatError(
            f"{source}: malformed artifact: {type(exc).__name__}: {exc}"
        ) from exc


# msgpack type byte -> whole size of a fixed-size item (0: variable), and the
# items a fix-sized container adds; variable ones: (head bytes, length bytes,
# items per declared length: 0 for str/bin/ext, 1 array, 2 map).
_MP_SIZE = [0] * 256
_MP_ITEMS = [0] * 256
for _t in range(256):
    if _t <= 0x7F or _t >= 0xE0 or _t in (0xC0, 0xC2, 0xC3):
        _MP_SIZE[_t] = 1
    elif 0xA0 <= _t <= 0xBF:
        _MP_SIZE[_t] = 1 + (_t & 0x1F)
    elif 0x80 <= _t <= 0x9F:
        _MP_SIZE[_t] = 1
        _MP_ITEMS[_t] = (_t & 0x0F) * (1 if _t >= 0x90 else 2)
for _t, _n in zip(
    (0xCC, 0xD0, 0xCD, 0xD1, 0xD4, 0xD5, 0xCA, 0xCE, 0xD2, 0xD6, 0xCB, 0xCF, 0xD3),
    (2, 2, 3, 3, 3, 4, 5, 5, 5, 6, 9, 9, 9),
    strict=True,
):
    _MP_SIZE[_t] = _n
_MP_SIZE[0xD7], _MP_SIZE[0xD8] = 10, 18
_MP_VAR = {
    0xD9: (2, 1, 0), 0xC4: (2, 1, 0), 0xC7: (3, 1, 0),
    0xDA: (3, 2, 0), 0xC5: (3, 2, 0), 0xC8: (4, 2, 0),
    0xDB: (5, 4, 0), 0xC6: (5, 4, 0), 0xC9: (6, 4, 0),
    0xDC: (3, 2, 1), 0xDD: (5, 4, 1), 0xDE: (3, 2, 2), 0xDF: (5, 4, 2),
}  # fmt: skip


def _containers_fit(raw: bytes) -> bool:
    """Whether no msgpack array or map in ``raw`` declares more items than the
    bytes left could hold (each item takes at least one).

    msgpack's unpacker allocates every container at its declared length
    before reading it, bounding each by the input length only: a 4 KiB
    header of nested array16s, each claiming 4095 items, made it allocate
    33.6 MB before failing (array32s: 26.9 MB), and the damage grows with the
    square of the header. This walks the items without building them (about
    3 ms for ResNet-50's 60 KB header, msgpack itself 2 ms), holding no items.
    """
    n, pos, pending = len(raw), 0, 1
    while pending:
        if pos >= n:
            return True  # truncated: msgpack reports it
        t = raw[pos]
        size = _MP_SIZE[t]
        if size:
            pending += _MP_ITEMS[t] - 1
            pos += size
        else:
            var = _MP_VAR.get(t)
            if var is None:
                return True  # 0xC1, never used: msgpack reports it
            head, width, per = var
            length = int.from_bytes(raw[pos + 1 : pos + 1 + width], "big")
            pending += per * length - 1
            pos += head + (0 if per else length)
        if pending > n - pos:
            return False
    return True


def _fail(source: str, what: str) -> FormatError:
    return FormatError(f"{source}: malformed artifact: {what}")


def _parse(
    buffer: Any, codecs: Mapping[str, AttrCodec] | None, source: str
) -> Artifact:
    size = len(buffer)
    if size < _PREFIX.size:
        raise _fail(source, f"only {size} bytes")
    magic, major, minor, _flags, header_len, data_offset = _PREFIX.unpack_from(
        buffer, 0
    )
    if magic != MAGIC:
        raise FormatError(f"{source} is not a byoc artifact (bad magic)")
    if major > FORMAT_MAJOR:
        raise FormatError(
            f"{source} uses artifact format {major}.{minor}; this byoc reads "
            f"{FORMAT_MAJOR}.x. Upgrade byoc-core (pip install -U byoc-core).",
            version=(major, minor),
        )
    if major < 1:
        raise _fail(source, f"format major version {major}")
    if header_len > min(MAX_HEADER, size - _PREFIX.size):
        raise _fail(
            source, f"header length {header_len} exceeds the file ({size} bytes)"
        )
    if (
        data_offset % ALIGN
        or data_offset < _PREFIX.size + header_len
        or data_offset > size
    ):
        raise _fail(source, f"data offset {data_offset} is out of range")
    raw = bytes(buffer[_PREFIX.size : _PREFIX.size + header_len])
    if not _containers_fit(raw):
        raise _fail(
            source, "header containers declare more items than the header holds"
        )
    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:
        raise _fail(source, f"header does not decode: {exc}") from exc
    if not isinstance(header, dict):
        raise _fail(source, "header is not a map")
    data_size = _int(header, "data_size", source)
    if data_offset + data_size > size:
        raise _fail(
            source,
            f"data section ({data_size} bytes at {data_offset}) runs past "
            f"the end of the file ({size} bytes): truncated?",
        )
    plugins = header.get("codecs", {})
    if not isinstance(plugins, dict) or not all(
        isinstance(v, str) for v in plugins.values()
    ):
        raise _fail(source, "codecs must map tags to plugin names")
    host = Graph.from_dict(header.get("host"), codecs, plugins)
    subs_raw = header.get("subgraphs")
    if not isinstance(subs_raw, list):
        raise _fail(source, "subgraphs must be a list")
    subgraphs = []
    for s in subs_raw:
        if not isinstance(s, dict) or not all(
            isinstance(s.get(k), str) for k in ("symbol", "backend", "backend_version")
        ):
            raise _fail(
                source, "subgraph entries need symbol, backend and backend_version"
            )
        meta = s.get("meta", {})
        if not isinstance(meta, dict) or not is_plain(meta):
            raise _fail(source, f"subgraph {s['symbol']!r} meta must be plain data")
        subgraphs.append(
            SubgraphRecord(
                s["symbol"],
                s["backend"],
                s["backend_version"],
                Graph.from_dict(s.get("graph"), codecs, plugins),
                meta,
            )
        )
    symbols = [s.symbol for s in subgraphs]
    if len(set(symbols)) != len(symbols):
        raise _fail(source, "duplicate subgraph symbols")
    consts = {}
    for entry in _list(header, "constants", source):
        name, dt, shape, offset, nbytes = _const_entry(entry, source)
        _check_range(offset, nbytes, data_size, source, f"constant {name!r}")
        itemsize = to_numpy(dt).itemsize
        count = math.prod(shape)
        if count * itemsize != nbytes:
            raise _fail(
                source, f"constant {name!r}: {nbytes} bytes cannot hold {dt}{shape}"
            )
        if (data_offset + offset) % min(ALIGN, itemsize or 1):
            raise _fail(source, f"constant {name!r} is misaligned")
        arr = np.frombuffer(
            buffer,
            dtype=to_numpy(dt).newbyteorder("<"),
            count=count,
            offset=data_offset + offset,
        )
        consts[name] = arr.reshape(shape)
    engines = {}
    for entry in _list(header, "engines", source):
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str)
            for k in ("symbol", "backend", "backend_version")
        ):
            raise _fail(
                source, "engine entries need symbol, backend and backend_version"
            )
        offset, nbytes = _int(entry, "offset", source), _int(entry, "nbytes", source)
        _check_range(offset, nbytes, data_size, source, f"engine {entry['symbol']!r}")
        start = data_offset + offset
        engines[entry["symbol"]] = EngineRecord(
            entry["symbol"],
            entry["backend"],
            entry["backend_version"],
            bytes(buffer[start : start + nbytes]),
        )
    meta = {k: v for k, v in header.items() if k in ("byoc_version", "created_by")}
    return Artifact(host, tuple(subgraphs), consts, engines, meta)


def _int(obj: dict[str, Any], key: str, source: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _fail(source, f"{key} must be a non-negative integer")
    return value


def _list(obj: dict[str, Any], key: str, source: str) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise _fail(source, f"{key} must be a list")
    return value


def _const_entry(entry: Any, source: str) -> tuple[str, str, tuple[int, ...], int, int]:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise _fail(source, "constant entries need a name")
    name = entry["name"]
    try:
        dt = dtype_name(entry.get("dtype"))
    except DTypeError:
        raise _fail(
            source, f"constant {name!r} has unknown dtype {entry.get('dtype')!r:.40}"
        ) from None
    shape = entry.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > 32
        or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40
            for d in shape
        )
    ):
        raise _fail(source, f"constant {name!r} has a bad shape")
    return (
        name,
        dt,
        tuple(shape),
        _int(entry, "offset", source),
        _int(entry, "nbytes", source),
    )


def _check_range(
    offset: int, nbytes: int, data_size: int, source: str, what: str
) -> None:
    if offset % ALIGN or offset + nbytes > data_size:
        raise _fail(
            source, f"{what} at offset {offset} (+{nbytes}) is outside the data section"
        )
