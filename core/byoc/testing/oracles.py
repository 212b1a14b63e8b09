"""The conformance kit's oracles and comparisons.

Part of the kit (``byoc.testing``). byoc-ref defines semantics and is the
first oracle; onnxruntime, when installed, is the second. :func:`compare`
applies a per-op tolerance; :func:`identical` demands the same bits (save/load
round trips, threads).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

import byoc

from .cases import Tol

REF = "ref"
Outputs = Mapping[str, np.ndarray]
Result = tuple[dict[str, np.ndarray] | None, str]
"""An oracle's outputs, or None and why it could not produce them."""


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` for failure messages."""
    return f"{type(exc).__name__}: {exc}"


def compare(got: Outputs, want: Outputs, tol: Tol) -> list[str]:
    """What differs between ``got`` and ``want`` beyond ``tol`` (empty: match)."""
    problems = []
    for name, expected in want.items():
        w = np.asarray(expected)
        if name not in got:
            problems.append(f"output {name!r} is missing")
            continue
        g = np.asarray(got[name])
        if g.dtype != w.dtype or g.shape != w.shape:
            problems.append(
                f"output {name!r} is {g.dtype}{list(g.shape)}, expected "
                f"{w.dtype}{list(w.shape)}"
            )
            continue
        rtol, atol = tol.for_dtype(w.dtype)
        if w.dtype.kind == "f":
            gw, ww = g.astype(np.float64), w.astype(np.float64)
            close = np.isclose(gw, ww, rtol=rtol, atol=atol, equal_nan=True)
        else:
            close = np.asarray(g == w)
        if close.all():
            continue
        bad = np.argwhere(~close)
        first = tuple(int(i) for i in bad[0])
        detail = (
            f"output {name!r}: {len(bad)} of {w.size} elements differ "
            f"(rtol={rtol:g}, atol={atol:g}); first at {list(first)}: got "
            f"{g[first]!r}, expected {w[first]!r}"
        )
        if w.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                err = np.abs(gw - ww)[~close]
            worst = np.nanmax(err) if np.isfinite(err).any() else float("nan")
            detail += f"; max abs error {worst:.3g}"
        problems.append(detail)
    extra = sorted(set(got) - set(want))
    if extra:
        problems.append(f"unexpected outputs {extra}")
    return problems


def identical(got: Outputs, want: Outputs) -> list[str]:
    """What is not bit-for-bit identical between two results (empty: identical)."""
    problems = []
    for name, w in want.items():
        g = got.get(name)
        if g is None:
            problems.append(f"output {name!r} is missing")
        elif g.dtype != w.dtype or g.shape != w.shape:
            problems.append(
                f"output {name!r} is {g.dtype}{list(g.shape)}, expected "
                f"{w.dtype}{list(w.shape)}"
            )
        elif np.ascontiguousarray(g).tobytes() != np.ascontiguousarray(w).tobytes():
            problems.append(f"output {name!r} differs")
    return problems


def load_onnxruntime() -> tuple[Any, str]:
    """The onnxruntime module, or None and why not."""
    try:
        import onnxruntime
    except ImportError:
        return None, "onnxruntime is not installed (pip install onnxruntime)"
    return onnxruntime, ""


def run_ref(
    available: bool, reason: str, model: onnx.ModelProto, feeds: dict[str, Any]
) -> Result:
    """byoc-ref's outputs for ``model``, or None and why not."""
    if not available:
        return None, reason
    try:
        mod = byoc.compile(model, backends=[REF], quiet=True)
        return mod.run(feeds), ""
    except byoc.UnsupportedError as exc:
        reasons = getattr(exc, "reasons", None) or {}
        return None, f"byoc-ref declines it ({reasons.get(REF, exc)})"
    except Exception as exc:
        return None, f"byoc-ref failed on it ({describe(exc)})"


def run_onnxruntime(
    ort: Any, reason: str, model: onnx.ModelProto, feeds: dict[str, Any]
) -> Result:
    """onnxruntime's outputs for ``model`` (no graph optimizations), or why not."""
    if ort is None:
        return None, reason
    try:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(None, feeds), strict=True)), ""
    except Exception as exc:
        text = str(exc).strip()
        first = text.splitlines()[0][:200] if text else ""
        return None, f"onnxruntime cannot run it ({type(exc).__name__}: {first})"
