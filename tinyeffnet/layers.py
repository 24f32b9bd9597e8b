"""Layers: objects that own parameters and gradients and call the kernels.

Every layer follows one small protocol, in the spirit of micrograd:

* ``y = layer(x)`` runs ``forward``; in training mode it keeps what ``backward`` will need;
* ``dx = layer.backward(dy)`` returns the gradient for the input and *accumulates* the gradients of
  the layer's own parameters into ``layer.grads`` (same keys as ``layer.params``);
* ``layer.buffers`` holds state that is saved but not trained (batch-norm running statistics).

Composite layers (``MBConv``, ``EfficientNet``) hold other layers as attributes, and
``named_parameters`` walks them to give every tensor a stable dotted name such as
``blocks.3.depthwise.weight``. Tensors are NHWC float32 (float64 for gradient checks).

Every kernel call and every sum of tensors goes through ``self.backend`` (``tinyeffnet.backend``): the CPU's
kernels by default, their CUDA twins after ``model.to("cuda")``, which moves the parameters, gradients and
buffers to the GPU; activations then stay there too, since each kernel returns its result on its device.
"""

import math

import numpy as np

from tinyeffnet.backend import CPU, backend
from tinyeffnet.kernels import dropout
from tinyeffnet.kernels.padding import SAME


class Layer:
    """Base class: parameters, gradients, buffers, children and the train/eval switch."""

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self.training = True
        self.backend = CPU
        self.trace = None   # a list while tinyeffnet.summary records this layer's calls

    def __call__(self, x):
        y = self.forward(x)
        if self.trace is not None:
            self.trace.append((self, x.shape, y.shape))
        return y

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def macs(self, in_shape, out_shape):
        """Multiply-adds of one forward call (0 for layers that do no products)."""
        return 0

    def release(self, *names):
        """Hand over the tensors the forward kept for the backward, and drop the layer's references, so
        memory is freed as the backward pass goes instead of held until the next forward."""
        values = tuple(getattr(self, name) for name in names)
        for name in names:
            setattr(self, name, None)
        return values if len(values) > 1 else values[0]

    def add_param(self, name, value):
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)

    def accumulate(self, name, gradient):
        """grads[name] += gradient, on the layer's device."""
        self.backend.elementwise.add_into(self.grads[name], gradient)

    def children(self):
        """Direct sub-layers in definition order; lists of layers are numbered."""
        for name, value in vars(self).items():
            if isinstance(value, Layer):
                yield name, value
            elif isinstance(value, list) and value and all(isinstance(v, Layer) for v in value):
                for i, v in enumerate(value):
                    yield f"{name}.{i}", v

    def named_layers(self, prefix=""):
        yield prefix, self
        for name, child in self.children():
            yield from child.named_layers(f"{prefix}{name}.")

    def _named(self, attribute):
        for prefix, layer in self.named_layers():
            for key, value in getattr(layer, attribute).items():
                yield prefix + key, value

    def named_parameters(self):
        return dict(self._named("params"))

    def named_grads(self):
        return dict(self._named("grads"))

    def named_buffers(self):
        return dict(self._named("buffers"))

    def zero_grad(self):
        for _, layer in self.named_layers():
            for g in layer.grads.values():
                layer.backend.elementwise.fill(g, 0.0)

    def to(self, device):
        """Move this layer and its sub-layers to ``device`` ("cpu" or "cuda"): their parameters, gradients and
        floating-point buffers become arrays of that device, and their kernels run there. Returns self.

        Integer buffers (batch norm's step counter) stay on the host, where the loop counts. An optimiser
        holds the arrays themselves: build it after the move."""
        target = backend(device)
        for _, layer in self.named_layers():
            for arrays in (layer.params, layer.grads, layer.buffers):
                for name, a in arrays.items():
                    if not np.issubdtype(a.dtype, np.floating):
                        continue
                    if device == "cuda" and a.dtype != np.float32:
                        raise TypeError(f"the CUDA kernels are float32, but this model is {a.dtype}")
                    arrays[name] = target.to_device(a)
            layer.backend = target
        return self

    def train(self, mode=True):
        for _, layer in self.named_layers():
            layer.training = mode
        return self

    def eval(self):
        return self.train(False)


def conv_init(rng, shape, fan_out, dtype):
    """He-normal on fan-out, as EfficientNet: N(0, sqrt(2 / fan_out)), fan_out = k·k·C_out / groups."""
    return rng.normal(0.0, math.sqrt(2.0 / fan_out), size=shape).astype(dtype)


class Conv2d(Layer):
    """Dense k×k convolution, no bias (the stem, Fused-MBConv). weight: (k, k, C_in, C_out); ``padding`` is the
    rule of ``kernels/padding.py`` ("same", TensorFlow's, or "symmetric", PyTorch's (k − 1)/2)."""

    def __init__(self, in_channels, out_channels, kernel, stride, rng, dtype=np.float32, padding=SAME):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.add_param("weight", conv_init(rng, (kernel, kernel, in_channels, out_channels),
                                           kernel * kernel * out_channels, dtype))

    def forward(self, x):
        if self.training:
            self.x = x
        return self.backend.conv2d.conv2d_forward(x, self.params["weight"], self.stride, self.padding)

    def backward(self, dy):
        dx, dw = self.backend.conv2d.conv2d_backward(self.release("x"), self.params["weight"], dy, self.stride,
                                                     self.padding)
        self.accumulate("weight", dw)
        return dx

    def macs(self, in_shape, out_shape):
        k, _, cin, cout = self.params["weight"].shape
        return out_shape[1] * out_shape[2] * k * k * cin * cout


class DepthwiseConv2d(Layer):
    """Depthwise k×k convolution: each channel its own filter. weight: (k, k, C); ``padding`` as ``Conv2d``'s."""

    def __init__(self, channels, kernel, stride, rng, dtype=np.float32, padding=SAME):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.add_param("weight", conv_init(rng, (kernel, kernel, channels), kernel * kernel, dtype))

    def forward(self, x):
        if self.training:
            self.x = x
        return self.backend.depthwise.depthwise_conv_forward(x, self.params["weight"], self.stride, self.padding)

    def backward(self, dy):
        dx, dw = self.backend.depthwise.depthwise_conv_backward(self.release("x"), self.params["weight"], dy,
                                                                self.stride, self.padding)
        self.accumulate("weight", dw)
        return dx

    def macs(self, in_shape, out_shape):
        k, _, c = self.params["weight"].shape
        return out_shape[1] * out_shape[2] * k * k * c


class PointwiseConv2d(Layer):
    """1×1 convolution, no bias: one matrix product over channels. weight: (C_in, C_out).

    Training keeps the input x for the backward (dw = xᵀ·dy), unless ``recompute_input`` is set: a function
    that remakes x, bitwise, from tensors another layer keeps anyway. The backward then calls it instead, and
    x is not held between the passes (MBConv's projection, whose input is squeeze-and-excitation's output)."""

    def __init__(self, in_channels, out_channels, rng, dtype=np.float32):
        super().__init__()
        self.add_param("weight", conv_init(rng, (in_channels, out_channels), out_channels, dtype))
        self.recompute_input = None

    def forward(self, x):
        if self.training and self.recompute_input is None:
            self.x = x
        return self.backend.pointwise.pointwise_conv_forward(x, self.params["weight"])

    def backward(self, dy):
        x = self.release("x") if self.recompute_input is None else self.recompute_input()
        dx, dw = self.backend.pointwise.pointwise_conv_backward(x, self.params["weight"], dy)
        self.accumulate("weight", dw)
        return dx

    def macs(self, in_shape, out_shape):
        return out_shape[1] * out_shape[2] * self.params["weight"].size


class BatchNorm(Layer):
    """Batch normalisation over N, H, W for each channel, y = γ·(x − μ)/sqrt(σ² + ε) + β, optionally
    followed by an activation ("swish" or "relu6") in the same layer.

    Training uses the batch's μ, σ² and updates the running statistics; evaluation uses the running ones.
    The activation is fused in (``kernels/batchnorm_act.py``, as timm's ``BatchNormAct2d``) because BN →
    act is the most frequent pair in EfficientNet and fusing it saves whole passes over memory; the
    kernels are tested against ``kernels/batchnorm.py`` followed by ``kernels/activations.py``.

    ``momentum_override`` (normally None) lets ``recalibrate_batchnorm`` average batch statistics
    exactly instead of with the paper's slow momentum.
    """

    def __init__(self, channels, momentum, epsilon, activation=None, dtype=np.float32):
        super().__init__()
        self.momentum, self.epsilon, self.activation = momentum, epsilon, activation
        self.add_param("gamma", np.ones(channels, dtype))
        self.add_param("beta", np.zeros(channels, dtype))
        self.buffers["running_mean"] = np.zeros(channels, dtype)
        self.buffers["running_var"] = np.ones(channels, dtype)
        self.buffers["num_batches_tracked"] = np.zeros((), np.int64)
        self.momentum_override = None

    def forward(self, x):
        p, b, kernels = self.params, self.buffers, self.backend
        if not self.training:
            return kernels.batchnorm_act.batchnorm_act_eval_forward(
                x, p["gamma"], p["beta"], b["running_mean"], b["running_var"], self.epsilon, self.activation)
        y, mean, var = kernels.batchnorm_act.batchnorm_act_train_forward(x, p["gamma"], p["beta"], self.epsilon,
                                                                         self.activation)
        self.x, self.mean, self.var = x, mean, var
        channels = x.shape[x.ndim - 1]   # (a device array's shape takes no negative index)
        b["running_mean"], b["running_var"] = kernels.batchnorm.update_running_stats(
            b["running_mean"], b["running_var"], mean, var, x.size // channels,
            self.momentum if self.momentum_override is None else self.momentum_override)
        b["num_batches_tracked"] += 1
        return y

    def backward(self, dy):
        p = self.params
        x, mean, var = self.release("x", "mean", "var")
        dx, dgamma, dbeta = self.backend.batchnorm_act.batchnorm_act_train_backward(
            x, p["gamma"], p["beta"], mean, var, self.epsilon, dy, self.activation)
        self.accumulate("gamma", dgamma)
        self.accumulate("beta", dbeta)
        return dx


ACTIVATIONS = ("swish", "relu6")   # each a pair <kind>_forward, <kind>_backward in kernels/activations.py


class Activation(Layer):
    """Swish x·σ(x) (EfficientNet) or ReLU6 (EfficientNet-Lite), elementwise."""

    def __init__(self, kind):
        super().__init__()
        if kind not in ACTIVATIONS:
            raise ValueError(f"unknown activation {kind!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.kind = kind

    def forward(self, x):
        if self.training:
            self.x = x
        return getattr(self.backend.activations, f"{self.kind}_forward")(x)

    def backward(self, dy):
        return getattr(self.backend.activations, f"{self.kind}_backward")(self.release("x"), dy)


class Sigmoid(Layer):
    """σ(x) = 1 / (1 + e^(−x)): the gate of squeeze-and-excitation."""

    def forward(self, x):
        y = self.backend.activations.sigmoid_forward(x)
        if self.training:
            self.y = y
        return y

    def backward(self, dy):
        return self.backend.activations.sigmoid_backward(self.release("y"), dy)


class GlobalAvgPool(Layer):
    """(N, H, W, C) → (N, C): the mean over the spatial positions."""

    def forward(self, x):
        self.hw = x.shape[1:3]
        return self.backend.pooling.global_avg_pool_forward(x)

    def backward(self, dy):
        return self.backend.pooling.global_avg_pool_backward(dy, *self.hw)


class Dropout(Layer):
    """Inverted dropout on (N, F) features: zero each with probability ``rate`` while training.

    ``rng`` is the model's noise generator (a ``numpy.random.Generator``), so runs are reproducible. The
    mask is drawn on the host (and copied to the device), so one seed gives the same mask on every device."""

    def __init__(self, rate, rng):
        super().__init__()
        self.rate, self.rng = rate, rng

    def forward(self, x):
        if not self.training or self.rate == 0:
            self.mask = None
            return x
        self.mask = self.backend.to_device(dropout.dropout_mask(self.rng, x.shape, self.rate, x.dtype))
        return self.backend.dropout.dropout_forward(x, self.mask)

    def backward(self, dy):
        mask = self.release("mask")
        return dy if mask is None else self.backend.dropout.dropout_backward(mask, dy)


class Linear(Layer):
    """y = x·W + b. weight: (F_in, F_out), initialised uniform(±1/sqrt(F_out)) as the paper's head (for the
    classifier, ``model.initialise`` may redraw it uniform(±1/sqrt(F_in)), PyTorch's bound); ``init="conv"``
    gives the convolution initialisation instead (squeeze-and-excitation's 1×1 convs)."""

    def __init__(self, in_features, out_features, rng, dtype=np.float32, init="uniform"):
        super().__init__()
        if init == "conv":
            w = conv_init(rng, (in_features, out_features), out_features, dtype)
        else:
            limit = 1.0 / math.sqrt(out_features)
            w = rng.uniform(-limit, limit, size=(in_features, out_features)).astype(dtype)
        self.add_param("weight", w)
        self.add_param("bias", np.zeros(out_features, dtype))

    def forward(self, x):
        if self.training:
            self.x = x
        return self.backend.linear.linear_forward(x, self.params["weight"], self.params["bias"])

    def backward(self, dy):
        dx, dw, db = self.backend.linear.linear_backward(self.release("x"), self.params["weight"], dy)
        self.accumulate("weight", dw)
        self.accumulate("bias", db)
        return dx

    def macs(self, in_shape, out_shape):
        return self.params["weight"].size


def recalibrate_batchnorm(model, batches):
    """Replace every batch norm's running statistics by the plain average of its batch statistics over
    ``batches`` (training-mode forwards with the current weights, no backward, no parameter change).

    Why: with the paper's momentum 0.99 the running averages remember the weights of the last few hundred
    steps. After a short run those weights were very different from today's, so a model evaluated with
    them scores near chance while its training accuracy climbs. Averaging fresh statistics over a few
    batches ("precise BN") fixes that; once training is long, the running averages are already right and
    recalibration changes little. The model's noise generator is restored, so training is unaffected."""
    norms = [layer for _, layer in model.named_layers() if isinstance(layer, BatchNorm)]
    rng_state = model.noise_rng.bit_generator.state
    model.train()
    for i, x in enumerate(batches):
        for bn in norms:
            bn.momentum_override = i / (i + 1)      # running ← (i·running + batch) / (i + 1)
        model.forward(x)
    for bn in norms:
        bn.momentum_override = None
    model.noise_rng.bit_generator.state = rng_state
