"""Minibatch SGD with momentum, and the learning-rate schedule: linear warm-up, then cosine decay.

For every parameter θ with gradient g (PyTorch's formulation, momentum μ, weight decay λ):

    g ← g + λ·θ                 (only for weights: 1-D tensors — batch-norm γ, β and biases — are not decayed)
    v ← μ·v + g
    θ ← θ − lr·(g + μ·v)        with Nesterov momentum,   θ ← θ − lr·v   without

One fused kernel does the three lines for each tensor (``kernels/sgd.py``), on the device of the tensor:
the velocities v live beside the parameters, on the GPU after ``model.to("cuda")``.
"""

import math

from tinyeffnet.backend import backend_of


class SGD:
    def __init__(self, params, grads, lr, momentum=0.9, weight_decay=0.0, nesterov=True):
        """``params`` and ``grads``: dicts of arrays by name (a model's ``named_parameters()`` and ``named_grads()``,
        taken after ``model.to(device)``)."""
        self.params, self.grads = params, grads
        self.lr, self.momentum, self.weight_decay, self.nesterov = lr, momentum, weight_decay, nesterov
        self.velocity = {name: backend_of(p).zeros_like(p) for name, p in params.items()}

    def step(self):
        for name, p in self.params.items():
            decay = self.weight_decay if p.ndim > 1 else 0.0   # weights only: not batch-norm γ, β or biases
            backend_of(p).sgd.sgd_update(p, self.grads[name], self.velocity[name], self.lr, self.momentum, decay,
                                         self.nesterov)

    def state_dict(self):
        """The velocities by name, as NumPy arrays (themselves on the CPU, copies from a GPU)."""
        return {f"velocity.{name}": backend_of(v).to_host(v) for name, v in self.velocity.items()}

    def load_state_dict(self, state):
        """Copy the host arrays of ``state`` into the velocities."""
        for name, v in self.velocity.items():
            backend_of(v).copy_into(v, state[f"velocity.{name}"])


def global_grad_norm(grads):
    """sqrt(Σ g²) over every gradient tensor, accumulated in float64."""
    return math.sqrt(sum(backend_of(g).elementwise.sum_of_squares(g) for g in grads.values()))


def clip_grad_norm(grads, max_norm):
    """Scale all gradients down together so their global norm is at most ``max_norm``; returns the norm before."""
    norm = global_grad_norm(grads)
    if norm > max_norm:
        for g in grads.values():
            backend_of(g).elementwise.scale_into(g, max_norm / norm)
    return norm


def learning_rate(step, total_steps, base_lr, warmup_steps, final_fraction=0.0):
    """Linear warm-up from 0 to ``base_lr`` over ``warmup_steps``, then cosine decay to ``final_fraction·base_lr``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return base_lr * (final_fraction + (1 - final_fraction) * cosine)
