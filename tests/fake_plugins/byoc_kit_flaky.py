"""Backends each breaking one rule the conformance kit checks beyond op results.

Installed by ``tests/test_testing.py`` as the distribution ``byoc-kit-flaky``;
every backend runs float32 Relu, Add and MatMul correctly, so only the
category it breaks may fail:

* ``reuses_buffers`` returns the same output array from every run (threads);
* ``reinits`` calls ``init`` again on every run (caching);
* ``trusts_blobs`` exports its weights raw and imports any bytes (artifact);
* ``unguarded`` overrides the public wrappers, so its exceptions escape raw
  (errors);
* ``overclaims`` claims every Softmax but only runs axis=-1 (partition);
* ``fixes_shapes`` keeps the batch size of its first run, whatever the next
  runs bring (shapes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import byoc

KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "Relu": lambda a: np.maximum(a, np.float32(0)),
    "Add": np.add,
    "MatMul": np.matmul,
}


class Base(byoc.Backend):
    """Interprets its subgraph node by node."""

    version = "1.0"
    kernels = KERNELS

    @classmethod
    def supports(cls, node: byoc.NodeInfo) -> byoc.Support:
        if node.op not in cls.kernels:
            return byoc.Support.no(f"{cls.name}: no kernel for {node.op}")
        if any(s is None or s.dtype != "float32" for s in node.inputs):
            return byoc.Support.no(f"{cls.name}: float32 only")
        return byoc.Support.yes()

    def init(self, consts: Mapping[str, np.ndarray]) -> None:
        self.consts = dict(consts)

    def compute(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        values: dict[int, Any] = {}
        for nid, node in enumerate(self.graph.nodes):
            if node.op == "input":
                values[nid] = inputs[node.name]
            elif node.op == "const":
                values[nid] = self.consts[node.name]
            else:
                args = [values[e.node_id] for e in node.inputs]
                values[nid] = self.kernel(node, args)
        return [np.array(values[h.node_id], np.float32) for h in self.graph.heads]

    def kernel(self, node: byoc.JSONGraphNode, args: list[Any]) -> Any:
        return np.asarray(self.kernels[node.name](*args), np.float32)

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return self.compute(inputs)


class ReusesBuffers(Base):
    name = "reuses_buffers"

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        outs = self.compute(inputs)
        if not hasattr(self, "buffers"):
            self.buffers = [np.empty_like(o) for o in outs]
        for buf, out in zip(self.buffers, outs, strict=True):
            buf[...] = out  # every caller gets the same arrays back
        return self.buffers


class Reinits(Base):
    name = "reinits"

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        self.init(self.consts)  # "refreshes" the engine on every run
        return self.compute(inputs)


class TrustsBlobs(Base):
    name = "trusts_blobs"

    def export_engine(self) -> bytes | None:
        return b"".join(
            np.ascontiguousarray(v, np.float32).tobytes()
            for _, v in sorted(self.consts.items())
        )

    def import_engine(self, blob: bytes, consts: Mapping[str, np.ndarray]) -> None:
        flat = np.frombuffer(blob, np.float32)
        self.consts, at = {}, 0
        for name, value in sorted(consts.items()):
            self.consts[name] = flat[at : at + value.size].reshape(value.shape)
            at += value.size


class Unguarded(Base):
    name = "unguarded"

    def build(self, consts: Mapping[str, np.ndarray]) -> None:
        self.init(consts)

    def checked_run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.run(inputs))

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.graph.output_names, self.run(inputs), strict=True))

    def init(self, consts: Mapping[str, np.ndarray]) -> None:
        for node in self.graph.nodes:
            if node.op == "const":
                consts[node.name]  # noqa: B018 - fails on a missing constant
        super().init(consts)


def _softmax_last_axis(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Overclaims(Base):
    name = "overclaims"
    kernels = {**KERNELS, "Softmax": _softmax_last_axis}

    def kernel(self, node: byoc.JSONGraphNode, args: list[Any]) -> Any:
        if node.name == "Softmax" and node.attrs.get("axis", -1) not in (-1, 2):
            raise NotImplementedError("Softmax is only implemented on the last axis")
        return super().kernel(node, args)


class FixesShapes(Base):
    name = "fixes_shapes"

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        if not hasattr(self, "rows"):  # "plans" for the first shapes it sees
            self.rows = {n: a.shape[0] for n, a in inputs.items() if a.ndim}
        return self.compute(
            {
                n: np.resize(a, (self.rows[n], *a.shape[1:])) if a.ndim else a
                for n, a in inputs.items()
            }
        )


@byoc.hookimpl
def byoc_register_backends(register: Callable[[type[byoc.Backend]], None]) -> None:
    """Register every flaky backend."""
    for cls in (
        ReusesBuffers,
        Reinits,
        TrustsBlobs,
        Unguarded,
        Overclaims,
        FixesShapes,
    ):
        register(cls)
