"""What every command shares: its parser (help that states each default once, numbers checked as they are
parsed), choosing an architecture from the command line, and turning the project's own errors into one clear
line and exit status 2 instead of a traceback."""

import argparse
import math
import sys
from dataclasses import replace

from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.scaling import (ALPHA, BETA, CIFAR_RESOLUTION, DEFAULT_FAMILY, GAMMA, VARIANTS, ModelConfig,
                                config_for_phi, config_for_variant)

EXIT_BAD_INPUT = 2
PAPER_STEM_STRIDE = ModelConfig.stem_stride      # the paper's stem
VARIANT_CLASSES = 1000             # ImageNet's, for --variant
PHI_CLASSES = 10                   # CIFAR-10's, for --phi
PHI_FAMILIES = {DEFAULT_FAMILY: "B0", "efficientnetv2": "V2-Base, that is V2-B0"}   # --family: the bases --phi scales


# --- the parser ------------------------------------------------------------------------------------------------
class HelpFormatter(argparse.HelpFormatter):
    """``--help`` that states each flag's default once: argparse's own value, appended as "(default: …)"
    unless there is none to state (None, or a switch such as --json) or the help already says in words what
    the default is (a default that depends on other flags)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default in (None, argparse.SUPPRESS) or action.nargs == 0 or not action.option_strings
                or "default" in text):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors read like the commands' own (``run_cli``): one line ``error: …``
    (with where to find the flags) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def summary(doc):
    """A command's description: the first paragraph of its module docstring, as one line."""
    return " ".join(doc.strip().split("\n\n")[0].replace("``", "").split())


def make_parser(prog, doc):
    """The parser of ``python -m <prog>``, described by the first paragraph of ``doc``."""
    return Parser(prog=prog, description=summary(doc), formatter_class=HelpFormatter)


# --- numbers, checked as argparse reads them: use them as type= --------------------------------------------------
# A bad value is one line "error: argument --flag: must be …, got …" and exit status 2, before anything runs.
def integer_at_least(minimum):
    """A ``type=`` converter: an integer ≥ ``minimum``."""
    def convert(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number ≥ {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return convert


positive_int = integer_at_least(1)
non_negative_int = integer_at_least(0)


def finite_float(text, allowed, ok):
    """``text`` as a finite float for which ``ok(value)`` holds; otherwise an argparse error naming ``allowed``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
    return value


def positive_float(text):
    """A ``type=`` converter: a finite number > 0."""
    return finite_float(text, "a finite number > 0", lambda x: x > 0)


def non_negative_float(text):
    """A ``type=`` converter: a finite number ≥ 0."""
    return finite_float(text, "a finite number ≥ 0", lambda x: x >= 0)


def fraction(text):
    """A ``type=`` converter: a number in [0, 1) (a momentum, a smoothing, a decay rate)."""
    return finite_float(text, "a number in [0, 1)", lambda x: 0 <= x < 1)


# --- the architecture ------------------------------------------------------------------------------------------
def add_model_arguments(parser, classes_default=f"{VARIANT_CLASSES} for --variant, {PHI_CLASSES} for --phi",
                        stem_default=str(PAPER_STEM_STRIDE)):
    """The flags that choose a ``ModelConfig`` (see ``build_config``); ``classes_default`` and ``stem_default``
    say in words where --num-classes and --stem-stride come from when they are not given."""
    group = parser.add_argument_group("architecture")
    which = group.add_mutually_exclusive_group()
    which.add_argument("--variant", choices=list(VARIANTS), help="an official variant (faithful architecture)")
    which.add_argument("--phi", type=non_negative_float,
                       help="compound coefficient φ ≥ 0: the --family's base scaled by α^φ, β^φ, γ^φ (default: 0, the "
                            "base itself, when no --variant is given)")
    group.add_argument("--family", choices=list(PHI_FAMILIES),
                       help="the base network that --phi scales: "
                            + ", ".join(f"{name} ({base})" for name, base in PHI_FAMILIES.items())
                            + f"; not with --variant, which names its own (default: {DEFAULT_FAMILY})")
    group.add_argument("--resolution", type=positive_int,
                       help=f"input size (default: the variant's, or {CIFAR_RESOLUTION}·γ^φ for --phi)")
    group.add_argument("--num-classes", type=integer_at_least(2),
                       help=f"classifier outputs (default: {classes_default})")
    group.add_argument("--stem-stride", type=int, choices=(1, 2),
                       help=f"2 is the paper's stem; 1 is the CIFAR adaptation (output stride 16 instead of 32) "
                            f"(default: {stem_default})")
    group.add_argument("--width", type=positive_float,
                       help="override the width multiplier (e.g. 0.25 for a tiny network)")
    group.add_argument("--depth", type=positive_float,
                       help="override the depth multiplier (e.g. 0.1: one block per stage)")
    group.add_argument("--alpha", type=positive_float, default=ALPHA, help="depth base α")
    group.add_argument("--beta", type=positive_float, default=BETA, help="width base β")
    group.add_argument("--gamma", type=positive_float, default=GAMMA, help="resolution base γ")


def build_config(args, num_classes=None, base_resolution=CIFAR_RESOLUTION):
    """A ``ModelConfig`` from arguments parsed by ``add_model_arguments`` (which checked each number); a
    resolution too small for the network raises ``TinyEffNetError``. ``num_classes`` is the default of
    --num-classes (None: ``VARIANT_CLASSES`` for --variant, ``PHI_CLASSES`` for --phi)."""
    classes = args.num_classes or num_classes
    stem_stride = args.stem_stride or PAPER_STEM_STRIDE
    if args.variant is not None:
        if args.family is not None:
            raise TinyEffNetError(f"--family is for --phi: --variant {args.variant} names its own family; drop one")
        config = config_for_variant(args.variant, classes or VARIANT_CLASSES, args.resolution, stem_stride)
    else:
        phi = 0.0 if args.phi is None else args.phi
        config = config_for_phi(phi, base_resolution, classes or PHI_CLASSES, stem_stride, args.alpha, args.beta,
                                args.gamma, family=args.family or DEFAULT_FAMILY)
        if args.resolution is not None:
            config = replace(config, resolution=args.resolution)
    for name in ("width", "depth"):
        value = getattr(args, name, None)
        if value is not None:
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
