"""Build step of byoc-micro: ship the C runtime's sources inside the package.

The C code lives in the repository's top-level ``micro/`` (C users build it from
there). pip builds a local directory in place, so before setuptools collects
package data this copies ``../../micro/*.c *.h Makefile`` into
``byoc_micro/csrc/``; the installed plugin compiles them on first use
(``byoc_micro._lib``). From an sdist, where ``../../micro`` does not exist, the
copy already made is used as is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE.parent.parent / "micro"
VENDORED = HERE / "byoc_micro" / "csrc"


def vendor_sources() -> None:
    """Mirror the C sources into the package (a no-op outside a checkout)."""
    if not (UPSTREAM / "byoc_micro.h").is_file():
        return
    VENDORED.mkdir(exist_ok=True)
    wanted = sorted([*UPSTREAM.glob("*.[ch]"), UPSTREAM / "Makefile"])
    for stale in VENDORED.iterdir():
        if stale.name not in {p.name for p in wanted}:
            stale.unlink()
    for path in wanted:
        shutil.copyfile(path, VENDORED / path.name)


vendor_sources()
setup()
