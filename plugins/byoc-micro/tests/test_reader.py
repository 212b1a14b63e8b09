"""The C reader against the spec and against hostile input.

* It builds with ``-std=c99 -Wall -Wextra -Werror -pedantic`` and its objects
  never reference the allocator.
* Its view of the golden file (``tests/data/golden.byoc``) is exactly the
  decoded header the core tests check, also with every int in its widest form.
* A seeded corpus of truncated, bit-flipped and hostile artifacts goes through
  every reader accessor and the executor, built with
  ``-fsanitize=address,undefined``: each case is an error code or a clean run,
  never a crash or an out-of-bounds access.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_model, nm
from corpus import decode_header, make_corpus, pack_wide, with_header, write_corpus
from onnx import helper

import byoc
from byoc.artifact import parse_artifact
from byoc.attrs import AttrCodec
from byoc_micro import _lib

GOLDEN = ROOT / "tests" / "data" / "golden.byoc"
GOLDEN_JSON = ROOT / "tests" / "data" / "golden.json"
ALLOCATOR = {"malloc", "calloc", "realloc", "free", "aligned_alloc", "posix_memalign"}


def test_library_compiles_with_werror_and_never_touches_the_heap(runtime, tmp_path):
    cc = _lib.compiler()
    objects = []
    for name in _lib.LIB_SOURCES:
        obj = tmp_path / name.replace(".c", ".o")
        done = subprocess.run(
            [
                *cc,
                *_lib.WERROR,
                "-O2",
                "-c",
                str(_lib.source_dir() / name),
                "-o",
                str(obj),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        objects.append(str(obj))
    tool = nm()
    if tool is None:
        pytest.skip("no nm to list the objects' undefined symbols")
    undefined = subprocess.run(
        [tool, "-u", *objects], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not ALLOCATOR & set(undefined), sorted(ALLOCATOR & set(undefined))


def _dump(harness: Path, path: Path) -> object:
    done = subprocess.run([str(harness), "dump", str(path)], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def test_c_reader_decodes_the_golden_header_like_python(asan_harness, tmp_path):
    want = json.loads(GOLDEN_JSON.read_text())
    assert _dump(asan_harness, GOLDEN) == want
    wide = tmp_path / "wide.byoc"
    data = GOLDEN.read_bytes()
    wide.write_bytes(with_header(data, pack_wide(decode_header(data))))
    assert len(wide.read_bytes()) > len(data)
    assert _dump(asan_harness, wide) == want


def all_ops_model() -> object:
    """Every micro op once, on tiny tensors (executing it is cheap under ASan)."""
    rng = np.random.default_rng(0)

    def c(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "AveragePool", ["mp"], ["ap"], kernel_shape=[2, 2], pads=[1, 1, 0, 0]
        ),
        helper.make_node("Clip", ["ap", "lo", "hi"], ["cl"]),
        helper.make_node("Sigmoid", ["cl"], ["sg"]),
        helper.make_node("Mul", ["sg", "ap"], ["mu"]),
        helper.make_node("Add", ["mu", "k"], ["ad"]),
        helper.make_node("GlobalAveragePool", ["ad"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["fl"]),
        helper.make_node("Gemm", ["fl", "fw", "fb"], ["g"], transB=1),
        helper.make_node("Reshape", ["g", "shape"], ["rs"]),
        helper.make_node("MatMul", ["rs", "mw"], ["mm"]),
        helper.make_node("Softmax", ["mm"], ["y"]),
    ]
    inits = {
        "w": c(4, 1, 3, 3),
        "b": c(4),
        "s": c(4),
        "bb": c(4),
        "m": c(4),
        "v": np.abs(c(4)) + 0.5,
        "lo": np.array(-0.5, np.float32),
        "hi": np.array(0.5, np.float32),
        "k": c(4, 1, 1),
        "fw": c(6, 4),
        "fb": c(6),
        "shape": np.array([2, 3], np.int64),
        "mw": c(3, 2),
    }
    return make_model(nodes, {"x": [1, 2, 6, 6]}, {"y": None}, inits)


def mixed_model() -> object:
    """Two micro subgraphs around a ref one (Tanh), with a dynamic-free shape."""
    rng = np.random.default_rng(1)
    return make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["a"]),
            helper.make_node("Tanh", ["a"], ["t"]),
            helper.make_node("Relu", ["t"], ["y"]),
        ],
        {"x": [2, 3]},
        {"y": None},
        {"w": rng.standard_normal((3, 4)).astype(np.float32)},
    )


def _has_big_int(obj: object) -> bool:
    if isinstance(obj, bool):
        return False
    if isinstance(obj, int):
        return obj >= 2**63
    if isinstance(obj, dict):
        return any(_has_big_int(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_big_int(v) for v in obj)
    return False


DTYPES = {"bool", "float16", "float32", "float64", "int8", "int16", "int32"}
DTYPES |= {"int64", "uint8", "uint16", "uint32", "uint64", "unknown"}


def _nodes(obj: object) -> list[dict]:
    """Every node map anywhere in a decoded header (nested bodies included)."""
    if isinstance(obj, list):
        return [n for item in obj for n in _nodes(item)]
    if not isinstance(obj, dict):
        return []
    found = [obj] if "op" in obj and "dtype" in obj else []
    return found + [n for v in obj.values() for n in _nodes(v)]


def _allowed_strictness(data: bytes) -> bool:
    """Rejections docs/FORMAT.md requires or allows but the Python reader does
    not make (yet): ints past int64, dtype aliases in the constant table, and
    (core requests 2a/2b in .kit-core-requests.md) unknown node dtype strings
    and negative node ids other than the omitted-input entry [-1, 0, 0]."""
    header = decode_header(data)
    consts = header.get("constants", [])
    aliases = any(not isinstance(c.get("dtype"), str) for c in consts)
    nodes = _nodes(header)
    bad_dtype = any(
        isinstance(d, str) and d not in DTYPES
        for n in nodes
        if isinstance(n["dtype"], list)
        for d in n["dtype"]
    )
    bad_absent = any(
        isinstance(e, list)
        and e
        and isinstance(e[0], int)
        and e[0] < 0
        and e != [-1, 0, 0]
        for n in nodes
        if isinstance(n.get("inputs"), list)
        for e in n["inputs"]
    )
    return aliases or bad_dtype or bad_absent or _has_big_int(header)


def _same(value: object) -> object:
    return value


def _python_accepts(data: bytes) -> bool:
    # plugin payloads are opaque to the C reader: accept any payload here too
    codecs = {"golden.point": AttrCodec("golden.point", dict, _same, _same)}
    try:
        parse_artifact(data, codecs)
    except byoc.ByocError:
        return False
    return True


def test_fuzz_corpus_through_the_sanitized_reader_and_executor(
    registry, asan_harness, tmp_path
):
    seeds = {
        "golden": GOLDEN.read_bytes(),
        "all_ops": byoc.compile(
            all_ops_model(), backends=["micro"], quiet=True
        ).to_bytes(),
        "mixed": byoc.compile(
            mixed_model(), backends=["micro", "ref"], quiet=True
        ).to_bytes(),
    }
    cases = make_corpus(seeds, seed=0, per_seed=1200)
    path = tmp_path / "corpus.bin"
    write_corpus(cases, path)
    done = subprocess.run(
        [str(asan_harness), "corpus", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    summary = lines[-1].split()
    results = [tuple(int(v) for v in line.split()) for line in lines[:-1]]
    assert len(results) == len(cases) == int(summary[1])
    print(
        f"fuzz corpus: {len(cases)} cases, {summary[3]} opened, {summary[5]} ran "
        "(ASan+UBSan clean)"
    )
    # the seeds open and their micro subgraphs run
    assert results[0][1] == 0  # golden opens (no micro plan: nothing runs)
    assert results[1][1:] == (0, 0)  # all_ops opens and runs
    assert results[2][1] == 0
    # every code is one the library defines
    assert {r[1] for r in results} <= set(range(8))
    # the C reader is never more lenient than the Python reader, and stricter
    # only where docs/FORMAT.md lets readers be: ints past int64, and dtype
    # aliases (here ONNX integer codes) in the constant table
    python = [_python_accepts(case) for case in cases]
    lenient = [i for i, r in enumerate(results) if r[1] == 0 and not python[i]]
    strict = [i for i, r in enumerate(results) if r[1] != 0 and python[i]]
    print(f"fuzz corpus: Python accepts {sum(python)}; C stricter on {len(strict)}")
    assert not lenient, f"C accepts what Python rejects: cases {lenient[:10]}"
    unexplained = [i for i in strict if not _allowed_strictness(cases[i])]
    assert not unexplained, f"C rejects valid files: cases {unexplained[:10]}"


def test_a_byte_count_that_would_wrap_is_refused(asan_harness, tmp_path):
    # MaxPool with huge pads on a 4 MiB input declares exactly 2**62 output
    # elements: 4 * 2**62 bytes wraps a uint64 to 0, which must not slip past
    # the arena bound (the plan gives the pool a 64-byte arena)
    from byoc_micro.backend import subgraph_artifact

    f32 = "float32"
    e = byoc.JSONGraphNodeEntry
    big = 1 << 21
    graph = byoc.Graph(
        (
            byoc.JSONGraphNode(
                "input", "x", shapes=((1024, 1024, 1, 1),), dtypes=(f32,)
            ),
            byoc.JSONGraphNode(
                "kernel",
                "MaxPool",
                (e(0),),
                {
                    "kernel_shape": (1, 1),
                    "pads": (1 << 20, 1 << 20, big // 2 - 1, big // 2 - 1),
                },
                ((1024, 1024, big, big),),
                (f32,),
            ),
            byoc.JSONGraphNode(
                "kernel",
                "GlobalAveragePool",
                (e(1),),
                shapes=((1024, 1024, 1, 1),),
                dtypes=(f32,),
            ),
        ),
        (e(2),),
    )
    meta = {
        "arena_size": 64,
        "format": 1,
        "entries": [["input", 0], ["arena", 0], ["output", 0]],
    }
    path = tmp_path / "wrap.bin"
    write_corpus([subgraph_artifact("micro_0", graph, meta, {})], path)
    done = subprocess.run(
        [str(asan_harness), "corpus", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    index, open_rc, run_rc = map(int, done.stdout.splitlines()[0].split())
    assert open_rc == 0 and run_rc == 7  # BM_E_LIMIT, before any kernel runs
