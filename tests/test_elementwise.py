"""Whole-tensor arithmetic (kernels/elementwise.py) against NumPy, in place where it says so."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyeffnet.kernels import _threads, elementwise


def test_add_returns_a_new_array():
    a, b = np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    out = elementwise.add(a, b)
    np.testing.assert_array_equal(out, np.arange(6.0).reshape(2, 3) + 1)
    assert out is not a and a[0, 0] == 0


def test_in_place_updates():
    total = np.arange(4, dtype=np.float32)
    elementwise.add_into(total, np.ones(4, np.float32))
    np.testing.assert_array_equal(total, [1, 2, 3, 4])
    elementwise.scale_into(total, 0.5)
    np.testing.assert_array_equal(total, [0.5, 1, 1.5, 2])
    assert elementwise.sum_of_squares(total) == pytest.approx(0.25 + 1 + 2.25 + 4)
    elementwise.fill(total, 0.0)
    assert not total.any()


def test_mismatched_arguments_are_rejected():
    with pytest.raises(ValueError, match="b has shape"):
        elementwise.add(np.zeros(3), np.zeros(4))
    with pytest.raises(TypeError, match="other inputs are float64"):
        elementwise.add_into(np.zeros(3), np.zeros(3, np.float32))


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_sum_of_squares_matches_a_float64_sum(shape, dtype, seed, scale):
    # The loop's SIMD lanes add in another order than a plain sum: equal to ~1e-15 relative, never a float32 sum.
    a = (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)
    expected = float(np.sum(a.astype(np.float64) ** 2))
    assert elementwise.sum_of_squares(a) == pytest.approx(expected, rel=1e-13, abs=0)


def test_sum_of_squares_accumulates_in_float64():
    # 2^24 + 1 ones: a float32 running sum stops at 2^24 (1 + 2^24 rounds back to 2^24), float64 does not.
    assert elementwise.sum_of_squares(np.ones(2**24 + 1, np.float32)) == 2**24 + 1


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16), min_parallel_size=st.sampled_from([0, 2**62]))
def test_add_into_matches_numpy(shape, dtype, seed, min_parallel_size):
    rng = np.random.default_rng(seed)
    total, a = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    expected = total + a
    with mock.patch.object(_threads, "MIN_PARALLEL_SIZE", min_parallel_size):     # the Numba loop, or NumPy's
        elementwise.add_into(total, a[..., ::-1].copy()[..., ::-1])  # a read array may be any layout …
    np.testing.assert_array_equal(total, expected)
    with pytest.raises(ValueError, match="C-contiguous"):
        elementwise.add_into(np.zeros((4, 4), dtype).T, np.zeros((4, 4), dtype))   # … the written one not
