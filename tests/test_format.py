"""The artifact format against its spec (docs/FORMAT.md), through a golden file.

``tests/data/golden.byoc`` is a small artifact that uses every part of the
format: a host graph with a symbolic-shape node, two subgraphs (one with a
composite whose body is a nested graph), every attribute encoding including a
plugin codec tag, deduplicated and zero-size constants, an engine blob and a
subgraph ``meta``. ``tests/data/golden.json`` is its header as decoded JSON.
The writer must reproduce the file byte for byte from the same model, and the
reader must decode it back to that model.

After an intentional format change, regenerate both files with
``BYOC_REGENERATE_GOLDEN=1 pytest tests/test_format.py`` and review the diff.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

import byoc
from byoc.artifact import (
    ALIGN,
    MAGIC,
    Artifact,
    EngineRecord,
    SubgraphRecord,
    artifact_bytes,
    parse_artifact,
)
from byoc.attrs import AttrCodec, Sym, TensorAttr
from byoc.graph import JSONGraphNode, JSONGraphNodeEntry

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden.byoc"
GOLDEN_JSON = DATA / "golden.json"
PREFIX = struct.Struct("<8sHHIQQ")
F32 = "float32"


@dataclass(frozen=True)
class Point:
    """A plugin attribute type, stored through the codec tag ``golden.point``."""

    x: int
    y: int


CODECS = {
    "golden.point": AttrCodec(
        "golden.point",
        Point,
        lambda p: {"x": p.x, "y": p.y},
        lambda d: Point(d["x"], d["y"]),
        plugin="byoc-golden-point",
    )
}


def E(nid: int, idx: int = 0) -> JSONGraphNodeEntry:  # noqa: N802 - reads as TVM's
    return JSONGraphNodeEntry(nid, idx, 0)


def golden_artifact() -> Artifact:
    """The model the golden file holds (deterministic: fixed arrays, fixed order)."""
    w = np.arange(16, dtype=np.float32).reshape(4, 4) / 8
    s = np.array([1.0, -0.5, 2.0, 0.25], np.float32)
    body = byoc.Graph(
        (
            JSONGraphNode("input", "in0", shapes=(("batch", 4),), dtypes=(F32,)),
            JSONGraphNode("const", "s", shapes=((4,),), dtypes=(F32,)),
            JSONGraphNode(
                "kernel", "Mul", (E(0), E(1)), shapes=(("batch", 4),), dtypes=(F32,)
            ),
            JSONGraphNode(
                "kernel", "Sigmoid", (E(2),), shapes=(("batch", 4),), dtypes=(F32,)
            ),
        ),
        (E(3),),
    )
    accel = byoc.Graph(
        (
            JSONGraphNode("input", "x", shapes=(("batch", 4),), dtypes=(F32,)),
            JSONGraphNode("const", "w", shapes=((4, 4),), dtypes=(F32,)),
            JSONGraphNode(
                "kernel",
                "MatMul",
                (E(0), E(1)),
                shapes=(("batch", 4),),
                dtypes=(F32,),
                label="mm",
            ),
            JSONGraphNode(
                "kernel",
                "accel.mul_sigmoid",
                (E(2),),
                {"body": body},
                (("batch", 4),),
                (F32,),
                "sig",
            ),
        ),
        (E(3),),
        ("sig:0",),
    )
    every_attr: dict[str, Any] = {
        "flag": True,
        "count": -(2**40),
        "ratio": 0.5,
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "mode": "µ-law",
        "blob": b"\x00\x01\xfe\xff",
        "sizes": (1, -2, 3),
        "scales": (0.25, math.inf),
        "names": ("a", "b"),
        "empty": (),
        "mixed": (1, "two", (3.0,)),
        "dtype": np.dtype("int64"),
        "table": TensorAttr.from_array(np.array([[1, 2], [3, 4]], np.int32)),
        "dim": Sym.dim("batch") * 4 - 1,
        "sub": byoc.Graph(
            (JSONGraphNode("input", "i", shapes=(None,), dtypes=("unknown",)),),
            (E(0),),
        ),
        "point": Point(3, -4),
    }
    fake = byoc.Graph(
        (
            JSONGraphNode("input", "sig:0", shapes=(("batch", 4),), dtypes=(F32,)),
            JSONGraphNode(
                "kernel",
                "Identity",
                (E(0),),
                every_attr,
                (("batch", 4),),
                (F32,),
                "ident",
            ),
            JSONGraphNode(
                "kernel", "Relu", (E(1),), shapes=(("batch", 4),), dtypes=(F32,)
            ),
        ),
        (E(2),),
        ("y",),
    )
    host = byoc.Graph(
        (
            JSONGraphNode("input", "x", shapes=(("batch", 4),), dtypes=(F32,)),
            JSONGraphNode(
                "kernel",
                "byoc.sym",
                attrs={"value": (Sym.dim("batch") * 4, 7)},
                shapes=((2,),),
                dtypes=("int64",),
                label="n",
            ),
            JSONGraphNode(
                "kernel",
                "byoc.call",
                (E(0),),
                {"symbol": "accel_0"},
                (("batch", 4),),
                (F32,),
                "accel_0",
            ),
            JSONGraphNode(
                "kernel",
                "byoc.call",
                (E(2),),
                {"symbol": "fake_0"},
                (("batch", 4),),
                (F32,),
                "fake_0",
            ),
        ),
        (E(3), E(1)),
        ("y", "n"),
    )
    meta = {"arena_size": 64, "nested": {"list": [1, 2.5, None, True, "s"]}}
    return Artifact(
        host,
        (
            SubgraphRecord("accel_0", "accel", "1.0", accel, meta),
            SubgraphRecord("fake_0", "fake", "1.0", fake),
        ),
        {
            "w": w,
            "s": s,
            "w_copy": w.copy(),  # identical bytes: stored once
            "empty": np.zeros((0, 3), np.float32),
            "steps": np.array([1, -1], np.int64),
        },
        {"accel_0": EngineRecord("accel_0", "accel", "0.9", b"prebuilt engine")},
        {"byoc_version": "0.1.0", "created_by": "tests/test_format.py"},
    )


def _header(data: bytes) -> dict[str, Any]:
    header_len = PREFIX.unpack_from(data)[4]
    return msgpack.unpackb(data[32 : 32 + header_len], raw=False)


@pytest.fixture(scope="module")
def golden() -> bytes:
    data = artifact_bytes(golden_artifact(), CODECS)
    if os.environ.get("BYOC_REGENERATE_GOLDEN"):
        GOLDEN.write_bytes(data)
        GOLDEN_JSON.write_text(json.dumps(_header(data), indent=1) + "\n")
    return GOLDEN.read_bytes()


def test_writer_reproduces_the_golden_file_byte_for_byte(golden):
    assert artifact_bytes(golden_artifact(), CODECS) == golden
    assert artifact_bytes(golden_artifact(), CODECS) == golden  # and again
    assert len(golden) < 8192, "the golden file should stay a few KB"


def test_header_decodes_to_the_golden_json(golden):
    assert _header(golden) == json.loads(GOLDEN_JSON.read_text())


def test_reader_decodes_the_golden_model(golden):
    want = golden_artifact()
    got = parse_artifact(golden, CODECS)
    # compare graphs through JSON: NaN attributes are never == themselves
    assert got.host.to_json(CODECS) == want.host.to_json(CODECS)
    for g, w in zip(got.subgraphs, want.subgraphs, strict=True):
        assert (g.symbol, g.backend, g.backend_version, g.meta) == (
            w.symbol,
            w.backend,
            w.backend_version,
            w.meta,
        )
        assert g.graph.to_json(CODECS) == w.graph.to_json(CODECS)
    ident = got.subgraphs[1].graph.nodes[1].attrs
    assert ident["point"] == Point(3, -4)
    assert ident["blob"] == b"\x00\x01\xfe\xff"
    assert math.isnan(ident["nan"]) and ident["ninf"] == -math.inf
    assert ident["table"].array().tolist() == [[1, 2], [3, 4]]
    assert sorted(got.consts) == sorted(want.consts)
    for name, array in want.consts.items():
        np.testing.assert_array_equal(got.consts[name], array)
        assert got.consts[name].dtype == array.dtype
    assert got.engines["accel_0"].data == b"prebuilt engine"
    assert dict(got.meta) == dict(want.meta)


def test_prefix_alignment_and_padding_follow_the_spec(golden):
    magic, major, minor, flags, header_len, data_offset = PREFIX.unpack_from(golden)
    assert (magic, major, minor, flags) == (MAGIC, 1, 0, 0)
    assert magic == b"\x89BYOC\r\n\x1a"
    # the smallest multiple of 64 after the header, zero-filled
    assert data_offset == (32 + header_len + ALIGN - 1) // ALIGN * ALIGN
    assert golden[32 + header_len : data_offset] == b"\0" * (
        data_offset - 32 - header_len
    )
    header = _header(golden)
    assert len(golden) == data_offset + header["data_size"]
    assert list(header) == [
        "byoc_version",
        "created_by",
        "graph_version",
        "host",
        "subgraphs",
        "constants",
        "engines",
        "codecs",
        "data_size",
    ]
    consts = header["constants"]
    assert [c["name"] for c in consts] == sorted(c["name"] for c in consts)
    by_name = {c["name"]: c for c in consts}
    assert by_name["w"]["offset"] == by_name["w_copy"]["offset"]  # stored once
    blobs = [*consts, *header["engines"]]
    assert all(b["offset"] % ALIGN == 0 for b in blobs)
    assert header["engines"][0]["offset"] >= max(c["offset"] for c in consts)
    w = by_name["w"]
    start = data_offset + w["offset"]
    np.testing.assert_array_equal(
        np.frombuffer(golden[start : start + w["nbytes"]], "<f4").reshape(4, 4),
        golden_artifact().consts["w"],
    )
    assert header["codecs"] == {"golden.point": "byoc-golden-point"}


def test_attribute_encodings_follow_the_spec_table(golden):
    attrs = _header(golden)["subgraphs"][1]["graph"]["nodes"][1]["attrs"]
    assert attrs["flag"] == ["bool", True]
    assert attrs["count"] == ["int", -(2**40)]
    assert attrs["nan"] == ["float", "nan"] and attrs["ninf"] == ["float", "-inf"]
    assert attrs["blob"] == ["bytes", "AAH+/w=="]
    assert attrs["sizes"] == ["ints", [1, -2, 3]]
    assert attrs["scales"] == ["floats", [0.25, "inf"]]
    assert attrs["empty"] == ["list", []]
    assert attrs["mixed"] == [
        "list",
        [["int", 1], ["str", "two"], ["floats", [3.0]]],
    ]
    assert attrs["dtype"] == ["dtype", "int64"]
    assert attrs["table"] == ["tensor", ["int32", [2, 2], "AQAAAAIAAAADAAAABAAAAA=="]]
    assert attrs["dim"] == ["expr", ["sub", ["mul", ["dim", "batch"], 4], 1]]
    assert attrs["sub"][0] == "graph" and attrs["sub"][1]["version"] == 1
    assert attrs["point"] == ["golden.point", {"x": 3, "y": -4}]
    host_sym = _header(golden)["host"]["nodes"][1]["attrs"]["value"]
    assert host_sym == ["list", [["expr", ["mul", ["dim", "batch"], 4]], ["int", 7]]]


def test_golden_model_runs_with_its_codec_and_names_the_plugin_without(
    registry, golden
):
    with pytest.raises(byoc.FormatError, match="byoc-golden-point"):
        byoc.Module.from_bytes(golden)

    class CodecPlugin:
        @byoc.hookimpl
        def byoc_register_codecs(self, register):
            register(CODECS["golden.point"])

    registry.add_plugin(CodecPlugin(), "golden-codec")
    try:
        mod = byoc.Module.from_bytes(golden)
        x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
        out = mod.run({"x": x})
        s = golden_artifact().consts["s"]
        w = golden_artifact().consts["w"]
        want = np.maximum(1 / (1 + np.exp(-((x @ w) * s))), 0)
        np.testing.assert_allclose(out["y"], want, rtol=1e-5, atol=1e-6)
        assert out["n"].tolist() == [12, 7]
    finally:
        registry.remove_plugin("golden-codec")


# --------------------------------------------------------------------------
# compatibility rules (section 2) and what readers reject (section 9)
# --------------------------------------------------------------------------


def _with_prefix(data: bytes, **fields: int) -> bytes:
    magic, major, minor, flags, header_len, data_offset = PREFIX.unpack_from(data)
    values = {"major": major, "minor": minor, "flags": flags}
    values.update(fields)
    return (
        PREFIX.pack(
            magic,
            values["major"],
            values["minor"],
            values["flags"],
            header_len,
            data_offset,
        )
        + data[32:]
    )


def _with_header(data: bytes, header: Any, pack: Any = None) -> bytes:
    magic, major, minor, flags, _, data_offset = PREFIX.unpack_from(data)
    head = (pack or (lambda h: msgpack.packb(h, use_bin_type=True)))(header)
    offset = (32 + len(head) + ALIGN - 1) // ALIGN * ALIGN
    prefix = PREFIX.pack(magic, major, minor, flags, len(head), offset)
    return prefix + head + b"\0" * (offset - 32 - len(head)) + data[data_offset:]


def test_readers_accept_newer_minor_flags_unknown_keys_and_trailing_bytes(golden):
    header = _header(golden)
    header["future_key"] = {"anything": [1, 2]}
    header["subgraphs"][0]["future"] = 1
    header["constants"][0]["future"] = "x"
    header["host"]["nodes"][0]["future"] = None
    data = _with_prefix(_with_header(golden, header), minor=7, flags=0xFFFF)
    art = parse_artifact(data + b"trailing bytes", CODECS)
    assert art.host.to_json(CODECS) == golden_artifact().host.to_json(CODECS)


def test_readers_reject_what_section_9_lists(golden):
    header = _header(golden)
    cases = {
        "newer major": _with_prefix(golden, major=2),
        "major 0": _with_prefix(golden, major=0),
        "short": golden[:31],
        "bad magic": b"\x89BYOD" + golden[5:],
        "misaligned data offset": golden[:24] + struct.pack("<Q", 65) + golden[32:],
        "trailing header bytes": _with_header(
            golden, header, lambda h: msgpack.packb(h) + b"\xc0"
        ),
        "header not a map": _with_header(golden, [header]),
        "newer graph": _with_header(
            golden, {**header, "host": {**header["host"], "version": 2}}
        ),
        "unknown builtin-style tag": _with_header(
            golden,
            _mutated(header, lambda h: _attrs(h, 1).update(bad=["complex", 1])),
        ),
        "duplicate symbols": _with_header(
            golden,
            {**header, "subgraphs": [header["subgraphs"][0]] * 2},
        ),
        "data past the end": _with_header(golden, {**header, "data_size": 10**6}),
    }
    for name, data in cases.items():
        with pytest.raises(byoc.FormatError):
            parse_artifact(data, CODECS)
            pytest.fail(f"accepted: {name}")


def _mutated(header: dict[str, Any], fn: Any) -> dict[str, Any]:
    copy = msgpack.unpackb(msgpack.packb(header), raw=False)
    fn(copy)
    return copy


def _attrs(header: dict[str, Any], sub: int) -> dict[str, Any]:
    return header["subgraphs"][sub]["graph"]["nodes"][1]["attrs"]


def pack_wide(obj: Any) -> bytes:
    """msgpack with every int in its widest encoding (spec: any width is valid)."""
    if obj is None:
        return b"\xc0"
    if obj is True or obj is False:
        return b"\xc3" if obj else b"\xc2"
    if isinstance(obj, int):
        return (
            b"\xd3" + struct.pack(">q", obj)
            if obj < 0
            else b"\xcf" + struct.pack(">Q", obj)
        )
    if isinstance(obj, float):
        return b"\xcb" + struct.pack(">d", obj)
    if isinstance(obj, str):
        raw = obj.encode()
        return b"\xdb" + struct.pack(">I", len(raw)) + raw
    if isinstance(obj, list):
        return b"\xdd" + struct.pack(">I", len(obj)) + b"".join(map(pack_wide, obj))
    if isinstance(obj, dict):
        items = b"".join(pack_wide(k) + pack_wide(v) for k, v in obj.items())
        return b"\xdf" + struct.pack(">I", len(obj)) + items
    raise TypeError(type(obj))


def test_any_integer_width_decodes_the_same(golden):
    wide = _with_header(golden, _header(golden), pack_wide)
    assert len(wide) > len(golden)
    art = parse_artifact(wide, CODECS)
    assert art.host.to_json(CODECS) == golden_artifact().host.to_json(CODECS)
    np.testing.assert_array_equal(art.consts["w"], golden_artifact().consts["w"])


def test_last_duplicate_key_wins(golden):
    header = _header(golden)
    head = msgpack.packb(header, use_bin_type=True)
    # a map of one more pair: data_size again, first with a wrong value
    assert head[0] == 0x89  # fixmap of 9 pairs
    dup = bytes([0x8A]) + msgpack.packb("data_size") + msgpack.packb(10**9) + head[1:]
    data = _with_header(golden, None, lambda _: dup)
    assert parse_artifact(data, CODECS).consts["w"].shape == (4, 4)


def test_meta_must_be_plain_data(golden):
    header = _header(golden)
    header["subgraphs"][0]["meta"] = {"blob": b"\x00"}
    with pytest.raises(byoc.FormatError, match="meta"):
        parse_artifact(_with_header(golden, header), CODECS)
