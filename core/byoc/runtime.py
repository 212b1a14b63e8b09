"""The backend contract: what a backend declares, and the engine it builds.

A backend is one subclass of :class:`Backend`. Class-level methods describe
capabilities and are asked at compile time (``available``, ``supports``,
``patterns``). An *instance* is the engine for one subgraph of one loaded module:
the driver creates it with the subgraph's JSON graph, calls :meth:`Backend.init`
once with the constants, then calls :meth:`Backend.run` for every inference.

Contract for subclasses (the hooks):

* ``init(consts)`` builds everything the engine needs (compiled kernels, packed
  weights, scratch buffers). ``consts`` are read-only arrays, usually views of the
  memory-mapped artifact: keep references instead of copying unless you need a
  different layout. ``init`` runs once per subgraph per loaded module.
* ``run(inputs)`` executes one inference. It receives a name -> array mapping
  for the subgraph's inputs and returns one array per graph head, in order. It is
  called from many threads at once; it must not mutate shared state without a
  lock, and must return arrays the caller owns (never a buffer reused by the
  next call).
* ``run_into(inputs, outputs)`` (optional; set ``fills_outputs = True``) is
  ``run`` writing into arrays the caller allocated, one per head with the
  graph's static shape and dtype. The driver calls it instead of ``run`` when
  every head is static, and then has nothing to check after the run.
* Either hook may raise anything; the public wrappers :meth:`build` and
  :meth:`__call__` turn exceptions into :class:`~byoc.BackendError` naming the
  backend and symbol, and check what ``run`` returns.
* ``export_engine``/``import_engine`` (optional) let a prebuilt engine travel in
  the artifact so a deployment loads without building.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .dtypes import UNKNOWN
from .errors import BackendError, ByocError

if TYPE_CHECKING:
    from .graph import Graph, JSONGraphNode, TensorSpec


@dataclass(frozen=True)
class Support:
    """Answer to a support query: yes, or no with the reason.

    Use ``Support.yes()`` / ``Support.no("dnnl: Conv auto_pad=SAME_LOWER with
    dilation>1 not supported")``; a refusal without a reason is a contract bug.
    """

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok

    @staticmethod
    def yes() -> Support:
        """The backend runs this node."""
        return _YES

    @staticmethod
    def no(reason: str) -> Support:
        """The backend declines; ``reason`` says why (shown by ``--explain``)."""
        return Support(False, reason)


_YES = Support(True)


@dataclass(frozen=True)
class NodeInfo:
    """What a support query sees: the node plus the specs around it.

    ``inputs[i]`` is None for an omitted optional input. ``consts`` maps an input
    position to its value when that input is a compile-time constant (weights,
    axes, shapes), so backends can check e.g. that a Conv weight is constant.
    """

    node: JSONGraphNode
    inputs: tuple[TensorSpec | None, ...]
    outputs: tuple[TensorSpec, ...]
    consts: Mapping[int, np.ndarray] = field(default_factory=dict)
    node_id: int = -1

    @property
    def op(self) -> str:
        """The operator name, e.g. ``"Conv"``."""
        return self.node.name

    @property
    def attrs(self) -> Mapping[str, Any]:
        """The node's attributes."""
        return self.node.attrs


@dataclass(frozen=True)
class Pattern:
    """A composite a backend runs as one kernel, e.g. Conv+Add+Relu.

    ``ops`` is a chain, producer first: each op reads the previous op's output
    (at any input position), and every intermediate output must have no other
    reader. ``check`` may refuse a particular match (e.g. the Add operand is not
    the right shape). The partitioner replaces a match by one kernel node named
    ``name`` whose ``body`` attribute holds the matched nodes as a Graph.
    """

    name: str
    ops: tuple[str, ...]
    check: Callable[[Sequence[NodeInfo]], Support] | None = None


class Backend:
    """Base class of every backend; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    """Backend name used in ``backends=[...]`` and symbols (``<name>_<n>``)."""
    version: ClassVar[str] = "0"
    """Engine-compatibility version; prebuilt engines are keyed by it."""
    priority: ClassVar[int] = 100
    """Default order when the user gives none: higher first; the fallback (ref)
    is 0; a negative priority makes the backend opt-in (only used when named)."""
    distribution: ClassVar[str] = ""
    """Set by the registry: the package the backend came from."""
    fills_outputs: bool = False
    """True when the engine implements :meth:`run_into` (an engine may set it
    off for itself in ``init``). Why: the driver then allocates the outputs
    before the run and has nothing to check after it, where each check costs
    microseconds with the interpreter out of cache (MobileNetV2: 34-51 us)."""

    # -- capability hooks (compile time) -----------------------------------

    @classmethod
    def available(cls) -> str | None:
        """None when usable here, else the reason (e.g. "libdnnl.so not found")."""
        return None

    @classmethod
    def supports(cls, node: NodeInfo) -> Support:
        """Whether this backend runs ``node``; exact, with a reason when not."""
        return Support.no(f"{cls.name}: does not run {node.op}")

    @classmethod
    def patterns(cls) -> Sequence[Pattern]:
        """Composite patterns, tried before single nodes, longest first."""
        return ()

    # -- engine hooks (load and run time) ----------------------------------

    @classmethod
    def lower(cls, graph: Graph, consts: Mapping[str, np.ndarray]) -> Graph:
        """Rewrite a subgraph at compile time (hook); the result is what is stored.

        The backend's codegen step: annotate nodes with its own attributes (types
        it registers codecs for), fold or reorder nodes. The graph must keep its
        input names and its heads (count, names, shapes, dtypes).
        """
        return graph

    @classmethod
    def plan(cls, graph: Graph, consts: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        """Compile-time work whose result travels in the artifact (hook).

        Called once per subgraph by ``compile``; return plain data (None, bool,
        int, float, str, lists, str-keyed dicts), e.g. a static memory plan. The
        engine receives it back as ``self.meta``.
        """
        return {}

    def __init__(
        self,
        symbol: str,
        graph: Graph,
        options: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.symbol = symbol
        self.graph = graph
        self.options: Mapping[str, Any] = dict(options or {})
        self.meta: Mapping[str, Any] = dict(meta or {})

    def init(self, consts: Mapping[str, np.ndarray]) -> None:
        """Build the engine for ``self.graph`` (hook; runs once)."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        """Run one inference (hook): one array per head of ``self.graph``."""
        raise NotImplementedError(f"backend {self.name!r} does not implement run")

    def run_into(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[np.ndarray]
    ) -> None:
        """Run one inference into ``outputs`` (hook, with ``fills_outputs``):
        C-contiguous arrays, one per head, of the graph's shapes and dtypes,
        fresh for this call."""
        raise NotImplementedError(f"backend {self.name!r} does not implement run_into")

    def export_engine(self) -> bytes | None:
        """Serialized engine to store in the artifact, or None (hook)."""
        return None

    def import_engine(self, blob: bytes, consts: Mapping[str, np.ndarray]) -> None:
        """Rebuild the engine from ``blob`` instead of ``init`` (hook).

        Raise if the blob is unusable; the driver then warns and calls ``init``.
        """
        raise NotImplementedError

    # -- public wrappers (the driver calls these) --------------------------

    def build(self, consts: Mapping[str, np.ndarray]) -> None:
        """Call ``init``, turning any failure into a BackendError."""
        self._guard("init", self.init, consts)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the subgraph: name -> array in, output name -> array out."""
        return dict(zip(self.graph.output_names, self.checked_run(inputs), strict=True))

    def checked_run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """``run`` with its result checked against the graph (the driver's path).

        Kept lean: it runs on every inference, once per subgraph, usually
        with the interpreter out of cache after the previous run (so no helper
        calls on the way: each costs microseconds there).
        """
        checks = self.__dict__.get("_checks") or self._output_checks()
        fill = self.__dict__.get("_fill")
        if fill is None:
            fill = self._fill = self._fill_specs(checks)
        try:
            if fill:
                made: list[np.ndarray] = []
                for shape, dtype in fill:
                    made.append(np.empty(shape, dtype))
                self.run_into(inputs, made)
                return made  # made here: nothing to check
            outs = self.run(inputs)
        except ByocError:
            raise
        except Exception as exc:
            raise self._failed("run", exc) from exc
        if type(outs) not in (list, tuple) or len(outs) != len(checks):
            raise self.error(
                "run",
                f"returned {type(outs).__name__} from run for {self.symbol}; "
                f"expected a sequence of {len(checks)} arrays",
            )
        for i, ((name, dtype, rank, static, full), out) in enumerate(
            zip(checks, outs, strict=True)
        ):
            # ``is`` first: builtin dtypes are singletons, and this runs per call.
            if type(out) is not np.ndarray or (
                dtype is not None and out.dtype is not dtype and out.dtype != dtype
            ):
                got = (
                    out.dtype.name
                    if isinstance(out, np.ndarray)
                    else type(out).__name__
                )
                raise self.error(
                    "run",
                    f"returned {got} for output {name!r} of {self.symbol}; "
                    f"the graph says {dtype}",
                )
            shape = out.shape
            if (
                shape != full
                and rank is not None
                and (len(shape) != rank or any(shape[a] != d for a, d in static))
            ):
                raise self.error(
                    "run",
                    f"returned shape {shape} for output {name!r} of "
                    f"{self.symbol}; the graph says "
                    f"{self.graph.spec(self.graph.heads[i]).shape}",
                )
        return list(outs)

    def _output_checks(
        self,
    ) -> list[
        tuple[
            str,
            np.dtype | None,
            int | None,
            tuple[tuple[int, int], ...],
            tuple[int, ...] | None,
        ]
    ]:
        """Per output: name, dtype, rank, the static (axis, dim) pairs, and the
        whole shape when every dim is static (one tuple compare on the hot path)."""
        checks = self.__dict__.get("_checks")
        if checks is None:
            checks = []
            for name, head in zip(
                self.graph.output_names, self.graph.heads, strict=True
            ):
                spec = self.graph.spec(head)
                dtype = None if spec.dtype == UNKNOWN else np.dtype(spec.dtype)
                rank = None if spec.shape is None else len(spec.shape)
                static = tuple(
                    (a, d) for a, d in enumerate(spec.shape or ()) if isinstance(d, int)
                )
                full = (
                    tuple(spec.shape)
                    if spec.shape is not None and len(static) == len(spec.shape)
                    else None
                )
                checks.append((name, dtype, rank, static, full))
            self.__dict__["_checks"] = checks
        return checks

    def _fill_specs(
        self, checks: Sequence[tuple[Any, np.dtype | None, Any, Any, Any]]
    ) -> list[tuple[tuple[int, ...], np.dtype]]:
        """(shape, dtype) of each output for :meth:`run_into`; empty when the
        engine does not fill outputs or some output is not static."""
        specs = []
        for _, dtype, _, _, full in checks:
            if full is None or dtype is None:
                return []
            specs.append((tuple(full), dtype))
        return specs if self.fills_outputs else []

    def _guard(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except ByocError:
            raise
        except Exception as exc:
            raise self._failed(stage, exc) from exc

    def _failed(self, stage: str, exc: Exception) -> BackendError:
        """The BackendError for a non-byoc exception ``exc`` raised in ``stage``."""
        return self.error(
            stage,
            f"failed in {stage} of subgraph {self.symbol}: {type(exc).__name__}: {exc}",
        )

    def error(self, stage: str, what: str) -> BackendError:
        """A BackendError naming this backend, its subgraph and the stage."""
        return BackendError(
            f"backend {self.name!r} {what}",
            backend=self.name,
            symbol=self.symbol,
            stage=stage,
        )
