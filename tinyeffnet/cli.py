"""What every command shares: choosing an architecture from the command line, and turning the
project's own errors into one clear line and exit status 2 instead of a traceback."""

import math
import sys
from dataclasses import replace

from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.scaling import ALPHA, BETA, CIFAR_RESOLUTION, GAMMA, VARIANTS, config_for_phi, config_for_variant

EXIT_BAD_INPUT = 2


def add_model_arguments(parser, default_classes=None):
    group = parser.add_argument_group("architecture")
    which = group.add_mutually_exclusive_group()
    which.add_argument("--variant", choices=list(VARIANTS), help="an official variant (faithful architecture)")
    which.add_argument("--phi", type=float, help="compound coefficient φ ≥ 0: B0 scaled by α^φ, β^φ, γ^φ")
    group.add_argument("--resolution", type=int, help="input size (default: the variant's, or 32·γ^φ for --phi)")
    group.add_argument("--num-classes", type=int, default=default_classes,
                       help="classifier outputs (default: 1000 for --variant, 10 for --phi)")
    group.add_argument("--stem-stride", type=int, choices=(1, 2), default=None,
                       help="2 is the paper's stem; 1 is the CIFAR adaptation (output stride 16 instead of 32)")
    group.add_argument("--width", type=float, help="override the width multiplier (e.g. 0.25 for a tiny network)")
    group.add_argument("--depth", type=float, help="override the depth multiplier (e.g. 0.1: one block per stage)")
    group.add_argument("--alpha", type=float, default=ALPHA, help=f"depth base α (default {ALPHA})")
    group.add_argument("--beta", type=float, default=BETA, help=f"width base β (default {BETA})")
    group.add_argument("--gamma", type=float, default=GAMMA, help=f"resolution base γ (default {GAMMA})")


def build_config(args, num_classes=None, base_resolution=CIFAR_RESOLUTION):
    """A ``ModelConfig`` from parsed arguments; bad values raise ``TinyEffNetError``."""
    classes = args.num_classes or num_classes
    if classes is not None and classes < 2:
        raise TinyEffNetError(f"--num-classes must be at least 2, got {classes}")
    if args.resolution is not None and args.resolution < 1:
        raise TinyEffNetError(f"--resolution must be positive, got {args.resolution}")
    stem_stride = args.stem_stride or 2
    if args.variant is not None:
        config = config_for_variant(args.variant, classes or 1000, args.resolution, stem_stride)
    else:
        phi = 0.0 if args.phi is None else args.phi
        if not math.isfinite(phi) or phi < 0:
            raise TinyEffNetError(f"--phi must be a finite number ≥ 0, got {phi}")
        config = config_for_phi(phi, base_resolution, classes or 10, stem_stride, args.alpha, args.beta, args.gamma)
        if args.resolution is not None:
            config = replace(config, resolution=args.resolution)
    for name in ("width", "depth"):
        value = getattr(args, name, None)
        if value is not None:
            if not (math.isfinite(value) and value > 0):
                raise TinyEffNetError(f"--{name} must be a positive number, got {value}")
            config = replace(config, **{name: value, "name": f"{config.name}-{name}{value:g}"})
    minimum = min_resolution(config)
    if config.resolution < minimum:
        raise TinyEffNetError(
            f"resolution {config.resolution} is too small for this network: its output stride is {minimum}, so "
            f"below {minimum} pixels the last stages only see zero padding; use --resolution {minimum} or more")
    return config


def min_resolution(config):
    """The network's output stride: the product of every stride from the stem to the head."""
    stride = config.stem_stride
    for stage in config.stages():
        stride *= stage.stride
    return stride


def run_cli(main, argv=None):
    """Run ``main(argv)``; a ``TinyEffNetError`` becomes ``error: …`` on stderr and exit status 2."""
    try:
        return main(argv)
    except TinyEffNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
