"""``python -m tinyeffnet.train --phi 0 --dataset cifar10``: train EfficientNet with minibatch AdamW, SGD or RMSProp.

The command: its arguments and their checks, the plan it prints, and ``main``, which prepares the data and
the model (or the run it resumes) and hands them to the training engine (``tinyeffnet.engine``: the step, the
loop, evaluation, checkpoints and signals). The run folder gets

    config.json      the command's arguments and the architecture
    metrics.jsonl    one JSON object per epoch
    latest.npz       the checkpoint after the last epoch (or the step where it was interrupted)
    best.npz         the checkpoint with the best test accuracy so far
    curves.png       loss and accuracy per epoch
    features.npz     with --freeze-body: the body's features, reused by --resume or the same --out (``transfer``)

The folder is created only once the data and the model are ready: a start that fails or is interrupted leaves
no new folder behind (only the --freeze-body features cache is kept, for the next run to reuse), and a folder
that existed is never removed. Resuming a run that has trained all its epochs says how to extend it and does
nothing.

The recipe beyond the learning rate: ``--optimizer`` (sgd, rmsprop as the paper, adamw; ``tinyeffnet.optim``)
with its hyper-parameters and gradient clipping (``--clip-grad-norm``, on for AdamW by default, ``--no-clip``);
``--ema DECAY``, a moving average of the weights (``tinyeffnet.averaging``), which each epoch then evaluates and
the checkpoints keep beside the trained weights (``--no-ema``: none); from scratch the default is clipped AdamW
with the average, chosen by measurement (the constants below say how); ``--tta``, the test images also
averaged with their mirrors, reported beside the plain accuracy (``test_acc_tta``);
``--init``, the paper's initialisation or one that lets a deep stack learn from the first step
(``model.initialise``, the default); ``--randaugment M`` and ``--mixup ALPHA``, EfficientNetV2's regularization
of the training images (``tinyeffnet.augment``; Mixup trains on soft targets).

The same seed and thread count give the same run, also across a resume (see ``tinyeffnet.engine``).
Ctrl-C (or SIGTERM) finishes the current step, saves ``latest.npz`` and prints how to resume. Before the
trainer exists (while a linear probe extracts its features) it stops at once, keeping the features finished.

Transfer learning (``--variant lite0 --pretrained``, optionally ``--freeze-body``): the network starts from
ImageNet weights with a new classifier, and with ``--freeze-body`` only that classifier trains, on features
of the frozen body computed once (``transfer.LinearProbe``).
"""

import argparse
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, replace

import numpy as np

from tinyeffnet import data as datasets
from tinyeffnet import progressive, transfer, warmup
from tinyeffnet.augment import NUM_OPS, OPS
from tinyeffnet.averaging import DECAY
from tinyeffnet.cli import (PAPER_STEM_STRIDE, add_model_arguments, build_config, fraction, make_parser,
                            min_resolution, non_negative_float, non_negative_int, positive_float, positive_int)
from tinyeffnet.device import require_cuda
from tinyeffnet.distributed import make_world, run_job, use_sync_batchnorm
from tinyeffnet.engine import EXIT_SIGNAL, Interrupted, RunState, Trainer, optimizer_settings, stop_now
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.files import atomic_write, outermost_missing
from tinyeffnet.model import EfficientNet
from tinyeffnet.optim import OPTIMIZERS, hyper_parameters
from tinyeffnet.pretrained import AVAILABLE
from tinyeffnet.progress import format_seconds
from tinyeffnet.scaling import CIFAR_RESOLUTION, DEFAULT_INIT, INITS, ModelConfig
from tinyeffnet.weights import open_weights

# The recipe: the command's defaults (tinyeffnet.bench and tools/train_torch.py take theirs from here)
DEFAULT_EPOCHS = 24
# The base network from scratch on CIFAR at its own 32×32 keeps the stem at stride 1 (the CIFAR adaptation: an image
# ends at 2×2 instead of 1×1), chosen by measurement for accuracy per CPU-hour (README, "CIFAR-10 results"): its 24
# epochs took 85 minutes on a 2-core Intel Xeon (86.54 %) and about two hours on a 2-core AMD EPYC. Scaled (--phi,
# --variant, --resolution), from ImageNet weights (--pretrained) and on other data the stem is the paper's.
CIFAR_DATASETS = ("cifar10", "cifar100")
CIFAR_STEM_STRIDE = 1
FAITHFUL_EPOCHS = 60               # the faithful SGD baseline's (README): the paper's stem, its initialisation, SGD
DEFAULT_BATCH_SIZE = 128
DEFAULT_MOMENTUM = 0.9
DEFAULT_WARMUP_EPOCHS = 1.0
DEFAULT_LABEL_SMOOTHING = 0.1
# From scratch: AdamW and the moving average of the weights, chosen by measurement on CIFAR-10 against SGD with
# and without the average (README, "CIFAR-10 results": the first two epochs of the 60-epoch schedule, then the
# full run). With --pretrained: SGD at Big Transfer's rate without an average, the recipe lesson 7 measured.
DEFAULT_OPTIMIZER = "adamw"
DEFAULT_EMA = DECAY
PRETRAINED_OPTIMIZER = "sgd"
PRETRAINED_LR = 0.003              # default peak rate from ImageNet weights, as Big Transfer (see tinyeffnet.transfer)
# Each optimiser's peak rate and weight decay when --lr / --weight-decay are not given. sgd: the usual CIFAR
# recipe (Nesterov 0.9, 0.1, 5e-4); rmsprop: the paper's 0.016 per 256 images at batch 128 and its 1e-5 (not
# measured here); adamw: 3e-3 and decoupled decay 0.05 (θ shrinks by lr·λ = 1.5e-4 per step; SGD's coupled 5e-4,
# carried by momentum 0.9, shrinks it by up to lr·λ/(1 − μ) = 5e-4).
DEFAULT_LR = {"sgd": 0.1, "rmsprop": 0.008, "adamw": 0.003}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "rmsprop": 1e-5, "adamw": 0.05}
# Each optimiser's gradient clipping when --clip-grad-norm is not given (--no-clip: none). adamw: the global norm
# ‖g‖ scaled to at most 1 before the update. Measured on CIFAR-10 (README, "CIFAR-10 results"): unclipped, the
# default run's training loss jumped at epoch 21 and its test accuracy fell 26 points, recovering ten epochs
# later; clipped, the same 60-epoch run had no such fall. ‖g‖ averages 0.9-3.5 per epoch there, but single
# batches exceed 100 in 12 of the 60 epochs (up to 501): unclipped, such a gradient enters AdamW's moments at
# full size. sgd and rmsprop: none
# (the lessons' SGD runs and the paper's RMSProp train without).
DEFAULT_CLIP_GRAD_NORM = {"sgd": None, "rmsprop": None, "adamw": 1.0}


def parse_args(argv=None):
    p = make_parser("python -m tinyeffnet.train", __doc__)
    add_model_arguments(p, classes_default="the dataset's",
                        stem_default=f"{CIFAR_STEM_STRIDE} for the base network (no --phi, --variant or --resolution "
                                     f"but {CIFAR_RESOLUTION}) from scratch on CIFAR, else {PAPER_STEM_STRIDE}")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default="cifar10", help="cifar10, cifar100 or synthetic")
    d.add_argument("--data-dir", help="folder holding the dataset (default: $TINYEFFNET_DATA or ~/.cache/tinyeffnet)")
    d.add_argument("--subset", type=positive_int, help="train on the first N training images only (quick runs)")
    d.add_argument("--per-class", type=positive_int, help="train on the first K training images of each class only "
                   "(a balanced small training set; with --subset, taken from those N)")
    d.add_argument("--test-subset", type=positive_int, help="evaluate on the first N test images only")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, help=f"passes over the training set (default: {DEFAULT_EPOCHS}; "
                   "with --resume, the run's own, and a larger total extends it)")
    t.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="images per step")
    t.add_argument("--lr", type=positive_float, help="peak learning rate, after warm-up (default: the optimizer's, "
                   f"{per_optimizer(DEFAULT_LR)}; with --pretrained {PRETRAINED_LR} for each)")
    t.add_argument("--momentum", type=fraction, default=DEFAULT_MOMENTUM, help="SGD momentum μ, in [0, 1)")
    t.add_argument("--no-nesterov", dest="nesterov", action="store_false",
                   help="plain (heavy-ball) momentum instead of Nesterov's")
    t.add_argument("--weight-decay", type=non_negative_float,
                   help="on weights only, not batch norm or biases (default: the optimizer's, "
                        f"{per_optimizer(DEFAULT_WEIGHT_DECAY)})")
    t.add_argument("--warmup-epochs", type=non_negative_float, default=DEFAULT_WARMUP_EPOCHS,
                   help="epochs of linear warm-up to the peak learning rate")
    t.add_argument("--label-smoothing", type=fraction, default=DEFAULT_LABEL_SMOOTHING,
                   help="ε in [0, 1): the target gives the label 1 − ε and spreads ε over all classes")
    t.add_argument("--seed", type=non_negative_int, default=0, help="shuffling, augmentation, initialisation, dropout")
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the model trains (cuda: the numba.cuda kernels, on one GPU)")
    t.add_argument("--sync-bn", action="store_true",
                   help="under mpiexec: batch norm over the whole global batch (mean and variance averaged across "
                        "ranks); without it each rank normalises its own rows, as Horovod does")
    add_recipe_arguments(p)
    add_regularization_arguments(p)
    add_progressive_arguments(p)
    tl = p.add_argument_group("transfer learning")
    tl.add_argument("--pretrained", action="store_true",
                    help=f"start from the ImageNet weights of --variant ({', '.join(AVAILABLE)}) with a new "
                         "classifier for the dataset's classes; images are normalised as for ImageNet, (x − 127) / 128")
    tl.add_argument("--freeze-body", action="store_true",
                    help="with --pretrained: train only the new classifier, on the frozen body's features computed "
                         "once (a linear probe; no augmentation)")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="run folder (default: runs/<dataset>-<model>-<time>)")
    o.add_argument("--resume", help="a run folder or checkpoint to continue from (its own arguments are used)")
    return p.parse_args(argv)


def add_recipe_arguments(parser):
    """The optimiser and its hyper-parameters, gradient clipping, weight averaging, test-time augmentation and the
    initialisation."""
    rmsprop, adamw = hyper_parameters("rmsprop"), hyper_parameters("adamw")
    r = parser.add_argument_group("optimiser, weight averaging, evaluation and initialisation")
    r.add_argument("--optimizer", choices=list(OPTIMIZERS),
                   help="sgd: momentum, Nesterov's unless --no-nesterov; rmsprop: TensorFlow's, the paper's "
                        "(--rmsprop-decay, --momentum, --eps); adamw: decoupled weight decay (--betas, --eps). "
                        "--weight-decay applies to each (see tinyeffnet.optim) "
                        f"(default: {DEFAULT_OPTIMIZER}, or {PRETRAINED_OPTIMIZER} with --pretrained)")
    r.add_argument("--rmsprop-decay", type=fraction, default=rmsprop["decay"],
                   help="RMSProp's decay ρ of the mean square")
    r.add_argument("--betas", type=fraction, nargs=2, default=[adamw["beta1"], adamw["beta2"]],
                   metavar=("BETA1", "BETA2"), help="AdamW's decays β1, β2 of the gradient's mean and mean square")
    r.add_argument("--eps", type=positive_float, help=f"ε of RMSProp and AdamW (default: {rmsprop['epsilon']:g} for rmsprop, "
                   f"{adamw['epsilon']:g} for adamw)")
    r.add_argument("--clip-grad-norm", type=positive_float,
                   help="scale the gradients to at most this global norm before each update (default: the "
                        f"optimizer's, {per_optimizer(DEFAULT_CLIP_GRAD_NORM)})")
    r.add_argument("--no-clip", action="store_true", help="no gradient clipping, whatever the optimizer")
    r.add_argument("--ema", type=fraction, metavar="DECAY",
                   help="keep a moving average of the weights with this decay (warm-up min(DECAY, (1 + t) / (10 + t)) "
                        "at step t), evaluate it after each epoch and keep it in the checkpoints (default: "
                        f"{DEFAULT_EMA}, the paper's; off with --pretrained)")
    r.add_argument("--no-ema", action="store_true", help="no moving average: each epoch evaluates the weights trained")
    r.add_argument("--tta", action="store_true",
                   help="test-time augmentation: also evaluate the logits of each test image averaged with its "
                        "mirror's, reported beside the plain accuracy (test_acc_tta), never instead")
    r.add_argument("--init", choices=INITS, default=DEFAULT_INIT,
                   help="paper: the paper's initialisation (classifier uniform ±1/√classes); stable: classifier "
                        "uniform ±1/√features and every residual block starting as the identity (see "
                        "tinyeffnet.model.initialise)")


def add_regularization_arguments(parser):
    """RandAugment and Mixup (``tinyeffnet.augment``), the regularization EfficientNetV2 trains with."""
    g = parser.add_argument_group("regularization")
    g.add_argument("--randaugment", type=non_negative_float, default=0.0, metavar="M",
                   help=f"RandAugment magnitude on automl's scale (10: the top of the original range; EfficientNetV2-S "
                        f"trains at 10, -L at 20): each training image gets {NUM_OPS} operations drawn from "
                        f"{len(OPS)}, at that strength; 0 turns it off")
    g.add_argument("--mixup", type=non_negative_float, default=0.0, metavar="ALPHA",
                   help="Mixup α: each batch is blended with itself reversed by λ = max(λ', 1 − λ'), λ' ~ Beta(α, α), "
                        "and trained on the blended labels (smoothed by --label-smoothing); 0 turns it off")


def add_progressive_arguments(parser):
    """EfficientNetV2's progressive learning: its stages, and the range of each size and regularization."""
    g = parser.add_argument_group("progressive learning (EfficientNetV2, Algorithm 1; see tinyeffnet.progressive)")
    g.add_argument("--progressive", action="store_true",
                   help="train in stages of growing image size and regularization, each interpolated linearly from "
                        "its MIN in the first stage to its MAX in the last; the last trains at --resolution, at which "
                        "every epoch is evaluated. The stages are spread over --epochs, which a resumed run keeps")
    g.add_argument("--stages", type=positive_int, metavar="M",
                   help=f"number of stages M, each of whole epochs, at most --epochs "
                        f"(default: {progressive.PAPER_STAGES}, the paper's)")
    g.add_argument("--min-size", type=positive_int, metavar="PIXELS",
                   help="the first stage's image size (default: 128/300 of --resolution, Table 6's proportion, rounded "
                        f"to a multiple of {progressive.SIZE_MULTIPLE}, at least the network's output stride)")
    ranges = (("dropout_range", fraction, "the classifier's dropout rate γ, each in [0, 1)"),
              ("randaugment_range", non_negative_float, "RandAugment's magnitude ε (0: none)"),
              ("mixup_range", non_negative_float, "Mixup's α (0: none)"))
    for name, convert, what in ranges:
        low, high = progressive.RANGE_FLAGS[name]
        g.add_argument("--" + name.replace("_", "-"), type=convert, nargs=2, metavar=("MIN", "MAX"),
                       help=f"{what}: the first stage's and the last's (default: {low:g} {high:g}, Table 6's V2-S)")


def per_optimizer(values):
    """``{"sgd": 0.1, …}`` → "sgd 0.1, rmsprop 0.008, adamw 0.003", for the help."""
    return ", ".join(f"{name} {'none' if value is None else format(value, 'g')}" for name, value in values.items())


def fill_recipe_defaults(args):
    """A new run's flags left unset take the recipe's defaults: from scratch DEFAULT_OPTIMIZER with the moving
    average, from ImageNet weights (--pretrained) PRETRAINED_OPTIMIZER at PRETRAINED_LR without it; the rate, the
    weight decay and the gradient clipping are the optimizer's (DEFAULT_LR, DEFAULT_WEIGHT_DECAY,
    DEFAULT_CLIP_GRAD_NORM; --no-clip: none) unless given. ``args`` is changed and
    returned. A resumed run keeps the values it was started with."""
    if args.epochs is None:
        args.epochs = DEFAULT_EPOCHS
    if args.stem_stride is None and is_cifar_base(args):
        args.stem_stride = CIFAR_STEM_STRIDE
    if args.optimizer is None:
        args.optimizer = PRETRAINED_OPTIMIZER if args.pretrained else DEFAULT_OPTIMIZER
    if args.lr is None:
        args.lr = PRETRAINED_LR if args.pretrained else DEFAULT_LR[args.optimizer]
    if args.weight_decay is None:
        args.weight_decay = DEFAULT_WEIGHT_DECAY[args.optimizer]
    if args.no_clip and args.clip_grad_norm is not None:
        raise TinyEffNetError(f"--no-clip turns gradient clipping off, but --clip-grad-norm {args.clip_grad_norm:g} "
                              "asks for it; leave out one of them")
    if args.clip_grad_norm is None and not args.no_clip:
        args.clip_grad_norm = DEFAULT_CLIP_GRAD_NORM[args.optimizer]
    if args.no_ema and args.ema is not None:
        raise TinyEffNetError(f"--no-ema turns the moving average off, but --ema {args.ema} asks for one; leave out "
                              "one of them")
    if args.ema is None and not args.no_ema:
        args.ema = None if args.pretrained else DEFAULT_EMA
    return args


def is_cifar_base(args):
    """Whether the run trains the base network (φ = 0, no --variant) from scratch on CIFAR at its own 32×32."""
    return (args.dataset in CIFAR_DATASETS and not args.pretrained and args.variant is None and not args.phi
            and args.resolution in (None, CIFAR_RESOLUTION))


def is_default_recipe(args):
    """Whether a run from scratch trains with the default optimiser, its rate, decay and clipping, and the
    average."""
    o = args.optimizer
    return (not args.pretrained and (o, args.ema) == (DEFAULT_OPTIMIZER, DEFAULT_EMA)
            and (args.lr, args.weight_decay, args.clip_grad_norm)
            == (DEFAULT_LR[o], DEFAULT_WEIGHT_DECAY[o], DEFAULT_CLIP_GRAD_NORM[o]))


def check_recipe_arguments(args):
    """What the parser's converters leave to check of ``add_recipe_arguments`` and
    ``add_regularization_arguments``: a decay of 0 would average nothing, and --tta, --randaugment and --mixup
    need images, which --freeze-body does not train on."""
    if args.ema == 0:
        raise TinyEffNetError(f"--ema must be a decay in (0, 1), e.g. {DECAY}, got {args.ema}")
    if args.tta and args.freeze_body:
        raise TinyEffNetError("--tta flips test images, but --freeze-body evaluates features computed once; "
                              "leave out one of them")
    for flag, value in (("--randaugment", args.randaugment), ("--mixup", args.mixup)):
        if value and args.freeze_body:
            raise TinyEffNetError(f"{flag} augments training images, but --freeze-body trains on features computed "
                                  "once; leave out one of them")


def validate(args):
    """What the parser cannot check flag by flag (it checked each number as it read it)."""
    if args.device == "cuda":
        if args.freeze_body:
            raise TinyEffNetError("--freeze-body computes the body's features on the CPU; leave out --device cuda")
        require_cuda()
    check_recipe_arguments(args)
    progressive.check_arguments(args)
    transfer.check_arguments(args)


def prepare_data(args, resolution):
    """The ``data.Dataset`` the arguments select, at ``resolution`` (None: as stored, for ``LinearProbe``, which
    resizes batch by batch), normalised with the training images' statistics or, for --pretrained, the weights'."""
    data = datasets.prepare_dataset(args.dataset, args.data_dir, args.subset, args.per_class, args.test_subset,
                                    resolution, transfer.preprocessing() if args.pretrained else None)
    check_sizes(args, data)
    return data


def check_sizes(args, data):
    """The sizes asked for fit the data (``data.prepare_dataset`` has refused a --subset or --test-subset larger
    than the dataset): a --per-class larger than what the selection holds is refused rather than quietly
    shrunk, and so is a --batch-size larger than the training set; --mixup's soft targets (one column per class of
    the dataset) must fit the classifier."""
    train = len(data.train_labels)
    if args.per_class is not None:
        counts = np.bincount(data.train_labels, minlength=len(data.classes))
        if counts.min() < args.per_class:
            among = f"the first {args.subset:,} training images" if args.subset else "the training images"
            raise TinyEffNetError(f"--per-class {args.per_class} asks for more images of class "
                                  f"{data.classes[counts.argmin()]!r} than {among} of {args.dataset} hold "
                                  f"({counts.min():,}); give a smaller --per-class"
                                  f"{' or a larger --subset' if args.subset else ''}")
    if train < args.batch_size:
        raise TinyEffNetError(f"--batch-size {args.batch_size} is more than the {train:,} training images selected; "
                              f"give at most --batch-size {train}")
    mixup = "--mixup" if args.mixup else "--mixup-range" if args.progressive and args.mixup_range[1] > 0 else None
    if mixup and args.num_classes is not None and args.num_classes != len(data.classes):
        raise TinyEffNetError(f"{mixup} blends the labels of {args.dataset}'s {len(data.classes)} classes, but "
                              f"--num-classes {args.num_classes} gives the classifier another number of outputs; "
                              f"leave out --num-classes or {mixup}")


@dataclass
class Resumed:
    """What --resume continues: the checkpoint's path and contents, and where its training stands."""
    checkpoint: str
    config: ModelConfig
    model_state: dict
    optimizer_state: dict
    noise_rng: dict                # the model's dropout generator
    state: RunState
    stage: dict                    # with --progressive, the stage it continues: {"stage": i (1-based), "image_size"}

    @property
    def run_dir(self):
        return os.path.dirname(os.path.abspath(self.checkpoint))

    def note(self, epochs):
        """The plan's "start" line: which run, epoch and step it continues from."""
        st = self.state
        stage, size = self.stage.get("stage"), self.stage.get("image_size")
        where = f", stage {stage} ({size}×{size})" if stage else ""
        return (f"resuming {self.run_dir} from epoch {st.epoch + 1}/{epochs}, step {st.step_in_epoch}{where} "
                f"(checkpoint {self.checkpoint})")


def resume_source(path):
    """A run folder or a checkpoint file → the checkpoint to resume from."""
    if os.path.isdir(path):
        path = os.path.join(path, "latest.npz")
    if not os.path.isfile(path):
        raise TinyEffNetError(f"nothing to resume: {path} does not exist")
    return path


def resume(args):
    """--resume: (the run's own arguments, with this command's --epochs and --data-dir, and the ``Resumed`` run)."""
    checkpoint = resume_source(args.resume)
    config, model_state, optimizer_state, training = open_weights(checkpoint)
    if not training or "args" not in training or "epoch" not in training:
        raise TinyEffNetError(f"{checkpoint} holds weights only, no training state to resume from")
    # defaults for flags newer than the run; a run from before --optimizer and --ema trained with SGD, unaveraged
    saved = {**vars(parse_args([])), "optimizer": "sgd", "ema": None, **training["args"]}
    if saved["progressive"] and args.epochs not in (None, saved["epochs"]):
        raise TinyEffNetError(f"--epochs {args.epochs}: {checkpoint} trains a progressive plan whose stages are "
                              f"spread over its {count_epochs(saved['epochs'])}, and another total would move "
                              "them; resume it without --epochs")
    saved.update(resume=args.resume, epochs=args.epochs or saved["epochs"], data_dir=args.data_dir or saved["data_dir"])
    sums = {**RunState().sums, **training["sums"]}     # a checkpoint older than the gradient norms' sums has none
    state = RunState(training["epoch"], training["step_in_epoch"], sums, training["history"], training["best_acc"])
    stage = {key: training[key] for key in ("stage", "image_size") if key in training}
    return argparse.Namespace(**saved), Resumed(checkpoint, config, model_state, optimizer_state,
                                                training["noise_rng"], state, stage)


def finished(requested, args, resumed):
    """None while a resumed run has epochs left to train; once it has trained them all, the line that says so and
    how to extend it. ``requested``: this command's --epochs (None if not given); a total smaller than the epochs
    already trained is refused."""
    done = resumed.state.epoch
    extend = (f"to train longer, add --epochs M (M > {done})" if not args.progressive else
              "a progressive run's stages are spread over its epochs, so it cannot be extended")
    if requested is not None and requested < done:
        raise TinyEffNetError(f"--epochs {requested} is fewer than the {count_epochs(done)} {resumed.run_dir} has "
                              f"already trained; {extend}")
    return None if done < args.epochs else f"{resumed.run_dir} already finished its {count_epochs(done)}; {extend}"


def count_epochs(n):
    """"1 epoch", "3 epochs"."""
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def discard(created, run_dir):
    """After a failed start: remove ``created`` (see ``files.outermost_missing``), unless the start got as far as the
    --freeze-body features cache, which the next run in the same folder reuses. A folder that existed before
    the command is never removed."""
    if created is not None and os.path.exists(created) and not os.path.exists(
            os.path.join(run_dir, transfer.FEATURES_FILE)):
        shutil.rmtree(created)


def interrupted_before_training(args, run_dir):
    """What a signal before the first step leaves: no checkpoint, and with --freeze-body a features cache that a
    run in the same folder reuses."""
    if not args.freeze_body or not os.path.exists(os.path.join(run_dir, transfer.FEATURES_FILE)):
        return "interrupted before training started: no checkpoint was written; run the command again"
    again = "run the command again" if args.out or args.resume else f"run the command again with --out {run_dir}"
    return ("interrupted before training started (while computing the frozen body's features): no checkpoint was "
            f"written; {again} to reuse the features finished so far")


def main(argv=None):
    args = parse_args(argv)
    world = make_world()           # one process, or rank r of N under mpiexec: rank 0 prints and writes
    resumed = None
    if args.resume:
        requested = args.epochs
        args, resumed = resume(args)
    else:
        fill_recipe_defaults(args)
    validate(args)
    if resumed is not None:
        done = finished(requested, args, resumed)
        if done:
            world.print(done)
            return 0
        config, run_dir = resumed.config, resumed.run_dir
    else:
        num_classes = {"cifar100": 100}.get(args.dataset, 10)
        config = replace(build_config(args, num_classes=num_classes), init=args.init)
        run_dir = args.out or os.path.join("runs", f"{args.dataset}-{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    progressive.check_min_size(args, config)
    if args.progressive and resumed is None:      # the model's rate is the one its last stage trains with
        config = replace(config, dropout=args.dropout_range[1])
    created = outermost_missing(run_dir) if world.is_main else None
    for sig in EXIT_SIGNAL:        # until the trainer takes over, Ctrl-C stops at once
        signal.signal(sig, stop_now)
    compiling = None
    try:                           # the run folder is created once the data and the model are ready
        # the kernels compile on every core while the data loads (a fresh install's first run; later ones load them)
        compiling = warmup.start(args.optimizer) if args.device == "cpu" and world.size == 1 else None
        data = prepare_data(args, None if args.freeze_body else config.resolution)
        if resumed is not None:
            model = EfficientNet(config, seed=args.seed)
            model.load_state_dict(resumed.model_state, args.resume)
            model.noise_rng.bit_generator.state = resumed.noise_rng
        else:
            model = transfer.pretrained_model(config, args.seed) if args.pretrained else EfficientNet(config, args.seed)
        model.to(args.device)      # parameters, gradients and batch-norm statistics; SGD's state follows them
        if args.sync_bn and world.size > 1:     # one process: its batch norm already sees the whole batch
            use_sync_batchnorm(model, world)
        if world.is_main:
            if resumed is None:
                write_run_config(run_dir, args, config, data)
            print_plan(args, config, model, data, run_dir,
                       resumed.note(args.epochs) if resumed is not None else transfer_note(args, config))
        trainer = (transfer.LinearProbe if args.freeze_body else Trainer)(
            args, config, data, model, run_dir, resumed and resumed.state, resumed and resumed.optimizer_state, world)
        if compiling is not None:
            print_compiled(compiling.finish())
        print_estimate(args, trainer)
    except BaseException as e:     # a failed start leaves no new folder (and no compiling process) behind
        if compiling is not None:
            compiling.cancel()
        if world.is_main:
            discard(created, run_dir)
        if not isinstance(e, Interrupted):
            raise
        world.print(f"\n{signal.Signals(e.signum).name}: {interrupted_before_training(args, run_dir)}",
                    file=sys.stderr, flush=True)
        return world.abandon(EXIT_SIGNAL[e.signum])
    return trainer.run()


def write_run_config(run_dir, args, config, data):
    """Create the run folder and write ``config.json``: the arguments, the architecture, the data's source,
    classes and preprocessing."""
    run_config = dict(args=vars(args), model=config.to_dict(), data_source=data.source, classes=data.classes,
                      preprocess=dict(mean=data.mean.tolist(), std=data.std.tolist()))
    os.makedirs(run_dir, exist_ok=True)
    atomic_write(os.path.join(run_dir, "config.json"), lambda f: f.write(json.dumps(run_config, indent=2).encode()))


def architecture_note(config):
    if config.stem_stride == 1:
        return ("CIFAR adaptation: stem stride 1, so a 32×32 image ends at 2×2 instead of 1×1 (output stride 16; "
                "the default for the base network on CIFAR, more accurate per CPU-hour; --stem-stride 2: the paper's)")
    return "faithful EfficientNet (stem stride 2, output stride 32)"


def transfer_note(args, config):
    if not args.pretrained:
        return "from scratch (random initialisation); images normalised with the training set's mean and std"
    what = ("body frozen: only the classifier trains, on pooled features computed once (eval mode, no augmentation)"
            if args.freeze_body else "fine-tuning every layer")
    return (f"ImageNet weights of {config.name}, a new {config.num_classes}-class classifier; {what}; "
            "images normalised as for ImageNet, (x − 127) / 128")


def regularization_note(args):
    """The plan's line on the training images' augmentation."""
    if args.freeze_body:
        return "augmentation: none (the frozen body's features are computed once)"
    if args.progressive:
        return "augmentation: random crop and flip, then RandAugment and Mixup at each stage's strength (below)"
    randaugment = (f"RandAugment magnitude {args.randaugment:g} ({NUM_OPS} operations per image)" if args.randaugment
                   else "no RandAugment")
    mixup = f"Mixup α {args.mixup:g} (soft targets)" if args.mixup else "no Mixup"
    return f"augmentation: random crop and flip, {randaugment}, {mixup}"


def print_plan(args, config, model, data, run_dir, start):
    """What is about to train: the model, where it starts (``start``), the data, the recipe and the run folder."""
    print(f"model     {config.name}: {model.num_parameters():,} parameters, width {config.width:.3g}, "
          f"depth {config.depth:.3g}, resolution {config.resolution}×{config.resolution}")
    print(f"          {architecture_note(config)}")
    print(f"start     {start}")
    print(f"data      {args.dataset}: {len(data.train_images):,} training and {len(data.test_images):,} test "
          f"images from {data.source}")
    settings = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in optimizer_settings(args).items())
    clip = f"gradients clipped to norm {args.clip_grad_norm:g}" if args.clip_grad_norm else "no gradient clipping"
    print(f"recipe    {OPTIMIZERS[args.optimizer].__name__} lr {args.lr} (warm-up {args.warmup_epochs} epochs, cosine "
          f"decay), {settings}, {clip}, batch {args.batch_size}, label smoothing {args.label_smoothing}, dropout "
          f"{config.dropout}, drop connect {config.drop_connect}")
    evaluated = f"their moving average (EMA, decay {args.ema})" if args.ema else "the weights trained"
    print(f"          init {config.init}; each epoch evaluates {evaluated}"
          f"{', also with mirrored images (TTA)' if args.tta else ''}")
    if is_default_recipe(args):
        name = OPTIMIZERS[args.optimizer].__name__
        print(f"          why: the default from scratch, {name} with the moving average, learned fastest of the "
              "recipes measured on CIFAR-10, and clipping kept it from collapsing mid-run (README, \"CIFAR-10 "
              "results\"); the README's faithful SGD baseline: --optimizer sgd --no-ema --init paper --stem-stride 2 "
              f"--epochs {FAITHFUL_EPOCHS}")
    print(f"          {regularization_note(args)}")
    if args.progressive:
        for line in progressive.describe(progressive.plan_for(args, config.resolution)):
            print(f"stage     {line}")
        if min_resolution(config) >= config.resolution:
            print(f"          every stage trains at {config.resolution}×{config.resolution}: the network's output "
                  f"stride is {min_resolution(config)}, so no smaller size is allowed")
    print(f"run       {run_dir}", flush=True)


def print_compiled(summary):
    """The warm-up's line (``warmup.Summary``), when it compiled anything."""
    if summary.compiled:
        print(f"kernels   {summary.line()}", flush=True)


def print_estimate(args, trainer):
    """Time one step (every process takes it) and print what the run will take (the main process)."""
    say = trainer.world.print
    say("timing one step…", flush=True)
    steps = trainer.steps_per_epoch
    done = trainer.state.epoch * steps + trainer.state.step_in_epoch
    to_go = f"{count_epochs(args.epochs - trainer.state.epoch)} to go (plus evaluation)"
    if trainer.plan is None:
        step = trainer.measure_step_seconds()
        say(f"estimate  {step:.2f} s per step of {args.batch_size} images → {format_seconds(step * steps)} "
            f"per epoch, about {format_seconds(step * (args.epochs * steps - done))} for the {to_go}", flush=True)
        return
    stages, first = [], 0          # (first epoch, steps to go) of each stage not finished yet
    for stage in trainer.plan:
        left = (first + stage.epochs) * steps - max(done, first * steps)
        if left > 0:
            stages.append((first, left))
        first += stage.epochs
    # the last stage first, so that the stage training starts with is the one whose resized images stay cached
    timed = [(trainer.measure_step_seconds(epoch), left) for epoch, left in reversed(stages)]
    fastest, slowest = (f"{f([t for t, _ in timed]):.2f}" for f in (min, max))
    span = fastest if fastest == slowest else f"{fastest}–{slowest}"
    say(f"estimate  {span} s per step of {args.batch_size} images in the stages left (timed in each), about "
        f"{format_seconds(sum(t * n for t, n in timed))} for the {to_go}", flush=True)


if __name__ == "__main__":
    sys.exit(run_job(main))
