"""Progressive learning with adaptive regularization (EfficientNetV2, Tan & Le 2021, §4.2, Algorithm 1).

Training is split into M stages of whole epochs. Stage i (0 … M − 1) trains on images of size S_i × S_i with
regularization Φ_i = {γ_i, ε_i, λ_i} (the classifier's dropout rate, RandAugment's magnitude, Mixup's α), each
interpolated linearly from its minimum in the first stage to its maximum in the last:

    v_i = (1 − t_i)·v_min + t_i·v_max,    t_i = i / (M − 1)          (a single stage: the maximum)

Stage i trains epochs ⌊i·E/M⌋ … ⌊(i + 1)·E/M⌋ − 1 of E (automl ends its stage i at step int((i + 1)/M·N)),
starting from all the weights the stage before left. Evaluation is always at the final size, so the figures of
an early stage are those of a network tested on larger images than it trains on, its batch-norm statistics
gathered from the smaller ones: only the last stage's are comparable with a run without stages.

The released code (google/automl efficientnetv2/main.py) differs from Algorithm 1, and this file follows the
paper: the code interpolates the size with t = (i + 1)/M, so its first stage already trains at
S_min + (S_max − S_min)/M instead of S_min, and it keeps the dropout rate fixed (its interpolated list is
built and then deleted). The magnitude and α it interpolates as the paper does.

The defaults are Table 6's V2-S column, the smallest model the table has: size 128 → 300, RandAugment 5 → 15,
Mixup 0 → 0, dropout 0.1 → 0.3, in 4 stages (the paper's M). Scaled to CIFAR, the last size is the model's
resolution (32 for B0; the paper trains up to about 80 % of its evaluation size, here training ends at it) and the
first keeps Table 6's proportion, 128/300 of it (13.7 pixels of 32), rounded to a multiple of ``SIZE_MULTIPLE``,
but never below the network's output stride (``cli.min_resolution``: 16 with the CIFAR stem, 32 with the paper's,
when every stage trains at 32 and only the regularization grows). The sizes between the first and the last are
rounded to the nearest multiple of ``SIZE_MULTIPLE`` = 4: the network takes any size from its output stride up
(either padding rule gives ⌈H/s⌉ for an odd kernel), and at 32×32 a step of 8 would leave only 16, 24 and 32. The training images of a stage are the
model's resized once (``data.resize_images``), and their random crop shifts them by the same fraction of their
side as at the final size (``crop_pad``: ±2 pixels at 16 for the ±4 at 32)."""

import math
from dataclasses import dataclass

from tinyeffnet.cli import min_resolution
from tinyeffnet.data import CROP_PAD
from tinyeffnet.errors import TinyEffNetError

PAPER_STAGES = 4                    # M on ImageNet: 4 stages of about 87 epochs (350 in all)
PAPER_SIZES = (128, 300)            # Table 6, V2-S: S_min, S_max
MIN_SIZE_FRACTION = PAPER_SIZES[0] / PAPER_SIZES[1]
DROPOUT = (0.1, 0.3)                # Table 6, V2-S: γ_min, γ_max
RANDAUGMENT = (5.0, 15.0)           # Table 6, V2-S: ε_min, ε_max
MIXUP = (0.0, 0.0)                  # Table 6, V2-S: λ_min, λ_max (V2-M: 0 → 0.2, V2-L: 0 → 0.4)
SIZE_MULTIPLE = 4
RANGE_FLAGS = {"dropout_range": DROPOUT, "randaugment_range": RANDAUGMENT, "mixup_range": MIXUP}


@dataclass(frozen=True)
class Stage:
    """One stage of the plan: ``epochs`` epochs on ``size`` × ``size`` images with dropout rate γ = ``dropout``,
    RandAugment magnitude ε = ``magnitude`` and Mixup α = ``mixup_alpha`` (λ ~ Beta(α, α))."""
    epochs: int
    size: int
    dropout: float
    magnitude: float
    mixup_alpha: float


def interpolate(low, high, stages):
    """[v_0, …, v_{M−1}] for M = ``stages``: v_i = (1 − t)·low + t·high with t = i / (M − 1), so the first is
    ``low`` and the last ``high`` exactly; a single stage is [high]."""
    if stages == 1:
        return [high]
    return [(1 - i / (stages - 1)) * low + i / (stages - 1) * high for i in range(stages)]


def round_size(v):
    """``v`` pixels to the nearest multiple of ``SIZE_MULTIPLE``, halves rounded up."""
    return SIZE_MULTIPLE * math.floor(v / SIZE_MULTIPLE + 0.5)


def stage_sizes(low, high, stages):
    """The image size of each stage: ``low`` first and ``high`` last (the model's resolution), the ones between
    interpolated and rounded to the nearest multiple of ``SIZE_MULTIPLE``, kept within [low, high]."""
    sizes = [min(max(round_size(v), low), high) for v in interpolate(low, high, stages)]
    return [low, *sizes[1:-1], high] if stages > 1 else [high]


def stage_epochs(epochs, stages):
    """How many of ``epochs`` epochs each of ``stages`` stages trains: stage i ends at epoch ⌊(i + 1)·E/M⌋.
    Each gets at least one when stages ≤ epochs."""
    ends = [(i + 1) * epochs // stages for i in range(stages)]
    return [end - start for start, end in zip([0, *ends[:-1]], ends)]


def make_plan(epochs, stages, sizes, dropout, magnitude, mixup_alpha):
    """The ``stages`` stages of an ``epochs``-epoch run, each of ``sizes``, ``dropout``, ``magnitude`` and
    ``mixup_alpha`` a (min, max) pair interpolated from the first stage to the last: a tuple of ``Stage``."""
    return tuple(Stage(*row) for row in zip(stage_epochs(epochs, stages), stage_sizes(*sizes, stages),
                                            interpolate(*dropout, stages), interpolate(*magnitude, stages),
                                            interpolate(*mixup_alpha, stages)))


def plan_for(args, resolution):
    """The plan of a training command's arguments (checked by ``check_arguments``), for a model whose
    resolution, the final size, is ``resolution``."""
    return make_plan(args.epochs, args.stages, (args.min_size, resolution), args.dropout_range,
                     args.randaugment_range, args.mixup_range)


def stage_at(plan, completed):
    """(i, stage): the stage that trains the next epoch once ``completed`` epochs are done (the last stage
    once all are)."""
    end = 0
    for i, stage in enumerate(plan):
        end += stage.epochs
        if completed < end:
            return i, stage
    return len(plan) - 1, plan[-1]


def crop_pad(size, resolution):
    """The random crop's shift (``data.random_crop_flip``'s pad) for images of ``size`` when the model's is
    ``resolution``: ``data.CROP_PAD`` · size / resolution pixels, rounded (halves up), so that every stage shifts
    its images by the same fraction of their side, as automl's crop, taken before the resize, does; at the
    final size exactly ``CROP_PAD``."""
    return math.floor(CROP_PAD * size / resolution + 0.5)


def default_min_size(resolution, output_stride):
    """S_min for a model of ``resolution`` whose output stride is ``output_stride``: Table 6's proportion
    128/300 of the final size, rounded to a multiple of ``SIZE_MULTIPLE``, at least the output stride and at
    most the resolution."""
    return min(max(round_size(resolution * MIN_SIZE_FRACTION), output_stride), resolution)


def describe(plan):
    """One line per stage, for the plan printed before training."""
    lines, first = [], 1
    for i, s in enumerate(plan):
        last = first + s.epochs - 1
        epochs = f"epoch {first}" if s.epochs == 1 else f"epochs {first}-{last}"
        lines.append(f"{i + 1}/{len(plan)}: {epochs}, {s.size}×{s.size} images, dropout {s.dropout:.3g}, "
                     f"RandAugment magnitude {s.magnitude:.3g}, Mixup α {s.mixup_alpha:.3g}")
        first = last + 1
    return lines


def check_arguments(args):
    """Refuse progressive flags that cannot be honoured, and fill in the defaults of those not given (the first
    size, which depends on the model, is ``check_min_size``'s)."""
    flags = ("stages", "min_size", *RANGE_FLAGS)
    if not args.progressive:
        given = [name for name in flags if getattr(args, name) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise TinyEffNetError(f"{flag} sets a stage of progressive learning; add --progressive, or drop it")
        return
    if args.freeze_body:
        raise TinyEffNetError("--progressive resizes the training images stage by stage, but --freeze-body trains "
                              "on features computed once; leave out one of them")
    for flag, value, ranged in (("--randaugment", args.randaugment, "--randaugment-range"),
                                ("--mixup", args.mixup, "--mixup-range")):
        if value:
            raise TinyEffNetError(f"{flag} {value:g} holds its strength fixed, but --progressive grows it stage by "
                                  f"stage; give {ranged} MIN MAX instead")
    if args.stages is None:
        args.stages = PAPER_STAGES
    if args.stages > args.epochs:
        raise TinyEffNetError(f"--stages {args.stages} is more than the {args.epochs} epochs to train, and each stage "
                              f"trains at least one; give at most --stages {args.epochs}, or more --epochs")
    for name, default in RANGE_FLAGS.items():
        if getattr(args, name) is None:
            setattr(args, name, list(default))
        low, high = getattr(args, name)
        if low > high:
            raise TinyEffNetError(f"--{name.replace('_', '-')} {low:g} {high:g}: the first stage's value is above the "
                                  f"last's; give MIN MAX with MIN ≤ MAX")


def check_min_size(args, config):
    """With --progressive, the first stage's size for a model ``config``, whose resolution is the last stage's:
    the default if none was given, and one between the network's output stride and the resolution."""
    if not args.progressive:
        return
    stride = min_resolution(config)
    if args.min_size is None:
        args.min_size = default_min_size(config.resolution, stride)
    if args.min_size > config.resolution:
        raise TinyEffNetError(f"--min-size {args.min_size} is larger than the final size, the model's resolution "
                              f"{config.resolution}; give at most --min-size {config.resolution}, or a larger "
                              "--resolution")
    if args.min_size < stride:
        raise TinyEffNetError(f"--min-size {args.min_size} is below this network's output stride {stride}: its last "
                              f"stages would only see zero padding; give at least --min-size {stride}")
