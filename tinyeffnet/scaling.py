"""The EfficientNet families as data: stage tables, the variant table and compound scaling.

A family is a base network written as a table of stages (each row names its block type, "mbconv" or
"fused_mbconv", which ``model.BLOCKS`` maps to a class) with the width of its head and its rounding rule;
the stem's width is the first stage's input. Each variant names its family and the multipliers that scale it.

Tan & Le (2019), "EfficientNet: Rethinking Model Scaling for CNNs", §3.3: one coefficient φ scales

    depth      d = α^φ      (more blocks per stage)
    width      w = β^φ      (more channels per layer)
    resolution r = γ^φ      (larger input images)

subject to α·β²·γ² ≈ 2, so the FLOPs of the network grow by about 2^φ. The paper's grid search on B0
found α = 1.2, β = 1.1, γ = 1.15. The published B1–B7 (and Lite0–4) use a hand-rounded table of
(width, depth, resolution, dropout) rather than the formula; both are here.

EfficientNetV2 (Tan & Le, 2021, "Smaller Models and Faster Training"; the tables of google/automl's
``efficientnetv2/effnetv2_configs.py``) is a family per network: V2-B0–B3 scale one base table (V2-Base) by
the hand-rounded (width, depth) of the reference, while V2-S, M, L and XL are tables of their own at width
and depth 1. Its early stages are Fused-MBConv, its later ones MBConv, every kernel 3×3. ``config_for_phi``
scales either base by φ (``family="efficientnetv2"`` for V2-Base).

Channels are rounded to a multiple of ``CHANNEL_DIVISOR``; EfficientNet (V1) never goes below 90 % of the
scaled value (``ROUND_LIMIT``), V2 drops that rule (``V2_ROUND_LIMIT``: V2-B3's first stage, 16·1.2 =
19.2, is 16 channels, not V1's 24). Repeats are rounded up, as in the reference implementations.

The padding rule of every k×k convolution (``kernels/padding.py``) is part of the family too: EfficientNet
pads as TensorFlow's "SAME" (``"same"``), the rule its weights were trained with; the V2 families pad (k − 1)/2
on each side (``"symmetric"``), as torchvision's ``efficientnet_v2_*``, so that its weights carry over
(``tinyeffnet.torchvision_names``). automl's own V2 and timm's ``tf_efficientnetv2_*`` pad as "same"; with
stride 2 on an even size the two rules shift every window by one pixel.
"""

import math
from dataclasses import dataclass, replace

from tinyeffnet.kernels.padding import SAME, SYMMETRIC

# --- constants of the architecture (each defined once) -------------------------------------------------
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15   # depth, width, resolution bases found by the paper's grid search
CHANNEL_DIVISOR = 8                   # channel counts are multiples of this
ROUND_LIMIT = 0.9                     # V1: a rounded channel count is never below 90 % of the scaled one
V2_ROUND_LIMIT = 0.0                  # V2: plain rounding to the nearest multiple (automl's effnetv2_model)
SE_RATIO = 0.25                       # squeeze-and-excitation: reduced = max(1, int(block input · 0.25))
DROP_CONNECT_RATE = 0.2               # stochastic-depth rate of the last block (grows linearly to it)
BN_MOMENTUM = 0.99                    # TensorFlow sense: running = 0.99·running + 0.01·batch
V2_BN_MOMENTUM = 0.9                  # V2's released code (automl hparams; the paper's text says 0.99)
BN_EPSILON = 1e-3                     # both versions
CIFAR_RESOLUTION = 32
INITS = ("paper", "stable")           # model.initialise: the paper's initialisation, or one a deep stack learns from
DEFAULT_INIT = "stable"


@dataclass(frozen=True)
class Stage:
    """One row of a stage table: ``repeats`` blocks of type ``block``; only the first block strides."""
    block: str
    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int
    se_ratio: float


#          block  repeats kernel stride expand  in   out   SE
B0_STAGES = (                          # the first stage's input, 32, is the stem's 3×3 stride-2 output
    Stage("mbconv", 1, 3, 1, 1, 32, 16, SE_RATIO),
    Stage("mbconv", 2, 3, 2, 6, 16, 24, SE_RATIO),
    Stage("mbconv", 2, 5, 2, 6, 24, 40, SE_RATIO),
    Stage("mbconv", 3, 3, 2, 6, 40, 80, SE_RATIO),
    Stage("mbconv", 3, 5, 1, 6, 80, 112, SE_RATIO),
    Stage("mbconv", 4, 5, 2, 6, 112, 192, SE_RATIO),
    Stage("mbconv", 1, 3, 1, 6, 192, 320, SE_RATIO),
)


# EfficientNetV2 (automl effnetv2_configs.py; torchvision and timm have the same rows): every kernel 3×3,
# no SE in the Fused-MBConv stages. Same columns as B0_STAGES: block, repeats, kernel, stride, expand, in, out, SE.
V2_BASE_STAGES = (                     # V2-B0; the stem is a 3×3 stride-2 conv to 32 channels
    Stage("fused_mbconv", 1, 3, 1, 1, 32, 16, 0.0),
    Stage("fused_mbconv", 2, 3, 2, 4, 16, 32, 0.0),
    Stage("fused_mbconv", 2, 3, 2, 4, 32, 48, 0.0),
    Stage("mbconv", 3, 3, 2, 4, 48, 96, SE_RATIO),
    Stage("mbconv", 5, 3, 1, 6, 96, 112, SE_RATIO),
    Stage("mbconv", 8, 3, 2, 6, 112, 192, SE_RATIO),
)
V2_S_STAGES = (
    Stage("fused_mbconv", 2, 3, 1, 1, 24, 24, 0.0),
    Stage("fused_mbconv", 4, 3, 2, 4, 24, 48, 0.0),
    Stage("fused_mbconv", 4, 3, 2, 4, 48, 64, 0.0),
    Stage("mbconv", 6, 3, 2, 4, 64, 128, SE_RATIO),
    Stage("mbconv", 9, 3, 1, 6, 128, 160, SE_RATIO),
    Stage("mbconv", 15, 3, 2, 6, 160, 256, SE_RATIO),
)
V2_M_STAGES = (
    Stage("fused_mbconv", 3, 3, 1, 1, 24, 24, 0.0),
    Stage("fused_mbconv", 5, 3, 2, 4, 24, 48, 0.0),
    Stage("fused_mbconv", 5, 3, 2, 4, 48, 80, 0.0),
    Stage("mbconv", 7, 3, 2, 4, 80, 160, SE_RATIO),
    Stage("mbconv", 14, 3, 1, 6, 160, 176, SE_RATIO),
    Stage("mbconv", 18, 3, 2, 6, 176, 304, SE_RATIO),
    Stage("mbconv", 5, 3, 1, 6, 304, 512, SE_RATIO),
)
V2_L_STAGES = (
    Stage("fused_mbconv", 4, 3, 1, 1, 32, 32, 0.0),
    Stage("fused_mbconv", 7, 3, 2, 4, 32, 64, 0.0),
    Stage("fused_mbconv", 7, 3, 2, 4, 64, 96, 0.0),
    Stage("mbconv", 10, 3, 2, 4, 96, 192, SE_RATIO),
    Stage("mbconv", 19, 3, 1, 6, 192, 224, SE_RATIO),
    Stage("mbconv", 25, 3, 2, 6, 224, 384, SE_RATIO),
    Stage("mbconv", 7, 3, 1, 6, 384, 640, SE_RATIO),
)
V2_XL_STAGES = (
    Stage("fused_mbconv", 4, 3, 1, 1, 32, 32, 0.0),
    Stage("fused_mbconv", 8, 3, 2, 4, 32, 64, 0.0),
    Stage("fused_mbconv", 8, 3, 2, 4, 64, 96, 0.0),
    Stage("mbconv", 16, 3, 2, 4, 96, 192, SE_RATIO),
    Stage("mbconv", 24, 3, 1, 6, 192, 256, SE_RATIO),
    Stage("mbconv", 32, 3, 2, 6, 256, 512, SE_RATIO),
    Stage("mbconv", 8, 3, 1, 6, 512, 640, SE_RATIO),
)


@dataclass(frozen=True)
class Family:
    """A base network that width and depth scale: its stage table, the final 1×1 convolution's width, how
    its channel counts round (``round_filters``), its batch-norm momentum and its padding rule."""
    stages: tuple
    head_channels: int
    round_limit: float = ROUND_LIMIT
    bn_momentum: float = BN_MOMENTUM
    padding: str = SAME

    @property
    def stem_channels(self):
        return self.stages[0].in_channels


V2_RULES = dict(round_limit=V2_ROUND_LIMIT, bn_momentum=V2_BN_MOMENTUM, padding=SYMMETRIC)   # every V2 family's rules
FAMILIES = {
    "efficientnet": Family(B0_STAGES, head_channels=1280),
    "efficientnetv2": Family(V2_BASE_STAGES, head_channels=1280, **V2_RULES),
    "efficientnetv2-s": Family(V2_S_STAGES, head_channels=1280, **V2_RULES),
    "efficientnetv2-m": Family(V2_M_STAGES, head_channels=1280, **V2_RULES),
    "efficientnetv2-l": Family(V2_L_STAGES, head_channels=1280, **V2_RULES),
    "efficientnetv2-xl": Family(V2_XL_STAGES, head_channels=1280, **V2_RULES),
}
DEFAULT_FAMILY = "efficientnet"        # what a config saved before families existed was built from


@dataclass(frozen=True)
class Variant:
    """A named member of a family: ``family``'s table scaled by ``width`` and ``depth``.

    ``se`` and ``activation`` distinguish EfficientNet (squeeze-and-excitation, swish) from
    EfficientNet-Lite (no SE, ReLU6). Lite also keeps the stem and head at their B0 sizes and the first and
    last stages at their B0 repeats (``fixed_stem_head``), as the TensorFlow Lite builder does."""
    width: float
    depth: float
    resolution: int
    dropout: float
    se: bool = True
    activation: str = "swish"
    fixed_stem_head: bool = False
    family: str = DEFAULT_FAMILY


#                    width depth  res  dropout
VARIANTS = {
    "b0": Variant(1.0, 1.0, 224, 0.2),
    "b1": Variant(1.0, 1.1, 240, 0.2),
    "b2": Variant(1.1, 1.2, 260, 0.3),
    "b3": Variant(1.2, 1.4, 300, 0.3),
    "b4": Variant(1.4, 1.8, 380, 0.4),
    "b5": Variant(1.6, 2.2, 456, 0.4),
    "b6": Variant(1.8, 2.6, 528, 0.5),
    "b7": Variant(2.0, 3.1, 600, 0.5),
    "lite0": Variant(1.0, 1.0, 224, 0.2, se=False, activation="relu6", fixed_stem_head=True),
    "lite1": Variant(1.0, 1.1, 240, 0.2, se=False, activation="relu6", fixed_stem_head=True),
    "lite2": Variant(1.1, 1.2, 260, 0.3, se=False, activation="relu6", fixed_stem_head=True),
    "lite3": Variant(1.2, 1.4, 280, 0.3, se=False, activation="relu6", fixed_stem_head=True),
    "lite4": Variant(1.4, 1.8, 300, 0.3, se=False, activation="relu6", fixed_stem_head=True),
    # EfficientNetV2 at its evaluation size (automl trains at a smaller one: B0 192, B1 192, B2 208, B3 240,
    # S 300, M/L/XL 384)
    "v2-b0": Variant(1.0, 1.0, 224, 0.2, family="efficientnetv2"),
    "v2-b1": Variant(1.0, 1.1, 240, 0.2, family="efficientnetv2"),
    "v2-b2": Variant(1.1, 1.2, 260, 0.3, family="efficientnetv2"),
    "v2-b3": Variant(1.2, 1.4, 300, 0.3, family="efficientnetv2"),
    "v2-s": Variant(1.0, 1.0, 384, 0.2, family="efficientnetv2-s"),
    "v2-m": Variant(1.0, 1.0, 480, 0.3, family="efficientnetv2-m"),
    "v2-l": Variant(1.0, 1.0, 480, 0.4, family="efficientnetv2-l"),
    "v2-xl": Variant(1.0, 1.0, 512, 0.4, family="efficientnetv2-xl"),
}


def round_filters(channels, width, divisor=CHANNEL_DIVISOR, round_limit=ROUND_LIMIT):
    """Scale ``channels`` by ``width`` and round to the nearest multiple of ``divisor`` (at least one), going
    up a multiple where that falls below ``round_limit`` × the scaled value (V1 0.9; V2 0, never)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < round_limit * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats, depth):
    """Scale a stage's block count by ``depth``, rounding up."""
    return int(math.ceil(depth * repeats))


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build one network; saved as JSON beside its weights."""
    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    num_classes: int = 1000
    se: bool = True
    activation: str = "swish"
    fixed_stem_head: bool = False
    stem_stride: int = 2
    drop_connect: float = DROP_CONNECT_RATE
    bn_momentum: float = BN_MOMENTUM
    bn_epsilon: float = BN_EPSILON
    family: str = DEFAULT_FAMILY
    init: str = DEFAULT_INIT          # one of INITS (model.initialise); configs saved before it load as "stable"
    padding: str = SAME               # kernels/padding.py's; a config saved before it loads as "same", its rule then;
                                      # config_for_variant / config_for_phi take the family's (V2: "symmetric"),
                                      # so a V2 config built by hand must say padding=SYMMETRIC itself

    @property
    def base(self):
        """The unscaled network: ``FAMILIES[family]``."""
        return FAMILIES[self.family]

    def stages(self):
        """The family's stage table (B0's for EfficientNet, V2-Base's for V2-B0–B3) scaled by this config's
        width and depth."""
        table = self.base.stages
        last = len(table) - 1
        out = []
        for i, s in enumerate(table):
            fixed = self.fixed_stem_head and i in (0, last)
            out.append(replace(
                s,
                repeats=s.repeats if fixed else round_repeats(s.repeats, self.depth),
                in_channels=self.channels(s.in_channels, fixed=self.fixed_stem_head and i == 0),
                out_channels=self.channels(s.out_channels),
                se_ratio=s.se_ratio if self.se else 0.0,
            ))
        return out

    def channels(self, base, fixed=False):
        return base if fixed else round_filters(base, self.width, round_limit=self.base.round_limit)

    @property
    def stem_channels(self):
        return self.channels(self.base.stem_channels, fixed=self.fixed_stem_head)

    @property
    def head_channels(self):
        return self.channels(self.base.head_channels, fixed=self.fixed_stem_head)

    def to_dict(self):
        return dict(self.__dict__)


def compound_coefficients(phi, alpha=ALPHA, beta=BETA, gamma=GAMMA):
    """(depth, width, resolution multiplier) = (α^φ, β^φ, γ^φ) for any real φ ≥ 0."""
    if not (isinstance(phi, (int, float)) and math.isfinite(phi) and phi >= 0):
        raise ValueError(f"φ must be a finite number ≥ 0, got {phi!r}")
    return alpha ** phi, beta ** phi, gamma ** phi


def scaled_resolution(base, gamma_phi):
    """The input size for resolution multiplier γ^φ: ``base·γ^φ`` rounded to the nearest integer."""
    return int(round(base * gamma_phi))


def config_for_variant(name, num_classes=1000, resolution=None, stem_stride=2):
    """A named variant from ``VARIANTS``, with the official resolution unless one is given."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    v = VARIANTS[name]
    return ModelConfig(name=name, width=v.width, depth=v.depth, resolution=resolution or v.resolution,
                       dropout=v.dropout, num_classes=num_classes, se=v.se, activation=v.activation,
                       fixed_stem_head=v.fixed_stem_head, stem_stride=stem_stride,
                       bn_momentum=FAMILIES[v.family].bn_momentum, family=v.family, padding=FAMILIES[v.family].padding)


def config_for_phi(phi, base_resolution=CIFAR_RESOLUTION, num_classes=10, stem_stride=2,
                   alpha=ALPHA, beta=BETA, gamma=GAMMA, dropout=None, family=DEFAULT_FAMILY):
    """Continuous compound scaling of a family's base by φ from ``base_resolution`` (32 for CIFAR): B0 by
    default, V2-Base (V2-B0) with ``family="efficientnetv2"``, which keeps V2's rounding, batch norm and padding.

    Dropout follows the official table's trend: 0.2 at φ = 0 rising by 0.05 per unit of φ, capped at 0.5.
    The name is ``phi1.5`` for B0's family, ``efficientnetv2-phi1.5`` for another."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    depth, width, res = compound_coefficients(phi, alpha, beta, gamma)
    if dropout is None:
        dropout = min(0.5, 0.2 + 0.05 * phi)
    name = f"phi{phi:g}" if family == DEFAULT_FAMILY else f"{family}-phi{phi:g}"
    return ModelConfig(name=name, width=width, depth=depth,
                       resolution=scaled_resolution(base_resolution, res), dropout=dropout,
                       num_classes=num_classes, stem_stride=stem_stride,
                       bn_momentum=FAMILIES[family].bn_momentum, family=family, padding=FAMILIES[family].padding)
