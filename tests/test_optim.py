"""SGD, weight decay only on weights, gradient clipping and the learning-rate schedule, by hand."""

import numpy as np
import pytest

from tinyeffnet.kernels.sgd import sgd_update
from tinyeffnet.optim import SGD, clip_grad_norm, global_grad_norm, learning_rate


def test_sgd_nesterov_and_weight_decay_by_hand():
    w, b = np.array([[1.0, -2.0]]), np.array([0.5])
    gw, gb = np.array([[0.1, 0.2]]), np.array([0.3])
    opt = SGD({"w": w, "b": b}, {"w": gw, "b": gb}, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
    opt.step()
    g = np.array([[0.1, 0.2]]) + 0.01 * np.array([[1.0, -2.0]])        # decay on the 2-D weight
    np.testing.assert_allclose(w, [[1.0, -2.0]] - 0.1 * (g + 0.9 * g))
    np.testing.assert_allclose(b, [0.5 - 0.1 * (0.3 + 0.9 * 0.3)])       # no decay on the 1-D bias
    opt.step()                                                          # velocity carries over
    v = 0.9 * 0.3 + 0.3
    np.testing.assert_allclose(b, [0.5 - 0.1 * 0.57 - 0.1 * (0.3 + 0.9 * v)])


def numpy_sgd_update(p, g, v, lr, momentum, weight_decay, nesterov):
    """The update of kernels/sgd.py written with NumPy expressions, as the reference."""
    g = g + weight_decay * p
    v *= momentum
    v += g
    p -= lr * (g + momentum * v if nesterov else v)


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-14), (np.float32, 1e-6)])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_fused_sgd_kernel_matches_numpy(dtype, tolerance, nesterov, weight_decay):
    rng = np.random.default_rng(0)
    p, g, v = (rng.normal(size=(7, 3, 5)).astype(dtype) for _ in range(3))
    expected_p, expected_v = p.copy(), v.copy()
    for _ in range(3):                       # the velocity carries over between steps
        numpy_sgd_update(expected_p, g, expected_v, 0.1, 0.9, weight_decay, nesterov)
        sgd_update(p, g, v, 0.1, 0.9, weight_decay, nesterov)
    np.testing.assert_allclose(p, expected_p, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(v, expected_v, rtol=tolerance, atol=tolerance)


def test_fused_sgd_kernel_rejects_what_it_cannot_update_in_place():
    p = np.zeros((4, 4))
    with pytest.raises(ValueError, match="param must be C-contiguous"):
        sgd_update(p.T, p, p.copy(), 0.1, 0.9, 0.0, True)
    with pytest.raises(ValueError, match="grad has shape"):
        sgd_update(p, np.zeros(3), p.copy(), 0.1, 0.9, 0.0, True)
    with pytest.raises(ValueError, match="must be ≥ 0"):
        sgd_update(p, p.copy(), p.copy(), -0.1, 0.9, 0.0, True)


def test_clip_grad_norm_scales_all_gradients_together():
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}
    assert clip_grad_norm(grads, 1.0) == pytest.approx(5.0)
    assert global_grad_norm(grads) == pytest.approx(1.0)
    np.testing.assert_allclose(grads["a"], [0.6])
    assert clip_grad_norm(grads, 10.0) == pytest.approx(1.0) and grads["b"][0, 0] == pytest.approx(0.8)


def test_warmup_then_cosine():
    lrs = [learning_rate(s, 100, 0.1, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(0.1) and lrs[55] == pytest.approx(0.05, abs=2e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 1e-3
