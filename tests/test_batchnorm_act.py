"""Fused batch norm + activation against the reference kernels (batchnorm.py then activations.py) and
against central differences."""

import numba
import numpy as np
import pytest
from gradcheck import assert_gradients
from hypothesis import assume, given
from hypothesis import strategies as st
from tolerances import GRADIENT, LONG_SUMS_F32, LONG_SUMS_F64
from test_batchnorm import EPS, nhwc_shapes, random_inputs, seeds

from tinyeffnet.kernels import activations
from tinyeffnet.kernels.batchnorm import (batchnorm_eval_forward, batchnorm_train_backward,
                                          batchnorm_train_forward)
from tinyeffnet.kernels.batchnorm_act import (batchnorm_act_eval_forward, batchnorm_act_train_backward,
                                              batchnorm_act_train_forward)

KINK_MARGIN = 1e-3          # relu6 has no derivative at 0 and 6: finite differences need u away from them

# The reference: the activation's own forward and backward, applied after the unfused batch norm.
REFERENCE = {
    None: (lambda u: u, lambda u, dz: dz),
    "swish": (activations.swish_forward, activations.swish_backward),
    "relu6": (activations.relu6_forward, activations.relu6_backward),
}
ACTIVATIONS = list(REFERENCE)
activation_names = st.sampled_from(ACTIVATIONS)


def reference_train(a, activation):
    """z, mean, var and the backward (dx, dgamma, dbeta) for dz = a["dy"], composed from the reference kernels."""
    act_forward, act_backward = REFERENCE[activation]
    u, mean, var = batchnorm_train_forward(a["x"], a["gamma"], a["beta"], EPS)
    du = act_backward(u, a["dy"])
    return act_forward(u), mean, var, batchnorm_train_backward(a["x"], a["gamma"], mean, var, EPS, du)


def fused_train(a, activation):
    z, mean, var = batchnorm_act_train_forward(a["x"], a["gamma"], a["beta"], EPS, activation)
    grads = batchnorm_act_train_backward(a["x"], a["gamma"], a["beta"], mean, var, EPS, a["dy"], activation)
    return z, mean, var, grads


@pytest.mark.parametrize("dtype, tol", [(np.float64, LONG_SUMS_F64), (np.float32, LONG_SUMS_F32)])
@given(shape=nhwc_shapes, seed=seeds, activation=activation_names)
def test_train_forward_and_backward_match_the_reference_kernels(dtype, tol, shape, seed, activation):
    a = random_inputs(shape, seed, dtype)
    z, mean, var, grads = fused_train(a, activation)
    want_z, want_mean, want_var, want_grads = reference_train(a, activation)
    assert z.dtype == mean.dtype == dtype and all(g.dtype == dtype for g in grads)
    for got, want in zip((z, mean, var, *grads), (want_z, want_mean, want_var, *want_grads)):
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("dtype, tol", [(np.float64, LONG_SUMS_F64), (np.float32, LONG_SUMS_F32)])
@given(shape=nhwc_shapes, seed=seeds, activation=activation_names)
def test_eval_forward_matches_the_reference_kernels(dtype, tol, shape, seed, activation):
    a = random_inputs(shape, seed, dtype)
    z = batchnorm_act_eval_forward(a["x"], a["gamma"], a["beta"], a["mean"], a["var"], EPS, activation)
    u = batchnorm_eval_forward(a["x"], a["gamma"], a["beta"], a["mean"], a["var"], EPS)
    np.testing.assert_allclose(z, REFERENCE[activation][0](u), **tol)


@given(shape=nhwc_shapes, seed=seeds, activation=activation_names)
def test_train_backward_matches_central_differences(shape, seed, activation):
    a = random_inputs(shape, seed)
    z, mean, var = batchnorm_act_train_forward(a["x"], a["gamma"], a["beta"], EPS, activation)
    if activation == "relu6":
        u = batchnorm_train_forward(a["x"], a["gamma"], a["beta"], EPS)[0]
        assume(np.min(np.abs(u)) > KINK_MARGIN and np.min(np.abs(u - activations.RELU6_CAP)) > KINK_MARGIN)
    dx, dgamma, dbeta = batchnorm_act_train_backward(a["x"], a["gamma"], a["beta"], mean, var, EPS, a["dy"],
                                                     activation)

    def forward(x, gamma, beta):        # reruns the batch statistics, so dx includes their coupling
        return batchnorm_act_train_forward(x, gamma, beta, EPS, activation)[0]

    inputs = dict(x=a["x"], gamma=a["gamma"], beta=a["beta"])
    assert_gradients(forward, inputs, dict(x=dx, gamma=dgamma, beta=dbeta), a["dy"], **GRADIENT)


def test_swish_of_very_negative_inputs_is_zero_not_nan():
    x = np.array([[-1000.0], [0.0], [1000.0]], np.float32)     # after BN: about −1.22, 0, +1.22 · γ
    gamma = np.array([500.0], np.float32)
    z, *_ = batchnorm_act_train_forward(x, gamma, np.zeros(1, np.float32), EPS, "swish")
    assert np.all(np.isfinite(z)) and z[0, 0] == 0.0


def test_float32_statistics_are_accumulated_in_float64():
    # 131072 values per channel around 100: a float32 running sum would be off by far more than this.
    x = np.random.default_rng(3).normal(100.0, 1.0, (32, 64, 64, 2)).astype(np.float32)
    _, mean, var = batchnorm_act_train_forward(x, np.ones(2, np.float32), np.zeros(2, np.float32), EPS, None)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 1, 2)), rtol=1e-7)
    np.testing.assert_allclose(var, x64.var(axis=(0, 1, 2)), rtol=1e-6)


def test_a_mean_far_from_zero_does_not_cancel_the_variance():
    # One pass sums x − x[0] and its square: Σx² − (Σx)²/M itself would be 1e16-sized sums whose difference,
    # M·σ² ≈ 4096, is below their float64 rounding.
    x = 1e8 + np.random.default_rng(6).normal(0.0, 1.0, (16, 16, 16, 1))
    _, mean, var = batchnorm_act_train_forward(x, np.ones(1), np.zeros(1), EPS, None)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), rtol=1e-15)
    np.testing.assert_allclose(var, x.var(axis=(0, 1, 2)), rtol=1e-7)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_results_do_not_depend_on_the_thread_count(activation):
    a = random_inputs((4, 9, 9, 5), seed=4, dtype=np.float32)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = fused_train(a, activation)
    finally:
        numba.set_num_threads(threads)
    many = fused_train(a, activation)
    for one, other in zip((*single[:3], *single[3]), (*many[:3], *many[3])):
        np.testing.assert_array_equal(one, other)


BAD_INPUTS = {
    "unknown activation": (
        lambda a: batchnorm_act_train_forward(a["x"], a["gamma"], a["beta"], EPS, "gelu"),
        ValueError, "activation must be one of",
    ),
    "gamma of the wrong length": (
        lambda a: batchnorm_act_train_forward(a["x"], a["gamma"][:2], a["beta"], EPS, "swish"),
        ValueError, r"gamma has shape \(2,\), expected \(3",
    ),
    "zero eps": (
        lambda a: batchnorm_act_eval_forward(a["x"], a["gamma"], a["beta"], a["mean"], a["var"], 0.0, None),
        ValueError, "eps must be positive",
    ),
    "beta of the wrong length in backward": (
        lambda a: batchnorm_act_train_backward(a["x"], a["gamma"], a["beta"][:1], a["mean"], a["var"], EPS,
                                               a["dy"], "swish"),
        ValueError, r"beta has shape \(1,\), expected \(3",
    ),
    "dz of the wrong shape": (
        lambda a: batchnorm_act_train_backward(a["x"], a["gamma"], a["beta"], a["mean"], a["var"], EPS,
                                               a["dy"][:1], None),
        ValueError, "dz has shape",
    ),
}


@pytest.mark.parametrize("call, error, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call(random_inputs((2, 3, 3, 3), seed=5))
