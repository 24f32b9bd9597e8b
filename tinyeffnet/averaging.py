"""An exponential moving average of the weights, the network the EfficientNet paper evaluates.

The paper (as TensorFlow's ``ExponentialMovingAverage(decay=0.9999, num_updates=global_step)``) keeps, beside
every parameter and batch-norm running statistic x, an average updated after each optimiser step t:

    d_t  = min(decay, (1 + t) / (10 + t))     t = steps so far, this one included (1, 2, 3, …)
    avg ← d_t·avg + (1 − d_t)·x               (``kernels/ema.py``, in place)

The average starts as a copy of the model. The warm-up d_t (0.18, 0.25, 0.31, … rising to ``decay`` after
about 90,000 steps at 0.9999) lets the average follow the weights quickly at first, so a short run's average
is not stuck near the random initialisation. Evaluating with the averaged arrays, and going back::

    average = WeightAverage(model)            # after model.to(device), like the optimiser
    ...
    optimizer.step()
    average.update()
    ...
    with average.applied():                   # the model holds the averaged arrays inside the block
        accuracy = evaluate(model, ...)

The training command does this by default from scratch (``--ema DECAY`` sets the decay, ``--no-ema`` turns it
off; ``engine.train_step`` updates, ``Trainer.evaluation`` evaluates, and the checkpoints keep the average beside
the trained weights).
"""

import contextlib

import numpy as np

from tinyeffnet.backend import backend_of

DECAY = 0.9999   # the paper's moving-average decay


def warmed_up_decay(decay, t):
    """d_t = min(decay, (1 + t) / (10 + t)) of update t (1, 2, 3, …)."""
    return min(decay, (1 + t) / (10 + t))


def averaged_slots(model):
    """Where each floating-point parameter and buffer of ``model`` lives: ``(name, dict, key)`` with
    ``dict[key]`` the array. The dicts are the layers' own, so an array a layer replaces (batch norm's running
    statistics are new arrays after each training step) is found again; the integer step counters are skipped."""
    for prefix, layer in model.named_layers():
        for arrays in (layer.params, layer.buffers):
            for key, a in arrays.items():
                if np.issubdtype(a.dtype, np.floating):
                    yield prefix + key, arrays, key


def copy_of(a):
    """A copy of ``a`` on its own backend."""
    kernels = backend_of(a)
    return kernels.to_device(kernels.to_host(a).copy())


class WeightAverage:
    """Averaged copies of a model's parameters and batch-norm running statistics (name → array, on the
    model's device), with ``t``, the number of updates so far."""

    def __init__(self, model, decay=DECAY):
        if not 0 <= decay <= 1:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.decay, self.t = decay, 0
        self.slots = list(averaged_slots(model))
        self.average = {name: copy_of(arrays[key]) for name, arrays, key in self.slots}

    def current_decay(self):
        """d_t of the next update: min(decay, (1 + t) / (10 + t)) with t counting that update."""
        return warmed_up_decay(self.decay, self.t + 1)

    def update(self):
        """Average in the model's current arrays; call once after each optimiser step."""
        decay = self.current_decay()
        for name, arrays, key in self.slots:
            x = arrays[key]
            backend_of(x).ema.ema_update(self.average[name], x, decay)
        self.t += 1

    @contextlib.contextmanager
    def applied(self):
        """Inside the block the model holds the averaged arrays (for evaluating or saving them); after it, its
        own again, the very same arrays. The arrays are swapped, not copied. Take no optimiser step and no
        ``update`` inside: the optimiser still holds the model's own arrays."""
        self._swap()
        try:
            yield self
        finally:
            self._swap()

    def _swap(self):
        for name, arrays, key in self.slots:
            arrays[key], self.average[name] = self.average[name], arrays[key]

    def state_dict(self):
        """``average.<name>`` for every averaged array, as NumPy arrays, and ``step`` (t, a 0-d int64 array)."""
        state = {f"average.{name}": backend_of(a).to_host(a) for name, a in self.average.items()}
        return {**state, "step": np.array(self.t, np.int64)}

    def load_state_dict(self, state):
        """Copy the host arrays of ``state`` into the averages, and t."""
        for name, a in self.average.items():
            backend_of(a).copy_into(a, state[f"average.{name}"])
        self.t = int(state["step"])
