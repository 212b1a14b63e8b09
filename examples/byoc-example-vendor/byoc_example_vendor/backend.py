"""The example vendor's backend: what a third party writes against byoc's public API.

Capability checks (``supports``, ``patterns``) answer at compile time, with a
reason for every refusal. The engine (``init``/``run``) interprets its subgraph
with the numpy kernels of ``kernels.py``; ``init`` "packs" the constants (a
contiguous private copy, standing in for a real library's weight layout), and
``export_engine``/``import_engine`` carry that packed state in the artifact
behind a checksum, so a damaged blob is refused and byoc rebuilds the engine.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

import byoc

from .kernels import KERNELS, matmul_blocks
from .tiling import ATTR, Tiling

FUSED = "example.matmul_bias"
"""Composite kernel: MatMul followed by Add of a constant bias row."""

_MAGIC = b"EXVNDR01"
_HEAD = struct.Struct("<8s32sQ")  # magic, blake2b-256 of the payload, payload size

Step = tuple[
    Callable[..., tuple[np.ndarray, ...]], byoc.JSONGraphNode, tuple[int, ...], int
]


def _bias_check(infos: Sequence[byoc.NodeInfo]) -> byoc.Support:
    """Fuse MatMul+Add only when Add adds a constant row of the output width."""
    matmul, add = infos
    for info in infos:
        answer = ExampleBackend.supports(info)
        if not answer:
            return answer
    width = (matmul.outputs[0].shape or (None,))[-1]
    if not any(v.ndim == 1 and v.shape[0] == width for v in add.consts.values()):
        return byoc.Support.no("example: MatMul+Add fuses only a constant bias row")
    return byoc.Support.yes()


def _tiling(node: byoc.JSONGraphNode) -> Tiling:
    """Blocks of 4 output rows, or fewer when the output is shorter."""
    shape = node.shapes[0] or ()
    rows = shape[-2] if len(shape) >= 2 and isinstance(shape[-2], int) else 4
    return Tiling(max(1, min(4, rows)))


class ExampleBackend(byoc.Backend):
    """float32 elementwise ops and MatMul with numpy, plus a fused MatMul+bias."""

    name = "example"
    version = "0.1.0"
    priority = 50

    # -- capability hooks (compile time) -----------------------------------

    @classmethod
    def supports(cls, node: byoc.NodeInfo) -> byoc.Support:
        if node.op not in KERNELS:
            return byoc.Support.no(f"example: no kernel for {node.op}")
        for spec in (*node.inputs, *node.outputs):
            if spec is None or spec.shape is None:
                return byoc.Support.no(
                    f"example: {node.op} needs tensors of known rank"
                )
            if spec.dtype != "float32":
                return byoc.Support.no(
                    f"example: {node.op} on {spec.dtype} not supported (float32 only)"
                )
        if node.op == "MatMul" and any(
            spec is not None and len(spec.shape or ()) < 2 for spec in node.inputs
        ):
            return byoc.Support.no("example: MatMul with a 1-D operand not supported")
        return byoc.Support.yes()

    @classmethod
    def patterns(cls) -> Sequence[byoc.Pattern]:
        return (byoc.Pattern(FUSED, ("MatMul", "Add"), check=_bias_check),)

    @classmethod
    def lower(cls, graph: byoc.Graph, consts: Mapping[str, np.ndarray]) -> byoc.Graph:
        """Choose a :class:`Tiling` for every MatMul (plain or fused).

        The choice travels in the artifact as a vendor attribute, encoded by the
        codec this plugin registers.
        """
        nodes = tuple(
            replace(node, attrs={**node.attrs, ATTR: _tiling(node)})
            if node.op == "kernel" and node.name in ("MatMul", FUSED)
            else node
            for node in graph.nodes
        )
        return byoc.Graph(nodes, graph.heads, graph.head_names)

    # -- engine hooks --------------------------------------------------------

    def init(self, consts: Mapping[str, np.ndarray]) -> None:
        packed = {
            name: np.array(value, dtype=np.float32, order="C")
            for name, value in consts.items()
        }
        self._load(packed)

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return self._run(inputs)

    def export_engine(self) -> bytes | None:
        table, chunks, offset = [], [], 0
        for name, array in sorted(self._packed.items()):
            data = array.tobytes()
            table.append(
                {
                    "name": name,
                    "shape": list(array.shape),
                    "offset": offset,
                    "nbytes": len(data),
                }
            )
            chunks.append(data)
            offset += len(data)
        head = json.dumps({"consts": table}).encode()
        payload = struct.pack("<Q", len(head)) + head + b"".join(chunks)
        digest = hashlib.blake2b(payload, digest_size=32).digest()
        return _HEAD.pack(_MAGIC, digest, len(payload)) + payload

    def import_engine(self, blob: bytes, consts: Mapping[str, np.ndarray]) -> None:
        if len(blob) < _HEAD.size:
            raise ValueError("example engine blob is truncated")
        magic, digest, size = _HEAD.unpack_from(blob)
        payload = blob[_HEAD.size :]
        if magic != _MAGIC or size != len(payload):
            raise ValueError("not an example engine blob (bad magic or size)")
        if hashlib.blake2b(payload, digest_size=32).digest() != digest:
            raise ValueError("example engine blob checksum mismatch")
        (head_len,) = struct.unpack_from("<Q", payload)
        table = json.loads(payload[8 : 8 + head_len])["consts"]
        data = payload[8 + head_len :]
        packed = {}
        for entry in table:
            raw = data[entry["offset"] : entry["offset"] + entry["nbytes"]]
            packed[entry["name"]] = np.frombuffer(raw, np.float32).reshape(
                entry["shape"]
            )
        if set(packed) != set(consts):
            raise ValueError("example engine blob was built for other constants")
        self._load(packed)

    # -- the interpreter -----------------------------------------------------

    def _load(self, packed: dict[str, np.ndarray]) -> None:
        # Built once here, so an unknown op fails in init, and run only runs.
        self._packed = packed
        self._run = self._program(self.graph, packed)

    def _program(
        self,
        graph: byoc.Graph,
        packed: Mapping[str, np.ndarray],
        tiling: Tiling | None = None,
    ) -> Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]:
        ptr = graph.node_row_ptr
        steps: list[Step] = []
        fixed: list[tuple[int, np.ndarray]] = []
        feeds: list[tuple[int, str]] = []
        for nid, node in enumerate(graph.nodes):
            if node.op == "input":
                feeds.append((ptr[nid], node.name))
            elif node.op == "const":
                fixed.append((ptr[nid], packed[node.name]))
            else:
                args = tuple(ptr[e.node_id] + e.index for e in node.inputs)
                steps.append((self._kernel(node, packed, tiling), node, args, ptr[nid]))
        heads = [graph.entry_id(h) for h in graph.heads]
        size = ptr[-1]

        def run(inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
            values: list[Any] = [None] * size
            for slot, array in fixed:
                values[slot] = array
            for slot, name in feeds:
                values[slot] = inputs[name]
            for fn, node, args, out in steps:
                for i, result in enumerate(fn(node, *(values[a] for a in args))):
                    values[out + i] = result
            return [values[h] for h in heads]

        return run

    def _kernel(
        self,
        node: byoc.JSONGraphNode,
        packed: Mapping[str, np.ndarray],
        tiling: Tiling | None,
    ) -> Callable[..., tuple[np.ndarray, ...]]:
        tiling = node.attrs.get(ATTR, tiling)
        if node.name == FUSED:  # run the matched MatMul+Add body, passing the tiling
            body = node.attrs["body"]
            inner = self._program(body, packed, tiling)
            names = body.input_names
            return lambda node, *args: (inner(dict(zip(names, args, strict=True)))[0],)
        if node.name == "MatMul" and tiling is not None:
            rows = tiling.rows
            return lambda node, a, b: (matmul_blocks(a, b, rows),)
        fn = KERNELS.get(node.name)
        if fn is None:
            raise byoc.UnsupportedError(
                f"example has no kernel for {node.name}", op=node.name
            )
        return fn
