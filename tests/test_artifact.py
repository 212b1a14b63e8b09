"""Artifact: layout, dedup, zero-copy mmap loading, malformed files, atomic save."""

from __future__ import annotations

import mmap
import os
import struct
import time

import msgpack
import numpy as np
import pytest
from conftest import make_model
from onnx import helper

import byoc
from byoc.artifact import ALIGN, MAGIC, Artifact, read_artifact, write_artifact


def mmap_backed(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


def big_model(mbytes: int) -> tuple:
    n = mbytes * (1 << 20) // 4 // 256
    w = np.random.default_rng(0).standard_normal((256, n)).astype(np.float32)
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [("x", [1, 256])],
        [("y", [1, n])],
        {"w": w},
    )
    return model, w


def test_constants_load_as_read_only_memory_mapped_views(registry, tmp_path):
    model, w = big_model(100)
    path = byoc.compile(model, backends=["fake"], quiet=True).save(
        tmp_path / "big.byoc"
    )
    assert path.stat().st_size > 100 * (1 << 20)
    t0 = time.perf_counter()
    mod = byoc.load(path)
    elapsed = time.perf_counter() - t0
    const = mod.consts["w"]
    assert mmap_backed(const), "constant was copied instead of mapped"
    assert not const.flags.writeable
    np.testing.assert_array_equal(const[:, :5], w[:, :5])
    # informational only (the machine is noisy): loading is far below a full read
    print(f"load of a 100 MiB artifact: {elapsed * 1e3:.1f} ms")
    x = np.ones((1, 256), np.float32)
    np.testing.assert_allclose(mod.run({"x": x})["y"][0, :8], (x @ w)[0, :8], rtol=1e-4)


def test_identical_constants_are_stored_once(registry, tmp_path):
    a = np.arange(4096, dtype=np.float32)
    model = make_model(
        [
            helper.make_node("Add", ["x", "a"], ["t"]),
            helper.make_node("Add", ["t", "b"], ["y"]),
        ],
        [("x", [4096])],
        [("y", [4096])],
        {"a": a, "b": a.copy()},
    )
    mod = byoc.compile(model, backends=["fake"], quiet=True)
    path = mod.save(tmp_path / "m.byoc")
    assert path.stat().st_size < a.nbytes * 2
    loaded = read_artifact(path)
    assert (
        loaded.consts["a"].__array_interface__["data"][0]
        == loaded.consts["b"].__array_interface__["data"][0]
    )


def test_layout_prefix_and_alignment(registry, tmp_path, mlp_model):
    path = byoc.compile(mlp_model, backends=["fake"], quiet=True).save(
        tmp_path / "m.byoc"
    )
    data = path.read_bytes()
    magic, major, minor, flags, header_len, data_offset = struct.unpack_from(
        "<8sHHIQQ", data
    )
    assert (magic, major, minor, flags) == (MAGIC, 1, 0, 0)
    assert data_offset % ALIGN == 0 and data_offset >= 32 + header_len
    header = msgpack.unpackb(data[32 : 32 + header_len], raw=False)
    for entry in header["constants"]:
        assert entry["offset"] % ALIGN == 0
    art = read_artifact(path)
    for array in art.consts.values():
        assert array.__array_interface__["data"][0] % ALIGN == 0 or array.size == 0


def _artifact_bytes(registry, mlp_model) -> bytes:
    return byoc.compile(mlp_model, backends=["fake"], quiet=True).to_bytes()


def _with_header(data: bytes, mutate) -> bytes:
    _, major, minor, flags, header_len, data_offset = struct.unpack_from(
        "<8sHHIQQ", data
    )
    header = msgpack.unpackb(data[32 : 32 + header_len], raw=False)
    mutate(header)
    head = msgpack.packb(header, use_bin_type=True)
    new_offset = (32 + len(head) + ALIGN - 1) // ALIGN * ALIGN
    prefix = struct.pack("<8sHHIQQ", MAGIC, major, minor, flags, len(head), new_offset)
    body = prefix + head
    return body + b"\0" * (new_offset - len(body)) + data[data_offset:]


HOSTILE = {
    "huge data size": lambda h: h.update(data_size=2**62),
    "constant past the end": lambda h: h["constants"][0].update(offset=2**40),
    "constant size mismatch": lambda h: h["constants"][0].update(nbytes=3),
    "absurd shape": lambda h: h["constants"][0].update(shape=[2**39, 2**39]),
    "negative shape": lambda h: h["constants"][0].update(shape=[-1]),
    "bad dtype": lambda h: h["constants"][0].update(dtype="complex256"),
    "unaligned offset": lambda h: h["constants"][0].update(offset=1),
    "constants not a list": lambda h: h.update(constants={"a": 1}),
    "missing host": lambda h: h.pop("host"),
    "host wrong type": lambda h: h.update(host=[1, 2, 3]),
    "subgraph missing graph": lambda h: h["subgraphs"][0].pop("graph"),
    "duplicate symbols": lambda h: h["subgraphs"].append(h["subgraphs"][0]),
    "call to unknown symbol": lambda h: h["subgraphs"][0].update(symbol="other"),
    "missing constant": lambda h: h.update(constants=[]),
    "unknown codec tag": lambda h: h["subgraphs"][0]["graph"]["nodes"][-1][
        "attrs"
    ].update(x=["vendor.thing", 1]),
    "engine out of range": lambda h: h.update(
        engines=[
            {
                "symbol": "fake_0",
                "backend": "fake",
                "backend_version": "1",
                "offset": 0,
                "nbytes": 2**50,
            }
        ]
    ),
    "newer graph version": lambda h: h["host"].update(version=99),
    "unknown dtype in the host graph": lambda h: h["host"]["nodes"][0].update(
        dtype=["gloat32"]
    ),
    "negative node id": lambda h: h["host"]["nodes"][-1].update(
        inputs=[[-(2**63), 0, 0]]
    ),
    "absent call input": lambda h: h["host"]["nodes"][-1].update(inputs=[[-1, 0, 0]]),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_headers_raise_format_error(registry, mlp_model, case):
    data = _with_header(_artifact_bytes(registry, mlp_model), HOSTILE[case])
    with pytest.raises(byoc.FormatError):
        byoc.Module.from_bytes(data)


def test_truncation_bad_magic_and_newer_versions(registry, mlp_model, tmp_path):
    data = _artifact_bytes(registry, mlp_model)
    for cut in (0, 5, 31, 40, len(data) // 2, len(data) - 1):
        with pytest.raises(byoc.FormatError):
            byoc.Module.from_bytes(data[:cut])
    with pytest.raises(byoc.FormatError, match="not a byoc artifact"):
        byoc.Module.from_bytes(b"PK\x03\x04" + data[4:])
    newer = data[:8] + struct.pack("<H", 2) + data[10:]
    with pytest.raises(byoc.FormatError, match="format 2.0.*Upgrade byoc-core"):
        byoc.Module.from_bytes(newer)
    huge_header = data[:16] + struct.pack("<Q", 2**60) + data[24:]
    with pytest.raises(byoc.FormatError, match="header length"):
        byoc.Module.from_bytes(huge_header)
    garbage = data[:32] + b"\xc1" * 64 + data[96:]
    with pytest.raises(byoc.FormatError):
        byoc.Module.from_bytes(garbage)
    with pytest.raises(byoc.FormatError, match="does not exist"):
        byoc.load(tmp_path / "missing.byoc")
    with pytest.raises(byoc.FormatError, match="directory"):
        byoc.load(tmp_path)


def test_random_bit_flips_never_crash(registry, mlp_model):
    data = _artifact_bytes(registry, mlp_model)
    rng = np.random.default_rng(0)
    x = np.ones((1, 8), np.float32)
    for _ in range(300):
        buf = bytearray(data)
        for pos in rng.integers(0, len(buf), 3):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            byoc.Module.from_bytes(bytes(buf)).run({"x": x})
        except byoc.ByocError:
            pass


class Boom(Exception):
    pass


def test_save_is_atomic(registry, mlp_model, tmp_path, monkeypatch):
    mod = byoc.compile(mlp_model, backends=["fake"], quiet=True)
    target = tmp_path / "m.byoc"
    mod.save(target)
    before = target.read_bytes()

    import byoc.artifact as artifact

    real_write = artifact._write

    def half_then_fail(out, art, codecs):
        real_write(out, art, codecs)
        out.flush()
        raise Boom("disk full")

    monkeypatch.setattr(artifact, "_write", half_then_fail)
    with pytest.raises(Boom):
        mod.save(target)
    assert target.read_bytes() == before, "a failed save touched the target"
    assert os.listdir(tmp_path) == ["m.byoc"], "temp file left behind"
    monkeypatch.setattr(artifact, "_write", real_write)
    with pytest.raises(Boom):  # a failure before anything exists leaves nothing
        monkeypatch.setattr(artifact, "_write", half_then_fail)
        mod.save(tmp_path / "new.byoc")
    assert not (tmp_path / "new.byoc").exists()


def test_empty_and_zero_size_constants(tmp_path):
    host = byoc.Graph(
        (byoc.JSONGraphNode("const", "e", shapes=((0, 3),), dtypes=("float32",)),),
        (byoc.JSONGraphNodeEntry(0),),
        ("e",),
    )
    art = Artifact(host, (), {"e": np.zeros((0, 3), np.float32)})
    path = write_artifact(tmp_path / "e.byoc", art, {})
    back = read_artifact(path, {})
    assert back.consts["e"].shape == (0, 3)
