"""byoc: Bring Your Own Codegen for ONNX models.

Flow: import (ONNX -> JSON graph) -> partition (one subgraph per backend region)
-> serialize (one artifact file) -> load -> init (each backend builds its engine
once) -> run. This module only re-exports the public API.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from .attrs import AttrCodec, Sym, TensorAttr
from .errors import (
    BackendError,
    ByocError,
    FormatError,
    GraphError,
    InputError,
    ModelError,
    NativeBuildError,
    PluginError,
    UnsupportedError,
)
from .graph import Graph, JSONGraphNode, JSONGraphNodeEntry, TensorSpec
from .hookspecs import hookimpl
from .registry import BackendInfo, Registry, backends, get_registry, use_registry
from .runtime import Backend, NodeInfo, Pattern, Support

if TYPE_CHECKING:
    from .compiler import compile
    from .driver import Module, SubgraphFunction, TensorInfo, load

# Re-exported lazily: they pull in onnx, which a plugin or the idle pytest plugin
# (byoc.testing) does not need just to register itself.
_LAZY = {
    "compile": "compiler",
    "Module": "driver",
    "SubgraphFunction": "driver",
    "TensorInfo": "driver",
    "load": "driver",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'byoc' has no attribute {name!r}")


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
    "NativeBuildError",
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
