"""byoc: Bring Your Own Codegen for ONNX models.

Flow: import (ONNX -> JSON graph) -> partition (one subgraph per backend region)
-> serialize (one artifact file) -> load -> init (each backend builds its engine
once) -> run. This module only re-exports the public API.
"""

from .attrs import AttrCodec, Sym, TensorAttr
from .errors import (
    BackendError,
    ByocError,
    FormatError,
    GraphError,
    InputError,
    ModelError,
    PluginError,
    UnsupportedError,
)
from .graph import Graph, JSONGraphNode, JSONGraphNodeEntry, TensorSpec
from .hookspecs import hookimpl
from .registry import BackendInfo, Registry, backends, get_registry, use_registry
from .runtime import Backend, NodeInfo, Pattern, Support

__version__ = "0.1.0"

__all__ = [
    "AttrCodec",
    "Backend",
    "BackendError",
    "BackendInfo",
    "ByocError",
    "FormatError",
    "Graph",
    "GraphError",
    "InputError",
    "JSONGraphNode",
    "JSONGraphNodeEntry",
    "ModelError",
    "NodeInfo",
    "Pattern",
    "PluginError",
    "Registry",
    "Support",
    "Sym",
    "TensorAttr",
    "TensorSpec",
    "UnsupportedError",
    "__version__",
    "backends",
    "get_registry",
    "hookimpl",
    "use_registry",
]
