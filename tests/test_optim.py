"""The optimisers (SGD, RMSProp, AdamW), weight decay only on weights, their state for resuming, gradient
clipping and the learning-rate schedule: by hand, and each fused kernel against NumPy lines of its formula."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.kernels.adamw import adamw_update
from tinyeffnet.kernels.rmsprop import rmsprop_update
from tinyeffnet.kernels.sgd import sgd_update
from tinyeffnet.optim import (
    OPTIMIZERS,
    SGD,
    AdamW,
    RMSProp,
    clip_grad_norm,
    global_grad_norm,
    learning_rate,
    make_optimizer,
)

FLOAT64 = dict(rtol=1e-12, atol=1e-12)   # the kernels against NumPy, same formula, float64
shapes = st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple)
seeds = st.integers(0, 2**16)
steps = st.integers(1, 4)


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


# ---- RMSProp (TensorFlow's) and AdamW (PyTorch's): kernels against NumPy, and known values ----

def numpy_rmsprop_update(p, g, ms, mom, lr, decay, momentum, epsilon, weight_decay):
    """The update of kernels/rmsprop.py written with NumPy expressions, as the reference."""
    g = g + weight_decay * p
    ms[...] = decay * ms + (1 - decay) * g**2
    mom[...] = momentum * mom + lr * g / np.sqrt(ms + epsilon)
    p -= mom


def numpy_adamw_update(p, g, m, v, lr, beta1, beta2, epsilon, weight_decay, t):
    """The update of kernels/adamw.py as the paper writes it (m̂, v̂), with NumPy expressions, as the reference."""
    p *= 1 - lr * weight_decay
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g**2
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    p -= lr * m_hat / (np.sqrt(v_hat) + epsilon)


def random_tensors(shape, seed, count):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(count)]


@given(shapes, seeds, steps, st.floats(0, 1), st.floats(0, 0.999), st.floats(0, 0.99), st.floats(1e-8, 0.1),
       st.floats(0, 0.1))
def test_rmsprop_kernel_matches_numpy(shape, seed, n_steps, lr, decay, momentum, epsilon, weight_decay):
    p, ms, mom, *grads = random_tensors(shape, seed, 3 + n_steps)
    ms = np.abs(ms)                                          # a mean square is ≥ 0
    expected = [a.copy() for a in (p, ms, mom)]
    for g in grads:                                          # ms and mom carry over between steps
        numpy_rmsprop_update(*expected[:1], g, *expected[1:], lr, decay, momentum, epsilon, weight_decay)
        rmsprop_update(p, g, ms, mom, lr, decay, momentum, epsilon, weight_decay)
    for got, want in zip((p, ms, mom), expected):
        np.testing.assert_allclose(got, want, **FLOAT64)


@given(shapes, seeds, steps, st.floats(0, 1), st.floats(0, 0.99), st.floats(0, 0.9999), st.floats(1e-8, 0.1),
       st.floats(0, 0.1))
def test_adamw_kernel_matches_numpy(shape, seed, n_steps, lr, beta1, beta2, epsilon, weight_decay):
    p, *grads = random_tensors(shape, seed, 1 + n_steps)
    m, v = np.zeros(shape), np.zeros(shape)
    expected = [a.copy() for a in (p, m, v)]
    for t, g in enumerate(grads, start=1):
        numpy_adamw_update(*expected[:1], g, *expected[1:], lr, beta1, beta2, epsilon, weight_decay, t)
        adamw_update(p, g, m, v, lr, beta1, beta2, epsilon, weight_decay, t)
    for got, want in zip((p, m, v), expected):
        np.testing.assert_allclose(got, want, **FLOAT64)


def test_rmsprop_by_hand_mean_square_starts_at_one():
    w = np.array([[1.0]])
    opt = RMSProp({"w": w}, {"w": np.array([[0.5]])}, lr=0.1)          # ρ = μ = 0.9, ε = 1e-3
    assert opt.mean_square["w"][0, 0] == 1.0 and opt.mom["w"][0, 0] == 0.0
    opt.step()
    ms = 0.9 * 1.0 + 0.1 * 0.25                                         # 0.925: from one, not from zero
    mom = 0.1 * 0.5 / math.sqrt(ms + 1e-3)
    assert w[0, 0] == pytest.approx(1.0 - mom, rel=1e-14)
    opt.step()
    ms = 0.9 * ms + 0.1 * 0.25
    mom = 0.9 * mom + 0.1 * 0.5 / math.sqrt(ms + 1e-3)                  # lr inside the momentum
    assert w[0, 0] == pytest.approx(1.0 - 0.1 * 0.5 / math.sqrt(0.926) - mom, rel=1e-14)


def test_adamw_by_hand_constant_gradient_moves_by_lr():
    """With a constant gradient g the bias corrections make m̂ = g and v̂ = g² exactly, so every step is
    θ ← θ·(1 − lr·λ) − lr·g/(|g| + ε): lr in the direction of −g, whatever |g| is."""
    w, b = np.array([[1.0]]), np.array([2.0])
    opt = AdamW({"w": w, "b": b}, {"w": np.array([[0.5]]), "b": np.array([-3.0])}, lr=0.1, weight_decay=0.01)
    expected_w, expected_b = 1.0, 2.0
    for _ in range(3):
        opt.step()
        expected_w = expected_w * (1 - 0.1 * 0.01) - 0.1 * 0.5 / (0.5 + 1e-8)
        expected_b = expected_b + 0.1 * 3.0 / (3.0 + 1e-8)             # 1-D: no weight decay
        assert w[0, 0] == pytest.approx(expected_w, rel=1e-12) and b[0] == pytest.approx(expected_b, rel=1e-12)
    assert opt.t == 3


UPDATES = [
    (rmsprop_update, ("param", "grad", "ms", "mom"), (0.1, 0.9, 0.9, 1e-3, 0.0)),
    (adamw_update, ("param", "grad", "m", "v"), (0.1, 0.9, 0.999, 1e-8, 0.0, 1)),
]


@pytest.mark.parametrize("update, names, hyper", UPDATES, ids=["rmsprop", "adamw"])
def test_fused_kernels_reject_what_they_cannot_update_in_place(update, names, hyper):
    p = np.zeros((4, 4))
    with pytest.raises(ValueError, match="param must be C-contiguous"):
        update(p.T, p, p.copy(), p.copy(), *hyper)
    with pytest.raises(ValueError, match=f"{names[3]} must be C-contiguous"):
        update(p, p.copy(), p.copy(), p.copy().T, *hyper)
    with pytest.raises(ValueError, match=f"{names[2]} has shape"):
        update(p, p.copy(), np.zeros(3), p.copy(), *hyper)
    with pytest.raises(TypeError, match="grad has dtype float32"):
        update(p, np.zeros((4, 4), np.float32), p.copy(), p.copy(), *hyper)
    with pytest.raises(ValueError, match="need lr ≥ 0"):
        update(p, p.copy(), p.copy(), p.copy(), -0.1, *hyper[1:])


def test_adamw_kernel_needs_a_step_count():
    p = np.zeros(3)
    with pytest.raises(ValueError, match="step must be an integer ≥ 1"):
        adamw_update(p, p.copy(), p.copy(), p.copy(), 0.1, 0.9, 0.999, 1e-8, 0.0, 0)


# ---- every optimiser: weight decay on weights only, the state for resuming, the registry ----

def toy_tensors(seed=0):
    """A 2-D weight and a 1-D bias, and gradients for them, float64."""
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    return params, {name: rng.standard_normal(p.shape) for name, p in params.items()}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_weight_decay_skips_one_dimensional_tensors(name):
    params, grads = toy_tensors()
    for g in grads.values():
        g[...] = 0.0                      # with no gradient, only weight decay moves a parameter
    before = {k: p.copy() for k, p in params.items()}
    make_optimizer(name, params, grads, lr=0.1, weight_decay=0.1).step()
    np.testing.assert_array_equal(params["b"], before["b"])
    assert np.all(np.abs(params["w"]) < np.abs(before["w"]))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_resumes_bitwise(name):
    """Two steps, the state saved (copied, as into a checkpoint), a new optimiser over copies of the
    parameters loads it, three more steps: bitwise the same as five steps in one go."""
    rng = np.random.default_rng(1)
    gradient_sequence = [{"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)} for _ in range(5)]
    hyper = dict(lr=0.05, weight_decay=0.01)

    def run(optimizer, grads, sequence):
        for step_grads in sequence:
            for k, g in step_grads.items():
                grads[k][...] = g
            optimizer.step()

    params, grads = toy_tensors()
    uninterrupted = make_optimizer(name, params, grads, **hyper)
    run(uninterrupted, grads, gradient_sequence)

    first_params, first_grads = toy_tensors()
    first = make_optimizer(name, first_params, first_grads, **hyper)
    run(first, first_grads, gradient_sequence[:2])
    saved = {k: np.array(v) for k, v in first.state_dict().items()}
    resumed_params = {k: p.copy() for k, p in first_params.items()}
    resumed_grads = {k: np.zeros_like(g) for k, g in first_grads.items()}
    resumed = make_optimizer(name, resumed_params, resumed_grads, **hyper)
    resumed.load_state_dict(saved)
    run(resumed, resumed_grads, gradient_sequence[2:])

    for k in params:
        np.testing.assert_array_equal(resumed_params[k], params[k])
    assert resumed.state_dict().keys() == uninterrupted.state_dict().keys()
    for k, v in uninterrupted.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)


def test_state_names():
    params, grads = toy_tensors()
    assert set(SGD(params, grads, 0.1).state_dict()) == {"velocity.w", "velocity.b"}   # as old checkpoints
    assert set(RMSProp(params, grads, 0.1).state_dict()) == {"mean_square.w", "mean_square.b", "mom.w", "mom.b"}
    adamw = AdamW(params, grads, 0.1)
    assert set(adamw.state_dict()) == {"exp_avg.w", "exp_avg.b", "exp_avg_sq.w", "exp_avg_sq.b", "step"}
    assert adamw.state_dict()["step"].shape == () and adamw.state_dict()["step"].dtype == np.int64


def test_make_optimizer_by_name_and_its_errors():
    params, grads = toy_tensors()
    opt = make_optimizer("rmsprop", params, grads, lr=0.016, decay=0.9, epsilon=1e-3, weight_decay=1e-5)
    assert isinstance(opt, RMSProp) and (opt.lr, opt.decay, opt.epsilon, opt.weight_decay) == (0.016, 0.9, 1e-3, 1e-5)
    with pytest.raises(TinyEffNetError, match="unknown optimizer 'adam'; choose one of sgd, rmsprop, adamw"):
        make_optimizer("adam", params, grads, lr=0.1)
    with pytest.raises(TinyEffNetError, match="the adamw optimizer has no momentum, nesterov; it takes beta1"):
        make_optimizer("adamw", params, grads, lr=0.1, momentum=0.9, nesterov=True)
