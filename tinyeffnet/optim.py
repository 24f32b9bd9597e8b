"""Minibatch SGD with momentum, and the learning-rate schedule: linear warm-up, then cosine decay.

For every parameter θ with gradient g (PyTorch's formulation, momentum μ, weight decay λ):

    g ← g + λ·θ                 (only for weights: 1-D tensors — batch-norm γ, β and biases — are not decayed)
    v ← μ·v + g
    θ ← θ − lr·(g + μ·v)        with Nesterov momentum,   θ ← θ − lr·v   without
"""

import math

import numpy as np


class SGD:
    def __init__(self, params, grads, lr, momentum=0.9, weight_decay=0.0, nesterov=True):
        """``params`` and ``grads``: dicts of arrays by name (a model's ``named_parameters()`` and ``named_grads()``)."""
        self.params, self.grads = params, grads
        self.lr, self.momentum, self.weight_decay, self.nesterov = lr, momentum, weight_decay, nesterov
        self.velocity = {name: np.zeros_like(p) for name, p in params.items()}

    def step(self):
        for name, p in self.params.items():
            g = self.grads[name]
            if self.weight_decay and p.ndim > 1:   # weights only: not batch-norm γ, β or biases
                g = g + self.weight_decay * p
            v = self.velocity[name]
            v *= self.momentum
            v += g
            p -= self.lr * (g + self.momentum * v if self.nesterov else v)

    def state_dict(self):
        return {f"velocity.{name}": v for name, v in self.velocity.items()}

    def load_state_dict(self, state):
        for name, v in self.velocity.items():
            v[...] = state[f"velocity.{name}"]


def global_grad_norm(grads):
    """sqrt(Σ g²) over every gradient tensor, accumulated in float64."""
    return math.sqrt(sum(float(np.dot(g.ravel().astype(np.float64), g.ravel())) for g in grads.values()))


def clip_grad_norm(grads, max_norm):
    """Scale all gradients down together so their global norm is at most ``max_norm``; returns the norm before."""
    norm = global_grad_norm(grads)
    if norm > max_norm:
        for g in grads.values():
            g *= max_norm / norm
    return norm


def learning_rate(step, total_steps, base_lr, warmup_steps, final_fraction=0.0):
    """Linear warm-up from 0 to ``base_lr`` over ``warmup_steps``, then cosine decay to ``final_fraction·base_lr``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return base_lr * (final_fraction + (1 - final_fraction) * cosine)
