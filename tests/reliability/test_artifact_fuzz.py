"""Artifact fuzzing: whatever the bytes, loading ends in FormatError, quickly and
without allocating more than the file holds.

Each case mutates a valid seed artifact (``conftest.seed``): truncations, bit
flips, hostile prefix fields, and hostile headers (huge counts and offsets,
wrong types, deep nesting, missing keys, unknown codec tags). A case must end
in :class:`byoc.FormatError` - or, when the mutation happened to be harmless,
load, and then running it must succeed or raise a :class:`byoc.ByocError`. (A
well-formed file that names a backend nobody installed is a
:class:`byoc.BackendError` saying so, as ``byoc.load`` documents.)
Every case is bounded in time (1 s) and in traced memory (the file size plus a
small constant), so a reader that trusts a count from the file fails here; a
case over a bound is measured once more before it fails (see :func:`bounded`).
"""

from __future__ import annotations

import os
import struct
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import byoc

from .seeds import SEED_FEEDS, fuzz_settings, rebuild

LIMIT_S = 1.0
MARGIN = 256 << 10
"""Traced bytes a case may allocate on top of the file size: the decoded header
(Python objects, ~10x its msgpack size; seed headers are ~3 KiB) and the
run's small arrays. A reader that trusts a count or an offset from the file
allocates far more."""
STATS: dict[str, float] = {
    "cases": 0,
    "max_peak": 0,
    "max_s": 0.0,
    "at_size": 0,
    "measured_again": 0,
}
PREFIX = struct.Struct("<8sHHIQQ")
FUZZ = fuzz_settings()


@pytest.fixture(scope="module", autouse=True)
def stats() -> Iterator[None]:
    """Print what the bounds saw (shown with ``-s``)."""
    yield
    print(
        f"\nfuzz: {STATS['cases']} bounded calls, max traced peak "
        f"{STATS['max_peak']} bytes (file {STATS['at_size']} bytes), "
        f"slowest {STATS['max_s'] * 1e3:.1f} ms, "
        f"{STATS['measured_again']} measured again"
    )


def bounded(fn: Callable[[], Any], size: int, memory: bool = True) -> Any:
    """``fn()``, failing if it takes over 1 s or (with ``memory``) allocates more
    than size + MARGIN bytes, as traced by tracemalloc.

    A call over either bound is measured once more, and only that second
    measurement counts, because two things outside the call get charged to it:

    * msgpack interns map keys, and when the interpreter's table of interned
      strings grows, the call that triggers it is charged a table sized by
      every string the process interned (1.9 MB at about 38,000, which a long
      fuzz run reaches). That happens once per doubling.
    * A stall of this shared machine: in a nightly run one load of the seed
      with another minor version (which readers accept) took 1.70 s, where
      loads take milliseconds, and hypothesis could not make it slow again.

    A reader that trusts a count or an offset from the file is slow, or
    allocates, every time.
    """
    elapsed, result, peak = _measured(fn, memory)
    if elapsed >= LIMIT_S or peak > size + MARGIN:
        STATS["measured_again"] += 1
        elapsed, result, peak = _measured(fn, memory)
    STATS["cases"] += 1
    if peak > STATS["max_peak"]:
        STATS["max_peak"], STATS["at_size"] = peak, size
    STATS["max_s"] = max(STATS["max_s"], elapsed)
    assert elapsed < LIMIT_S, f"took {elapsed:.2f} s"
    assert peak <= size + MARGIN, f"allocated {peak} bytes for a {size}-byte file"
    return result


def _measured(fn: Callable[[], Any], memory: bool) -> tuple[float, Any, int]:
    """Seconds ``fn()`` took, its result, and its traced peak in bytes (0
    without ``memory``)."""
    if memory:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] if memory else 0
        tracemalloc.stop()
    return elapsed, result, peak


def outcome(data: bytes, path: Path | None = None) -> str:
    """Load ``data`` (from bytes, or written to ``path`` and memory-mapped) and,
    if it loads, run it; what happened (never a crash)."""
    if path is not None:  # a new inode: earlier cases may still map the old one
        path.with_suffix(".tmp").write_bytes(data)
        os.replace(path.with_suffix(".tmp"), path)

    def load() -> byoc.Module | str:
        try:
            if path is not None:
                return byoc.load(path)
            return byoc.Module.from_bytes(data)
        except byoc.FormatError:
            return "format-error"
        except byoc.BackendError as exc:
            # A well-formed file naming a backend that is not installed (a flipped
            # bit in "blobby") fails early, as documented, naming the backend.
            named = getattr(exc, "backend", None)
            if named in {b.name for b in byoc.backends()}:
                raise
            assert "is not installed" in str(exc), exc
            return "needs an uninstalled backend"

    mod = bounded(load, len(data))
    if isinstance(mod, str):
        return mod

    def run() -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt engine blobs warn, then rebuild
            try:
                mod.run(SEED_FEEDS)
            except byoc.ByocError:
                return "loaded, run refused"
        return "loaded, ran"

    return bounded(run, len(data), memory=False)


def test_the_seed_loads_and_runs(seed):
    assert outcome(seed) == "loaded, ran"


def test_the_bounds_can_fail(seed):
    with pytest.raises(AssertionError, match="allocated"):
        bounded(lambda: bytearray(len(seed) + MARGIN + 4096), len(seed))
    with pytest.raises(AssertionError, match="took"):
        bounded(lambda: time.sleep(LIMIT_S), len(seed))


def test_a_one_off_allocation_or_stall_is_measured_again(seed):
    """What an interned-strings table resize or a stall of the machine looks
    like to the bounds: on the first call only (see :func:`bounded`)."""
    calls = []

    def first_call_grows() -> int:
        calls.append(bytearray(len(seed) + MARGIN + 4096) if not calls else b"")
        return len(calls)

    assert bounded(first_call_grows, len(seed)) == 2

    def first_call_stalls() -> int:
        calls.append(time.sleep(LIMIT_S) if len(calls) == 2 else None)
        return len(calls)

    assert bounded(first_call_stalls, len(seed)) == 4


# --------------------------------------------------------------------------
# truncations and bit flips
# --------------------------------------------------------------------------


@FUZZ
@given(cut=st.data())
def test_truncated_files_are_format_errors(seed, case_file, cut):
    n = cut.draw(st.integers(0, len(seed) - 1), label="length")
    via_file = cut.draw(st.booleans(), label="via file")
    assert outcome(seed[:n], case_file if via_file else None) == "format-error"


@pytest.fixture(scope="module")
def case_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "case.byoc"


@FUZZ
@given(st.data())
def test_bit_flips_never_crash(seed, case_file, data):
    header_end = PREFIX.size + PREFIX.unpack_from(seed)[4]
    where = data.draw(st.sampled_from([header_end, len(seed)]), label="region")
    flips = data.draw(
        st.lists(
            st.tuples(st.integers(0, where - 1), st.integers(0, 7)),
            min_size=1,
            max_size=8,
        ),
        label="flips",
    )
    buf = bytearray(seed)
    for pos, bit in flips:
        buf[pos] ^= 1 << bit
    via_file = data.draw(st.booleans(), label="via file")
    outcome(bytes(buf), case_file if via_file else None)


# --------------------------------------------------------------------------
# hostile prefixes
# --------------------------------------------------------------------------

_U16 = st.one_of(st.sampled_from([0, 1, 2, 0xFFFF]), st.integers(0, 0xFFFF))
_U32 = st.one_of(st.sampled_from([0, 1, 0xFFFFFFFF]), st.integers(0, 0xFFFFFFFF))
_U64 = st.one_of(
    st.sampled_from([0, 1, 31, 32, 64, 2**31, 2**32, 2**62, 2**63, 2**64 - 1]),
    st.integers(0, 2**64 - 1),
    st.integers(0, 1 << 16),
)


@FUZZ
@given(st.data())
def test_hostile_prefix_fields(seed, data):
    fields = list(PREFIX.unpack_from(seed))
    which = data.draw(st.integers(1, 5), label="field")
    value = data.draw([_U16, _U16, _U32, _U64, _U64][which - 1], label="value")
    # The seed's own value (the header length 3028, say) leaves the file as it was.
    changed, fields[which] = value != fields[which], value
    result = outcome(PREFIX.pack(*fields) + seed[PREFIX.size :])
    if changed and (which in (4, 5) or (which == 1 and fields[1] != 1)):
        assert result == "format-error"


# --------------------------------------------------------------------------
# hostile headers
# --------------------------------------------------------------------------


def _deep_list(n: int) -> Any:
    out: Any = []
    for _ in range(n):
        out = [out]
    return out


def _deep_dict(n: int) -> Any:
    out: Any = {}
    for _ in range(n):
        out = {"k": out}
    return out


def _deep_attr(n: int) -> Any:
    out: Any = ["int", 1]
    for _ in range(n):
        out = ["list", [out]]
    return out


HOSTILE_VALUES: list[Any] = [
    None,
    True,
    False,
    -1,
    0,
    1,
    63,
    64,
    2**31,
    2**32 + 64,
    2**62,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    0.5,
    float("nan"),
    float("inf"),
    -0.0,
    "",
    "x" * 4096,
    "float32",
    "zz.unknown",
    b"\x00\xff",
    b"\x89BYOC",
    [],
    {},
    [0] * 1000,
    list(range(64)),
    {"": None},
    {"nodes": []},
    _deep_list(400),
    _deep_dict(400),
    _deep_attr(100),
    ["zz.unknown", {"rows": 1}],
    ["fuzz.tile", "not a dict"],
    ["graph", {"version": 1, "nodes": [], "heads": [[0, 0, 0]]}],
    ["tensor", ["float32", [2**40, 2**40], ""]],
    ["expr", _deep_list(64)],
    ["int", 2**64 - 1],
    ["floats", ["nan", "NaN", None]],
    ["bytes", "!!"],
    [2**40, 2**40, 2**40],
    [[2**63 - 1, 0, 0]],
    [-1, -1, -1],
]

# Raw msgpack tokens that announce far more data than follows.
HUGE_TOKENS = [
    b"\xdd\xff\xff\xff\xff",  # array32 of 4G items
    b"\xdf\xff\xff\xff\xff",  # map32 of 4G pairs
    b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
    b"\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB
    b"\xc9\xff\xff\xff\xff\x01",  # ext32 of 4 GiB
    b"\xdc\xff\xff",  # array16 of 65535 items
    b"\xc1",  # never used
]


@pytest.mark.parametrize(
    "unit",
    [
        b"\xdc\x0f\xff",  # array16 of 4095 items, then the next one as its first
        b"\xde\x0f\xff",  # map16 of 4095 pairs, likewise
        b"\xdd\x00\x00\x0f\xff",  # array32
    ],
)
def test_nested_containers_that_promise_too_much_are_format_errors(seed, unit):
    # msgpack allocates each container at its declared length before reading
    # it, bounded only by the input length each: a 4 KiB header of nested
    # arrays allocated 1.9 MB (the nightly fuzz), megabytes more as it grows.
    head = unit * (4096 // len(unit))
    assert outcome(rebuild(head, seed)) == "format-error"
    assert outcome(rebuild(head * 8, seed)) == "format-error"


def test_a_header_with_many_large_tokens_still_loads(seed):
    # The quick check sums every byte that could start a 16/32-bit container,
    # strings and numbers included; a header that trips it is walked for real.
    head_len = PREFIX.unpack_from(seed)[4]
    header = msgpack.unpackb(seed[PREFIX.size : PREFIX.size + head_len], raw=False)
    header["zz_noise"] = "\xdd\xff\xff\xff\xff" * 50  # harmless inside a string
    assert outcome(rebuild(header, seed)) == "loaded, ran"


def _positions(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _positions(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _positions(v, (*path, i))


def _mutate(header: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    if not path:
        return value if how == "replace" else header
    parent = header
    for key in path[:-1]:
        parent = parent[key]
    key, old = path[-1], parent[path[-1]]
    if how == "replace":
        parent[key] = value
    elif how == "delete":
        del parent[key]
    elif how == "add-key" and isinstance(old, dict):
        old["zz_unknown_key"] = value
    elif how == "duplicate" and isinstance(old, list) and old:
        old.append(old[0])
    elif how == "retype":
        if isinstance(old, dict):
            parent[key] = list(old.values())
        elif isinstance(old, list):
            parent[key] = {str(i): v for i, v in enumerate(old)}
        elif isinstance(old, str):
            parent[key] = len(old)
        else:
            parent[key] = str(old)
    return header


@FUZZ
@given(st.data())
def test_hostile_headers(seed, data):
    head_len = PREFIX.unpack_from(seed)[4]
    header = msgpack.unpackb(seed[PREFIX.size : PREFIX.size + head_len], raw=False)
    positions = list(_positions(header))
    path = data.draw(st.sampled_from(positions), label="path")
    how = data.draw(
        st.sampled_from(
            ["replace", "delete", "add-key", "duplicate", "retype", "token"]
        ),
        label="how",
    )
    if how == "token":  # splice a lying length token into the packed header
        packed = msgpack.packb(header, use_bin_type=True)
        at = data.draw(st.integers(0, len(packed) - 1), label="at")
        token = data.draw(st.sampled_from(HUGE_TOKENS), label="token")
        outcome(rebuild(packed[:at] + token + packed[at + len(token) :], seed))
        return
    value = data.draw(st.sampled_from(HOSTILE_VALUES), label="value")
    outcome(rebuild(_mutate(header, path, how, value), seed))


def test_unknown_codec_tags_name_the_plugin_to_install(seed):
    head_len = PREFIX.unpack_from(seed)[4]
    header = msgpack.unpackb(seed[PREFIX.size : PREFIX.size + head_len], raw=False)
    assert header["codecs"] == {"fuzz.tile": "fuzz-codecs"}
    raw = msgpack.packb(header, use_bin_type=True).replace(b"fuzz.tile", b"fuzz.tilx")
    with pytest.raises(byoc.FormatError, match="needs the plugin 'fuzz-codecs'"):
        byoc.Module.from_bytes(rebuild(raw, seed))
