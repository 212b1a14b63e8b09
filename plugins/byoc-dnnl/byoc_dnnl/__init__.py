"""byoc-dnnl: oneDNN's CPU primitives as a byoc backend (float32)."""

from .backend import DnnlBackend

__all__ = ["DnnlBackend"]
