"""A vendor attribute type, its codec, and the pass that attaches it to graphs.

``Tiling`` is the example vendor's kernel configuration: how many output rows
its MatMul kernel computes per block. The backend's ``lower`` hook
attaches one to each MatMul at compile time. byoc does not know the type, so
the plugin registers an :class:`byoc.AttrCodec` for it: a saved artifact holds
``["example.tiling", {"rows": 4}]``, and loading decodes it back to a
``Tiling`` through the codec (or, when this plugin is missing, fails with a
FormatError naming the distribution to install).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import byoc

TAG = "example.tiling"
ATTR = "tiling"


@dataclass(frozen=True)
class Tiling:
    """Output rows per MatMul block (a tuning knob; results do not depend on it)."""

    rows: int

    def __post_init__(self) -> None:
        if (
            not isinstance(self.rows, int)
            or isinstance(self.rows, bool)
            or self.rows < 1
        ):
            raise ValueError(f"Tiling.rows must be a positive int, got {self.rows!r}")


def _encode(value: Tiling) -> dict[str, Any]:
    return {"rows": value.rows}


def _decode(payload: Any) -> Tiling:
    if not isinstance(payload, dict) or set(payload) != {"rows"}:
        raise ValueError(f"bad {TAG} payload {payload!r:.80}")
    return Tiling(payload["rows"])


TILING_CODEC = byoc.AttrCodec(TAG, Tiling, _encode, _decode)
