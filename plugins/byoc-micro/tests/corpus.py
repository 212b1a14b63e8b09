"""A seeded corpus of malformed artifacts for the C reader (and the Python one).

From a few valid seed files it derives, deterministically:

* truncations at every interesting boundary and at evenly spaced cuts;
* random bit flips (anywhere, and concentrated in the header);
* bytes of the header overwritten with msgpack type bytes that change what
  follows (huge container counts, the reserved 0xc1, ext/bin markers);
* hostile headers: the header decoded, one value somewhere (chosen at random,
  or aimed at the memory plan, shapes, attributes, entries and the constant
  table) replaced by a hostile value -- a wrong type, a huge or negative
  integer, a deep nest -- and re-encoded, with every int sometimes in its
  widest encoding.

The corpus file is a sequence of records: u32 little-endian length, bytes.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np

PREFIX = struct.Struct("<8sHHIQQ")


def _deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


HOSTILE_VALUES: tuple[Any, ...] = (
    None,
    True,
    -1,
    0,
    1,
    7,
    2**31,
    2**40,
    2**62,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    0.5,
    float("nan"),
    "",
    "float32",
    "int64",
    "x" * 300,
    "input",
    "kernel",
    "arena",
    "output",
    "alias",
    [],
    [1, 2, 3],
    [-1, 0, 0],
    [10**6, 0, 0],
    ["int", 2**40],
    ["ints", [0, 0, 0, 0]],
    ["ints", [2**31, 1]],
    ["float", "nan"],
    ["str", "SAME_UPPER"],
    ["list", []],
    ["expr", ["div", 1, 0]],
    ["bytes", "***"],
    ["tensor", ["float32", [2**30], "AAAA"]],
    {},
    {"version": 1},
    _deep(40),
)

# Header paths worth aiming at (dict keys; "*" is any index).
TARGETS: tuple[tuple[str, ...], ...] = (
    ("subgraphs", "*", "meta", "arena_size"),
    ("subgraphs", "*", "meta", "format"),
    ("subgraphs", "*", "meta", "entries"),
    ("subgraphs", "*", "meta", "entries", "*"),
    ("subgraphs", "*", "meta", "entries", "*", "*"),
    ("subgraphs", "*", "graph", "nodes", "*", "shape"),
    ("subgraphs", "*", "graph", "nodes", "*", "shape", "*"),
    ("subgraphs", "*", "graph", "nodes", "*", "shape", "*", "*"),
    ("subgraphs", "*", "graph", "nodes", "*", "dtype", "*"),
    ("subgraphs", "*", "graph", "nodes", "*", "inputs", "*"),
    ("subgraphs", "*", "graph", "nodes", "*", "inputs", "*", "*"),
    ("subgraphs", "*", "graph", "nodes", "*", "attrs", "*"),
    ("subgraphs", "*", "graph", "nodes", "*", "attrs", "*", "*"),
    ("subgraphs", "*", "graph", "nodes", "*", "attrs", "*", "*", "*"),
    ("subgraphs", "*", "graph", "nodes", "*", "name"),
    ("subgraphs", "*", "graph", "nodes", "*", "op"),
    ("subgraphs", "*", "graph", "heads", "*", "*"),
    ("constants", "*", "offset"),
    ("constants", "*", "nbytes"),
    ("constants", "*", "shape", "*"),
    ("constants", "*", "dtype"),
    ("constants", "*", "name"),
    ("host", "nodes", "*", "attrs", "*"),
    ("data_size",),
)


def prefix_of(data: bytes) -> tuple[int, int]:
    """(header_len, data_offset) of a valid artifact."""
    return PREFIX.unpack_from(data)[4], PREFIX.unpack_from(data)[5]


def pack_wide(obj: Any) -> bytes:
    """msgpack with every int in its widest form (any width is valid)."""
    if obj is None or obj is True or obj is False:
        return msgpack.packb(obj)
    if isinstance(obj, int):
        if obj < 0:
            return b"\xd3" + struct.pack(">q", obj)
        return b"\xcf" + struct.pack(">Q", obj)
    if isinstance(obj, float | str | bytes):
        return msgpack.packb(obj, use_bin_type=True)
    if isinstance(obj, list):
        return b"\xdd" + struct.pack(">I", len(obj)) + b"".join(map(pack_wide, obj))
    items = b"".join(pack_wide(k) + pack_wide(v) for k, v in obj.items())
    return b"\xdf" + struct.pack(">I", len(obj)) + items


def with_header(data: bytes, head: bytes) -> bytes:
    """``data`` with its header replaced by the encoded ``head``."""
    magic, major, minor, flags, _, data_offset = PREFIX.unpack_from(data)
    offset = (32 + len(head) + 63) // 64 * 64
    prefix = PREFIX.pack(magic, major, minor, flags, len(head), offset)
    return prefix + head + b"\0" * (offset - 32 - len(head)) + data[data_offset:]


def decode_header(data: bytes) -> Any:
    header_len, _ = prefix_of(data)
    return msgpack.unpackb(data[32 : 32 + header_len], raw=False)


def _paths(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*path, i))


def _matches(path: tuple[Any, ...], pattern: tuple[str, ...]) -> bool:
    return len(path) == len(pattern) and all(
        p == "*" or p == k for k, p in zip(path, pattern, strict=True)
    )


def _replace(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {k: _replace(v, rest, value) if k == head else v for k, v in obj.items()}
    return [_replace(v, rest, value) if i == head else v for i, v in enumerate(obj)]


def _nudge(value: Any, rng: random.Random) -> Any:
    """A plausible-but-wrong variant of a valid value (off by a little)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([value + 1, value - 1, value * 2, value + 64, -value, 0])
    if isinstance(value, list) and value:
        copy = list(value)
        if rng.random() < 0.5:
            copy.pop(rng.randrange(len(copy)))
        else:
            copy.append(copy[-1])
        return copy
    return rng.choice(HOSTILE_VALUES)


def hostile_headers(data: bytes, rng: random.Random, n: int) -> Iterator[bytes]:
    header = decode_header(data)
    paths = list(_paths(header))[1:]
    aimed = [p for p in paths if any(_matches(p, t) for t in TARGETS)]
    for _ in range(n):
        pool = aimed if aimed and rng.random() < 0.7 else paths
        path = rng.choice(pool)
        current: Any = header
        for k in path:
            current = current[k]
        value = (
            _nudge(current, rng) if rng.random() < 0.5 else rng.choice(HOSTILE_VALUES)
        )
        mutated = _replace(header, path, value)
        if rng.random() < 0.2:
            head = pack_wide(mutated)
        else:
            head = msgpack.packb(mutated, use_bin_type=True)
        yield with_header(data, head)


def truncations(data: bytes) -> Iterator[bytes]:
    header_len, data_offset = prefix_of(data)
    cuts = {0, 1, 7, 8, 16, 31, 32, 33, 32 + header_len - 1, 32 + header_len}
    cuts |= {data_offset - 1, data_offset, data_offset + 1, len(data) - 1}
    cuts |= set(range(0, len(data), max(1, len(data) // 40)))
    for cut in sorted(c for c in cuts if 0 <= c < len(data)):
        yield data[:cut]


def bit_flips(data: bytes, rng: random.Random, n: int) -> Iterator[bytes]:
    header_len, _ = prefix_of(data)
    for i in range(n):
        buf = bytearray(data)
        # two of three cases hit the header, where the structure lives
        hi = 32 + header_len if i % 3 else len(buf)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(hi)] ^= 1 << rng.randrange(8)
        yield bytes(buf)


TYPE_BYTES = (0xC1, 0xDD, 0xDF, 0xDB, 0xC6, 0xC9, 0xD8, 0xCF, 0xD3, 0xCB, 0x9F, 0x8F)


def type_bytes(data: bytes, rng: random.Random, n: int) -> Iterator[bytes]:
    header_len, _ = prefix_of(data)
    for _ in range(n):
        buf = bytearray(data)
        pos = rng.randrange(32, 32 + header_len)
        buf[pos] = rng.choice(TYPE_BYTES)
        if buf[pos] in (0xDD, 0xDF, 0xDB, 0xC6, 0xC9) and pos + 5 <= len(buf):
            buf[pos + 1 : pos + 5] = rng.choice(
                [b"\xff\xff\xff\xff", b"\x00\x01\x00\x00"]
            )
        yield bytes(buf)


def prefix_fields(data: bytes) -> Iterator[bytes]:
    magic, major, minor, flags, header_len, data_offset = PREFIX.unpack_from(data)
    body = data[32:]
    for fields in (
        (magic, 2, 0, flags, header_len, data_offset),
        (magic, 0, 0, flags, header_len, data_offset),
        (magic, 1, 9, 0xFFFFFFFF, header_len, data_offset),
        (magic, major, minor, flags, header_len + 1, data_offset),
        (magic, major, minor, flags, header_len - 1, data_offset),
        (magic, major, minor, flags, 2**64 - 1, data_offset),
        (magic, major, minor, flags, header_len, data_offset + 64),
        (magic, major, minor, flags, header_len, data_offset - 64),
        (magic, major, minor, flags, header_len, 2**64 - 64),
        (magic, major, minor, flags, header_len, 1),
        (b"\x89BYOC\r\n\x00", major, minor, flags, header_len, data_offset),
    ):
        yield PREFIX.pack(*fields) + body


def core_bit_flips(data: bytes) -> Iterator[bytes]:
    """The recipe of the core's own fuzz test (tests/test_artifact.py): 300
    cases of three flipped bits, from numpy's seeded generator."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        buf = bytearray(data)
        for pos in rng.integers(0, len(buf), 3):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        yield bytes(buf)


def make_corpus(
    seeds: dict[str, bytes], seed: int = 0, per_seed: int = 600
) -> list[bytes]:
    """Seeds first, then every derived case, deterministically."""
    rng = random.Random(seed)
    cases = list(seeds.values())
    for data in seeds.values():
        cases.extend(core_bit_flips(data))
        cases.extend(truncations(data))
        cases.extend(prefix_fields(data))
        cases.extend(bit_flips(data, rng, per_seed // 3))
        cases.extend(type_bytes(data, rng, per_seed // 6))
        cases.extend(hostile_headers(data, rng, per_seed // 2))
        cases.append(with_header(data, pack_wide(decode_header(data))))
    return cases


def write_corpus(cases: list[bytes], path: Any) -> None:
    with open(path, "wb") as out:
        for case in cases:
            out.write(struct.pack("<I", len(case)) + case)
