"""The Fused-MBConv block of EfficientNetV2 (Tan & Le, 2021, §3.2): MBConv with its 1×1 expansion and
k×k depthwise convolution fused into one dense k×k convolution.

Expand ratio e > 1 (m = C_in·e channels in the middle):

    x ─┬─ expand k×k, stride s → BN + act ─ project 1×1 → BN ─(+)─ y
       └──────── identity (stride 1 and C_in = C_out) ───────┘
    (N, H, W, C_in) → (N, H/s, W/s, m) → (N, H/s, W/s, C_out)

Expand ratio 1: a single k×k convolution straight to the output width, and an activation after it:

    x ─┬─ project k×k, stride s → BN + act ─(+)─ y
       └─ identity (stride 1 and C_in = C_out) ─┘
    (N, H, W, C_in) → (N, H/s, W/s, C_out)

* the dense k×k convolution is the stem's (``layers.Conv2d``, ``kernels/conv2d.py``): k·k·C_in·m products
  per output pixel where MBConv's two layers take C_in·m + k·k·m. That costs more multiply-adds but runs
  faster on accelerators in the early, wide-map stages, which is where EfficientNetV2 puts it;
* no squeeze-and-excitation (no V2 stage table gives a Fused-MBConv stage one);
* as in MBConv, no activation after the 1×1 projection ("linear bottleneck"); the single convolution
  of e = 1 has one, as in the reference (automl's ``FusedMBConvBlock``: "add act if no expansion");
* the names follow automl's: ``expand`` is the k×k convolution when there is an expansion, ``project``
  the layer that gives C_out channels, so ``project_bn`` is always the branch's last batch norm;
* the identity path, with drop connect, is ``residual.ResidualBlock``'s, shared with MBConv.
"""

from tinyeffnet.layers import BatchNorm, Conv2d, PointwiseConv2d
from tinyeffnet.residual import ResidualBlock


class FusedMBConv(ResidualBlock):
    BRANCH = ("expand", "expand_bn", "project", "project_bn")

    def __init__(self, in_channels, out_channels, kernel, stride, expand, drop_rate, config, rng, noise_rng,
                 dtype):
        super().__init__(in_channels, out_channels, stride, drop_rate, noise_rng)
        bn = dict(momentum=config.bn_momentum, epsilon=config.bn_epsilon, dtype=dtype)
        if expand != 1:
            mid = in_channels * expand
            self.expand = Conv2d(in_channels, mid, kernel, stride, rng, dtype, config.padding)
            self.expand_bn = BatchNorm(mid, activation=config.activation, **bn)
            self.project = PointwiseConv2d(mid, out_channels, rng, dtype)
            self.project_bn = BatchNorm(out_channels, **bn)
        else:
            self.project = Conv2d(in_channels, out_channels, kernel, stride, rng, dtype, config.padding)
            self.project_bn = BatchNorm(out_channels, activation=config.activation, **bn)

    @classmethod
    def from_stage(cls, stage, in_channels, out_channels, stride, drop_rate, config, rng, noise_rng, dtype):
        """One block of a stage row (``scaling.Stage``): the row gives the kernel and expansion (its SE
        ratio is 0: a Fused-MBConv has no squeeze-and-excitation)."""
        if stage.se_ratio > 0:
            raise ValueError(f"a Fused-MBConv block has no squeeze-and-excitation, but its stage row asks for "
                             f"SE ratio {stage.se_ratio}")
        return cls(in_channels, out_channels, stage.kernel, stride, stage.expand, drop_rate, config, rng,
                   noise_rng, dtype)
