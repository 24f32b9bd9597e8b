"""The optimisers (SGD, RMSProp, AdamW) and the learning-rate schedule: linear warm-up, then cosine decay.

For every parameter θ with gradient g, learning rate lr and weight decay λ (only for weights: 1-D tensors —
batch-norm γ, β and biases — are not decayed, λ = 0 for them):

SGD with momentum μ (PyTorch's formulation; ``kernels/sgd.py``), state v:

    g ← g + λ·θ
    v ← μ·v + g
    θ ← θ − lr·(g + μ·v)        with Nesterov momentum,   θ ← θ − lr·v   without

RMSProp with decay ρ, momentum μ and ε (TensorFlow's, the EfficientNet paper's; ``kernels/rmsprop.py``),
state ms (starting at one, as TensorFlow's) and mom:

    g   ← g + λ·θ
    ms  ← ρ·ms + (1 − ρ)·g²
    mom ← μ·mom + lr·g / √(ms + ε)
    θ   ← θ − mom

AdamW with β1, β2 and ε (Loshchilov & Hutter, decoupled weight decay; PyTorch's; ``kernels/adamw.py``),
state m, v and the step count t:

    θ ← θ·(1 − lr·λ)
    m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
    θ ← θ − lr·m̂ / (√v̂ + ε)     with m̂ = m / (1 − β1^t), v̂ = v / (1 − β2^t)

One fused kernel does each rule's lines for a tensor, on the device of the tensor: the state arrays live
beside the parameters, on the GPU after ``model.to("cuda")``. Every optimiser is a class over the same
``Optimizer`` base (params and grads by name, ``lr`` set by the schedule, ``step()``, ``state_dict()``) and a
line in ``OPTIMIZERS``; ``make_optimizer`` builds one by name.
"""

import inspect
import math

import numpy as np

from tinyeffnet.backend import backend_of
from tinyeffnet.errors import TinyEffNetError


class Optimizer:
    """What every optimiser shares: the parameters and gradients, the learning rate, weight decay on weights
    only, and per-parameter state arrays saved by name.

    A subclass names its state arrays and their starting values in ``STATE`` and writes ``update``, the
    kernel call for one tensor. Each state is an attribute, a dict of arrays by parameter name shaped like the
    parameters (``self.velocity`` for SGD); ``state_dict()`` holds them as ``<state>.<parameter name>``."""

    STATE = {}   # state array name → starting value (every element)

    def __init__(self, params, grads, lr, weight_decay):
        """``params`` and ``grads``: dicts of arrays by name (a model's ``named_parameters()`` and ``named_grads()``,
        taken after ``model.to(device)``)."""
        self.params, self.grads, self.lr, self.weight_decay = params, grads, lr, weight_decay
        for state, start in self.STATE.items():
            setattr(self, state, {name: filled_like(p, start) for name, p in params.items()})

    def step(self):
        for name, p in self.params.items():
            decay = self.weight_decay if p.ndim > 1 else 0.0   # weights only: not batch-norm γ, β or biases
            self.update(backend_of(p), p, self.grads[name], decay, *(getattr(self, s)[name] for s in self.STATE))

    def update(self, kernels, param, grad, weight_decay, *state):
        """One step for one tensor, with the kernels of its backend and its state arrays in ``STATE``'s order."""
        raise NotImplementedError

    def state_dict(self):
        """The state arrays by ``<state>.<name>``, as NumPy arrays (themselves on the CPU, copies from a GPU)."""
        return {f"{state}.{name}": backend_of(a).to_host(a) for state in self.STATE
                for name, a in getattr(self, state).items()}

    def load_state_dict(self, state):
        """Copy the host arrays of ``state`` into the state arrays."""
        for key in self.STATE:
            for name, a in getattr(self, key).items():
                backend_of(a).copy_into(a, state[f"{key}.{name}"])


def filled_like(a, value):
    """A new array of ``a``'s backend, shape and dtype, every element ``value``."""
    kernels = backend_of(a)
    out = kernels.zeros_like(a)
    if value:
        kernels.elementwise.fill(out, value)
    return out


class SGD(Optimizer):
    """SGD with momentum μ, Nesterov's by default; state ``velocity``."""

    STATE = {"velocity": 0.0}

    def __init__(self, params, grads, lr, momentum=0.9, weight_decay=0.0, nesterov=True):
        super().__init__(params, grads, lr, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov

    def update(self, kernels, param, grad, weight_decay, velocity):
        kernels.sgd.sgd_update(param, grad, velocity, self.lr, self.momentum, weight_decay, self.nesterov)


class RMSProp(Optimizer):
    """RMSProp as TensorFlow's ``RMSPropOptimizer``, with the EfficientNet paper's decay ρ = 0.9, momentum
    μ = 0.9 and ε = 1e-3 as defaults (the paper's weight decay is 1e-5); state ``mean_square`` (ms, from one)
    and ``mom``."""

    STATE = {"mean_square": 1.0, "mom": 0.0}

    def __init__(self, params, grads, lr, decay=0.9, momentum=0.9, epsilon=1e-3, weight_decay=0.0):
        super().__init__(params, grads, lr, weight_decay)
        self.decay, self.momentum, self.epsilon = decay, momentum, epsilon

    def update(self, kernels, param, grad, weight_decay, mean_square, mom):
        kernels.rmsprop.rmsprop_update(param, grad, mean_square, mom, self.lr, self.decay, self.momentum,
                                       self.epsilon, weight_decay)


class AdamW(Optimizer):
    """AdamW with PyTorch's defaults β1 = 0.9, β2 = 0.999, ε = 1e-8; state ``exp_avg`` (m), ``exp_avg_sq`` (v)
    and ``step`` (t, the number of steps taken, a 0-d int64 array in ``state_dict``)."""

    STATE = {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def __init__(self, params, grads, lr, beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=0.0):
        super().__init__(params, grads, lr, weight_decay)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.t = 0

    def step(self):
        self.t += 1
        super().step()

    def update(self, kernels, param, grad, weight_decay, exp_avg, exp_avg_sq):
        kernels.adamw.adamw_update(param, grad, exp_avg, exp_avg_sq, self.lr, self.beta1, self.beta2, self.epsilon,
                                   weight_decay, self.t)

    def state_dict(self):
        return {**super().state_dict(), "step": np.array(self.t, np.int64)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.t = int(state["step"])


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSProp, "adamw": AdamW}


def hyper_parameters(name):
    """What the optimiser ``OPTIMIZERS[name]`` takes besides params, grads and lr, with its defaults, in the
    constructor's order: e.g. ``{"decay": 0.9, "momentum": 0.9, "epsilon": 0.001, "weight_decay": 0.0}`` for
    "rmsprop". An unknown name is a TinyEffNetError that lists the known ones."""
    if name not in OPTIMIZERS:
        raise TinyEffNetError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    parameters = list(inspect.signature(OPTIMIZERS[name]).parameters.values())[3:]      # after params, grads, lr
    return {p.name: p.default for p in parameters}


def make_optimizer(name, params, grads, lr, **hyper):
    """The optimiser ``OPTIMIZERS[name]`` over ``params`` and ``grads``, e.g.
    ``make_optimizer("rmsprop", params, grads, lr=0.016, weight_decay=1e-5)``; a hyper-parameter it does not
    take, or an unknown name, is a TinyEffNetError that lists what it does take."""
    accepted = hyper_parameters(name)
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        raise TinyEffNetError(f"the {name} optimizer has no {', '.join(unknown)}; it takes {', '.join(accepted)}")
    return OPTIMIZERS[name](params, grads, lr, **hyper)


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
