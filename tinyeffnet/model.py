"""EfficientNet: stem → stages of blocks → head → pool → dropout → classifier, built from a ``ModelConfig``.

    stem     3×3 conv, stride 2 (1 with the CIFAR adaptation) → BN + act       (N, R/2, R/2, 32·w)
    stages   the rows of the family's table (``scaling.B0_STAGES``, ``V2_BASE_STAGES``, …), scaled by
             width and depth: MBConv blocks, and Fused-MBConv in EfficientNetV2's early stages
    head     1×1 conv → BN + act                                               (N, ·, ·, 1280·w)
    pool     global average                                                    (N, 1280·w)
    dropout  at the variant's rate, then a linear classifier                   (N, num_classes)

The drop-connect rate of block i (of n) is ``drop_connect · i / n``: 0 for the first block, growing
linearly towards the model's rate. The weights start as ``config.init`` says (``initialise``).

Each stage row names its block type; ``BLOCKS`` maps the name to the class, which builds one block from
the row with ``from_stage(stage, in_channels, out_channels, stride, drop_rate, config, rng, noise_rng,
dtype)``. A new block type is a new file with such a class, one entry here and rows that name it.
"""

import math

import numpy as np

from tinyeffnet.backend import backend_of
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.fused_mbconv import FusedMBConv
from tinyeffnet.layers import BatchNorm, Conv2d, Dropout, GlobalAvgPool, Layer, Linear, PointwiseConv2d
from tinyeffnet.mbconv import MBConv
from tinyeffnet.scaling import INITS

IMAGE_CHANNELS = 3
STEM_KERNEL = 3
BLOCKS = {"mbconv": MBConv, "fused_mbconv": FusedMBConv}    # Stage.block → the block class


def initialise(model, scheme, rng):
    """Start ``model``'s weights as ``scheme`` (one of ``scaling.INITS``) says, ``rng`` drawing what it redraws.

    "paper": as the layers draw them, the paper's (its TensorFlow code, and timm's ``_init_weight_goog``):
    every convolution He-normal on fan-out, batch-norm γ = 1 and β = 0, and the classifier uniform(±1/√K) for
    K classes. That bound suits ImageNet's K = 1000; for CIFAR-10's K = 10 the initial logits are √100 = 10
    times larger, and the first loss is about 4.3 instead of ln 10 = 2.30.

    "stable" changes two things, so that a deep stack learns from the first step:

    * the classifier uniform(±1/√F) for F input features (PyTorch's default ``Linear`` bound): the logits
      no longer grow as the class count shrinks, and the first loss is close to ln K;
    * γ = 0 in the last batch norm of every block with a skip (``ResidualBlock.start_as_identity``; Goyal et al.
      2017, timm's ``zero_init_last``): each residual block starts as the identity, so at first only the
      blocks that change the shape (the first of each stage) transform the signal, however deep the stages,
      and each residual branch grows from zero as its γ learns.

    Measured on the shared CIFAR-10 copy (2026-12-02, this code, one thread each): ``python -m tinyeffnet.train
    --phi 0 --dataset cifar10 --subset 5000 --epochs 2 --optimizer sgd --no-ema --init paper`` (otherwise the
    recipe's defaults) ends at 9.94 % test accuracy on the 10,000 test images, the same with ``--init stable``
    at 26.92 %. The first step's loss on the synthetic set with a tiny network (``tests/test_recipe.py``, five
    seeds): 1.43–1.70 · ln K with "paper", 1.01–1.07 · ln K with "stable"."""
    if scheme not in INITS:
        raise ValueError(f"unknown initialisation {scheme!r}; choose one of {', '.join(INITS)}")
    if scheme == "paper":
        return
    weight = model.classifier.params["weight"]
    bound = 1.0 / math.sqrt(weight.shape[0])
    weight[...] = rng.uniform(-bound, bound, size=weight.shape)
    for block in model.blocks:
        if block.has_skip:
            block.start_as_identity()


class EfficientNet(Layer):
    def __init__(self, config, seed=0, dtype=np.float32):
        super().__init__()
        self.config, self.dtype = config, np.dtype(dtype)
        init_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(init_seed)
        self.noise_rng = np.random.default_rng(noise_seed)   # dropout and drop connect draw from here
        bn = dict(momentum=config.bn_momentum, epsilon=config.bn_epsilon, activation=config.activation, dtype=dtype)

        self.stem = Conv2d(IMAGE_CHANNELS, config.stem_channels, STEM_KERNEL, config.stem_stride, rng, dtype,
                           config.padding)
        self.stem_bn = BatchNorm(config.stem_channels, **bn)

        plan = [(s, i) for s in config.stages() for i in range(s.repeats)]
        self.blocks = []
        for index, (stage, i) in enumerate(plan):
            self.blocks.append(BLOCKS[stage.block].from_stage(
                stage, in_channels=stage.in_channels if i == 0 else stage.out_channels,
                out_channels=stage.out_channels, stride=stage.stride if i == 0 else 1,
                drop_rate=config.drop_connect * index / len(plan),
                config=config, rng=rng, noise_rng=self.noise_rng, dtype=dtype))

        last = plan[-1][0].out_channels
        self.head = PointwiseConv2d(last, config.head_channels, rng, dtype)
        self.head_bn = BatchNorm(config.head_channels, **bn)
        self.pool = GlobalAvgPool()
        self.dropout = Dropout(config.dropout, self.noise_rng)
        self.classifier = Linear(config.head_channels, config.num_classes, rng, dtype)
        initialise(self, config.init, rng)

    def layers(self):
        """Top-level layers in forward order."""
        return [self.stem, self.stem_bn, *self.blocks, self.head, self.head_bn, self.pool, self.dropout,
                self.classifier]

    def forward(self, x):
        """x: (N, H, W, 3) normalised images → logits (N, num_classes), on the model's device.

        x may be a host (NumPy) array whatever the device: it is copied there (``model.to``)."""
        if x.ndim != 4 or x.shape[3] != IMAGE_CHANNELS:
            raise ValueError(f"images must have shape (N, H, W, {IMAGE_CHANNELS}) (NHWC), got {x.shape}")
        if x.dtype != self.dtype:
            raise TypeError(f"images must be {self.dtype} like the model, got {x.dtype}")
        x = self.backend.to_device(x)
        for layer in self.layers():
            x = layer(x)
        return x

    def backward(self, dlogits):
        """dlogits: (N, num_classes) → gradient for the images; parameter gradients accumulate in ``grads``."""
        for layer in reversed(self.layers()):
            dlogits = layer.backward(dlogits)
        return dlogits

    def num_parameters(self):
        return sum(p.size for p in self.named_parameters().values())

    def state_dict(self):
        """Parameters and buffers by dotted name, as NumPy arrays: on the CPU the arrays themselves, not
        copies; after ``to("cuda")`` copies fetched from the GPU."""
        state = {**self.named_parameters(), **self.named_buffers()}
        return {name: backend_of(a).to_host(a) for name, a in state.items()}

    def load_state_dict(self, state, source=None):
        """Copy ``state`` (host arrays) into the model, on its device; every name and shape must match, else
        a TinyEffNetError names the first that does not (and ``source``, the file the weights came from)."""
        def mismatch(why):
            return TinyEffNetError(f"{source} does not fit this model: {why}" if source is not None else why)

        own = {**self.named_parameters(), **self.named_buffers()}
        for name, value in own.items():
            if name not in state:
                raise mismatch(f"tensor {name!r} is missing from the weights (is it for another architecture?)")
            if np.shape(state[name]) != value.shape:
                raise mismatch(f"tensor {name!r} has shape {np.shape(state[name])} in the weights but "
                               f"{value.shape} in this model ({self.config.name}): another architecture?")
        extra = sorted(set(state) - set(own))
        if extra:
            raise mismatch(f"the weights hold tensor {extra[0]!r} that this model ({self.config.name}) does not have")
        for name, value in own.items():
            backend_of(value).copy_into(value, state[name])
