"""ctypes binding of the slice of oneDNN 3.2's C API that byoc-dnnl uses.

Where it sits: at the bottom of byoc_dnnl. Nothing here runs at import time;
:func:`lib` finds and loads ``libdnnl.so.3`` on first use (from ``available``,
a support query or ``init``) and caches the result, failure included.

Every foreign function is declared with its exact argument types (a bare
Python int would be truncated to a C int) and, when it returns a
``dnnl_status_t``, with :func:`check` as its ``errcheck``: a non-success
status becomes a :class:`DnnlError` naming the function and the status. That
is the one place library errors are turned into Python errors.

The enum values and struct layouts below are written from oneDNN 3.2's
``dnnl_types.h``/``dnnl_common_types.h`` (``onednn-devel-cpu-gomp==2023.2.0``);
``tests/test_binding.py`` checks them against the loaded library and, when the
headers and a C compiler are at hand, against the headers themselves.
"""

from __future__ import annotations

import ctypes
import importlib.metadata as md
import os
import threading
from pathlib import Path
from typing import Any

import byoc

DISTRIBUTION = "onednn-cpu-gomp"
"""The wheel that ships the library this binding was written for."""
SONAME = "libdnnl.so.3"
VERSION = (3, 2)
"""oneDNN major.minor this binding matches (enum values change between minors)."""
INSTALL_HINT = "pip install byoc-dnnl[onednn]"
ENV_LIBRARY = "BYOC_DNNL_LIBRARY"
"""Environment variable naming an explicit path to ``libdnnl.so.3``."""

MAX_NDIMS = 12
RUNTIME_OMP = 2  # DNNL_RUNTIME_OMP in dnnl_config.h

# --------------------------------------------------------------------------
# enums (values from oneDNN 3.2 headers)
# --------------------------------------------------------------------------

STATUS_NAMES = {
    0: "success",
    1: "out_of_memory",
    2: "invalid_arguments",
    3: "unimplemented",
    4: "last_impl_reached",
    5: "runtime_error",
    6: "not_required",
    7: "invalid_graph",
    8: "invalid_graph_op",
    9: "invalid_shape",
    10: "invalid_data_type",
}
"""dnnl_status_t."""


class DataType:
    """dnnl_data_type_t."""

    undef = 0
    f16 = 1
    bf16 = 2
    f32 = 3
    s32 = 4
    s8 = 5
    u8 = 6
    f64 = 7
    boolean = 8


class FormatTag:
    """dnnl_format_tag_t: ``any``, plain row-major tags (``a`` .. 12 dims), and
    the two blocked 4-D activation layouts."""

    undef = 0
    any = 1
    a = 2
    ab = 3
    abcd = 5
    ba = 14
    nChw8c = 102  # dnnl_aBcd8b: channels blocked by 8 (AVX2 kernels)
    nChw16c = 78  # dnnl_aBcd16b: channels blocked by 16 (AVX-512 kernels)

    @staticmethod
    def plain(ndims: int) -> int:
        """The row-major tag for ``ndims`` dimensions (``a``=2 ... 12 dims=13)."""
        return 1 + ndims


class FormatKind:
    """dnnl_format_kind_t."""

    undef = 0
    any = 1
    blocked = 2
    opaque = 3


class EngineKind:
    """dnnl_engine_kind_t."""

    any = 0
    cpu = 1


class PropKind:
    """dnnl_prop_kind_t."""

    forward_training = 64
    forward_inference = 96


class Alg:
    """dnnl_alg_kind_t (the members byoc-dnnl uses)."""

    convolution_direct = 0x1
    deconvolution_direct = 0xA
    eltwise_relu = 0x20
    eltwise_tanh = 0x21
    eltwise_elu = 0x22
    eltwise_square = 0x23
    eltwise_abs = 0x24
    eltwise_sqrt = 0x25
    eltwise_linear = 0x26
    eltwise_soft_relu = 0x27
    eltwise_hardsigmoid = 0x28
    eltwise_logistic = 0x29
    eltwise_exp = 0x2A
    eltwise_gelu_tanh = 0x2B
    eltwise_swish = 0x2C
    eltwise_log = 0x2D
    eltwise_clip = 0x2E
    eltwise_clip_v2 = 0x2F
    eltwise_pow = 0x30
    eltwise_gelu_erf = 0x31
    pooling_max = 0x1FF
    pooling_avg_include_padding = 0x2FF
    pooling_avg_exclude_padding = 0x3FF
    binary_add = 0x1FFF0
    binary_mul = 0x1FFF1
    binary_max = 0x1FFF2
    binary_min = 0x1FFF3
    binary_div = 0x1FFF4
    binary_sub = 0x1FFF5
    reduction_max = 0x2FFF2
    reduction_min = 0x2FFF3
    reduction_sum = 0x2FFF4
    reduction_mul = 0x2FFF5
    reduction_mean = 0x2FFF6
    softmax_accurate = 0x30000
    softmax_log = 0x30001


PRIMITIVE_KINDS = {4: "sum", 5: "convolution", 7: "eltwise", 13: "binary"}
"""dnnl_primitive_kind_t of the post-op kinds (dnnl_post_ops_get_kind)."""


class NormFlags:
    """dnnl_normalization_flags_t."""

    none = 0x0
    use_global_stats = 0x1
    use_scale = 0x2
    use_shift = 0x4


class ScratchpadMode:
    """dnnl_scratchpad_mode_t."""

    library = 0
    user = 1


class Query:
    """dnnl_query_t (the members byoc-dnnl uses)."""

    impl_info_str = 8
    src_md = 129
    weights_md = 131
    dst_md = 133
    scratchpad_md = 136
    exec_arg_md = 255
    ndims_s32 = 256
    dims = 257
    data_type = 258
    format_kind = 262
    strides = 14
    inner_nblks_s32 = 263


class Arg:
    """DNNL_ARG_* execution argument indices."""

    src = 1
    src_1 = 2
    dst = 17
    weights = 33
    bias = 41
    mean = 49
    variance = 50
    scale = 51
    shift = 52
    scratchpad = 80
    multiple_src = 1024
    attr_post_op_dw = 16384
    attr_multiple_post_op_base = 32768

    @staticmethod
    def post_op(index: int) -> int:
        """DNNL_ARG_ATTR_MULTIPLE_POST_OP(index): base of post-op ``index``'s args."""
        return Arg.attr_multiple_post_op_base * (index + 1)


# --------------------------------------------------------------------------
# structs and handle types
# --------------------------------------------------------------------------

Dims = ctypes.c_int64 * MAX_NDIMS
"""dnnl_dims_t."""
handle = ctypes.c_void_p
"""Every opaque oneDNN handle (engine, stream, memory desc, memory, pd...)."""


class ExecArg(ctypes.Structure):
    """dnnl_exec_arg_t: ``{int arg; dnnl_memory_t memory;}``."""

    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


class Version(ctypes.Structure):
    """dnnl_version_t."""

    _fields_ = [
        ("major", ctypes.c_int),
        ("minor", ctypes.c_int),
        ("patch", ctypes.c_int),
        ("hash", ctypes.c_char_p),
        ("cpu_runtime", ctypes.c_uint),
        ("gpu_runtime", ctypes.c_uint),
    ]


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


class DnnlError(byoc.BackendError):
    """A oneDNN call returned a non-success status.

    Fields: ``function`` (the C function), ``status`` (the dnnl_status_t code)
    and ``status_name``.
    """

    function: str
    status: int
    status_name: str


class DnnlUnavailable(byoc.BackendError):
    """The library cannot be found or loaded; the message says how to fix it."""


def check(status: int, func: Any, args: tuple[Any, ...]) -> int:
    """``errcheck`` of every status-returning function: raise on failure."""
    if status != 0:
        name = STATUS_NAMES.get(status, "unknown status")
        fname = getattr(func, "__name__", str(func))
        raise DnnlError(
            f"oneDNN {fname} failed: {name} (dnnl_status_t {status})",
            backend="dnnl",
            function=fname,
            status=status,
            status_name=name,
        )
    return status


def refuse(why: str, function: str) -> DnnlError:
    """An ``unimplemented`` error for a fused form oneDNN accepts but runs
    badly (a reference kernel, wrong results): the lowering's fallback then
    runs the ops apart."""
    return DnnlError(
        why, backend="dnnl", function=function, status=3, status_name="unimplemented"
    )


# --------------------------------------------------------------------------
# declarations: name -> (restype, argtypes); restype None means dnnl_status_t
# --------------------------------------------------------------------------

_p = ctypes.c_void_p
_pp = ctypes.POINTER(ctypes.c_void_p)
_i = ctypes.c_int
_f = ctypes.c_float
_dims = ctypes.POINTER(ctypes.c_int64)
_status = None

_DECLS: dict[str, tuple[Any, list[Any]]] = {
    "dnnl_version": (ctypes.POINTER(Version), []),
    "dnnl_engine_create": (_status, [_pp, _i, ctypes.c_size_t]),
    "dnnl_engine_destroy": (_status, [_p]),
    "dnnl_stream_create": (_status, [_pp, _p, ctypes.c_uint]),
    "dnnl_stream_wait": (_status, [_p]),
    "dnnl_stream_destroy": (_status, [_p]),
    "dnnl_memory_desc_create_with_tag": (_status, [_pp, _i, _dims, _i, _i]),
    "dnnl_memory_desc_create_with_strides": (_status, [_pp, _i, _dims, _i, _dims]),
    "dnnl_memory_desc_clone": (_status, [_pp, _p]),
    "dnnl_memory_desc_reshape": (_status, [_pp, _p, _i, _dims]),
    "dnnl_memory_desc_permute_axes": (_status, [_pp, _p, ctypes.POINTER(_i)]),
    "dnnl_memory_desc_destroy": (_status, [_p]),
    "dnnl_memory_desc_query": (_status, [_p, _i, _p]),
    "dnnl_memory_desc_get_size": (ctypes.c_size_t, [_p]),
    "dnnl_memory_desc_equal": (_i, [_p, _p]),
    "dnnl_memory_create": (_status, [_pp, _p, _p, _p]),
    "dnnl_memory_destroy": (_status, [_p]),
    "dnnl_memory_set_data_handle": (_status, [_p, _p]),
    "dnnl_memory_get_data_handle": (_status, [_p, _pp]),
    "dnnl_primitive_desc_query": (_status, [_p, _i, _i, _p]),
    "dnnl_primitive_desc_query_md": (_p, [_p, _i, _i]),
    "dnnl_primitive_desc_destroy": (_status, [_p]),
    "dnnl_primitive_desc_clone": (_status, [_pp, _p]),
    # Unchecked: returns last_impl_reached at the end of the list.
    "dnnl_primitive_desc_next_impl": (_i, [_p]),
    "dnnl_primitive_create": (_status, [_pp, _p]),
    "dnnl_primitive_execute": (_status, [_p, _p, _i, ctypes.POINTER(ExecArg)]),
    "dnnl_primitive_destroy": (_status, [_p]),
    "dnnl_primitive_attr_create": (_status, [_pp]),
    "dnnl_primitive_attr_destroy": (_status, [_p]),
    "dnnl_primitive_attr_set_scratchpad_mode": (_status, [_p, _i]),
    "dnnl_primitive_attr_set_post_ops": (_status, [_p, _p]),
    "dnnl_post_ops_create": (_status, [_pp]),
    "dnnl_post_ops_destroy": (_status, [_p]),
    "dnnl_post_ops_append_eltwise": (_status, [_p, _i, _f, _f]),
    "dnnl_post_ops_append_sum": (_status, [_p, _f, ctypes.c_int32, _i]),
    "dnnl_post_ops_append_binary": (_status, [_p, _i, _p]),
    "dnnl_post_ops_append_dw": (
        _status,
        [_p, _i, _i, _i, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64],
    ),
    "dnnl_primitive_desc_get_attr": (_status, [_p, _pp]),
    "dnnl_primitive_attr_get_post_ops": (_status, [_p, _pp]),
    "dnnl_post_ops_len": (_i, [_p]),
    "dnnl_post_ops_get_kind": (_i, [_p, _i]),
    "dnnl_convolution_forward_primitive_desc_create": (
        _status,
        [_pp, _p, _i, _i, _p, _p, _p, _p, _dims, _dims, _dims, _dims, _p],
    ),
    "dnnl_deconvolution_forward_primitive_desc_create": (
        _status,
        [_pp, _p, _i, _i, _p, _p, _p, _p, _dims, _dims, _dims, _dims, _p],
    ),
    "dnnl_matmul_primitive_desc_create": (_status, [_pp, _p, _p, _p, _p, _p, _p]),
    "dnnl_inner_product_forward_primitive_desc_create": (
        _status,
        [_pp, _p, _i, _p, _p, _p, _p, _p],
    ),
    "dnnl_eltwise_forward_primitive_desc_create": (
        _status,
        [_pp, _p, _i, _i, _p, _p, _f, _f, _p],
    ),
    "dnnl_binary_primitive_desc_create": (_status, [_pp, _p, _i, _p, _p, _p, _p]),
    "dnnl_pooling_forward_primitive_desc_create": (
        _status,
        [_pp, _p, _i, _i, _p, _p, _dims, _dims, _dims, _dims, _dims, _p],
    ),
    "dnnl_batch_normalization_forward_primitive_desc_create": (
        _status,
        [_pp, _p, _i, _p, _p, _f, ctypes.c_uint, _p],
    ),
    "dnnl_layer_normalization_forward_primitive_desc_create": (
        _status,
        [_pp, _p, _i, _p, _p, _p, _f, ctypes.c_uint, _p],
    ),
    "dnnl_softmax_forward_primitive_desc_create": (
        _status,
        [_pp, _p, _i, _i, _p, _p, _i, _p],
    ),
    "dnnl_concat_primitive_desc_create": (_status, [_pp, _p, _p, _i, _i, _pp, _p]),
    "dnnl_reorder_primitive_desc_create": (_status, [_pp, _p, _p, _p, _p, _p]),
    "dnnl_reduction_primitive_desc_create": (
        _status,
        [_pp, _p, _i, _p, _p, _f, _f, _p],
    ),
    "dnnl_set_verbose": (_status, [_i]),
}


class Library:
    """The loaded library: one attribute per declared function, plus OpenMP.

    ``lib.primitive_execute`` is ``dnnl_primitive_execute`` and so on (the
    ``dnnl_`` prefix dropped), each declared from ``_DECLS``.
    """

    def __getattr__(self, name: str) -> Any:  # declared functions, for type checkers
        raise AttributeError(f"libdnnl binding has no function {name!r}")

    def __init__(self, path: str) -> None:
        self.path = path
        self.dll = ctypes.CDLL(path)
        for name, (restype, argtypes) in _DECLS.items():
            fn = getattr(self.dll, name)
            fn.argtypes = argtypes
            if restype is _status:
                fn.restype = ctypes.c_int
                fn.errcheck = check
            else:
                fn.restype = restype
            setattr(self, name.removeprefix("dnnl_"), fn)
        v = self.version_info()
        self.runtime = v.cpu_runtime
        # libdnnl links the system libgomp; CDLL by soname returns that same copy.
        self.gomp = ctypes.CDLL("libgomp.so.1")
        self.omp_set_num_threads = self.gomp.omp_set_num_threads
        self.omp_set_num_threads.argtypes = [ctypes.c_int]
        self.omp_set_num_threads.restype = None
        self.omp_get_max_threads = self.gomp.omp_get_max_threads
        self.omp_get_max_threads.argtypes = []
        self.omp_get_max_threads.restype = ctypes.c_int
        # The team size OpenMP starts with (OMP_NUM_THREADS, else one per core);
        # engines without a ``threads`` option restore it on every run, since an
        # engine with the option changes the calling thread's setting.
        self.default_threads = int(self.omp_get_max_threads())

    def unchecked(self, name: str) -> Any:
        """Function ``name`` returning its raw status, without ``errcheck``.

        For the run path, which tests the status inline and calls :func:`check`
        only on failure: a Python ``errcheck`` call per primitive costs more.
        """
        restype, argtypes = _DECLS[name]
        if restype is not _status:
            raise ValueError(f"{name} does not return a dnnl_status_t")
        fn = self.dll[name]  # a new function object: the checked one stays as is
        fn.argtypes = argtypes
        fn.restype = ctypes.c_int
        return fn

    def version_info(self) -> Version:
        """``dnnl_version()``: major, minor, patch, hash, cpu_runtime."""
        return self.version().contents

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        """(major, minor, patch) of the loaded library."""
        v = self.version_info()
        return (v.major, v.minor, v.patch)


_LOCK = threading.Lock()
_LOADED: Library | None = None
_REASON: str | None = None


def find_library() -> tuple[str | None, str]:
    """Path of ``libdnnl.so.3`` and how it was found, or (None, why not)."""
    explicit = os.environ.get(ENV_LIBRARY)
    if explicit:
        if Path(explicit).is_file():
            return explicit, f"${ENV_LIBRARY}"
        return None, f"{ENV_LIBRARY}={explicit} does not name a file"
    try:
        dist = md.distribution(DISTRIBUTION)
    except md.PackageNotFoundError:
        return None, f"{SONAME} not found: {INSTALL_HINT}"
    # The wheel installs the library into <prefix>/lib, outside site-packages,
    # so only the distribution's file list knows where it is.
    for f in dist.files or ():
        if f.name == SONAME:
            path = Path(str(dist.locate_file(f))).resolve()
            if path.is_file():
                return str(path), f"{DISTRIBUTION} {dist.version}"
            return None, (
                f"{DISTRIBUTION} lists {SONAME} at {path}, which is missing; "
                f"reinstall it ({INSTALL_HINT})"
            )
    return None, f"{DISTRIBUTION} {dist.version} has no {SONAME}; {INSTALL_HINT}"


def _load() -> tuple[Library | None, str | None]:
    path, how = find_library()
    if path is None:
        return None, how
    try:
        library = Library(path)
    except OSError as exc:
        return None, f"{SONAME} from {how} failed to load ({exc}); {INSTALL_HINT}"
    except AttributeError as exc:
        return None, f"{path} lacks a oneDNN function ({exc}); {INSTALL_HINT}"
    major, minor, patch = library.version_tuple
    if (major, minor) != VERSION:
        return None, (
            f"{path} is oneDNN {major}.{minor}.{patch}; byoc-dnnl is bound to "
            f"{VERSION[0]}.{VERSION[1]}: pip install {DISTRIBUTION}==2023.2.0"
        )
    if library.runtime != RUNTIME_OMP:
        return None, (
            f"{path} uses CPU runtime {library.runtime}; byoc-dnnl needs the "
            f"OpenMP build ({DISTRIBUTION})"
        )
    return library, None


def unavailable_reason() -> str | None:
    """None when the library loads, else the exact reason (cached)."""
    global _LOADED, _REASON
    with _LOCK:
        if _LOADED is None and _REASON is None:
            _LOADED, _REASON = _load()
        return _REASON


def lib() -> Library:
    """The loaded library; raises :class:`DnnlUnavailable` with the reason."""
    if _LOADED is not None:
        return _LOADED
    reason = unavailable_reason()
    if reason is not None or _LOADED is None:
        raise DnnlUnavailable(f"dnnl is unavailable: {reason}", backend="dnnl")
    return _LOADED


def dims(values: tuple[int, ...] | list[int]) -> Any:
    """A dnnl_dims_t holding ``values`` (rest zero)."""
    return Dims(*values)
