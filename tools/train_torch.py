"""The PyTorch column of the README's CIFAR-10 accuracy table: tinyeffnet's recipe (its defaults, or the faithful
SGD baseline with ``--optimizer sgd --no-ema``), run with torch and the reference EfficientNet (PyPI
``efficientnet_pytorch``), for comparison only. It lives in the repository's ``tools/``, not in the installed
package, because it needs torch.

Run it in a side environment that has torch and efficientnet_pytorch (torch is never a dependency of
tinyeffnet), with tinyeffnet installed into it as well:

    python -m venv torch-env && torch-env/bin/pip install torch==2.13.0 efficientnet_pytorch==0.7.1 -e .
    torch-env/bin/python tools/train_torch.py --data-dir ../shared/data --epochs 16 --threads 1 --out runs/torch-b0

The recipe is the same by construction, not by copy: the data (``train.prepare_data``), the batches
(``engine.augmented_batch``: the same order, crops and flips for the same seed) and the learning-rate
schedule are tinyeffnet's own functions, and the constants are ``tinyeffnet.train``'s defaults
(``fill_recipe_defaults``): the optimizer (torch's SGD with Nesterov momentum, or its AdamW, whose decoupled
decay θ ← θ·(1 − lr·λ) is tinyeffnet's), weight decay on weights only, the gradients clipped to the same global
norm (AdamW's default, ``DEFAULT_CLIP_GRAD_NORM``), and the moving average of every
floating-point parameter and batch-norm statistic with tinyeffnet's warm-up (``tinyeffnet.averaging``),
which each epoch then evaluates. What differs is the model (the reference's B0, with its own initialisation,
batch-norm momentum 0.01 in PyTorch's sense = 0.99 in the paper's, dropout 0.2 and drop connect 0.2) and the
engine; and there is no batch-norm
recalibration before the early evaluations (``tinyeffnet.engine`` recalibrates during the first ~1,000
steps, the averaged network's statistics too when it evaluates the average), so only the later test accuracies
compare.

Each epoch appends one JSON object to ``OUT/metrics.jsonl`` with the keys ``tinyeffnet.train`` writes
(``epoch``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, ``lr``, ``seconds`` of training
steps, ``eval_seconds``, ``images_per_second``), so one plot can show both runs.
"""

import copy
import importlib.metadata
import json
import os
import sys
import time

import numpy as np

from tinyeffnet import data as datasets
from tinyeffnet.averaging import warmed_up_decay
from tinyeffnet.cli import PAPER_STEM_STRIDE, make_parser, non_negative_int, positive_int, run_cli
from tinyeffnet.engine import EVAL_BATCH_SIZE, augmented_batch, optimizer_settings
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.optim import learning_rate
from tinyeffnet.runtime import users_environment
from tinyeffnet.train import DEFAULT_OPTIMIZER, fill_recipe_defaults, parse_args as tinyeffnet_arguments, prepare_data


# RMSProp is left out: torch's adds ε outside the square root, TensorFlow's (tinyeffnet's) inside
TORCH_OPTIMIZERS = ("sgd", "adamw")


class Average:
    """tinyeffnet's moving average (``tinyeffnet.averaging``) of a torch model: a copy whose floating-point
    parameters and buffers follow avg ← d_t·avg + (1 − d_t)·x after each step, with the same warm-up d_t."""

    def __init__(self, model, decay):
        self.model, self.decay, self.t = copy.deepcopy(model), decay, 0

    def update(self, model):
        import torch
        self.t += 1
        d = warmed_up_decay(self.decay, self.t)
        with torch.no_grad():
            for avg, x in zip(self.model.state_dict().values(), model.state_dict().values()):
                if avg.is_floating_point():
                    avg.mul_(d).add_(x, alpha=1 - d)


def main(argv=None):
    parser = make_parser("python tools/train_torch.py", __doc__)
    parser.add_argument("--data-dir", help="folder holding CIFAR-10 (default: as tinyeffnet.train's)")
    parser.add_argument("--epochs", type=positive_int, required=True, help="passes over the training set")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="shuffling and augmentation, as tinyeffnet's")
    parser.add_argument("--subset", type=positive_int, help="first N training and test images only (a quick check)")
    parser.add_argument("--out", required=True, help="a new or empty folder for metrics.jsonl and versions.json")
    parser.add_argument("--optimizer", choices=TORCH_OPTIMIZERS,
                        help=f"as tinyeffnet.train's (default: {DEFAULT_OPTIMIZER})")
    parser.add_argument("--no-ema", action="store_true", help="as tinyeffnet.train's: evaluate the weights trained")
    parser.add_argument("--no-clip", action="store_true", help="as tinyeffnet.train's: no gradient clipping")
    parser.add_argument("--stem-stride", type=int, choices=(1, 2),
                        help="as tinyeffnet.train's: 1, the CIFAR adaptation (its choice for CIFAR-10 from scratch), "
                             "or 2, the paper's")
    args = parser.parse_args(argv)
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise TinyEffNetError(f"--out {args.out} is not empty: give a new folder, so that one run's epochs are not "
                              "mixed with another's")
    subset = ["--subset", str(args.subset), "--test-subset", str(args.subset)] if args.subset else []
    flags = [*(["--data-dir", args.data_dir] if args.data_dir else []), *subset,
             *(["--optimizer", args.optimizer] if args.optimizer else []), *(["--no-ema"] if args.no_ema else []),
             *(["--no-clip"] if args.no_clip else []),
             *(["--stem-stride", str(args.stem_stride)] if args.stem_stride else [])]
    recipe = fill_recipe_defaults(tinyeffnet_arguments(flags))
    stem_stride = recipe.stem_stride or PAPER_STEM_STRIDE              # as cli.build_config takes it

    # torch's OpenMP reads GOMP_SPINCOUNT when it loads: give it the user's environment, not the settings
    # ``import tinyeffnet`` made for its own kernels (tinyeffnet/runtime.py)
    os.environ.clear()
    os.environ.update(users_environment())
    try:
        import efficientnet_pytorch
        import torch
    except ImportError as e:
        raise TinyEffNetError(f"{e.name} is not installed in this Python ({sys.executable}): run this script with "
                              "the Python of a side environment that has torch and efficientnet_pytorch "
                              "(torch is never a dependency of tinyeffnet)") from None
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    data = prepare_data(recipe, resolution=None)                   # CIFAR-10 at 32×32, the training set's mean, std
    model = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0", num_classes=10, image_size=32)
    if stem_stride != PAPER_STEM_STRIDE:                               # the CIFAR adaptation: the stem keeps 32×32
        # "same" padding of a stride-2 window depends only on whether the side is even, so every later layer's
        # static padding, computed for 16×16, holds at 32×32 too; only the stem is made anew
        same_padding_conv = efficientnet_pytorch.utils.get_same_padding_conv2d(image_size=32)
        model._conv_stem = same_padding_conv(3, model._conv_stem.out_channels, kernel_size=3, stride=stem_stride,
                                             bias=False)
    decay = [p for p in model.parameters() if p.ndim > 1]          # conv and dense weights, as tinyeffnet
    no_decay = [p for p in model.parameters() if p.ndim <= 1]      # batch norm and biases
    groups = [dict(params=decay, weight_decay=recipe.weight_decay), dict(params=no_decay, weight_decay=0.0)]
    hyper = optimizer_settings(recipe)                             # tinyeffnet's, by its classes' names
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=recipe.lr, momentum=hyper["momentum"], nesterov=hyper["nesterov"])
    elif recipe.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=recipe.lr, betas=(hyper["beta1"], hyper["beta2"]),
                                      eps=hyper["epsilon"])
    else:
        raise TinyEffNetError(f"no torch optimizer for {recipe.optimizer}; give --optimizer with one of "
                              f"{', '.join(TORCH_OPTIMIZERS)}")
    average = Average(model, recipe.ema) if recipe.ema else None
    evaluated = average.model if average else model
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    def nchw(x):                              # (N, H, W, 3) float32 → (N, 3, H, W), PyTorch's layout
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

    steps_per_epoch = len(data.train_labels) // recipe.batch_size or 1     # as Trainer
    total, warmup = steps_per_epoch * args.epochs, int(round(recipe.warmup_epochs * steps_per_epoch))
    os.makedirs(args.out, exist_ok=True)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.train()
        loss_sum = correct = seen = 0.0
        for i in range(steps_per_epoch):
            x, y, _ = augmented_batch(data, args.seed, epoch, i, recipe.batch_size)
            x, y = nchw(x), torch.from_numpy(y.astype(np.int64))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(epoch * steps_per_epoch + i, total, recipe.lr, warmup)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            if recipe.clip_grad_norm:                          # the global norm over every parameter, as tinyeffnet
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad_norm)
            optimizer.step()
            if average:
                average.update(model)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        train_seconds, start = time.perf_counter() - start, time.perf_counter()
        evaluated.eval()
        test_loss = test_correct = 0.0
        with torch.inference_mode():
            for s in range(0, len(data.test_labels), EVAL_BATCH_SIZE):
                images = datasets.normalize(data.test_images[s:s + EVAL_BATCH_SIZE], data.mean, data.std)
                logits = evaluated(nchw(images))
                y = torch.from_numpy(data.test_labels[s:s + EVAL_BATCH_SIZE].astype(np.int64))
                test_loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
                test_correct += (logits.argmax(1) == y).sum().item()
        n_test = len(data.test_labels)
        row = dict(epoch=epoch + 1, train_loss=loss_sum / seen, train_acc=correct / seen,
                   test_loss=test_loss / n_test, test_acc=test_correct / n_test, lr=group["lr"],
                   eval_weights="ema" if average else "raw", seconds=train_seconds,
                   eval_seconds=time.perf_counter() - start,
                   images_per_second=seen / train_seconds)
        with open(os.path.join(args.out, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"epoch {epoch + 1}/{args.epochs}: test {100 * row['test_acc']:.2f}%  "
              f"({row['seconds']:.0f} s, {row['images_per_second']:.0f} img/s)", flush=True)
    with open(os.path.join(args.out, "versions.json"), "w") as f:
        json.dump(dict(torch=torch.__version__, efficientnet_pytorch=importlib.metadata.version("efficientnet_pytorch"),
                       numpy=np.__version__, threads=args.threads, epochs=args.epochs, optimizer=recipe.optimizer,
                       stem_stride=stem_stride,
                       lr=recipe.lr, weight_decay=recipe.weight_decay, ema=recipe.ema,
                       clip_grad_norm=recipe.clip_grad_norm), f)


if __name__ == "__main__":
    sys.exit(run_cli(main))
