"""The residual connection every EfficientNet block shares: a branch of layers, plus the identity with
drop connect when the block keeps the shape.

    x ─┬─ branch (the block's layers, in order) ─ [drop connect] ─(+)─ y
       └──────────── identity (stride 1 and C_in = C_out) ──────────┘

Without the identity (the block strides or changes the width) y is the branch alone. On the identity path,
while training, the branch is dropped per sample with probability ``drop_rate`` (drop connect / stochastic
depth, Huang et al. 2016) and kept scaled by 1/(1 − rate), so that its expected value is unchanged:

    y = x + keep ⊙ branch(x) / (1 − rate),    keep[n] ~ Bernoulli(1 − rate), one draw per sample
    dx = dy + branch.backward(keep ⊙ dy / (1 − rate))

A block type (``MBConv``, ``FusedMBConv``) names its layers in ``BRANCH``, in forward order, and builds
them as attributes of those names; the ones a block leaves out (no expansion, no SE) are skipped.
"""

from tinyeffnet.kernels import dropout
from tinyeffnet.layers import Layer


class ResidualBlock(Layer):
    BRANCH = ()     # attribute names of the branch's layers, in forward order

    def __init__(self, in_channels, out_channels, stride, drop_rate, noise_rng):
        super().__init__()
        self.has_skip = stride == 1 and in_channels == out_channels
        self.drop_rate, self.noise_rng = drop_rate, noise_rng

    def branch_layers(self):
        """The residual branch's layers in forward order."""
        return [getattr(self, name) for name in self.BRANCH if hasattr(self, name)]

    def start_as_identity(self):
        """γ = 0 in the branch's last layer, its batch norm: the branch then outputs act(β) = 0 at the start, so a
        block with a skip computes y = x until γ learns (Goyal et al. 2017; timm's ``zero_init_last``).
        ``model.initialise`` says when."""
        self.branch_layers()[-1].params["gamma"][...] = 0

    def forward(self, x):
        h = x
        for layer in self.branch_layers():
            h = layer(h)
        if not self.has_skip:
            return h
        self.keep = None
        if self.training and self.drop_rate > 0:
            keep = dropout.drop_connect_mask(self.noise_rng, x.shape[0], self.drop_rate, x.dtype)
            self.keep = self.backend.to_device(keep)     # drawn on the host: the same mask on every device
            h = self.backend.dropout.drop_connect_forward(h, self.keep)
        self.backend.elementwise.add_into(h, x)     # h is the branch's own new array: y = h + x in place
        return h

    def backward(self, dy):
        keep = self.release("keep") if self.has_skip else None
        dh = dy if keep is None else self.backend.dropout.drop_connect_backward(keep, dy)
        for layer in reversed(self.branch_layers()):
            dh = layer.backward(dh)
        if self.has_skip:
            self.backend.elementwise.add_into(dh, dy)     # dh is new, from the branch's first layer
        return dh
