"""byoc: Bring Your Own Codegen for ONNX models.

Flow: import (ONNX -> JSON graph) -> partition (one subgraph per backend region)
-> serialize (one artifact file) -> load -> init (each backend builds its engine
once) -> run. This module only re-exports the public API.
"""

__version__ = "0.1.0"

from .attrs import AttrCodec, Sym, TensorAttr
from .compiler import compile
from .driver import Module, SubgraphFunction, TensorInfo, load
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
    "Module",
    "NodeInfo",
    "Pattern",
    "PluginError",
    "Registry",
    "SubgraphFunction",
    "Support",
    "Sym",
    "TensorAttr",
    "TensorInfo",
    "TensorSpec",
    "UnsupportedError",
    "__version__",
    "backends",
    "compile",
    "get_registry",
    "hookimpl",
    "load",
    "use_registry",
]
