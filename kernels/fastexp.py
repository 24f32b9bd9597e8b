"""e^x for use inside ``numba.njit`` loops, written so that LLVM vectorises it.

Why: σ(u) = 1 / (1 + e^(−u)) is the costly part of swish. Inside a Numba loop ``math.exp`` is a call
to the C library's scalar exp, one element at a time (Numba vectorises it only with Intel's SVML
library), so a fused loop would crawl; NumPy's ``np.exp`` is vectorised but is a separate pass over the
array on one core. This ``exp`` is plain arithmetic, so the loop that calls it is vectorised and runs
on every core.

The math (Cody and Waite, *Software Manual for the Elementary Functions*, 1980):

    x = n · ln 2 + r              n = round(x / ln 2), an integer;  |r| ≤ ln 2 / 2
    e^x = 2^n · e^r
    e^r ≈ Σ_{k=0}^{d} r^k / k!    Taylor series, by Horner's rule, to degree d = 13 in float64 and 7 in
                                  float32: the first term left out, r^14 / 14! < 5·10⁻¹⁸ or r^8 / 8! <
                                  5.2·10⁻⁹, is below the dtype's rounding (1.1·10⁻¹⁶, 6·10⁻⁸)
    2^n                           a float built from its bits: exponent field n + bias, mantissa 0

r must be computed with care: n · ln 2 is close to x, so any error in it is an absolute error in r,
and so a relative error in e^x. ln 2 is split into ``LN2_HI``, which has only 15 significant bits (so
n · LN2_HI is exact, float32 included, for every n used here), and the small rest ``LN2_LO``.

Edges: above x ≈ 709.78 (float64; 88.72 in float32) e^x overflows to inf, below x ≈ −745.13 (−103.97)
it rounds to 0. x is clamped to one power of two beyond each of those limits, so the result there is
inf or 0 and n stays small. 2^n is built as 2^h · 2^(n−h) with h = ⌊n/2⌋: both factors are normal
floats even where 2^n itself is not, e^r · 2^h is exact, and the last multiplication rounds the result
once, subnormal or inf included. NaN gives NaN.

The arithmetic is in x's own dtype, constants included: float32 in, float32 throughout (twice the
vector width of float64). Numba inlines ``exp`` into the kernels that call it and caches them keyed on
their own source files only: after editing this file, delete ``kernels/__pycache__`` so they recompile.
Measured over dense grids of the whole range (``tests/test_fastexp.py``): at
most 0.88 ulp from the exact e^x in float64 (``np.exp``: 0.72), 0.93 ulp in float32.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit
from numba.extending import intrinsic
from numba.np.numpy_support import as_dtype

LN2 = math.log(2.0)
LN2_HI = 6.93145751953125e-1            # ln 2 rounded to 15 significant bits
LN2_LO = 1.42860682030941723212e-6      # ln 2 − LN2_HI
TAYLOR_DEGREE = 13                      # float64
TAYLOR_DEGREE_F32 = 7                   # float32: half the multiply-adds, half the time of a fused swish's σ
HORNER_COEFFICIENTS = tuple(1.0 / math.factorial(k) for k in range(TAYLOR_DEGREE, -1, -1))   # 1/13!, …, 1/0!
HORNER_COEFFICIENTS_F32 = HORNER_COEFFICIENTS[TAYLOR_DEGREE - TAYLOR_DEGREE_F32:]               # 1/7!, …, 1/0!


@intrinsic
def _pow2(typingctx, n):
    """2^n, of n's float type, for a float n holding an integer in the normal exponent range: the float
    whose exponent field is n + bias and whose mantissa is 0."""
    info = np.finfo(as_dtype(n))
    bits = ir.IntType(n.bitwidth)

    def codegen(context, builder, signature, args):
        exponent_field = builder.add(builder.fptosi(args[0], bits), bits(info.maxexp - 1))
        return builder.bitcast(builder.shl(exponent_field, bits(info.nmant)), args[0].type)

    return n(n), codegen


@njit(cache=True, fastmath={"contract"})
def exp(x):
    """e^x for a float32 or float64 scalar x, in x's dtype.

    ``fastmath={"contract"}`` lets LLVM fuse each multiply and add (Horner's rule is all of them) into one
    FMA instruction, rounded once instead of twice: fewer instructions, and no less accurate. Nothing
    else is relaxed: inf and NaN behave as IEEE 754 says."""
    real = type(x)
    info = np.finfo(real)
    lowest = real((info.minexp - info.nmant - 2) * LN2)    # e^x below half the smallest subnormal: 0
    highest = real((info.maxexp + 1) * LN2)                # e^x above the largest float: inf
    t = min(max(x, lowest), highest)
    n = np.floor(t * real(1.0 / LN2) + real(0.5))
    r = (t - n * real(LN2_HI)) - n * real(LN2_LO)
    e_r = real(0.0)
    if info.bits == 32:         # known when Numba compiles for the dtype: one of the two loops is left
        for c in HORNER_COEFFICIENTS_F32:
            e_r = e_r * r + real(c)
    else:
        for c in HORNER_COEFFICIENTS:
            e_r = e_r * r + real(c)
    h = np.floor(n * real(0.5))
    y = e_r * _pow2(h) * _pow2(n - h)
    return y if x == x else x                                        # NaN: its n is meaningless, keep x
