"""byoc-micro: the micro target -- byoc artifacts read and run from dependency-free C.

Subgraphs assigned to the ``micro`` backend run on the C99 executor in the
repository's ``micro/`` (no heap, no dependencies beyond libc), here driven
through ctypes so the same engine is testable like any backend. The flow's
compile step stores a static memory plan per subgraph (:mod:`.plan`); ``run``
hands the C executor an arena of exactly that size.
"""

from __future__ import annotations

from .backend import MicroBackend
from .plan import MemoryPlan, plan_memory

__all__ = ["MemoryPlan", "MicroBackend", "plan_memory"]
