"""Whole-tensor arithmetic (kernels/elementwise.py) against NumPy, in place where it says so."""

import numpy as np
import pytest

from tinyeffnet.kernels import elementwise


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
