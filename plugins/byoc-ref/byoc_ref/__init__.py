"""byoc-ref: the numpy reference backend, byoc's correctness oracle and fallback."""

from .backend import RefBackend

__all__ = ["RefBackend"]
