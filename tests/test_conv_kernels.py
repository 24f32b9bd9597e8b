"""Depthwise, pointwise and dense convolutions against straightforward references (forward) and
central differences (backward)."""

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gradcheck import assert_gradients
from tolerances import GRADIENT, LONG_SUMS_F32, LONG_SUMS_F64
from tinyeffnet.kernels.conv2d import conv2d_backward, conv2d_forward
from tinyeffnet.kernels.depthwise import depthwise_conv_backward, depthwise_conv_forward
from tinyeffnet.kernels.padding import PADDINGS, same_padding
from tinyeffnet.kernels.pointwise import pointwise_conv_backward, pointwise_conv_forward


# (N, H, W, C, k, stride): stride 2 on even and odd sizes, an input smaller than the kernel,
# batch 1, one channel, and a B0-like depthwise shape.
SHAPES = [
    (2, 8, 8, 3, 3, 2),
    (2, 7, 9, 4, 3, 2),
    (1, 1, 2, 2, 3, 1),
    (1, 1, 2, 2, 5, 2),
    (3, 6, 5, 1, 5, 1),
    (1, 9, 9, 1, 5, 2),
    (2, 16, 16, 32, 3, 1),
]
C_OUT = 4


# ---- independent references: explicit zero padding, then one shifted, strided slice per tap ----

def reference_padding(size, k, stride, padding):
    """(out, before, after) of one axis: TensorFlow's SAME formula (``same_padding``, checked on its own in
    ``test_same_padding_is_tensorflows``), or PyTorch's padding=(k − 1)/2 written out here."""
    if padding == "same":
        return same_padding(size, k, stride)
    pad = (k - 1) // 2
    return (size + 2 * pad - k) // stride + 1, pad, pad


def padded_windows(x, k, stride, padding):
    """Yield ``(p, q, x_pq)`` with ``x_pq[n, i, j, c] = x_padded[n, i·s + p, j·s + q, c]``."""
    _, height, width, _ = x.shape
    out_h, top, bottom = reference_padding(height, k, stride, padding)
    out_w, left, right = reference_padding(width, k, stride, padding)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    for p in range(k):
        for q in range(k):
            yield p, q, xp[:, p : p + stride * out_h : stride, q : q + stride * out_w : stride, :]


def reference_depthwise(x, w, stride, padding):
    return sum(x_pq * w[p, q] for p, q, x_pq in padded_windows(x, w.shape[0], stride, padding))


def reference_conv2d(x, w, stride, padding):
    return sum(np.einsum("nijc,cd->nijd", x_pq, w[p, q])
               for p, q, x_pq in padded_windows(x, w.shape[0], stride, padding))


def reference_pointwise(x, w):
    return np.einsum("nhvc,cd->nhvd", x, w)


def random_inputs(shape, w_shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.standard_normal(w_shape)


# ---- forward ----

@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("n, h, w, c, k, stride", SHAPES)
def test_depthwise_forward_matches_reference(n, h, w, c, k, stride, padding):
    x, wt = random_inputs((n, h, w, c), (k, k, c))
    expected = reference_depthwise(x, wt, stride, padding)
    np.testing.assert_allclose(depthwise_conv_forward(x, wt, stride, padding), expected, **LONG_SUMS_F64)
    y32 = depthwise_conv_forward(x.astype(np.float32), wt.astype(np.float32), stride, padding)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, expected, **LONG_SUMS_F32)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("n, h, w, c, k, stride", SHAPES)
def test_conv2d_forward_matches_reference(n, h, w, c, k, stride, padding):
    x, wt = random_inputs((n, h, w, c), (k, k, c, C_OUT))
    expected = reference_conv2d(x, wt, stride, padding)
    np.testing.assert_allclose(conv2d_forward(x, wt, stride, padding), expected, **LONG_SUMS_F64)
    y32 = conv2d_forward(x.astype(np.float32), wt.astype(np.float32), stride, padding)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, expected, **LONG_SUMS_F32)


@pytest.mark.parametrize("shape, c_out", [((2, 3, 5, 4), 6), ((1, 1, 1, 1), 1), ((2, 4, 4, 96), 24)])
def test_pointwise_forward_matches_reference(shape, c_out):
    x, wt = random_inputs(shape, (shape[3], c_out))
    expected = reference_pointwise(x, wt)
    np.testing.assert_allclose(pointwise_conv_forward(x, wt), expected, **LONG_SUMS_F64)
    y32 = pointwise_conv_forward(x.astype(np.float32), wt.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, expected, **LONG_SUMS_F32)


@pytest.mark.parametrize("forward, weight", [
    (depthwise_conv_forward, np.ones((3, 3, 1))),
    (conv2d_forward, np.ones((3, 3, 1, 1))),
])
def test_same_padding_is_tensorflows(forward, weight):
    """4×4 input, 3×3 window, stride 2: TF pads 0 rows on top and 1 at the bottom (PyTorch would pad 1 and 1)."""
    image = np.arange(16.0).reshape(4, 4)
    y = forward(image.reshape(1, 4, 4, 1), weight, 2)[0, :, :, 0]
    expected = [[image[0:3, 0:3].sum(), image[0:3, 2:4].sum()], [image[2:4, 0:3].sum(), image[2:4, 2:4].sum()]]
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("forward, weight", [
    (depthwise_conv_forward, np.ones((3, 3, 1))),
    (conv2d_forward, np.ones((3, 3, 1, 1))),
])
def test_symmetric_padding_is_pytorchs(forward, weight):
    """The same 4×4 input, 3×3 window, stride 2, padded 1 on every side as PyTorch's padding=1: the windows
    start one pixel earlier, and the last row and column of padding are never read."""
    image = np.arange(16.0).reshape(4, 4)
    y = forward(image.reshape(1, 4, 4, 1), weight, 2, "symmetric")[0, :, :, 0]
    expected = [[image[0:2, 0:2].sum(), image[0:2, 1:4].sum()], [image[1:4, 0:2].sum(), image[1:4, 1:4].sum()]]
    np.testing.assert_array_equal(y, expected)


# ---- backward: every gradient against central differences ----

def float64_arrays(shape):
    return arrays(np.float64, shape, elements=st.floats(-1, 1, allow_nan=False, allow_infinity=False))


@st.composite
def window_cases(draw, dense, padding):
    """(x, w, dy, stride) with N 1..3, C 1..5, H, W 1..9, k in {3, 5}, stride in {1, 2}, for the rule ``padding``."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    k, stride = draw(st.sampled_from([3, 5])), draw(st.sampled_from([1, 2]))
    c_out = draw(st.integers(1, 4)) if dense else c
    w_shape = (k, k, c, c_out) if dense else (k, k, c)
    out_h, out_w = reference_padding(h, k, stride, padding)[0], reference_padding(w, k, stride, padding)[0]
    x = draw(float64_arrays((n, h, w, c)))
    return x, draw(float64_arrays(w_shape)), draw(float64_arrays((n, out_h, out_w, c_out))), stride


@pytest.mark.parametrize("padding", PADDINGS)
@given(data=st.data())
def test_depthwise_backward_matches_central_differences(padding, data):
    x, w, dy, stride = data.draw(window_cases(dense=False, padding=padding))
    dx, dw = depthwise_conv_backward(x, w, dy, stride, padding)
    assert_gradients(lambda x, w: depthwise_conv_forward(x, w, stride, padding), {"x": x, "w": w},
                     {"x": dx, "w": dw}, dy, **GRADIENT)


@pytest.mark.parametrize("padding", PADDINGS)
@given(data=st.data())
def test_conv2d_backward_matches_central_differences(padding, data):
    x, w, dy, stride = data.draw(window_cases(dense=True, padding=padding))
    dx, dw = conv2d_backward(x, w, dy, stride, padding)
    assert_gradients(lambda x, w: conv2d_forward(x, w, stride, padding), {"x": x, "w": w}, {"x": dx, "w": dw}, dy,
                     **GRADIENT)


@st.composite
def pointwise_cases(draw):
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    c_in, c_out = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return draw(float64_arrays((n, h, w, c_in))), draw(float64_arrays((c_in, c_out))), draw(float64_arrays((n, h, w, c_out)))


@given(pointwise_cases())
def test_pointwise_backward_matches_central_differences(case):
    x, w, dy = case
    dx, dw = pointwise_conv_backward(x, w, dy)
    assert_gradients(pointwise_conv_forward, {"x": x, "w": w}, {"x": dx, "w": dw}, dy, **GRADIENT)


@pytest.mark.parametrize("forward, backward, w_shape", [
    (depthwise_conv_forward, depthwise_conv_backward, (3, 3, 8)),
    (conv2d_forward, conv2d_backward, (3, 3, 8, C_OUT)),
])
def test_float32_backward_keeps_dtype_and_agrees_with_float64(forward, backward, w_shape):
    x, w = random_inputs((4, 9, 8, 8), w_shape)
    dy = np.random.default_rng(1).standard_normal(forward(x, w, 2).shape)
    grads64 = backward(x, w, dy, 2)
    grads32 = backward(x.astype(np.float32), w.astype(np.float32), dy.astype(np.float32), 2)
    for g32, g64 in zip(grads32, grads64):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backward, w_shape", [(depthwise_conv_backward, (5, 5, 16)), (conv2d_backward, (3, 3, 16, C_OUT))])
def test_backward_is_bitwise_identical_for_any_thread_count(backward, w_shape):
    x, w = random_inputs((37, 9, 9, 16), w_shape)
    x, w = x.astype(np.float32), w.astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((37, 5, 5, w_shape[-1])).astype(np.float32)
    threads = numba.get_num_threads()
    try:
        results = []
        for n_threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n_threads)
            results.append(backward(x, w, dy, 2))
    finally:
        numba.set_num_threads(threads)
    for first, other in zip(results[0], results[-1]):
        np.testing.assert_array_equal(first, other)


# ---- boundary checks ----

X = np.zeros((2, 8, 8, 4))
DEPTHWISE_W = np.zeros((3, 3, 4))
CONV_W = np.zeros((3, 3, 4, 5))
POINTWISE_W = np.zeros((4, 5))


@pytest.mark.parametrize("call, error, message", [
    (lambda: depthwise_conv_forward(X[0], DEPTHWISE_W, 1), ValueError, r"x must have 4 dimensions"),
    (lambda: depthwise_conv_forward(X, CONV_W, 1), ValueError, r"w must have 3 dimensions"),
    (lambda: depthwise_conv_forward(X, np.zeros((3, 3, 5)), 1), ValueError, r"w has 5 channels but x has 4"),
    (lambda: depthwise_conv_forward(X, np.zeros((4, 4, 4)), 1), ValueError, r"square with odd size k, got 4×4"),
    (lambda: depthwise_conv_forward(X, np.zeros((3, 5, 4)), 1), ValueError, r"square with odd size k, got 3×5"),
    (lambda: depthwise_conv_forward(X, DEPTHWISE_W, 3), ValueError, r"stride must be 1 or 2, got 3"),
    (lambda: depthwise_conv_forward(X, DEPTHWISE_W, 1.0), ValueError, r"stride must be 1 or 2, got 1.0"),
    (lambda: depthwise_conv_forward(X, DEPTHWISE_W, 1, "valid"), ValueError,
     r"padding must be one of 'same', 'symmetric', got 'valid'"),
    (lambda: conv2d_backward(X, CONV_W, np.zeros((2, 8, 8, 5)), 1, "SAME"), ValueError, r"padding must be one of"),
    (lambda: depthwise_conv_forward(X, DEPTHWISE_W.astype(np.float32), 1), TypeError, r"w has dtype float32 but"),
    (lambda: depthwise_conv_forward(X.astype(np.int64), DEPTHWISE_W, 1), TypeError, r"x must be float32 or float64"),
    (lambda: depthwise_conv_forward(X.tolist(), DEPTHWISE_W, 1), TypeError, r"x must be a numpy array"),
    (lambda: depthwise_conv_backward(X, DEPTHWISE_W, np.zeros((2, 8, 8, 4)), 2), ValueError,
     r"dy has shape \(2, 8, 8, 4\), expected \(2, 4, 4, 4\)"),
    (lambda: depthwise_conv_backward(X, DEPTHWISE_W, np.zeros((2, 8, 8, 4), np.float32), 1), TypeError,
     r"dy has dtype float32"),
    (lambda: conv2d_forward(X, DEPTHWISE_W, 1), ValueError, r"w must have 4 dimensions"),
    (lambda: conv2d_forward(X, np.zeros((3, 3, 3, 5)), 1), ValueError, r"w has 3 input channels but x has 4"),
    (lambda: conv2d_forward(X, np.zeros((2, 2, 4, 5)), 2), ValueError, r"square with odd size k"),
    (lambda: conv2d_forward(X, CONV_W, 0), ValueError, r"stride must be 1 or 2"),
    (lambda: conv2d_backward(X, CONV_W, np.zeros((2, 8, 8, 4)), 1), ValueError,
     r"dy has shape \(2, 8, 8, 4\), expected \(2, 8, 8, 5\)"),
    (lambda: pointwise_conv_forward(X, np.zeros((5, 4))), ValueError, r"w has 5 input channels but x has 4"),
    (lambda: pointwise_conv_forward(X, CONV_W), ValueError, r"w must have 2 dimensions"),
    (lambda: pointwise_conv_forward(X.astype(np.float32), POINTWISE_W), TypeError, r"w has dtype float64 but"),
    (lambda: pointwise_conv_backward(X, POINTWISE_W, np.zeros((2, 8, 8, 4))), ValueError,
     r"dy has shape \(2, 8, 8, 4\), expected \(2, 8, 8, 5\)"),
])
def test_boundary_checks_explain_the_problem(call, error, message):
    with pytest.raises(error, match=message):
        call()
