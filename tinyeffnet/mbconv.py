"""The MBConv block: the inverted-residual bottleneck of MobileNetV2 with squeeze-and-excitation.

    x ─┬─ expand 1×1 → BN + act ─ depthwise k×k, stride s → BN + act ─ SE ─ project 1×1 → BN ─(+)─ y
       └──────────────────────────── identity (stride 1 and C_in = C_out) ───────────────────────┘

* the expansion is skipped when the expand ratio is 1 (the first stage);
* there is no activation after the projection ("linear bottleneck");
* "BN + act" is one layer, batch norm with the activation fused in (see ``layers.BatchNorm``);
* on the identity path the residual branch is dropped per sample with probability ``drop_rate``
  while training (drop connect / stochastic depth), and kept scaled by 1/(1 − rate);
* the projection does not keep its input, SE's output, for its backward: it asks SE to remake it there
  from the SE input and gate SE keeps anyway (``SqueezeExcite.output``), one activation-sized array less
  held per block between the forward and the backward pass.
"""

from tinyeffnet.kernels import dropout
from tinyeffnet.layers import BatchNorm, DepthwiseConv2d, Layer, PointwiseConv2d
from tinyeffnet.squeeze_excite import SqueezeExcite


class MBConv(Layer):
    def __init__(self, in_channels, out_channels, kernel, stride, expand, se_ratio, drop_rate,
                 config, rng, noise_rng, dtype):
        super().__init__()
        mid = in_channels * expand
        bn = dict(momentum=config.bn_momentum, epsilon=config.bn_epsilon, dtype=dtype)
        if expand != 1:
            self.expand = PointwiseConv2d(in_channels, mid, rng, dtype)
            self.expand_bn = BatchNorm(mid, activation=config.activation, **bn)
        self.depthwise = DepthwiseConv2d(mid, kernel, stride, rng, dtype)
        self.depthwise_bn = BatchNorm(mid, activation=config.activation, **bn)
        if se_ratio > 0:
            self.se = SqueezeExcite(mid, max(1, int(in_channels * se_ratio)), config.activation, rng, dtype)
        self.project = PointwiseConv2d(mid, out_channels, rng, dtype)
        if se_ratio > 0:
            self.project.recompute_input = self.se.output
        self.project_bn = BatchNorm(out_channels, **bn)
        self.has_skip = stride == 1 and in_channels == out_channels
        self.drop_rate, self.noise_rng = drop_rate, noise_rng

    @classmethod
    def from_stage(cls, stage, in_channels, out_channels, stride, drop_rate, config, rng, noise_rng, dtype):
        """One block of a stage row (``scaling.Stage``): the row gives the kernel, expansion and SE ratio."""
        return cls(in_channels, out_channels, stage.kernel, stride, stage.expand, stage.se_ratio, drop_rate,
                   config, rng, noise_rng, dtype)

    def start_as_identity(self):
        """γ = 0 in the projection's batch norm: the branch then outputs β = 0, so a block with a skip computes
        y = x until γ learns (Goyal et al. 2017; timm's ``zero_init_last``). ``model.initialise`` says when."""
        self.project_bn.params["gamma"][...] = 0

    def branch_layers(self):
        """The residual branch's layers in forward order."""
        names = ("expand", "expand_bn", "depthwise", "depthwise_bn", "se", "project", "project_bn")
        return [getattr(self, n) for n in names if hasattr(self, n)]

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
