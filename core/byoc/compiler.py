"""``byoc.compile``: import an ONNX model, partition it, and wrap it as a Module.

This is the front half of the flow (import -> partition) glued to the driver.
It always states where nodes went in one line, so a silent fallback cannot hide.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from . import __version__
from .artifact import Artifact, SubgraphRecord
from .attrs import is_plain
from .driver import Module
from .errors import BackendError
from .graph import Graph
from .onnx_import import import_onnx
from .partition import Partition, Subgraph, partition
from .registry import Registry, get_registry
from .runtime import Backend


def compile(  # noqa: A001 - the public name the API promises
    model: onnx.ModelProto | str | os.PathLike[str],
    backends: Sequence[str] | None = None,
    *,
    min_subgraph_size: int = 1,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    quiet: bool = False,
) -> Module:
    """Compile ``model`` for ``backends`` (priority order, fallback last).

    :param model: an ``onnx.ModelProto`` or a path to a ``.onnx`` file.
    :param backends: backend names, highest priority first; the last one is the
        fallback. Default: every available backend by priority (``ref`` last).
        A listed backend that is installed but unavailable here (no GPU, no
        library) is skipped with a warning naming the reason, so the same call
        works on every machine; an unknown name is an error.
    :param min_subgraph_size: regions with fewer nodes go back to the fallback.
    :param options: per-backend engine options, e.g. ``{"dnnl": {"threads": 2}}``.
    :param quiet: do not print the one-line placement summary to stderr.
    """
    registry = get_registry()
    names = list(backends) if backends is not None else registry.default_backends()
    if not names:
        raise BackendError(
            "no backends are available; install one (pip install byoc-ref) or check "
            "BYOC_LOAD_PLUGINS"
        )
    if len(set(names)) != len(names):
        raise BackendError(f"backends lists a name twice: {names}")
    classes = _usable(registry, names)
    imported = import_onnx(model)
    part = partition(
        imported.graph, imported.consts, classes, min_subgraph_size=min_subgraph_size
    )
    mod = module_from_partition(part, imported.consts, options=options)
    if not quiet:
        print(mod.placement(), file=sys.stderr)
    return mod


def _usable(registry: Registry, names: Sequence[str]) -> list[type[Backend]]:
    classes, skipped = [], []
    for name in names:
        cls = registry.backend(name, need_available=False)
        reason = registry.availability(name)
        if reason is None:
            classes.append(cls)
        else:
            skipped.append(f"{name} ({reason})")
    if not classes:
        raise BackendError(
            f"none of the selected backends is available: {'; '.join(skipped)}",
            backends=tuple(names),
        )
    if skipped:
        warnings.warn(
            f"skipping unavailable backends: {'; '.join(skipped)}; their nodes go to "
            f"{', '.join(c.name for c in classes)}",
            RuntimeWarning,
            stacklevel=3,
        )
    return classes


def module_from_partition(
    part: Partition,
    consts: Mapping[str, np.ndarray],
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Module:
    """Wrap a partition as an in-memory Module (what compile returns)."""
    registry = get_registry()
    records = tuple(
        _record(registry.backend(s.backend), s, consts) for s in part.subgraphs
    )
    used = {n for s in part.subgraphs for n in s.const_names}
    used |= {n.name for n in part.host.nodes if n.op == "const"}
    artifact = Artifact(
        part.host,
        records,
        {k: v for k, v in consts.items() if k in used},
        meta={"byoc_version": __version__},
    )
    return Module(artifact, options=options, registry=registry, partition=part)


def _record(
    cls: type[Backend], sub: Subgraph, consts: Mapping[str, np.ndarray]
) -> SubgraphRecord:
    """A subgraph as stored: after the backend's ``lower``, with its ``plan``."""
    used = {n: consts[n] for n in sub.const_names}

    def fail(what: str, exc: Exception | None = None) -> BackendError:
        detail = f": {type(exc).__name__}: {exc}" if exc else ""
        return BackendError(
            f"backend {cls.name!r} {what} for subgraph {sub.symbol}{detail}",
            backend=cls.name,
            symbol=sub.symbol,
            stage="compile",
        )

    try:
        graph = cls.lower(sub.graph, used)
    except Exception as exc:
        raise fail("failed to lower", exc) from exc
    if not isinstance(graph, Graph) or not _same_signature(graph, sub.graph):
        raise fail("lowered to a graph with other inputs or outputs")
    try:
        meta = dict(cls.plan(graph, used))
    except Exception as exc:
        raise fail("failed to plan", exc) from exc
    if not is_plain(meta):
        raise fail(
            "planned non-plain data (plan must return None/bool/int/float/"
            "str/list/dict values)"
        )
    return SubgraphRecord(sub.symbol, sub.backend, cls.version, graph, meta)


def _same_signature(new: Graph, old: Graph) -> bool:
    """Same input names and the same heads (names, shapes, dtypes)."""
    return (
        new.input_names == old.input_names
        and new.output_names == old.output_names
        and [new.spec(h) for h in new.heads] == [old.spec(h) for h in old.heads]
        and [new.nodes[i].spec() for i in new.input_ids]
        == [old.nodes[i].spec() for i in old.input_ids]
    )
