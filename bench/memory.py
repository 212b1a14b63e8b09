"""Memory each runtime keeps for a model: one fresh process per measurement.

Two runtimes in one process cannot be told apart in its memory counters, so
:func:`measure` starts ``python -m bench.memory`` for each: it loads the model
(byoc: the artifact, with engines so no timing runs; onnxruntime: the ONNX
file), runs it once, and reports its **anonymous** resident memory, which is
what the process owns. File-backed pages (the libraries, byoc's memory-mapped
artifact) are left out: the kernel can drop and reread them. Linux only
(``/proc/self/smaps_rollup``); elsewhere :func:`measure` returns None.
"""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
_ROLLUP = Path("/proc/self/smaps_rollup")


def resident_mb() -> dict[str, float]:
    """This process's resident memory: all of it and the anonymous part, in MB."""
    fields = dict(re.findall(r"(\w+):\s+(\d+) kB", _ROLLUP.read_text()))
    return {
        "rss_mb": int(fields["Rss"]) / 1024,
        "anon_mb": int(fields["Anonymous"]) / 1024,
    }


def format_mb(value: float | None) -> str:
    """A table cell: whole MB, or "-" where nothing was measured."""
    return "-" if value is None else f"{value:.0f}"


def measure(
    kind: str,
    path: Path,
    feeds: Mapping[str, np.ndarray],
    threads: int,
    options: Mapping[str, object] | None = None,
) -> dict[str, float] | None:
    """Resident memory of a fresh process that loaded ``path`` with runtime
    ``kind`` ("byoc" or "onnxruntime") and ran it once on ``feeds``."""
    if not _ROLLUP.exists():
        return None
    feeds_path = path.with_suffix(".feeds.npz")
    np.savez(feeds_path, **feeds)
    args = [str(path), str(feeds_path), str(threads), json.dumps(options or {})]
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", kind, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(kind: str, path: str, feeds_path: str, threads: int, opts: str) -> None:
    with np.load(feeds_path, allow_pickle=False) as z:
        feeds = {k: z[k] for k in z.files}
    if kind == "byoc":
        import byoc

        mod = byoc.load(path, options=json.loads(opts))
        mod.init()
        mod.run(feeds)
    else:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        sess.run(None, feeds)
    gc.collect()
    print(json.dumps(resident_mb()))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
