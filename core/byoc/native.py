"""Compile a backend's C sources into a shared library on first use, cached per user.

Where it sits: outside the model flow, a service for backends. Some backends
need a little native code that no pip wheel ships (byoc-micro's whole runtime,
byoc-dnnl's run loop that drives oneDNN primitives from C threads). Building at
install time would need a compiler on every install; building at first use,
keyed by a hash of the sources, the compiler and the flags, needs one only
where the native path is used, and rebuilds only when an input changes.

Environment: ``CC`` picks the compiler (default: the first of cc, gcc, clang
on PATH).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import NativeBuildError


def find_compiler(why: str) -> list[str]:
    """The C compiler command, or :class:`NativeBuildError` naming ``why`` one is
    needed (e.g. "the micro backend compiles its runtime on first use")."""
    cc = os.environ.get("CC")
    if cc:
        argv = shlex.split(cc)
        if argv and shutil.which(argv[0]):
            return argv
        raise NativeBuildError(f"the C compiler CC={cc!r} was not found on PATH")
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    raise NativeBuildError(
        f"no C compiler found (looked for cc, gcc, clang on PATH; set CC); {why}"
    )


def _digest(paths: Sequence[Path], cc: Sequence[str], flags: Sequence[str]) -> str:
    h = hashlib.sha256()
    for part in (*cc, *flags, sys.platform):
        h.update(part.encode() + b"\0")
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def build_native(
    out_name: str,
    paths: Sequence[Path],
    flags: Sequence[str],
    cache: Path,
    *,
    what: str,
    why: str,
    libs: Sequence[str] = ("-lm",),
) -> Path:
    """Compile the ``.c`` files among ``paths`` once into ``cache``; the output path.

    Every path (headers too) feeds the cache key, with the compiler and
    ``flags``. The output is written to a temporary name and renamed into
    place, so concurrent first uses never load half a file. ``what`` names the
    result in errors ("the micro runtime"), ``why`` says why a compiler is
    needed at all.
    """
    cc = find_compiler(why)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise NativeBuildError(
            f"the C sources of {what} are missing ({', '.join(missing)}); "
            "reinstall the package that ships them"
        )
    target_dir = cache / _digest(paths, cc, flags)
    target = target_dir / out_name
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_name}.", dir=target_dir)
    os.close(fd)
    cmd = [*cc, *flags, *[str(p) for p in paths if p.suffix == ".c"], "-o", tmp, *libs]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        os.unlink(tmp)
        raise NativeBuildError(f"running the C compiler failed: {exc}") from exc
    if proc.returncode != 0:
        os.unlink(tmp)
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise NativeBuildError(
            f"building {what} failed ({' '.join(cmd[:1])} exited "
            f"{proc.returncode}): {' | '.join(detail[-5:])}"
        )
    os.replace(tmp, target)
    return target
