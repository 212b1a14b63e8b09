"""The TensorRT backend: exact capability checks, cached engine builds, GPU runs.

``init`` looks the engine up in the persistent cache (key: subgraph, constants,
TensorRT version, GPU, build options), builds it on a miss and stores it;
``run`` executes it with a per-thread execution context.

Options (``options={"trt": {...}}``): ``workspace`` (bytes, default 1 GiB),
``fp16`` (opt-in), ``tf32`` (opt-in; off keeps fp32 results exact),
``dim_ranges`` (``{"batch": (min, opt, max)}`` for symbolic dims),
``default_range``, ``cache_dir`` (else ``$BYOC_TRT_CACHE_DIR``, else the user
cache dir), ``cache_read_only``, ``cache_max_bytes``, ``progress`` (echo build
phases to stderr; default: when stderr is a terminal), ``device`` (CUDA index).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

import byoc
from byoc.cache import EngineCache, user_cache_dir

from . import probe
from .engine import BuildOptions, Runner, build, engine_key, unwrap, wrap
from .ops import OPS

try:
    _VERSION = version("byoc-trt")
except PackageNotFoundError:  # running from a source tree
    _VERSION = "0.0.0"


def cache_for(options: Mapping[str, Any]) -> EngineCache:
    """The engine cache the options (or the environment) select."""
    directory = (
        options.get("cache_dir")
        or os.environ.get("BYOC_TRT_CACHE_DIR")
        or user_cache_dir("trt")
    )
    return EngineCache(
        directory,
        name="trt",
        read_only=bool(options.get("cache_read_only", False)),
        max_bytes=int(options.get("cache_max_bytes", 8 << 30)),
    )


class TrtBackend(byoc.Backend):
    """NVIDIA TensorRT; claims fp32 subgraphs its translation covers exactly."""

    name = "trt"
    version = _VERSION
    priority = 80

    @classmethod
    def available(cls) -> str | None:
        return probe.availability()

    @classmethod
    def supports(cls, node: byoc.NodeInfo) -> byoc.Support:
        entry = OPS.get(node.op)
        if entry is None:
            return byoc.Support.no(f"trt: no TensorRT lowering for {node.op}")
        return entry.check(node)

    def _key(
        self, consts: Mapping[str, np.ndarray]
    ) -> tuple[str, str, probe.Device, BuildOptions]:
        trt = probe.import_tensorrt()
        device = probe.device(int(self.options.get("device", 0)))
        opts = BuildOptions.from_options(self.options)
        key = engine_key(self.graph, consts, str(trt.__version__), device, opts)
        return key, str(trt.__version__), device, opts

    def init(self, consts: Mapping[str, np.ndarray]) -> None:
        key, trt_version, device, opts = self._key(consts)
        cache = cache_for(self.options)
        engine = None
        blob = cache.get(key, label=self.symbol)
        if blob is not None:
            try:
                engine = unwrap(blob, key)
            except ValueError as exc:
                warnings.warn(
                    f"trt cache entry for {self.symbol} is unusable ({exc}); "
                    "rebuilding it",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if engine is None:
            echo = bool(self.options.get("progress", sys.stderr.isatty()))
            engine = build(
                self.graph, consts, opts, label=self.symbol, echo_progress=echo
            )
            cache.put(key, wrap(key, engine, trt_version, device), label=self.symbol)
        self._start(engine, wrap(key, engine, trt_version, device))

    def _start(self, engine: bytes, envelope: bytes) -> None:
        self._envelope = envelope
        self._runner = Runner(engine, self.graph.input_names, self.graph.output_names)

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return self._runner(inputs)

    def export_engine(self) -> bytes | None:
        return self._envelope

    def import_engine(self, blob: bytes, consts: Mapping[str, np.ndarray]) -> None:
        key, *_ = self._key(consts)
        self._start(unwrap(blob, key), blob)
