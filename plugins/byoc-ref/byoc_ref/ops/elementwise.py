"""Elementwise ops: arithmetic, unary math, activations, comparisons and logic,
plus the pass-through ops (Cast, Clip, Where, Identity, Dropout).

Binary ops rely on numpy broadcasting, which is ONNX's multidirectional
broadcasting. Transcendental functions are evaluated in float64 and rounded
once to the input dtype (see :func:`._common.wide`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import byoc
from byoc.dtypes import DTypeError, dtype_name

from . import attr, op
from ._common import is_float, trunc_div, unidirectional, wide

# --------------------------------------------------------------------------
# erf (numpy has none; scipy is not a dependency)
# --------------------------------------------------------------------------

# W. J. Cody, "Rational Chebyshev approximations for the error function",
# Math. Comp. 23 (1969) 631-638; coefficients as in SPECFUN's CALERF (TOMS 715).
# Relative error below 1e-16 on each interval in exact arithmetic.
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
_ONE_OVER_SQRT_PI = 5.6418958354775628695e-1


def _exp_neg_square(y: np.ndarray) -> np.ndarray:
    # exp(-y*y) without the rounding error of forming y*y: split y into a part
    # with 4 fractional bits (exact square) and a small remainder (Cody's trick).
    hi = np.trunc(y * 16.0) / 16.0
    return np.exp(-hi * hi) * np.exp(-(y - hi) * (y + hi))


def _erfc_abs(y: np.ndarray) -> np.ndarray:
    """erfc(y) for ``y > 0.46875`` (Cody's second and third intervals)."""
    y = np.minimum(y, 30.0)  # erfc(30) underflows; keeps inf out of the algebra
    out = np.empty_like(y)
    mid = y <= 4.0
    ym = y[mid]
    num, den = _C[8] * ym, ym
    for i in range(7):
        num, den = (num + _C[i]) * ym, (den + _D[i]) * ym
    out[mid] = (num + _C[7]) / (den + _D[7])
    yb = y[~mid]
    z = 1.0 / (yb * yb)
    num, den = _P[5] * z, z
    for i in range(4):
        num, den = (num + _P[i]) * z, (den + _Q[i]) * z
    out[~mid] = (_ONE_OVER_SQRT_PI - z * (num + _P[4]) / (den + _Q[4])) / yb
    return out * _exp_neg_square(y)


def _erf_small(x: np.ndarray) -> np.ndarray:
    """erf(x) for ``|x| <= 0.46875`` (Cody's first interval)."""
    z = x * x
    num, den = _A[4] * z, z
    for i in range(3):
        num, den = (num + _A[i]) * z, (den + _B[i]) * z
    return x * (num + _A[3]) / (den + _B[3])


def erf(x: np.ndarray) -> np.ndarray:
    """The error function in float64, vectorised (NaN stays NaN)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(x)
    out = np.full_like(x, np.nan)
    small = y <= 0.46875
    out[small] = _erf_small(x[small])
    big = y > 0.46875
    out[big] = np.copysign(1.0 - _erfc_abs(y[big]), x[big])
    return out


def erfc(x: np.ndarray) -> np.ndarray:
    """The complementary error function ``1 - erf(x)`` without cancellation."""
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(x)
    out = np.full_like(x, np.nan)
    small = y <= 0.46875
    out[small] = 1.0 - _erf_small(x[small])
    big = y > 0.46875
    tail = _erfc_abs(y[big])
    out[big] = np.where(x[big] < 0, 2.0 - tail, tail)
    return out


# --------------------------------------------------------------------------
# arithmetic
# --------------------------------------------------------------------------


@op("Add")
def add(node, a, b):
    return (np.add(a, b),)


@op("Sub")
def sub(node, a, b):
    return (np.subtract(a, b),)


@op("Mul")
def mul(node, a, b):
    return (np.multiply(a, b),)


@op("Div")
def div(node, a, b):
    if is_float(a.dtype):
        return (np.divide(a, b),)
    # ONNX integer Div truncates toward zero (numpy's // floors).
    return (trunc_div(a, b),)


@op("Pow")
def pow_(node, x, y):
    """``x ** y`` with the dtype of ``x`` (ONNX lets the exponent type differ)."""
    if is_float(x.dtype):
        return (np.power(wide(x), wide(y)).astype(x.dtype),)
    if not is_float(y.dtype) and not (y < 0).any():
        return (np.power(x, y.astype(x.dtype)),)
    # An integer base with a float or negative exponent: real power, truncated.
    return (np.trunc(np.power(x.astype(np.float64), y.astype(np.float64)))
            .astype(x.dtype),)


@op("Mod")
def mod(node, a, b):
    """Remainder: with ``fmod=1`` it takes the dividend's sign (C fmod), else the
    divisor's (Python ``%``). The spec reserves fmod=0 for integers, but the ONNX
    conformance tests also run it on floats with Python semantics, as here.
    """
    if attr(node, "fmod", 0):
        return (np.fmod(a, b),)
    return (np.mod(a, b),)


@op("Max")
def max_(node, *xs):
    return (_fold(np.maximum, xs),)


@op("Min")
def min_(node, *xs):
    return (_fold(np.minimum, xs),)


@op("Sum")
def sum_(node, *xs):
    return (_fold(np.add, xs),)


@op("Mean")
def mean(node, *xs):
    total = _fold(np.add, xs)
    return (np.divide(total, total.dtype.type(len(xs))).astype(total.dtype),)


def _fold(fn: Callable, xs: tuple[np.ndarray, ...]) -> np.ndarray:
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return np.array(out, copy=len(xs) == 1)


# --------------------------------------------------------------------------
# unary math
# --------------------------------------------------------------------------


def _float_unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable:
    def kernel(node, x):
        return (np.asarray(fn(wide(x))).astype(x.dtype),)

    kernel.__doc__ = f"``{fn.__name__}`` in float64, rounded to the input dtype."
    return kernel


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.logaddexp(0.0, x)


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def _gelu_erf(x):
    # 0.5 * x * (1 + erf(x / sqrt 2)) written with erfc so large negative x
    # keeps its (tiny) value instead of cancelling to zero.
    return 0.5 * x * erfc(-x / np.sqrt(2.0))


# Pure functions of one float tensor. Each registers as its own op below.
_FLOAT_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Sqrt": np.sqrt,
    "Exp": np.exp,
    "Log": np.log,
    "Erf": erf,
    "Tanh": np.tanh,
    "Sigmoid": _sigmoid,
    "Softplus": _softplus,
    "Softsign": lambda x: x / (1.0 + np.abs(x)),
    "Mish": lambda x: x * np.tanh(_softplus(x)),
    "Reciprocal": np.reciprocal,
    "Sin": np.sin,
    "Cos": np.cos,
    "Tan": np.tan,
    "Asin": np.arcsin,
    "Acos": np.arccos,
    "Atan": np.arctan,
    "Sinh": np.sinh,
    "Cosh": np.cosh,
    "Asinh": np.arcsinh,
    "Acosh": np.arccosh,
    "Atanh": np.arctanh,
}

for _name, _fn in _FLOAT_UNARY.items():
    op(_name)(_float_unary(_fn))


@op("Abs")
def abs_(node, x):
    return (np.abs(x),)


@op("Neg")
def neg(node, x):
    return (np.negative(x),)


@op("Sign")
def sign(node, x):
    return (np.sign(x),)


@op("Floor")
def floor(node, x):
    return (np.floor(x),)


@op("Ceil")
def ceil(node, x):
    return (np.ceil(x),)


@op("Round")
def round_(node, x):
    # ONNX rounds halves to even, as numpy does.
    return (np.round(x),)


@op("IsNaN")
def isnan(node, x):
    return (np.isnan(x),)


@op("IsInf")
def isinf(node, x):
    pos = attr(node, "detect_positive", 1)
    neg_ = attr(node, "detect_negative", 1)
    return (np.isinf(x) & (((x > 0) & bool(pos)) | ((x < 0) & bool(neg_))),)


# --------------------------------------------------------------------------
# activations with attributes
# --------------------------------------------------------------------------


@op("Relu")
def relu(node, x):
    return (np.maximum(x, x.dtype.type(0)),)


@op("LeakyRelu")
def leaky_relu(node, x):
    xw = wide(x)
    return (np.where(xw < 0, xw * attr(node, "alpha", 0.01), xw).astype(x.dtype),)


@op("PRelu")
def prelu(node, x, slope):
    xw = wide(x)
    slope = wide(unidirectional(slope, x.shape, "the slope"))
    return (np.where(xw < 0, xw * slope, xw).astype(x.dtype),)


@op("Elu")
def elu(node, x):
    xw = wide(x)
    alpha = attr(node, "alpha", 1.0)
    return (np.where(xw < 0, alpha * np.expm1(xw), xw).astype(x.dtype),)


@op("Celu")
def celu(node, x):
    xw = wide(x)
    alpha = attr(node, "alpha", 1.0)
    y = np.maximum(xw, 0.0) + np.minimum(0.0, alpha * np.expm1(xw / alpha))
    return (y.astype(x.dtype),)


@op("Selu")
def selu(node, x):
    xw = wide(x)
    alpha = attr(node, "alpha", 1.67326319217681884765625)
    gamma = attr(node, "gamma", 1.05070102214813232421875)
    y = gamma * np.where(xw > 0, xw, alpha * np.expm1(xw))
    return (y.astype(x.dtype),)


@op("ThresholdedRelu")
def thresholded_relu(node, x):
    xw = wide(x)
    return (np.where(xw > attr(node, "alpha", 1.0), xw, 0.0).astype(x.dtype),)


@op("HardSigmoid")
def hard_sigmoid(node, x):
    xw = wide(x)
    y = np.clip(attr(node, "alpha", 0.2) * xw + attr(node, "beta", 0.5), 0.0, 1.0)
    return (y.astype(x.dtype),)


@op("HardSwish")
def hard_swish(node, x):
    xw = wide(x)
    return ((xw * np.clip(xw / 6.0 + 0.5, 0.0, 1.0)).astype(x.dtype),)


def _gelu_check(info: byoc.NodeInfo) -> byoc.Support:
    approximate = attr(info, "approximate", "none")
    if approximate not in ("none", "tanh"):
        return byoc.Support.no(f"ref: Gelu approximate={approximate!r} not supported")
    return byoc.Support.yes()


@op("Gelu", check=_gelu_check)
def gelu(node, x):
    fn = _gelu_tanh if attr(node, "approximate", "none") == "tanh" else _gelu_erf
    return (fn(wide(x)).astype(x.dtype),)


@op("Clip")
def clip(node, x, lo=None, hi=None):
    """Clip to ``[min, max]``; bounds are inputs since opset 11, attributes before.

    ``max(x, min)`` then ``min(., max)``: when min > max every value becomes max,
    as the spec says.
    """
    if lo is None and "min" in node.attrs:
        lo = np.asarray(node.attrs["min"], dtype=x.dtype)
    if hi is None and "max" in node.attrs:
        hi = np.asarray(node.attrs["max"], dtype=x.dtype)
    y = x
    if lo is not None:
        y = np.maximum(y, lo.astype(x.dtype))
    if hi is not None:
        y = np.minimum(y, hi.astype(x.dtype))
    return (y,)


# --------------------------------------------------------------------------
# comparisons and logic
# --------------------------------------------------------------------------


@op("Equal")
def equal(node, a, b):
    return (np.equal(a, b),)


@op("Less")
def less(node, a, b):
    return (np.less(a, b),)


@op("LessOrEqual")
def less_equal(node, a, b):
    return (np.less_equal(a, b),)


@op("Greater")
def greater(node, a, b):
    return (np.greater(a, b),)


@op("GreaterOrEqual")
def greater_equal(node, a, b):
    return (np.greater_equal(a, b),)


@op("Not")
def not_(node, x):
    return (np.logical_not(x),)


@op("And")
def and_(node, a, b):
    return (np.logical_and(a, b),)


@op("Or")
def or_(node, a, b):
    return (np.logical_or(a, b),)


@op("Xor")
def xor(node, a, b):
    return (np.logical_xor(a, b),)


@op("BitwiseAnd")
def bitwise_and(node, a, b):
    return (np.bitwise_and(a, b),)


@op("BitwiseOr")
def bitwise_or(node, a, b):
    return (np.bitwise_or(a, b),)


@op("BitwiseXor")
def bitwise_xor(node, a, b):
    return (np.bitwise_xor(a, b),)


@op("BitwiseNot")
def bitwise_not(node, x):
    return (np.invert(x),)


@op("BitShift")
def bit_shift(node, x, y):
    if attr(node, "direction") == "LEFT":
        return (np.left_shift(x, y),)
    return (np.right_shift(x, y),)


@op("Where")
def where(node, cond, x, y):
    return (np.where(cond, x, y),)


# --------------------------------------------------------------------------
# type and pass-through
# --------------------------------------------------------------------------


def _cast_check(info: byoc.NodeInfo) -> byoc.Support:
    to = attr(info, "to")
    try:
        dtype_name(to)
    except DTypeError:
        return byoc.Support.no(f"ref: Cast to ONNX element type {to} not supported")
    return byoc.Support.yes()


@op("Cast", check=_cast_check)
def cast(node, x):
    # Float to bool is "nonzero", float to int truncates toward zero, as ONNX.
    return (x.astype(dtype_name(attr(node, "to"))),)


@op("CastLike")
def cast_like(node, x, like):
    return (x.astype(like.dtype),)


@op("Identity")
def identity(node, x):
    return (x,)


def _dropout_check(info: byoc.NodeInfo) -> byoc.Support:
    """Inference Dropout is the identity; training mode is random, so refuse it.

    ``training_mode`` (opset 12+ input) must be absent or a constant false, or
    a constant true with a constant ratio of 0 (then nothing is dropped).
    """
    if attr(info, "training_mode", 0):
        return byoc.Support.no("ref: Dropout training_mode=1 not supported")
    if len(info.inputs) > 2 and info.inputs[2] is not None:
        training = info.consts.get(2)
        if training is None:
            return byoc.Support.no("ref: Dropout training_mode given at run time "
                                   "not supported")
        if bool(np.asarray(training).reshape(-1)[0]):
            ratio = info.consts.get(1) if len(info.inputs) > 1 else None
            if info.inputs[1] is None or ratio is None or float(ratio) != 0.0:
                return byoc.Support.no("ref: Dropout in training mode (random) not "
                                       "supported")
    return byoc.Support.yes()


@op("Dropout", check=_dropout_check)
def dropout(node, x, ratio=None, training_mode=None):
    outs = (x, np.ones(x.shape, dtype=np.bool_))
    return outs[: max(node.num_outputs, 1)]


@op("Shrink")
def shrink(node, x):
    lambd, bias = attr(node, "lambd", 0.5), attr(node, "bias", 0.0)
    xw = wide(x) if is_float(x.dtype) else x.astype(np.float64)
    y = np.where(xw < -lambd, xw + bias, np.where(xw > lambd, xw - bias, 0.0))
    return (y.astype(x.dtype),)
