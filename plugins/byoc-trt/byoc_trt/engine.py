"""Building, keying, packaging and running TensorRT engines.

* :func:`engine_key` - the cache key: subgraph JSON + constants digest + TensorRT
  version + GPU name and compute capability + build options. Any change to any of
  them is a different engine (TVM keyed on the symbol name and silently reused
  stale engines; byoc does not).
* :func:`wrap` / :func:`unwrap` - the envelope an engine travels in (cache entry
  or the artifact's engine section): it names its key, so a blob for another
  model, TensorRT or GPU is rejected before TensorRT ever sees it.
* :func:`build` - translation + builder config (workspace limit, FP16 opt-in,
  one optimization profile covering symbolic dims) + progress reporting.
* :class:`Runner` - execution with one context, stream and device buffers per
  thread, copying numpy inputs in and outputs out.
"""

from __future__ import annotations

import json
import logging
import struct
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack
import numpy as np

import byoc
from byoc.cache import cache_key, consts_digest

from . import probe

log = logging.getLogger("byoc.trt")

_ENVELOPE = b"BYOCTRT1"


@dataclass(frozen=True)
class BuildOptions:
    """Everything that changes the built engine (and therefore its cache key)."""

    workspace: int = 1 << 30
    fp16: bool = False
    tf32: bool = False
    """TF32 convolutions/matmuls are faster but round inputs to 10 mantissa bits;
    off by default so results match the fp32 reference."""
    dim_ranges: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    """Symbolic dim name -> (min, opt, max) for the optimization profile."""
    default_range: tuple[int, int, int] = (1, 1, 32)

    @staticmethod
    def from_options(options: Mapping[str, Any]) -> BuildOptions:
        """Parse the user's ``options["trt"]`` mapping, refusing unknown keys."""
        unknown = set(options) - BUILD_OPTIONS - RUN_OPTIONS
        if unknown:
            raise ValueError(
                f"unknown trt options {sorted(unknown)}; known: "
                f"{sorted(BUILD_OPTIONS | RUN_OPTIONS)}"
            )
        ranges = {
            k: tuple(int(x) for x in v)
            for k, v in dict(options.get("dim_ranges", {})).items()
        }
        for name, r in (
            *ranges.items(),
            ("default_range", options.get("default_range", (1, 1, 32))),
        ):
            r = tuple(int(x) for x in r)
            if len(r) != 3 or not 1 <= r[0] <= r[1] <= r[2]:
                raise ValueError(
                    f"range for {name!r} must be (min, opt, max) with "
                    f"1 <= min <= opt <= max, got {r}"
                )
        return BuildOptions(
            workspace=int(options.get("workspace", 1 << 30)),
            fp16=bool(options.get("fp16", False)),
            tf32=bool(options.get("tf32", False)),
            dim_ranges=ranges,  # type: ignore[arg-type]
            default_range=tuple(
                int(x)
                for x in options.get(  # type: ignore[arg-type]
                    "default_range", (1, 1, 32)
                )
            ),
        )

    def range_of(self, dim: str) -> tuple[int, int, int]:
        """(min, opt, max) for a symbolic dim."""
        return self.dim_ranges.get(dim, self.default_range)

    def key(self) -> str:
        """Canonical text of the options, for cache keys."""
        return json.dumps(asdict(self), sort_keys=True, default=list)


BUILD_OPTIONS = {"workspace", "fp16", "tf32", "dim_ranges", "default_range"}
RUN_OPTIONS = {"cache_dir", "cache_read_only", "cache_max_bytes", "progress", "device"}
"""Options that do not change the engine (not part of its key)."""


def engine_key(
    graph: byoc.Graph,
    consts: Mapping[str, np.ndarray],
    trt_version: str,
    device: probe.Device,
    options: BuildOptions,
) -> str:
    """The content key of an engine (see the module docstring)."""
    return cache_key(
        graph.to_json(),
        consts_digest(graph, consts),
        f"tensorrt {trt_version}",
        device.key(),
        options.key(),
    )


def wrap(key: str, engine: bytes, trt_version: str, device: probe.Device) -> bytes:
    """The envelope: magic, header length, msgpack header, engine bytes."""
    head = msgpack.packb({"key": key, "tensorrt": trt_version, "device": device.key()})
    return _ENVELOPE + struct.pack("<I", len(head)) + head + engine


def unwrap(blob: bytes, expected_key: str) -> bytes:
    """The engine bytes inside ``blob``; ValueError if it is not for this key."""
    if blob[:8] != _ENVELOPE or len(blob) < 12:
        raise ValueError("not a byoc-trt engine envelope")
    (n,) = struct.unpack_from("<I", blob, 8)
    try:
        head = msgpack.unpackb(blob[12 : 12 + n], raw=False)
    except Exception as exc:
        raise ValueError(f"engine envelope header is corrupt: {exc}") from exc
    if not isinstance(head, dict) or head.get("key") != expected_key:
        found = head.get("tensorrt") if isinstance(head, dict) else "?"
        raise ValueError(
            f"engine was built for another subgraph, TensorRT or GPU "
            f"(it says TensorRT {found}, device "
            f"{head.get('device') if isinstance(head, dict) else '?'})"
        )
    engine = blob[12 + n :]
    if not engine:
        raise ValueError("engine envelope holds no engine")
    return engine


class _Progress:
    """Turns TensorRT's progress monitor callbacks into log lines."""

    def __init__(self, trt: Any, label: str, echo: bool) -> None:
        base = trt.IProgressMonitor

        class Monitor(base):  # type: ignore[misc, valid-type]
            def __init__(inner) -> None:
                base.__init__(inner)

            def phase_start(
                inner, phase_name: str, parent_phase: str | None, num_steps: int
            ) -> None:
                self._say(f"{label}: {phase_name} ({num_steps} steps)")

            def step_complete(inner, phase_name: str, step: int) -> bool:
                return True

            def phase_finish(inner, phase_name: str) -> None:
                self._say(f"{label}: {phase_name} done")

        self.echo = echo
        self.monitor = Monitor()

    def _say(self, text: str) -> None:
        log.info(text)
        if self.echo:
            print(f"byoc-trt {text}", file=sys.stderr, flush=True)


def build(
    graph: byoc.Graph,
    consts: Mapping[str, np.ndarray],
    options: BuildOptions,
    *,
    label: str,
    echo_progress: bool,
) -> bytes:
    """Translate ``graph`` and build a serialized engine (needs a GPU)."""
    from .translate import translate
    from .trt_net import TrtNet

    trt = probe.import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    net = TrtNet(trt, network)
    translate(graph, consts, net)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace)
    if options.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if not options.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    dynamic = [
        graph.nodes[i]
        for i in graph.input_ids
        if any(not isinstance(d, int) for d in graph.nodes[i].shapes[0] or ())
    ]
    if dynamic:
        profile = builder.create_optimization_profile()
        for node in dynamic:
            shape = node.shapes[0] or ()
            lo, opt, hi = zip(
                *[
                    (d, d, d) if isinstance(d, int) else options.range_of(d)
                    for d in shape
                ],
                strict=True,
            )
            profile.set_shape(node.name, lo, opt, hi)
        config.add_optimization_profile(profile)
    progress = _Progress(trt, label, echo_progress)
    config.progress_monitor = progress.monitor
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(
            f"TensorRT could not build an engine for {label} "
            "(the TensorRT log above says why)"
        )
    return bytes(blob)


class _ThreadState:
    """One execution context, stream and set of device buffers (one thread's)."""

    def __init__(self, engine: Any, cudart: Any) -> None:
        self.context = engine.create_execution_context()
        self.stream = probe.check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, int]] = {}


class Runner:
    """Runs a deserialized engine; safe to call from many threads."""

    def __init__(
        self,
        engine_bytes: bytes,
        input_names: Sequence[str],
        output_names: Sequence[str],
    ) -> None:
        trt = probe.import_tensorrt()
        self._cudart = probe.import_cudart()
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine")
        self.inputs = tuple(input_names)
        self.outputs = tuple(output_names)
        self._local = threading.local()
        self._states: list[_ThreadState] = []
        self._lock = threading.Lock()

    def _state(self) -> _ThreadState:
        state = getattr(self._local, "state", None)
        if state is None:
            state = _ThreadState(self.engine, self._cudart)
            self._local.state = state
            with self._lock:
                self._states.append(state)
        return state

    def _buffer(self, state: _ThreadState, name: str, nbytes: int) -> int:
        ptr, size = state.buffers.get(name, (0, 0))
        if size < nbytes:
            cudart = self._cudart
            if ptr:
                probe.check(cudart.cudaFree(ptr), "cudaFree")
            ptr = int(probe.check(cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
            state.buffers[name] = (ptr, nbytes)
        return ptr

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        cudart = self._cudart
        state = self._state()
        ctx, stream = state.context, state.stream
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        hosts = []
        for name in self.inputs:
            host = np.asarray(inputs[name], dtype=np.float32, order="C")
            hosts.append(host)  # keep alive until the stream is synchronized
            ptr = self._buffer(state, name, host.nbytes)
            ctx.set_input_shape(name, host.shape)
            probe.check(
                cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, h2d, stream),
                "cudaMemcpyAsync",
            )
            ctx.set_tensor_address(name, ptr)
        outs = []
        for name in self.outputs:
            shape = tuple(ctx.get_tensor_shape(name))
            out = np.empty(shape, np.float32)
            ptr = self._buffer(state, name, out.nbytes)
            ctx.set_tensor_address(name, ptr)
            outs.append((out, ptr))
        if not ctx.execute_async_v3(stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        for out, ptr in outs:
            probe.check(
                cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, stream),
                "cudaMemcpyAsync",
            )
        probe.check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return [out for out, _ in outs]

    def close(self) -> None:
        """Free device memory and streams (also done at interpreter exit)."""
        with self._lock:
            for state in self._states:
                for ptr, _ in state.buffers.values():
                    self._cudart.cudaFree(ptr)
                self._cudart.cudaStreamDestroy(state.stream)
            self._states.clear()
