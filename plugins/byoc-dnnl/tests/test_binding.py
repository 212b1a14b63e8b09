"""The ctypes binding against the library it loads (and its headers, if present)."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from byoc_dnnl import _lib
from byoc_dnnl._lib import Alg, Arg, DataType, FormatKind, FormatTag, PropKind, Query
from byoc_dnnl.handles import (
    Attr,
    Memory,
    MemoryDesc,
    PrimitiveDesc,
    Stream,
    engine,
    exec_args,
)


def test_version_is_the_bound_one() -> None:
    lib = _lib.lib()
    v = lib.version_info()
    assert (v.major, v.minor) == _lib.VERSION
    assert v.cpu_runtime == _lib.RUNTIME_OMP
    assert v.hash  # the build's git hash travels in the struct: layout is right


def test_struct_layouts() -> None:
    assert ctypes.sizeof(_lib.ExecArg) == 16
    assert _lib.ExecArg.memory.offset == 8
    assert ctypes.sizeof(_lib.Version) == 32
    assert ctypes.sizeof(_lib.Dims) == 8 * 12


def _run(pd: PrimitiveDesc, args: list[tuple[int, np.ndarray, MemoryDesc]]) -> None:
    prim = pd.create()
    mems = [Memory(md, arr.ctypes.data) for _, arr, md in args]
    pairs = [(a, m.h) for (a, _, _), m in zip(args, mems, strict=True)]
    if pd.scratchpad_bytes:
        scratch = np.empty(pd.scratchpad_bytes, np.uint8)
        sm = Memory(pd.scratchpad_md(), scratch.ctypes.data)
        pairs.append((Arg.scratchpad, sm.h))
    stream = Stream()
    lib = _lib.lib()
    lib.primitive_execute(prim.h, stream.h, len(pairs), exec_args(pairs))
    lib.stream_wait(stream.h)


def test_eltwise_result() -> None:
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4)
    y = np.empty_like(x)
    md = MemoryDesc.plain(x.shape)
    pd = PrimitiveDesc.make(
        "eltwise",
        _lib.lib().eltwise_forward_primitive_desc_create,
        engine(),
        PropKind.forward_inference,
        Alg.eltwise_clip_v2,
        md.h,
        md.h,
        -1.0,
        2.0,
        Attr().h,
    )
    _run(pd, [(Arg.src, x, md), (Arg.dst, y, md)])
    np.testing.assert_array_equal(y, np.clip(x, -1.0, 2.0))


def test_matmul_with_post_ops_result() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 7)).astype(np.float32)
    w = rng.standard_normal((7, 3)).astype(np.float32)
    bias = rng.standard_normal((1, 3)).astype(np.float32)
    y = np.empty((5, 3), np.float32)
    ma, mw, mb, my = (MemoryDesc.plain(s) for s in ((5, 7), (7, 3), (1, 3), (5, 3)))
    from byoc_dnnl.handles import PostOp

    attr = Attr([PostOp("eltwise", Alg.eltwise_relu)])
    pd = PrimitiveDesc.make(
        "matmul",
        _lib.lib().matmul_primitive_desc_create,
        engine(),
        ma.h,
        mw.h,
        mb.h,
        my.h,
        attr.h,
    )
    _run(
        pd,
        [
            (Arg.src, a, ma),
            (Arg.weights, w, mw),
            (Arg.bias, bias, mb),
            (Arg.dst, y, my),
        ],
    )
    np.testing.assert_allclose(y, np.maximum(a @ w + bias, 0), rtol=1e-5, atol=1e-6)


def test_memory_desc_queries() -> None:
    md = MemoryDesc.plain((2, 3, 4))
    assert md.dims == (2, 3, 4) and md.ndims == 3
    assert md.format_kind == FormatKind.blocked and md.strides == (12, 4, 1)
    assert md.is_dense and md.nbytes == 96
    t = MemoryDesc.strided((4, 3), (1, 4))
    assert t.is_plain and not t.is_dense
    assert MemoryDesc.any((2, 3)).format_kind == FormatKind.any
    assert MemoryDesc.with_tag((2, 3), FormatTag.ab).same(MemoryDesc.plain((2, 3)))
    assert MemoryDesc.with_tag((2, 3), FormatTag.ba).same(
        MemoryDesc.strided((2, 3), (1, 2))
    )


def test_memory_desc_reshape_and_permute() -> None:
    # The example in dnnl.h: swapping the axes of "ab" gives "ba".
    swapped = MemoryDesc.with_tag((2, 3), FormatTag.ab).permute((1, 0))
    assert swapped.same(MemoryDesc.with_tag((3, 2), FormatTag.ba))
    flat = MemoryDesc.plain((2, 3, 4)).reshape((6, 4))
    assert flat.same(MemoryDesc.plain((6, 4)))
    blocked = MemoryDesc.with_tag((1, 16, 1, 5), FormatTag.nChw8c)
    rows = blocked.permute((0, 3, 1, 2)).reshape((5, 16))
    assert rows.dims == (5, 16) and rows.inner_nblks == 1
    with pytest.raises(_lib.DnnlError, match="dnnl_memory_desc_reshape"):
        blocked.reshape((2, 8, 5))  # would split the blocked channel axis


def test_check_raises_typed_error_naming_function_and_status() -> None:
    md = MemoryDesc.plain((2, 2))
    with pytest.raises(_lib.DnnlError) as info:
        PrimitiveDesc.make(
            "eltwise",
            _lib.lib().eltwise_forward_primitive_desc_create,
            engine(),
            PropKind.forward_inference,
            0x7777,
            md.h,
            md.h,
            0.0,
            0.0,
            None,
        )
    err = info.value
    assert err.function == "dnnl_eltwise_forward_primitive_desc_create"
    assert err.status == 2 and err.status_name == "invalid_arguments"
    assert "dnnl_eltwise_forward_primitive_desc_create" in str(err)
    assert "invalid_arguments" in str(err)


def test_unchecked_functions_return_the_status() -> None:
    lib = _lib.lib()
    wait = lib.unchecked("dnnl_stream_wait")
    assert wait(None) == 2  # invalid_arguments, returned instead of raised
    with pytest.raises(_lib.DnnlError):
        lib.stream_wait(None)  # the checked twin is untouched
    with pytest.raises(ValueError, match="dnnl_status_t"):
        lib.unchecked("dnnl_primitive_desc_query_md")


def test_a_failing_call_on_the_run_path_raises() -> None:
    from onnx import TensorProto, helper

    import byoc

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    mod = byoc.compile(model, backends=["dnnl"], quiet=True)
    x = np.arange(-3, 3, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(mod.run({"x": x})["y"], np.maximum(x, 0))
    ctx = mod.get_function(mod.symbols[0]).engine()._program._pool[0]
    _, n, args = ctx.calls[0]
    ctx.calls[0] = (None, n, args)  # no primitive: oneDNN says invalid_arguments
    if ctx._loop_call is not None:
        ctx._table[0].prim = None  # the compiled loop's copy of the step
    with pytest.raises(byoc.BackendError, match="dnnl_primitive_execute") as info:
        mod.run({"x": x})
    if ctx._loop_call is not None:
        assert "(step 0: " in str(info.value)


def test_data_address_of_every_kind_of_array() -> None:
    from byoc_dnnl.program import data_address

    a = np.ones((4, 5), np.float32)
    assert data_address(a) == a.ctypes.data
    ro = np.ones(3, np.float32)
    ro.flags.writeable = False
    assert data_address(ro) == ro.ctypes.data
    empty = np.ones((0, 4), np.float32)
    assert data_address(empty) == empty.ctypes.data
    view = a[1:]
    assert data_address(view) == a.ctypes.data + 5 * 4


def test_unavailable_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as md

    monkeypatch.setenv(_lib.ENV_LIBRARY, "/nonexistent/libdnnl.so.3")
    path, why = _lib.find_library()
    assert path is None and "does not name a file" in why
    monkeypatch.delenv(_lib.ENV_LIBRARY)

    def missing(name: str) -> object:
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(_lib.md, "distribution", missing)
    path, why = _lib.find_library()
    assert path is None
    assert why == "libdnnl.so.3 not found: pip install byoc-dnnl[onednn]"


def test_found_through_the_distribution_file_list() -> None:
    path, how = _lib.find_library()
    if os.environ.get(_lib.ENV_LIBRARY):
        pytest.skip(f"{_lib.ENV_LIBRARY} overrides the lookup")
    assert path is not None and Path(path).name.startswith("libdnnl.so.3")
    assert how.startswith(_lib.DISTRIBUTION)


# -- enum values against the C headers (when they and a compiler are at hand) ------

_HEADER_CHECKS = {
    "dnnl_f32": DataType.f32,
    "dnnl_format_tag_any": FormatTag.any,
    "dnnl_a": FormatTag.a,
    "dnnl_ab": FormatTag.ab,
    "dnnl_abcd": FormatTag.abcd,
    "dnnl_ba": FormatTag.ba,
    "dnnl_nChw8c": FormatTag.nChw8c,
    "dnnl_nChw16c": FormatTag.nChw16c,
    "dnnl_abcdefghijkl": FormatTag.plain(12),
    "dnnl_blocked": FormatKind.blocked,
    "dnnl_forward_inference": PropKind.forward_inference,
    "dnnl_forward_training": PropKind.forward_training,
    "dnnl_scratchpad_mode_user": _lib.ScratchpadMode.user,
    "dnnl_use_global_stats": _lib.NormFlags.use_global_stats,
    "dnnl_use_scale": _lib.NormFlags.use_scale,
    "dnnl_use_shift": _lib.NormFlags.use_shift,
    "DNNL_ARG_SRC": Arg.src,
    "DNNL_ARG_SRC_1": Arg.src_1,
    "DNNL_ARG_DST": Arg.dst,
    "DNNL_ARG_WEIGHTS": Arg.weights,
    "DNNL_ARG_BIAS": Arg.bias,
    "DNNL_ARG_MEAN": Arg.mean,
    "DNNL_ARG_VARIANCE": Arg.variance,
    "DNNL_ARG_SCALE": Arg.scale,
    "DNNL_ARG_SHIFT": Arg.shift,
    "DNNL_ARG_SCRATCHPAD": Arg.scratchpad,
    "DNNL_ARG_MULTIPLE_SRC": Arg.multiple_src,
    "DNNL_ARG_ATTR_MULTIPLE_POST_OP(2)": Arg.post_op(2),
    "DNNL_RUNTIME_OMP": _lib.RUNTIME_OMP,
    "dnnl_query_impl_info_str": Query.impl_info_str,
    "dnnl_query_src_md": Query.src_md,
    "dnnl_query_weights_md": Query.weights_md,
    "dnnl_query_dst_md": Query.dst_md,
    "dnnl_query_scratchpad_md": Query.scratchpad_md,
    "dnnl_query_exec_arg_md": Query.exec_arg_md,
    "dnnl_query_ndims_s32": Query.ndims_s32,
    "dnnl_query_dims": Query.dims,
    "dnnl_query_data_type": Query.data_type,
    "dnnl_query_format_kind": Query.format_kind,
    "dnnl_query_strides": Query.strides,
    "dnnl_query_inner_nblks_s32": Query.inner_nblks_s32,
    "sizeof(dnnl_exec_arg_t)": ctypes.sizeof(_lib.ExecArg),
    "sizeof(dnnl_version_t)": ctypes.sizeof(_lib.Version),
    **{
        f"dnnl_{name}": getattr(Alg, name)
        for name in vars(Alg)
        if not name.startswith("_")
    },
    **{f"dnnl_{name}": code for code, name in _lib.STATUS_NAMES.items()},
}


def test_enum_values_match_the_headers(tmp_path: Path) -> None:
    include = os.environ.get("BYOC_DNNL_INCLUDE")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not include:
        pytest.skip(
            "set BYOC_DNNL_INCLUDE to the include dir of onednn-devel-cpu-gomp "
            "2023.2.0 to check every enum against the headers"
        )
    if cc is None:
        pytest.skip("no C compiler to read the headers with")
    lines = [f'printf("%s=%ld\\n", "{k}", (long)({k}));' for k in _HEADER_CHECKS]
    src = tmp_path / "enums.c"
    src.write_text(
        '#include <stdio.h>\n#include "oneapi/dnnl/dnnl.h"\nint main(void){\n'
        + "\n".join(lines)
        + "\nreturn 0;}\n"
    )
    exe = tmp_path / "enums"
    subprocess.run([cc, f"-I{include}", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    got = dict(line.split("=") for line in out.splitlines())
    wrong = {k: (int(got[k]), v) for k, v in _HEADER_CHECKS.items() if int(got[k]) != v}
    assert not wrong, f"header value != binding value: {wrong}"
