"""The MBConv block: the inverted-residual bottleneck of MobileNetV2 with squeeze-and-excitation.

    x ─┬─ expand 1×1 → BN + act ─ depthwise k×k, stride s → BN + act ─ SE ─ project 1×1 → BN ─(+)─ y
       └──────────────────────────── identity (stride 1 and C_in = C_out) ───────────────────────┘

* the expansion is skipped when the expand ratio is 1 (the first stage);
* there is no activation after the projection ("linear bottleneck");
* "BN + act" is one layer, batch norm with the activation fused in (see ``layers.BatchNorm``);
* the identity path, with drop connect, is ``residual.ResidualBlock``'s, shared with Fused-MBConv;
* the projection does not keep its input, SE's output, for its backward: it asks SE to remake it there
  from the SE input and gate SE keeps anyway (``SqueezeExcite.output``), one activation-sized array less
  held per block between the forward and the backward pass.
"""

from tinyeffnet.layers import BatchNorm, DepthwiseConv2d, PointwiseConv2d
from tinyeffnet.residual import ResidualBlock
from tinyeffnet.squeeze_excite import SqueezeExcite


class MBConv(ResidualBlock):
    BRANCH = ("expand", "expand_bn", "depthwise", "depthwise_bn", "se", "project", "project_bn")

    def __init__(self, in_channels, out_channels, kernel, stride, expand, se_ratio, drop_rate,
                 config, rng, noise_rng, dtype):
        super().__init__(in_channels, out_channels, stride, drop_rate, noise_rng)
        mid = in_channels * expand
        bn = dict(momentum=config.bn_momentum, epsilon=config.bn_epsilon, dtype=dtype)
        if expand != 1:
            self.expand = PointwiseConv2d(in_channels, mid, rng, dtype)
            self.expand_bn = BatchNorm(mid, activation=config.activation, **bn)
        self.depthwise = DepthwiseConv2d(mid, kernel, stride, rng, dtype, config.padding)
        self.depthwise_bn = BatchNorm(mid, activation=config.activation, **bn)
        if se_ratio > 0:
            self.se = SqueezeExcite(mid, max(1, int(in_channels * se_ratio)), config.activation, rng, dtype)
        self.project = PointwiseConv2d(mid, out_channels, rng, dtype)
        if se_ratio > 0:
            self.project.recompute_input = self.se.output
        self.project_bn = BatchNorm(out_channels, **bn)

    @classmethod
    def from_stage(cls, stage, in_channels, out_channels, stride, drop_rate, config, rng, noise_rng, dtype):
        """One block of a stage row (``scaling.Stage``): the row gives the kernel, expansion and SE ratio."""
        return cls(in_channels, out_channels, stage.kernel, stride, stage.expand, stage.se_ratio, drop_rate,
                   config, rng, noise_rng, dtype)
