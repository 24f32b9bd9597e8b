"""Central differences in float64, the oracle every backward pass is checked against.

A kernel's backward takes ``dy`` and returns gradients of ``L = sum(y · dy)``; so we pick a random
``dy``, run the backward once, and compare each returned gradient with

    dL/dθ_i ≈ (L(θ + ε e_i) − L(θ − ε e_i)) / 2ε

for every element ``i`` (the shapes in the tests are small enough to do them all).
"""

import numpy as np
from tolerances import GRADIENT

EPS = 1e-6
ATOL, RTOL = GRADIENT["atol"], GRADIENT["rtol"]


def numerical_gradient(scalar_fn, array, eps=EPS):
    """∂ scalar_fn() / ∂ array by central differences, perturbing ``array`` in place and restoring it."""
    assert array.dtype == np.float64, "finite differences need float64"
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = scalar_fn()
        flat[i] = old - eps
        minus = scalar_fn()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def assert_gradients(forward, inputs, analytic, dy, atol=ATOL, rtol=RTOL):
    """Check ``analytic[name]`` against central differences of ``sum(forward(**inputs) · dy)``.

    ``inputs`` maps argument names to float64 arrays (perturbed in place during the check);
    ``analytic`` maps a subset of those names to the backward pass's gradients."""
    def loss():
        return float(np.sum(forward(**inputs) * dy))

    for name, grad in analytic.items():
        expected = numerical_gradient(loss, inputs[name])
        np.testing.assert_allclose(grad, expected, atol=atol, rtol=rtol, err_msg=f"gradient of {name}")


def assert_block_gradients(block, x, seed):
    """Check a block's backward (``x``'s gradient and every parameter's) against central differences of
    ``L = sum(block.forward(x) · dy)`` for a random ``dy``, with the block's noise (drop connect) held fixed:
    its generator is rewound before each forward, so every evaluation draws the same mask."""
    noise = block.noise_rng.bit_generator.state
    dy = np.random.default_rng(seed + 9).normal(size=block.forward(x).shape)

    def loss():
        block.noise_rng.bit_generator.state = noise
        return float(np.sum(block.forward(x) * dy))

    loss()
    block.zero_grad()
    dx = block.backward(dy)
    grads = {name: g.copy() for name, g in block.named_grads().items()}
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=RTOL, atol=ATOL, err_msg="input")
    for name, param in block.named_parameters().items():
        np.testing.assert_allclose(grads[name], numerical_gradient(loss, param), rtol=RTOL, atol=ATOL,
                                   err_msg=name)
