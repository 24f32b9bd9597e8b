"""The vectorisable exp (kernels/fastexp.py) against np.exp, in ulps (units in the last place of e^x in
x's dtype), float64 and float32; its edge cases; that the tolerance is tight enough to catch a wrong
Taylor series; and that float32 stays float32 in a vectorised loop."""

import re
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import float32, njit

from tinyeffnet.kernels import fastexp

# Measured over dense grids: float64 within 0.88 ulp of the exact e^x, and np.exp within 0.72, so the two
# floats are at most 1 ulp apart; float32 (its series to degree 7) within 0.93 ulp of the exact value.
MAX_ULPS = 1
DTYPES = [np.float64, np.float32]


def compile_loop(exp):
    """A loop y[i] = exp(x[i]) over 1-D arrays: exp as the kernels use it (not cached, so it can be inspected)."""
    @njit
    def loop(x, y):
        for i in range(x.size):
            y[i] = exp(x[i])
    return loop


exp_loop = compile_loop(fastexp.exp)


def ulp_errors(x, loop=exp_loop):
    """|exp(x) − e^x| in ulps of e^x rounded to x's dtype, elementwise; 0 where they are equal (inf, 0) or
    both NaN. e^x is np.exp in float64: the reference for float64, and exact far below float32's ulp."""
    got = np.empty_like(x)
    loop(x, got)
    with np.errstate(over="ignore"):
        want = np.exp(x.astype(np.float64))
        rounded = want.astype(x.dtype)
    same = (got == rounded) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore"):
        return np.where(same, 0.0, np.abs(got - want) / np.spacing(rounded))


def finite_range(dtype):
    """The x (of dtype) for which e^x is neither 0 nor inf, from the smallest subnormal to the largest float."""
    info = np.finfo(dtype)
    return np.log(float(info.smallest_subnormal)), np.log(float(info.max))


def dense_grid(dtype):
    """10⁶ points over the finite range, and 10⁶ over [−2, 2], where r takes every value in [−ln2/2, ln2/2]."""
    grid = np.concatenate([np.linspace(*finite_range(dtype), 1_000_000), np.linspace(-2.0, 2.0, 1_000_000)])
    return grid.astype(dtype)


def any_float(dtype):
    """Any float of dtype (hypothesis favours the special ones: 0, ±inf, NaN, the extremes), or one in the
    finite range."""
    bits = np.finfo(dtype).bits
    low, high = (float(dtype(end)) for end in finite_range(dtype))
    return st.one_of(st.floats(width=bits), st.floats(low, high, width=bits))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_within_max_ulps_of_np_exp(dtype, data):
    x = np.array(data.draw(st.lists(any_float(dtype), min_size=1, max_size=64)), dtype)
    assert ulp_errors(x).max() <= MAX_ULPS


@pytest.mark.parametrize("dtype", DTYPES)
def test_within_max_ulps_of_np_exp_on_a_dense_grid(dtype):
    assert ulp_errors(dense_grid(dtype)).max() <= MAX_ULPS


@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_cases(dtype):
    info = np.finfo(dtype)
    tiny = [info.smallest_subnormal, info.smallest_normal, info.eps]
    # where e^x overflows, turns subnormal, and rounds to 0 (below half the smallest subnormal): the nearest
    # float of dtype and its neighbours
    limits = np.log([float(info.max), float(info.smallest_normal), float(info.smallest_subnormal)]) - [0, 0, np.log(2)]
    near = [np.nextafter(dtype(limit), dtype(toward)) for limit in limits for toward in (-np.inf, limit, np.inf)]
    x = np.array([0.0, -0.0, *tiny, *np.negative(tiny), *near, info.max, -info.max, np.inf, -np.inf, np.nan],
                 dtype)
    assert ulp_errors(x).max() <= MAX_ULPS
    y = np.empty_like(x)
    exp_loop(x, y)
    np.testing.assert_array_equal(y[:2], [1.0, 1.0])
    np.testing.assert_array_equal(y[-5:], [np.inf, 0.0, np.inf, 0.0, np.nan])


@pytest.mark.parametrize("dtype, series", [(np.float64, "HORNER_COEFFICIENTS"), (np.float32, "HORNER_COEFFICIENTS_F32")])
def test_the_tolerance_catches_the_series_cut_one_term_short(dtype, series):
    """The last Taylor term, r^13 / 13! ≤ 1.7·10⁻¹⁶ in float64 and r^7 / 7! ≤ 1.2·10⁻⁷ in float32: leaving it
    out must break the tolerance (measured: 2.7 ulp in float32)."""
    exp = fastexp.exp.py_func
    short_series = dict(exp.__globals__, **{series: getattr(fastexp, series)[1:]})
    short_exp = njit(types.FunctionType(exp.__code__, short_series), fastmath=fastexp.exp.targetoptions["fastmath"])
    assert ulp_errors(dense_grid(dtype), compile_loop(short_exp)).max() > MAX_ULPS


def test_float32_stays_float32_in_a_vectorised_loop():
    x = np.zeros(8, np.float32)
    exp_loop(x, np.empty_like(x))
    signature = next(s for s in exp_loop.signatures if s[0].dtype == float32)
    llvm_ir = exp_loop.inspect_llvm(signature)
    assert "double" not in llvm_ir                          # no promotion to float64 anywhere in the loop
    assert re.search(r"<\d+ x float>", llvm_ir)             # LLVM vectorised it: vectors of float32
