"""byoc-trt: NVIDIA TensorRT as a byoc backend, with a persistent engine cache."""

from .backend import TrtBackend

__all__ = ["TrtBackend"]
