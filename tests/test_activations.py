"""Swish, sigmoid and ReLU6 against NumPy formulas and central differences."""

import warnings

import numpy as np
import pytest
from gradcheck import assert_gradients
from hypothesis import given
from hypothesis import strategies as st
from tolerances import ELEMENTWISE_F32, ELEMENTWISE_F64, GRADIENT

from tinyeffnet.kernels.activations import (
    relu6_backward,
    relu6_forward,
    sigmoid_backward,
    sigmoid_forward,
    swish_backward,
    swish_forward,
)

KINK_MARGIN = 1e-3

# (N, H, W, C): batch 1 and more, one channel and more, odd and even spatial sizes.
nhwc_shapes = st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.integers(1, 4))
seeds = st.integers(0, 2**32 - 1)

REFERENCES = {
    "swish": (swish_forward, lambda x: x / (1.0 + np.exp(-x))),
    "sigmoid": (sigmoid_forward, lambda x: 1.0 / (1.0 + np.exp(-x))),
    "relu6": (relu6_forward, lambda x: np.clip(x, 0.0, 6.0)),
}


@pytest.mark.parametrize("dtype, tol", [(np.float64, ELEMENTWISE_F64), (np.float32, ELEMENTWISE_F32)])
@pytest.mark.parametrize("kernel, reference", REFERENCES.values(), ids=REFERENCES.keys())
def test_forward_matches_numpy(kernel, reference, dtype, tol):
    x = np.random.default_rng(0).uniform(-20.0, 20.0, (2, 5, 4, 3)).astype(dtype)
    y = kernel(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, reference(x.astype(np.float64)), **tol)


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 1, 3, 2, 5)])
def test_any_shape(shape):
    x = np.random.default_rng(1).normal(size=shape)
    np.testing.assert_allclose(relu6_forward(x), np.clip(x, 0.0, 6.0))
    assert swish_backward(x, np.ones_like(x)).shape == shape


def test_large_inputs_do_not_overflow():
    x = np.array([-1000.0, -50.0, 50.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sigmoid_forward(x)
        np.testing.assert_allclose(s, [0.0, np.exp(-50.0), 1.0, 1.0], rtol=1e-14)
        np.testing.assert_allclose(swish_forward(x), [0.0, -50.0 * np.exp(-50.0), 50.0, 1000.0], rtol=1e-14)
        np.testing.assert_allclose(swish_backward(x, np.ones_like(x)), [0.0, 0.0, 1.0, 1.0], atol=1e-18)
        np.testing.assert_array_equal(sigmoid_backward(s, np.ones_like(x)), [0.0, np.exp(-50.0), 0.0, 0.0])


def random_x_dy(shape, seed, low, high):
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, shape), rng.normal(size=shape)


@given(nhwc_shapes, seeds)
def test_swish_backward_matches_central_differences(shape, seed):
    x, dy = random_x_dy(shape, seed, -6.0, 6.0)
    assert_gradients(swish_forward, dict(x=x), dict(x=swish_backward(x, dy)), dy, **GRADIENT)


@given(nhwc_shapes, seeds)
def test_sigmoid_backward_from_its_output_matches_central_differences(shape, seed):
    x, dy = random_x_dy(shape, seed, -6.0, 6.0)
    dx = sigmoid_backward(sigmoid_forward(x), dy)
    assert_gradients(sigmoid_forward, dict(x=x), dict(x=dx), dy, **GRADIENT)


@given(nhwc_shapes, seeds)
def test_relu6_backward_matches_central_differences(shape, seed):
    x, dy = random_x_dy(shape, seed, -2.0, 8.0)
    # Central differences straddling a kink (0 or 6) would average the two one-sided slopes.
    x[np.abs(x) < KINK_MARGIN] = 0.5
    x[np.abs(x - 6.0) < KINK_MARGIN] = 5.5
    assert_gradients(relu6_forward, dict(x=x), dict(x=relu6_backward(x, dy)), dy, **GRADIENT)


def test_relu6_gradient_is_zero_at_the_kinks():
    x = np.array([-1.0, 0.0, 3.0, 6.0, 7.0])
    np.testing.assert_array_equal(relu6_backward(x, np.ones_like(x)), [0.0, 0.0, 1.0, 0.0, 0.0])


def test_bad_input_is_a_clear_error():
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match="x must be a numpy array, got list"):
        swish_forward([1.0, 2.0])
    with pytest.raises(TypeError, match="x must be float32 or float64, got int64"):
        relu6_forward(np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="dy has dtype float32 but the other inputs are float64"):
        swish_backward(x, x.astype(np.float32))
    with pytest.raises(ValueError, match=r"dy has shape \(3, 2\), expected \(2, 3\)"):
        sigmoid_backward(x, np.zeros((3, 2)))
