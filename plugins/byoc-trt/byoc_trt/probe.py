"""Is TensorRT usable here? Lazy imports and the exact reason when it is not.

Nothing here runs at import time: the vendor packages are imported on the first
availability check, so ``pip install byoc-trt`` works on any machine and
``byoc backends`` explains what is missing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType
from typing import Any

INSTALL_HINT = "pip install 'byoc-trt[gpu]'"


@dataclass(frozen=True)
class Device:
    """The CUDA device engines are built for (part of every cache key)."""

    index: int
    name: str
    compute_capability: tuple[int, int]

    def key(self) -> str:
        """Stable text for cache keys."""
        major, minor = self.compute_capability
        return f"{self.name}|sm_{major}{minor}"


class Unavailable(Exception):
    """Raised by the probes below; the message is the user-facing reason."""


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or Unavailable with the reason."""
    try:
        import tensorrt
    except ImportError as exc:
        raise Unavailable(f"TensorRT is not installed ({exc}); {INSTALL_HINT}") from exc
    except Exception as exc:  # a broken install raises all sorts of things
        raise Unavailable(
            f"TensorRT failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return tensorrt


def import_cudart() -> Any:
    """cuda-python's runtime module (both of its import paths), or Unavailable."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise Unavailable(
                f"cuda-python is not installed ({exc}); {INSTALL_HINT}"
            ) from exc
    return cudart


def check(result: Any, what: str) -> Any:
    """Unwrap a cuda-python ``(err, value...)`` tuple, raising on a CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    code = int(getattr(err, "value", err))
    if code != 0:
        name = getattr(err, "name", str(code))
        raise RuntimeError(f"CUDA call {what} failed: {name} ({code})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@functools.cache
def device(index: int = 0) -> Device:
    """The CUDA device ``index``, or Unavailable saying why there is none."""
    cudart = import_cudart()
    try:
        count = check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except RuntimeError as exc:
        raise Unavailable(f"no usable CUDA device: {exc}") from exc
    if not count:
        raise Unavailable("no CUDA device found (cudaGetDeviceCount returned 0)")
    if index >= count:
        raise Unavailable(f"CUDA device {index} requested, only {count} present")
    props = check(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return Device(index, name.strip("\x00 "), (int(props.major), int(props.minor)))


def availability() -> str | None:
    """None when TensorRT and a CUDA device are usable, else the exact reason."""
    try:
        trt = import_tensorrt()
        device()
    except Unavailable as exc:
        return str(exc)
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        return f"TensorRT {trt.__version__} is too old: byoc-trt needs 10 or newer"
    return None
