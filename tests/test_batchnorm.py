"""Batch norm against a NumPy reference (np.mean / np.var) and against central differences."""

import numba
import numpy as np
import pytest
from gradcheck import assert_gradients
from hypothesis import given
from hypothesis import strategies as st
from tolerances import GRADIENT, LONG_SUMS_F32, LONG_SUMS_F64

from tinyeffnet.kernels.batchnorm import (
    batchnorm_eval_backward,
    batchnorm_eval_forward,
    batchnorm_train_backward,
    batchnorm_train_forward,
    update_running_stats,
)

EPS = 1e-3

# (N, H, W, C): batch 1 and more, one channel and more, odd and even spatial sizes.
nhwc_shapes = st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.integers(1, 4))
seeds = st.integers(0, 2**32 - 1)


def random_inputs(shape, seed, dtype=np.float64):
    """x (shape), gamma, beta, a positive running var and a running mean (C,), dy (shape)."""
    rng = np.random.default_rng(seed)
    channels = shape[-1]
    arrays = dict(
        x=rng.normal(0.5, 2.0, shape),
        gamma=rng.normal(1.0, 0.5, channels),
        beta=rng.normal(0.0, 1.0, channels),
        mean=rng.normal(0.0, 1.0, channels),
        var=rng.uniform(0.5, 2.0, channels),
        dy=rng.normal(size=shape),
    )
    return {name: a.astype(dtype) for name, a in arrays.items()}


def reference_normalize(x, gamma, beta, mean, var):
    return gamma * (x - mean) / np.sqrt(var + EPS) + beta


@pytest.mark.parametrize("dtype, tol", [(np.float64, LONG_SUMS_F64), (np.float32, LONG_SUMS_F32)])
def test_train_forward_matches_numpy(dtype, tol):
    a = random_inputs((2, 5, 4, 3), seed=0, dtype=dtype)
    y, mean, var = batchnorm_train_forward(a["x"], a["gamma"], a["beta"], EPS)
    x64, gamma64, beta64 = (a[k].astype(np.float64) for k in ("x", "gamma", "beta"))
    want_mean, want_var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    assert y.dtype == mean.dtype == var.dtype == dtype
    np.testing.assert_allclose(mean, want_mean, **tol)
    np.testing.assert_allclose(var, want_var, **tol)
    np.testing.assert_allclose(y, reference_normalize(x64, gamma64, beta64, want_mean, want_var), **tol)


@pytest.mark.parametrize("dtype, tol", [(np.float64, LONG_SUMS_F64), (np.float32, LONG_SUMS_F32)])
def test_eval_forward_matches_numpy(dtype, tol):
    a = random_inputs((3, 4, 5, 2), seed=1, dtype=dtype)
    y = batchnorm_eval_forward(a["x"], a["gamma"], a["beta"], a["mean"], a["var"], EPS)
    want = reference_normalize(*(a[k].astype(np.float64) for k in ("x", "gamma", "beta", "mean", "var")))
    assert y.dtype == dtype
    np.testing.assert_allclose(y, want, **tol)


def test_any_leading_shape_is_flattened_to_rows():
    a = random_inputs((6, 3), seed=2)
    y, mean, var = batchnorm_train_forward(a["x"], a["gamma"], a["beta"], EPS)
    np.testing.assert_allclose(mean, a["x"].mean(axis=0), **LONG_SUMS_F64)
    np.testing.assert_allclose(var, a["x"].var(axis=0), **LONG_SUMS_F64)


def test_float32_statistics_are_accumulated_in_float64():
    # 131072 values per channel around 100: a float32 running sum would be off by far more than this.
    x = np.random.default_rng(3).normal(100.0, 1.0, (32, 64, 64, 2)).astype(np.float32)
    _, mean, var = batchnorm_train_forward(x, np.ones(2, np.float32), np.zeros(2, np.float32), EPS)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 1, 2)), rtol=1e-7)
    np.testing.assert_allclose(var, x64.var(axis=(0, 1, 2)), rtol=1e-6)


def test_results_do_not_depend_on_the_thread_count():
    a = random_inputs((4, 7, 7, 5), seed=4)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = batchnorm_train_forward(a["x"], a["gamma"], a["beta"], EPS)
        single_grads = batchnorm_train_backward(a["x"], a["gamma"], single[1], single[2], EPS, a["dy"])
    finally:
        numba.set_num_threads(threads)
    many = batchnorm_train_forward(a["x"], a["gamma"], a["beta"], EPS)
    many_grads = batchnorm_train_backward(a["x"], a["gamma"], many[1], many[2], EPS, a["dy"])
    for one, other in zip(single + single_grads, many + many_grads):
        np.testing.assert_array_equal(one, other)


@given(nhwc_shapes, seeds)
def test_train_backward_matches_central_differences(shape, seed):
    a = random_inputs(shape, seed)
    _, mean, var = batchnorm_train_forward(a["x"], a["gamma"], a["beta"], EPS)
    dx, dgamma, dbeta = batchnorm_train_backward(a["x"], a["gamma"], mean, var, EPS, a["dy"])

    # The finite differences rerun the training forward, which recomputes the batch mean and variance
    # from the perturbed x: so dx is checked including the coupling through the batch statistics.
    def forward(x, gamma, beta):
        return batchnorm_train_forward(x, gamma, beta, EPS)[0]

    inputs = dict(x=a["x"], gamma=a["gamma"], beta=a["beta"])
    assert_gradients(forward, inputs, dict(x=dx, gamma=dgamma, beta=dbeta), a["dy"], **GRADIENT)


@given(nhwc_shapes, seeds)
def test_eval_backward_matches_central_differences(shape, seed):
    a = random_inputs(shape, seed)
    dx, dgamma, dbeta = batchnorm_eval_backward(a["x"], a["gamma"], a["mean"], a["var"], EPS, a["dy"])

    def forward(x, gamma, beta):
        return batchnorm_eval_forward(x, gamma, beta, a["mean"], a["var"], EPS)

    inputs = dict(x=a["x"], gamma=a["gamma"], beta=a["beta"])
    assert_gradients(forward, inputs, dict(x=dx, gamma=dgamma, beta=dbeta), a["dy"], **GRADIENT)


def test_update_running_stats_exact_values():
    running_mean, running_var = np.array([0.0, 1.0]), np.array([1.0, 2.0])
    mean, var = np.array([1.0, 3.0]), np.array([3.0, 6.0])
    new_mean, new_var = update_running_stats(running_mean, running_var, mean, var, count=4, momentum=0.9)
    # mean: 0.9·0 + 0.1·1 = 0.1 and 0.9·1 + 0.1·3 = 1.2
    # var, unbiased 3·4/3 = 4 and 6·4/3 = 8: 0.9·1 + 0.1·4 = 1.3 and 0.9·2 + 0.1·8 = 2.6
    np.testing.assert_allclose(new_mean, [0.1, 1.2], rtol=1e-15)
    np.testing.assert_allclose(new_var, [1.3, 2.6], rtol=1e-15)
    np.testing.assert_array_equal(running_mean, [0.0, 1.0])
    np.testing.assert_array_equal(running_var, [1.0, 2.0])


def test_update_running_stats_with_one_value_per_channel_uses_the_biased_variance():
    _, new_var = update_running_stats(np.zeros(1), np.ones(1), np.zeros(1), np.array([0.5]), count=1, momentum=0.5)
    np.testing.assert_allclose(new_var, [0.75], rtol=1e-15)


def test_update_running_stats_keeps_float32():
    ones = np.ones(3, np.float32)
    new_mean, new_var = update_running_stats(ones, ones, ones, ones, count=10, momentum=0.99)
    assert new_mean.dtype == new_var.dtype == np.float32


BAD_INPUTS = {
    "gamma of the wrong length": (
        lambda a: batchnorm_train_forward(a["x"], a["gamma"][:2], a["beta"], EPS),
        ValueError,
        r"gamma has shape \(2,\), expected \(3",
    ),
    "dtype mix": (
        lambda a: batchnorm_train_forward(a["x"], a["gamma"].astype(np.float32), a["beta"], EPS),
        TypeError,
        "gamma has dtype float32",
    ),
    "no channel axis": (
        lambda a: batchnorm_train_forward(a["x"][0, 0, 0], a["gamma"], a["beta"], EPS),
        ValueError,
        r"\(\.\.\., C\)",
    ),
    "integer x": (
        lambda a: batchnorm_train_forward(a["x"].astype(int), a["gamma"], a["beta"], EPS),
        TypeError,
        "x must be float32 or float64",
    ),
    "zero eps": (
        lambda a: batchnorm_train_forward(a["x"], a["gamma"], a["beta"], 0.0),
        ValueError,
        "eps must be positive",
    ),
    "var of the wrong length": (
        lambda a: batchnorm_eval_forward(a["x"], a["gamma"], a["beta"], a["mean"], a["var"][:1], EPS),
        ValueError,
        "var has shape",
    ),
    "dy of the wrong shape": (
        lambda a: batchnorm_train_backward(a["x"], a["gamma"], a["mean"], a["var"], EPS, a["dy"][:1]),
        ValueError,
        "dy has shape",
    ),
    "zero count": (
        lambda a: update_running_stats(a["mean"], a["var"], a["mean"], a["var"], 0, 0.9),
        ValueError,
        "count must be a positive integer",
    ),
    "momentum above one": (
        lambda a: update_running_stats(a["mean"], a["var"], a["mean"], a["var"], 8, 1.5),
        ValueError,
        r"momentum must be in \[0, 1\]",
    ),
}


@pytest.mark.parametrize("call, error, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call(random_inputs((2, 3, 3, 3), seed=5))
