"""Shared pieces of the reliability suite: fake plugins, the seed artifact, helpers."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from conftest import NumpyBackend, build_mlp
from hypothesis import settings

import byoc


def fuzz_settings() -> settings:
    """The hypothesis profile named by ``HYPOTHESIS_PROFILE`` (default ``ci``)."""
    return settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass(frozen=True)
class Tile:
    """A plugin attribute type, so seed artifacts carry a codec-tagged value."""

    rows: int


TILE_CODEC = byoc.AttrCodec(
    "fuzz.tile", Tile, lambda t: {"rows": t.rows}, lambda p: Tile(p["rows"])
)


class Blobby(NumpyBackend):
    """Runs Add and exports a tiny engine blob, so seeds have an engine table."""

    name = "blobby"
    priority = 20
    ops = frozenset({"Add"})

    def export_engine(self) -> bytes | None:
        return b"blobby:" + self.symbol.encode()

    def import_engine(self, blob: bytes, consts: Mapping[str, np.ndarray]) -> None:
        if blob != b"blobby:" + self.symbol.encode():
            raise ValueError("corrupt blobby engine")
        self.consts = consts


class CodecPlugin:
    """Registers the Tile codec."""

    @byoc.hookimpl
    def byoc_register_codecs(self, register: Any) -> None:
        register(TILE_CODEC)


def seed_model() -> onnx.ModelProto:
    """x[batch,8] -> MatMul, Add, Relu, MatMul, Mul, Sigmoid, Add -> y[batch,4]."""
    return build_mlp()


def with_attr(mod: byoc.Module, op: str, key: str, value: Any) -> byoc.Module:
    """``mod`` with ``key=value`` added to every kernel node named ``op``."""
    records = []
    for rec in mod.subgraphs:
        nodes = tuple(
            dataclasses.replace(n, attrs={**n.attrs, key: value})
            if n.op == "kernel" and n.name == op
            else n
            for n in rec.graph.nodes
        )
        graph = byoc.Graph(nodes, rec.graph.heads, rec.graph.head_names)
        records.append(dataclasses.replace(rec, graph=graph))
    art = dataclasses.replace(mod.artifact, subgraphs=tuple(records))
    return byoc.Module(art)


SEED_FEEDS = {"x": np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)}


def rebuild(header: Any, data: bytes, prefix: Sequence[int] | None = None) -> bytes:
    """An artifact with ``header`` (any msgpack-able value) and ``data``'s blobs."""
    import struct

    import msgpack

    from byoc.artifact import ALIGN, MAGIC

    fmt = struct.Struct("<8sHHIQQ")
    _, major, minor, flags, head_len, offset = fmt.unpack_from(data)
    head = (
        header
        if isinstance(header, bytes)
        else msgpack.packb(header, use_bin_type=True)
    )
    new_offset = -(-(fmt.size + len(head)) // ALIGN) * ALIGN
    fields = list(prefix) if prefix is not None else [major, minor, flags]
    return (
        fmt.pack(MAGIC, *fields, len(head), new_offset)
        + head
        + b"\0" * (new_offset - fmt.size - len(head))
        + data[offset:]
    )
