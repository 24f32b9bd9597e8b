"""Pooling, channel scale, linear, cross-entropy and dropout against NumPy and central differences."""

import numpy as np
import pytest
from gradcheck import assert_gradients, numerical_gradient
from hypothesis import given
from hypothesis import strategies as st
from tolerances import GRADIENT, SMALL_SUMS_F32, SMALL_SUMS_F64

from tinyeffnet.kernels.dropout import (
    drop_connect_backward,
    drop_connect_forward,
    drop_connect_mask,
    dropout_backward,
    dropout_forward,
    dropout_mask,
)
from tinyeffnet.kernels.linear import linear_backward, linear_forward
from tinyeffnet.kernels.loss import (
    cross_entropy_backward,
    cross_entropy_forward,
    soft_cross_entropy_backward,
    soft_cross_entropy_forward,
)
from tinyeffnet.kernels.pooling import global_avg_pool_backward, global_avg_pool_forward
from tinyeffnet.kernels.scale import channel_scale_backward, channel_scale_forward

DTYPE_TOLS = pytest.mark.parametrize("dtype, tol", [(np.float64, SMALL_SUMS_F64), (np.float32, SMALL_SUMS_F32)])
SMOOTHINGS = [0.0, 0.1]

# (N, H, W, C): batch 1 and more, one channel and more, odd and even spatial sizes.
nhwc_shapes = st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.integers(1, 4))
seeds = st.integers(0, 2**32 - 1)


def normal(seed, *shapes, dtype=np.float64):
    """One standard-normal array per shape, from one seed."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype(dtype) for shape in shapes]


# Global average pooling


@DTYPE_TOLS
def test_global_avg_pool_forward_matches_numpy(dtype, tol):
    (x,) = normal(0, (2, 5, 4, 3), dtype=dtype)
    y = global_avg_pool_forward(x)
    assert y.dtype == dtype and y.shape == (2, 3)
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=(1, 2)), **tol)


@given(nhwc_shapes, seeds)
def test_global_avg_pool_backward_matches_central_differences(shape, seed):
    n, h, w, c = shape
    x, dy = normal(seed, shape, (n, c))
    dx = global_avg_pool_backward(dy, h, w)
    assert_gradients(global_avg_pool_forward, dict(x=x), dict(x=dx), dy, **GRADIENT)


# Channel scale (squeeze-and-excitation "excite")


@DTYPE_TOLS
def test_channel_scale_forward_matches_einsum(dtype, tol):
    x, s = normal(1, (2, 5, 4, 3), (2, 3), dtype=dtype)
    y = channel_scale_forward(x, s)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, np.einsum("nhwc,nc->nhwc", x.astype(np.float64), s.astype(np.float64)), **tol)


@given(nhwc_shapes, seeds)
def test_channel_scale_backward_matches_central_differences(shape, seed):
    n, _, _, c = shape
    x, s, dy = normal(seed, shape, (n, c), shape)
    dx, ds = channel_scale_backward(x, s, dy)
    assert_gradients(channel_scale_forward, dict(x=x, s=s), dict(x=dx, s=ds), dy, **GRADIENT)


# Linear


@DTYPE_TOLS
def test_linear_forward_matches_einsum(dtype, tol):
    x, w, b = normal(2, (4, 6), (6, 5), (5,), dtype=dtype)
    y = linear_forward(x, w, b)
    assert y.dtype == dtype
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    np.testing.assert_allclose(y, np.einsum("ni,io->no", x64, w64) + b64, **tol)


@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), seeds)
def test_linear_backward_matches_central_differences(batch, f_in, f_out, seed):
    x, w, b, dy = normal(seed, (batch, f_in), (f_in, f_out), (f_out,), (batch, f_out))
    dx, dw, db = linear_backward(x, w, dy)
    assert_gradients(linear_forward, dict(x=x, w=w, b=b), dict(x=dx, w=dw, b=db), dy, **GRADIENT)


# Cross-entropy with label smoothing


def reference_soft_cross_entropy(logits, targets, smoothing):
    """Straight from the definition, without the max shift (so only for moderate logits)."""
    n, k = logits.shape
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    target = (1.0 - smoothing) * targets + smoothing / k
    return -(target * log_p).sum() / n, np.exp(log_p)


def reference_cross_entropy(logits, labels, smoothing):
    return reference_soft_cross_entropy(logits, np.eye(logits.shape[1])[labels], smoothing)


@DTYPE_TOLS
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_cross_entropy_forward_matches_numpy(smoothing, dtype, tol):
    (logits,) = normal(3, (5, 4), dtype=dtype)
    labels = np.array([0, 3, 1, 1, 2])
    loss, probs = cross_entropy_forward(logits, labels, smoothing)
    want_loss, want_probs = reference_cross_entropy(logits.astype(np.float64), labels, smoothing)
    assert isinstance(loss, float) and probs.dtype == dtype
    np.testing.assert_allclose(loss, want_loss, **tol)
    np.testing.assert_allclose(probs, want_probs, **tol)


def test_cross_entropy_of_huge_logits_is_finite():
    logits = np.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]])
    loss, probs = cross_entropy_forward(logits, np.array([0, 1]))
    # Row 0 is right with certainty (loss 0); row 1 has log p = −2e4 for its label: mean 1e4.
    assert loss == pytest.approx(1e4, rel=1e-12)
    np.testing.assert_allclose(probs, [[1.0, 0.0, 0.0]] * 2, atol=1e-300)
    smoothed, _ = cross_entropy_forward(logits, np.array([0, 1]), smoothing=0.1)
    assert np.isfinite(smoothed)


@given(st.integers(1, 4), st.integers(1, 6), st.sampled_from(SMOOTHINGS), seeds)
def test_cross_entropy_backward_matches_central_differences(batch, classes, smoothing, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (batch, classes))
    labels = rng.integers(0, classes, batch)
    _, probs = cross_entropy_forward(logits, labels, smoothing)
    dlogits = cross_entropy_backward(probs, labels, smoothing)
    expected = numerical_gradient(lambda: cross_entropy_forward(logits, labels, smoothing)[0], logits)
    np.testing.assert_allclose(dlogits, expected, **GRADIENT)


# Cross-entropy against soft targets (Mixup's)


def distributions(rng, batch, classes):
    """Random soft targets (N, K): every row a distribution, from a flat Dirichlet."""
    return rng.dirichlet(np.ones(classes), batch)


@DTYPE_TOLS
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_soft_cross_entropy_forward_matches_numpy(smoothing, dtype, tol):
    (logits,) = normal(3, (5, 4), dtype=dtype)
    targets = distributions(np.random.default_rng(4), 5, 4).astype(dtype)
    loss, probs = soft_cross_entropy_forward(logits, targets, smoothing)
    want_loss, want_probs = reference_soft_cross_entropy(logits.astype(np.float64), targets.astype(np.float64),
                                                         smoothing)
    assert isinstance(loss, float) and probs.dtype == dtype
    np.testing.assert_allclose(loss, want_loss, **tol)
    np.testing.assert_allclose(probs, want_probs, **tol)


@given(st.integers(1, 4), st.integers(1, 7), st.sampled_from(SMOOTHINGS), seeds)
def test_soft_cross_entropy_backward_matches_central_differences(batch, classes, smoothing, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (batch, classes))
    targets = distributions(rng, batch, classes)
    _, probs = soft_cross_entropy_forward(logits, targets, smoothing)
    dlogits = soft_cross_entropy_backward(probs, targets, smoothing)
    expected = numerical_gradient(lambda: soft_cross_entropy_forward(logits, targets, smoothing)[0], logits)
    np.testing.assert_allclose(dlogits, expected, **GRADIENT)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_soft_cross_entropy_of_one_hot_targets_is_the_labels_kernel(smoothing, dtype):
    (logits,) = normal(5, (6, 5), dtype=dtype)
    labels = np.array([4, 0, 2, 2, 1, 3])
    one_hot = np.eye(5, dtype=dtype)[labels]
    loss, probs = cross_entropy_forward(logits, labels, smoothing)
    soft_loss, soft_probs = soft_cross_entropy_forward(logits, one_hot, smoothing)
    assert soft_loss == loss
    np.testing.assert_array_equal(soft_probs, probs)
    np.testing.assert_array_equal(soft_cross_entropy_backward(probs, one_hot, smoothing),
                                  cross_entropy_backward(probs, labels, smoothing))


def test_soft_cross_entropy_of_huge_logits_is_finite():
    logits = np.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]])
    loss, _ = soft_cross_entropy_forward(logits, np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]))
    # Row 0: half of log p = −2e4 for class 1 (1e4); row 1 is right with certainty (0): mean 5e3.
    assert loss == pytest.approx(5e3, rel=1e-12)


# Dropout and drop connect


@pytest.mark.parametrize("rate", [0.2, 0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_statistics(rate, dtype):
    mask = dropout_mask(np.random.default_rng(4), (500, 400), rate, dtype)
    scale = dtype(1.0 / (1.0 - rate))
    assert mask.dtype == dtype and mask.shape == (500, 400)
    assert set(np.unique(mask)) <= {dtype(0.0), scale}
    assert np.mean(mask != 0) == pytest.approx(1.0 - rate, abs=0.005)  # 200 000 draws: std ≈ 0.001
    assert np.mean(mask, dtype=np.float64) == pytest.approx(1.0, abs=0.01)  # inverted: expectation kept


def test_dropout_mask_is_reproducible_from_the_seed():
    first = dropout_mask(np.random.default_rng(7), (6, 5), 0.5)
    again = dropout_mask(np.random.default_rng(7), (6, 5), 0.5)
    other = dropout_mask(np.random.default_rng(8), (6, 5), 0.5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_dropout_rate_zero_keeps_everything():
    np.testing.assert_array_equal(dropout_mask(np.random.default_rng(0), (3, 4), 0.0), np.ones((3, 4)))


@given(nhwc_shapes, seeds)
def test_dropout_gradient_is_the_mask_times_dy(shape, seed):
    x, dy = normal(seed, shape, shape)
    mask = dropout_mask(np.random.default_rng(seed), shape, 0.3, np.float64)
    dx = dropout_backward(mask, dy)
    np.testing.assert_array_equal(dropout_forward(x, mask), x * mask)
    np.testing.assert_array_equal(dx, mask * dy)
    assert_gradients(lambda x: dropout_forward(x, mask), dict(x=x), dict(x=dx), dy, **GRADIENT)


def test_drop_connect_mask_statistics():
    keep = drop_connect_mask(np.random.default_rng(5), 100_000, 0.2)
    assert keep.shape == (100_000,) and keep.dtype == np.float32
    assert set(np.unique(keep)) <= {np.float32(0.0), np.float32(1.25)}
    assert np.mean(keep != 0) == pytest.approx(0.8, abs=0.005)


def test_drop_connect_drops_whole_samples():
    (x,) = normal(6, (3, 2, 2, 4))
    keep = np.array([1.25, 0.0, 1.25])
    y = drop_connect_forward(x, keep)
    np.testing.assert_array_equal(y, x * keep[:, None, None, None])
    assert np.all(y[1] == 0.0) and np.all(y[[0, 2]] != 0.0)


@given(nhwc_shapes, seeds)
def test_drop_connect_gradient_is_keep_times_dy(shape, seed):
    x, dy = normal(seed, shape, shape)
    keep = drop_connect_mask(np.random.default_rng(seed), shape[0], 0.5, np.float64)
    dx = drop_connect_backward(keep, dy)
    np.testing.assert_array_equal(dx, keep[:, None, None, None] * dy)
    assert_gradients(lambda x: drop_connect_forward(x, keep), dict(x=x), dict(x=dx), dy, **GRADIENT)


# Bad input

x4 = np.zeros((2, 3, 3, 4))
BAD_INPUTS = {
    "pool of a 3-d array": (lambda: global_avg_pool_forward(x4[0]), ValueError, "x must have 4 dimensions"),
    "pool backward with zero width": (
        lambda: global_avg_pool_backward(np.zeros((2, 4)), 3, 0),
        ValueError,
        "height and width must be positive",
    ),
    "scale with the wrong channels": (
        lambda: channel_scale_forward(x4, np.zeros((2, 3))),
        ValueError,
        r"s has shape \(2, 3\), expected \(2, 4\)",
    ),
    "scale with a dtype mix": (
        lambda: channel_scale_forward(x4, np.zeros((2, 4), np.float32)),
        TypeError,
        "s has dtype float32",
    ),
    "linear with mismatched features": (
        lambda: linear_forward(np.zeros((2, 3)), np.zeros((4, 5)), np.zeros(5)),
        ValueError,
        r"w has shape \(4, 5\), expected \(3, \?\)",
    ),
    "linear with the wrong bias": (
        lambda: linear_forward(np.zeros((2, 3)), np.zeros((3, 5)), np.zeros(4)),
        ValueError,
        "b has shape",
    ),
    "label too large": (
        lambda: cross_entropy_forward(np.zeros((3, 5)), np.array([0, 5, 1])),
        ValueError,
        "label 5 at index 1 is out of range for K=5",
    ),
    "negative label": (
        lambda: cross_entropy_backward(np.zeros((2, 5)), np.array([-1, 0])),
        ValueError,
        "label -1 at index 0 is out of range for K=5",
    ),
    "float labels": (
        lambda: cross_entropy_forward(np.zeros((2, 5)), np.array([0.0, 1.0])),
        TypeError,
        "labels must be a numpy array of integers",
    ),
    "one label too few": (
        lambda: cross_entropy_forward(np.zeros((2, 5)), np.array([0])),
        ValueError,
        r"labels has shape \(1,\), expected \(2,\)",
    ),
    "soft targets of another shape": (
        lambda: soft_cross_entropy_forward(np.zeros((2, 5)), np.full((2, 4), 0.25)),
        ValueError,
        r"targets has shape \(2, 4\), expected \(2, 5\)",
    ),
    "soft targets of another dtype": (
        lambda: soft_cross_entropy_forward(np.zeros((2, 2)), np.full((2, 2), 0.5, np.float32)),
        TypeError,
        "targets has dtype float32 but the other inputs are float64",
    ),
    "soft targets whose row does not sum to 1": (
        lambda: soft_cross_entropy_forward(np.zeros((3, 2)), np.array([[0.5, 0.5], [0.5, 0.4], [1.0, 0.0]])),
        ValueError,
        "row 1 of targets sums to 0.9, not 1",
    ),
    "soft targets that are not a number": (
        lambda: soft_cross_entropy_backward(np.zeros((1, 2)), np.array([[np.nan, 1.0]])),
        ValueError,
        "row 0 of targets sums to nan, not 1",
    ),
    "negative soft targets": (
        lambda: soft_cross_entropy_backward(np.zeros((1, 3)), np.array([[1.5, -0.5, 0.0]])),
        ValueError,
        r"targets\[0, 1\] is -0.5: soft targets must be ≥ 0",
    ),
    "soft targets for no classes": (
        lambda: soft_cross_entropy_forward(np.zeros((2, 0)), np.zeros((2, 0))),
        ValueError,
        "logits must have at least one row and one class",
    ),
    "smoothing of one": (
        lambda: cross_entropy_forward(np.zeros((2, 5)), np.array([0, 1]), smoothing=1.0),
        ValueError,
        r"smoothing must be in \[0, 1\)",
    ),
    "dropout rate of one": (
        lambda: dropout_mask(np.random.default_rng(0), (2, 2), 1.0),
        ValueError,
        r"rate must be in \[0, 1\)",
    ),
    "negative dropout rate": (
        lambda: drop_connect_mask(np.random.default_rng(0), 4, -0.1),
        ValueError,
        r"rate must be in \[0, 1\)",
    ),
    "legacy random state": (
        lambda: dropout_mask(np.random.RandomState(0), (2, 2), 0.5),
        TypeError,
        "rng must be a numpy.random.Generator",
    ),
    "integer mask dtype": (
        lambda: dropout_mask(np.random.default_rng(0), (2, 2), 0.5, np.int32),
        TypeError,
        "dtype must be float32 or float64",
    ),
    "mask of another shape": (
        lambda: dropout_forward(x4, np.ones((2, 3, 3, 1))),
        ValueError,
        "mask has shape",
    ),
    "keep of another batch": (lambda: drop_connect_forward(x4, np.ones(3)), ValueError, r"keep has shape \(3,\)"),
}


@pytest.mark.parametrize("call, error, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
