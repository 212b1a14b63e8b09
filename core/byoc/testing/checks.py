"""The conformance kit's model-level categories: artifact, caching, errors,
threads, shapes.

Part of the kit (``byoc.testing``). Each check runs every model of
:meth:`Kit.scenarios <byoc.testing.harness.Kit.scenarios>` (claimed cases,
applied patterns, a chain split with byoc-ref) through the public API and
fails with every problem it found, not just the first.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import onnx
import pytest

import byoc

from .chains import Scenario
from .harness import CHAIN_TOL, REF, Kit, fail_on
from .oracles import describe, identical

THREADS, RUNS = 8, 200
BATCHES = (1, 3)
"""The batch sizes :func:`check_shapes` runs each model at."""


def _compile(sc: Scenario) -> byoc.Module:
    return byoc.compile(sc.model, backends=list(sc.backends), quiet=True)


def in_threads(n: int, fn: Callable[[int], Any]) -> list[str]:
    """Run ``fn(t)`` in ``n`` threads released together; the errors they raised."""
    barrier = threading.Barrier(n)
    errors: list[str] = []

    def main(t: int) -> None:
        try:
            barrier.wait()
            fn(t)
        except Exception as exc:
            errors.append(describe(exc))

    threads = [threading.Thread(target=main, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return errors


# --------------------------------------------------------------------------
# artifact
# --------------------------------------------------------------------------


def check_artifact(kit: Kit, check: str, tmp: Path) -> None:
    """compile -> save -> load -> run is bit-identical; engine blobs reload;
    a corrupted blob is rebuilt with a warning."""
    {
        "round-trip": _round_trip,
        "engines": _engines,
        "corrupt-engine": _corrupt_engine,
    }[check](kit, tmp)


def _round_trip(kit: Kit, tmp: Path) -> None:
    problems = []
    for k, sc in enumerate(kit.need_scenarios()):
        mem = _compile(sc)
        want = mem.run(sc.feeds)
        path = mem.save(tmp / f"rt{k}.byoc")
        for how, mod in (
            ("load", byoc.load(path)),
            ("load(eager=True)", byoc.load(path, eager=True)),
            ("from_bytes", byoc.Module.from_bytes(mem.to_bytes())),
        ):
            if mod.symbols != mem.symbols:
                problems.append(f"{sc.name}: {how} gives symbols {mod.symbols}")
            for attempt in ("first run", "second run"):
                diff = identical(mod.run(sc.feeds), want)
                if diff:
                    problems.append(f"{sc.name}: {how}, {attempt}: {'; '.join(diff)}")
    fail_on(problems)


def _with_engines(
    kit: Kit, tmp: Path
) -> list[tuple[Scenario, Path, dict[str, np.ndarray], list[str]]]:
    """Scenarios saved with engines: (scenario, path, outputs, symbols with blobs)."""
    saved = []
    for k, sc in enumerate(kit.need_scenarios()):
        mem = _compile(sc)
        want = mem.run(sc.feeds)
        path = mem.save(tmp / f"eng{k}.byoc", engines=True)
        stored = byoc.load(path).artifact.engines
        blobs = [s for s in kit.own_symbols(mem) if s in stored]
        if blobs:
            saved.append((sc, path, want, blobs))
    if not saved:
        pytest.skip(f"{kit.name} exports no engine blobs (export_engine returns None)")
    return saved


def _engines(kit: Kit, tmp: Path) -> None:
    problems = []
    for sc, path, want, blobs in _with_engines(kit, tmp):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mod = byoc.load(path)
            diff = identical(mod.run(sc.feeds), want)
        if diff:
            problems.append(f"{sc.name}: with prebuilt engines: {'; '.join(diff)}")
        problems += [
            f"{sc.name}: a freshly exported engine is refused: {w.message}"
            for w in caught
            if "prebuilt engine" in str(w.message)
        ]
        rebuilt = [s for s in blobs if mod.init_counts.get(s)]
        if rebuilt:
            problems.append(f"{sc.name}: {rebuilt} ran init despite a prebuilt engine")
        again = mod.save(path.with_suffix(".again.byoc"), engines=True)
        diff = identical(byoc.load(again).run(sc.feeds), want)
        if diff:
            problems.append(f"{sc.name}: re-exporting an imported engine: {diff}")
    fail_on(problems)


def _corruptions(blob: bytes, rng: np.random.Generator) -> Iterator[tuple[str, bytes]]:
    yield "random bytes", rng.bytes(len(blob))
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x10
    yield "one flipped bit", bytes(flipped)


def _corrupt_engine(kit: Kit, tmp: Path) -> None:
    problems: list[str] = []
    tried = 0
    rng = np.random.default_rng(0)
    for sc, path, want, blobs in _with_engines(kit, tmp):
        data = path.read_bytes()
        engines = byoc.load(path).artifact.engines
        for sym in blobs:
            blob = engines[sym].data
            at = data.rfind(blob)
            if not blob or at < 0:
                continue
            for n, (how, bad) in enumerate(_corruptions(blob, rng)):
                target = tmp / f"corrupt-{sym}-{n}.byoc"
                target.write_bytes(data[:at] + bad + data[at + len(blob) :])
                if byoc.load(target).artifact.engines[sym].data != bad:
                    continue  # found the bytes somewhere else: not the blob
                tried += 1
                problems += _load_corrupted(kit, sc, target, want, sym, how)
    if not tried:
        pytest.skip("could not locate any engine blob in the saved files")
    fail_on(problems)


def _load_corrupted(
    kit: Kit,
    sc: Scenario,
    path: Path,
    want: Mapping[str, np.ndarray],
    sym: str,
    how: str,
) -> list[str]:
    where = f"{sc.name}, {sym}, {how}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = byoc.load(path)
        try:
            got = mod.run(sc.feeds)
        except Exception as exc:
            return [f"{where}: run failed: {describe(exc)}"]
    warned = any(
        issubclass(w.category, RuntimeWarning) and sym in str(w.message) for w in caught
    )
    diff = identical(got, want)
    if diff:
        return [
            f"{where}: the corrupted engine was used and results changed "
            f"({'; '.join(diff)}); import_engine must validate the blob (e.g. a "
            "checksum) and raise"
        ]
    if how == "random bytes" and not warned:
        return [
            f"{where}: accepted without a warning; import_engine must raise so the "
            "driver rebuilds the engine"
        ]
    if warned and mod.init_counts.get(sym) != 1:
        return [f"{where}: rebuilt {mod.init_counts.get(sym)} times, expected once"]
    return []


# --------------------------------------------------------------------------
# caching
# --------------------------------------------------------------------------


def counting_init(cls: type[byoc.Backend]) -> tuple[Any, dict[int, int]]:
    """A patch of ``cls.init`` counting real calls per engine object."""
    calls: dict[int, int] = {}
    original = cls.init
    lock = threading.Lock()

    def init(engine: byoc.Backend, consts: Mapping[str, np.ndarray]) -> None:
        with lock:
            calls[id(engine)] = calls.get(id(engine), 0) + 1
        original(engine, consts)

    return mock.patch.object(cls, "init", init), calls


def check_caching(kit: Kit, check: str, tmp: Path) -> None:
    """``init`` runs once per subgraph per loaded module, however many runs."""
    problems = []
    for k, sc in enumerate(kit.need_scenarios()):
        path = _compile(sc).save(tmp / f"cache{k}.byoc")
        patch, calls = counting_init(kit.cls)
        with patch:
            mods, found = _exercise(kit, check, path, sc)
        problems += [f"{sc.name}: {p}" for p in found]
        for i, mod in enumerate(mods):
            wrong = {s: n for s, n in mod.init_counts.items() if n != 1}
            if wrong:
                problems.append(f"{sc.name}: module {i}: init counts {wrong}, not 1")
        own = sum(len(kit.own_symbols(m)) for m in mods)
        if sum(calls.values()) != own or any(n != 1 for n in calls.values()):
            problems.append(
                f"{sc.name}: {kit.name}.init ran {sum(calls.values())} times on "
                f"{len(calls)} engines for {own} subgraphs; expected once each"
            )
    fail_on(problems)


def _exercise(
    kit: Kit, check: str, path: Path, sc: Scenario
) -> tuple[list[byoc.Module], list[str]]:
    problems = []
    if check == "init-once":
        mods = [byoc.load(path), byoc.load(path, eager=True)]
        for mod in mods:
            for j in range(5):
                mod.run(sc.variant(j))
            for sym in mod.symbols:
                if mod.get_function(sym).engine() is not mod.get_function(sym).engine():
                    problems.append(f"{sym} gave two different engines")
    elif check == "init-once-threads":
        mod = byoc.load(path)
        mods = [mod]
        problems += in_threads(
            THREADS, lambda t: [mod.run(sc.variant(t)) for _ in "ab"]
        )
    else:  # per-module: each loaded module builds its own engines, once
        mods = [byoc.load(path), byoc.load(path)]
        mods[0].run(sc.feeds)
        if any(mods[1].init_counts.values()):
            problems.append("running one module built another module's engines")
        mods[1].run(sc.feeds)
        for sym in kit.own_symbols(mods[0]):
            if mods[0].get_function(sym).engine() is mods[1].get_function(sym).engine():
                problems.append(f"two loaded modules share the engine of {sym}")
    return mods, problems


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def check_errors(kit: Kit, check: str) -> None:
    """Bad inputs raise InputError; backend exceptions come out as BackendError."""
    problems: list[str] = []
    tested = 0
    for sc in kit.need_scenarios():
        mod = _compile(sc)
        mod.run(sc.feeds)
        for label, feeds in _bad_inputs(check, mod, sc.feeds):
            tested += 1
            try:
                mod.run(feeds)
            except byoc.InputError:
                continue
            except Exception as exc:
                problems.append(f"{sc.name}: {label}: raised {describe(exc)}")
            else:
                problems.append(f"{sc.name}: {label}: ran without an InputError")
        if check == "backend-run":
            for sym in kit.own_symbols(mod):
                tested += 1
                engine = mod.get_function(sym).engine()
                label = f"{sc.name}: {sym}: calling the engine with no inputs"
                problems += _expect_backend_error(kit, label, sym, partial(engine, {}))
        elif check == "backend-init":
            for rec in mod.subgraphs:
                if not _can_starve(kit, rec, sc):
                    continue
                tested += 1
                engine = kit.cls(rec.symbol, rec.graph, None, rec.meta)
                feeds = {n: sc.feeds[n] for n in rec.graph.input_names}

                def starve(e: byoc.Backend = engine, f: Any = feeds) -> None:
                    e.build({})
                    e(f)

                label = f"{sc.name}: {rec.symbol}: building without its constants"
                problems += _expect_backend_error(kit, label, rec.symbol, starve)
    if not tested:
        what = {
            "backend-init": "a subgraph of its own with constants, fed by model inputs",
            "backend-run": "a subgraph of its own",
        }.get(check, "an input to get wrong")
        pytest.skip(f"no model the kit runs has {what}")
    fail_on(problems)


def _can_starve(kit: Kit, rec: Any, sc: Scenario) -> bool:
    """The subgraph is the backend's, reads constants, and takes model inputs."""
    return (
        rec.backend == kit.name
        and any(n.op == "const" for n in rec.graph.nodes)
        and set(rec.graph.input_names) <= set(sc.feeds)
    )


def _expect_backend_error(
    kit: Kit, label: str, symbol: str, fn: Callable[[], Any]
) -> list[str]:
    try:
        fn()
    except byoc.BackendError as exc:
        wrong = [
            f"{k}={getattr(exc, k, None)!r}"
            for k, v in (("backend", kit.name), ("symbol", symbol))
            if getattr(exc, k, None) != v
        ]
        if wrong:
            return [f"{label}: the BackendError has {', '.join(wrong)}"]
        if kit.name not in str(exc) or symbol not in str(exc):
            return [
                f"{label}: the message names neither {kit.name} nor {symbol}: {exc}"
            ]
        return []
    except Exception as exc:
        return [
            f"{label}: raised {describe(exc)}, not BackendError (wrappers bypassed?)"
        ]
    return [f"{label}: succeeded; expected a BackendError"]


def _bad_inputs(
    check: str, mod: byoc.Module, feeds: dict[str, np.ndarray]
) -> Iterator[tuple[str, Any]]:
    """Inputs that do not match ``mod``'s signature, by kind of mistake."""
    first = mod.inputs[0].name
    if check == "input-names":
        rest = {k: v for k, v in feeds.items() if k != first}
        yield "an input missing", rest
        yield "an unexpected extra input", {**feeds, "not_an_input": feeds[first]}
        yield "an input under the wrong name", {**rest, first + "_typo": feeds[first]}
        yield "a list instead of a dict", list(feeds.values())
    elif check == "input-shapes":
        for t in mod.inputs:
            if t.shape is None or not all(isinstance(d, int) for d in t.shape):
                continue
            value = feeds[t.name]
            yield f"{t.name} with an extra axis", {**feeds, t.name: value[None]}
            if value.ndim:
                grown = np.concatenate([value, value[:1]], axis=0)
                yield f"{t.name} one longer on axis 0", {**feeds, t.name: grown}
    elif check == "input-dtypes":
        other = {"float32": "float64", "int64": "int32", "bool": "uint8"}
        for t in mod.inputs:
            wrong = other.get(t.dtype, "float32")
            yield f"{t.name} as {wrong}", {**feeds, t.name: feeds[t.name].astype(wrong)}


# --------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------


def check_threads(kit: Kit, tmp: Path) -> None:
    """8 threads x 200 runs on one loaded module match a single-thread run, bit
    for bit, and what run returned stays unchanged afterwards."""
    problems = []
    for k, sc in enumerate(kit.need_scenarios()):
        path = _compile(sc).save(tmp / f"threads{k}.byoc")
        inputs = [sc.variant(v) for v in range(THREADS)]
        single = byoc.load(path)
        want = [single.run(f) for f in inputs]
        shared = byoc.load(path)  # fresh: the threads also race to build engines
        kept: list[list[tuple[int, dict[str, np.ndarray]]]] = [[] for _ in inputs]

        work = _hammer(shared, inputs, want, kept)
        problems += [f"{sc.name}: {e}" for e in in_threads(THREADS, work)]
        late = [
            (t, r)
            for t in range(THREADS)
            for r, (v, out) in enumerate(kept[t])
            if identical(out, want[v])
        ]
        if late:
            t, r = late[0]
            problems.append(
                f"{sc.name}: {len(late)} returned arrays changed later (first: "
                f"thread {t}, run {r}); run must return arrays the caller owns"
            )
    fail_on(problems)


def _hammer(
    mod: byoc.Module,
    inputs: Sequence[dict[str, np.ndarray]],
    want: Sequence[Mapping[str, np.ndarray]],
    kept: list[list[tuple[int, dict[str, np.ndarray]]]],
) -> Callable[[int], None]:
    """Thread ``t``'s job: RUNS runs cycling through the inputs, each checked."""

    def work(t: int) -> None:
        for r in range(RUNS):
            v = (t + r) % THREADS
            out = mod.run(inputs[v])
            diff = identical(out, want[v])
            if diff:
                raise AssertionError(f"thread {t}, run {r}: {'; '.join(diff)}")
            kept[t].append((v, out))

    return work


# --------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------


def check_shapes(kit: Kit, check: str) -> None:
    """The scenarios with their inputs' batch dim made symbolic (``"N"``): what
    the backend claims of them runs, and matches the oracles, at every size of
    :data:`BATCHES`. Declining symbolic dims is allowed (partition checks the
    reasons); claiming them and running one size only is not."""
    problems: list[str] = []
    ran = 0
    for sc in kit.need_scenarios():
        model = symbolic_batch(sc.model)
        if model is None:
            continue
        sized = {n: batch_of(sc.feeds, model, n) for n in BATCHES}
        # Only models whose semantics allow every size (an oracle runs them).
        if any(
            all(
                kit.oracle(which, _shape_key(sc, n), model, f)[0] is None
                for which in (REF, "ort")
            )
            for n, f in sized.items()
        ):
            continue
        backends = list(sc.backends) + ([REF] if kit.ref_ok else [])
        try:
            mod = byoc.compile(
                model, backends=list(dict.fromkeys(backends)), quiet=True
            )
        except byoc.UnsupportedError:
            continue
        except Exception as exc:
            problems.append(f"{sc.name}: compile failed: {describe(exc)}")
            continue
        if not kit.own_symbols(mod):
            continue
        ran += 1
        for n, feeds in sized.items():
            try:
                got = mod.run(feeds)
                kit.against_oracles(got, _shape_key(sc, n), model, feeds, CHAIN_TOL)
            except pytest.fail.Exception as exc:
                problems.append(f"{sc.name} at batch {n}: {exc}")
            except Exception as exc:
                problems.append(f"{sc.name} at batch {n}: run failed: {describe(exc)}")
    fail_on(problems)
    if not ran:
        pytest.skip(
            f"{kit.name} claims no part of the kit's models with a symbolic batch"
        )


def _shape_key(sc: Scenario, n: int) -> str:
    return f"shapes:{sc.name}:N={n}"


def symbolic_batch(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """``model`` with dim 0 named ``"N"`` in every graph input that shares the
    first input's size there, and the output shapes left to inference; None
    when the first input has no static dim 0."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in inits]
    if not inputs:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims or not dims[0].HasField("dim_value"):
        return None
    size = dims[0].dim_value
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in out.graph.input:
        d = vi.type.tensor_type.shape.dim
        if vi.name not in inits and d and d[0].HasField("dim_value"):
            if d[0].dim_value == size:
                d[0].dim_param = "N"
    for vi in out.graph.output:
        vi.type.tensor_type.ClearField("shape")
    del out.graph.value_info[:]
    return out


def batch_of(
    feeds: Mapping[str, np.ndarray], model: onnx.ModelProto, n: int
) -> dict[str, np.ndarray]:
    """``feeds`` with ``n`` rows in every input whose dim 0 is symbolic: the
    original rows repeated, each copy scaled a little (same signs, so values
    stay in the op's domain, and no two rows equal)."""
    symbolic = {
        vi.name
        for vi in model.graph.input
        if vi.type.tensor_type.shape.dim
        and vi.type.tensor_type.shape.dim[0].dim_param == "N"
    }
    out = {}
    for name, value in feeds.items():
        if name in symbolic:
            rows = [value[i % value.shape[0]] for i in range(n)]
            if value.dtype.kind == "f":
                rows = [r * value.dtype.type(1 + i / 64) for i, r in enumerate(rows)]
            value = np.stack(rows).astype(value.dtype)
        out[name] = np.ascontiguousarray(value)
    return out
