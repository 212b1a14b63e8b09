"""byoc-example-vendor: a third-party byoc backend using only the public API."""

from .backend import ExampleBackend
from .tiling import Tiling

__all__ = ["ExampleBackend", "Tiling"]
