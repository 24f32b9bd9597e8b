"""``python -m tinyeffnet.train --phi 0 --dataset cifar10``: train EfficientNet with minibatch SGD.

One step: augment a batch (random crop + flip), normalise it, forward, softmax cross-entropy (with label
smoothing), backward, SGD with Nesterov momentum and weight decay at the scheduled learning rate. After
each epoch the model is evaluated on the test set in eval mode, and the run folder gets

    config.json      the command's arguments and the architecture
    metrics.jsonl    one JSON object per epoch
    latest.npz       the checkpoint after the last epoch (or the step where it was interrupted)
    best.npz         the checkpoint with the best test accuracy so far
    curves.png       loss and accuracy per epoch
    features.npz     with --freeze-body: the body's features, reused by --resume or the same --out (``transfer``)

Reproducibility: the shuffling of epoch e and the augmentation of batch b are drawn from generators
seeded by (seed, e) and (seed, e, b), and dropout draws from the model's own generator, whose state is
saved in every checkpoint; so the same seed and thread count give the same run, also across a resume.
Ctrl-C (or SIGTERM) finishes the current step, saves ``latest.npz`` and prints how to resume. Before the
trainer exists (while a linear probe extracts its features) it stops at once, keeping the features finished.

Transfer learning (``--variant lite0 --pretrained``, optionally ``--freeze-body``): the network starts from
ImageNet weights with a new classifier, and with ``--freeze-body`` only that classifier trains, on features
of the frozen body computed once (``LinearProbe``; see ``tinyeffnet.transfer``).
"""

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from tinyeffnet import data as datasets
from tinyeffnet import transfer
from tinyeffnet.checkpoint import save_checkpoint
from tinyeffnet.cli import add_model_arguments, build_config, run_cli
from tinyeffnet.device import require_cuda
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.files import atomic_write
from tinyeffnet.kernels.loss import cross_entropy_forward
from tinyeffnet.layers import recalibrate_batchnorm
from tinyeffnet.model import EfficientNet
from tinyeffnet.optim import SGD, clip_grad_norm, learning_rate
from tinyeffnet.plots import plot_curves
from tinyeffnet.progress import Progress, format_seconds
from tinyeffnet.weights import open_weights

EVAL_BATCH_SIZE = 256
RECALIBRATION_BATCHES = 10          # batches averaged by recalibrate_batchnorm before a short run's evaluation
RECALIBRATION_HORIZON = 10          # …while fewer than 10 / (1 − momentum) steps have been trained
DEFAULT_EPOCHS = 60
DEFAULT_LR = 0.1
PRETRAINED_LR = 0.003              # default peak rate from ImageNet weights, as Big Transfer (see tinyeffnet.transfer)
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyeffnet.train", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_arguments(p)
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default="cifar10", help="cifar10, cifar100 or synthetic")
    d.add_argument("--data-dir", help="folder holding the dataset (default: $TINYEFFNET_DATA or ~/.cache/tinyeffnet)")
    d.add_argument("--subset", type=int, help="train on the first N training images only (quick runs)")
    d.add_argument("--per-class", type=int, help="train on the first K training images of each class only "
                   "(a balanced small training set; with --subset, taken from those N)")
    d.add_argument("--test-subset", type=int, help="evaluate on the first N test images only")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, help=f"passes over the training set (default {DEFAULT_EPOCHS}; "
                   "with --resume, a new total to extend the run)")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, help=f"peak learning rate (after warm-up; default {DEFAULT_LR}, or "
                   f"{PRETRAINED_LR} with --pretrained)")
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--no-nesterov", dest="nesterov", action="store_false", help="plain (heavy-ball) momentum")
    t.add_argument("--weight-decay", type=float, default=5e-4, help="on weights only, not batch norm or biases")
    t.add_argument("--warmup-epochs", type=float, default=1.0)
    t.add_argument("--label-smoothing", type=float, default=0.1)
    t.add_argument("--clip-grad-norm", type=float, help="scale gradients to at most this global norm")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    tl = p.add_argument_group("transfer learning")
    tl.add_argument("--pretrained", action="store_true",
                    help="start from the ImageNet weights of --variant (lite0) with a new classifier for the "
                         "dataset's classes; images are normalised as for ImageNet, (x − 127) / 128")
    tl.add_argument("--freeze-body", action="store_true",
                    help="with --pretrained: train only the new classifier, on the frozen body's features computed "
                         "once (a linear probe; no augmentation)")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="run folder (default: runs/<dataset>-<model>-<time>)")
    o.add_argument("--resume", help="a run folder or checkpoint to continue from (its own arguments are used)")
    return p.parse_args(argv)


def validate(args):
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise TinyEffNetError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("subset", "test_subset", "per_class"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise TinyEffNetError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if not args.lr > 0:
        raise TinyEffNetError(f"--lr must be positive, got {args.lr}")
    if not 0 <= args.label_smoothing < 1:
        raise TinyEffNetError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if args.weight_decay < 0 or args.warmup_epochs < 0:
        raise TinyEffNetError("--weight-decay and --warmup-epochs must not be negative")
    if args.device == "cuda":
        if args.freeze_body:
            raise TinyEffNetError("--freeze-body computes the body's features on the CPU; leave out --device cuda")
        require_cuda()
    transfer.check_arguments(args)


@dataclass
class Data:
    """The dataset prepared once: images resized to the model's resolution, normalisation statistics
    (the training images' own, or the pretrained weights' for a --pretrained run)."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list
    mean: np.ndarray
    std: np.ndarray
    source: str


def prepare_data(args, resolution):
    """The dataset at ``resolution`` (None: as stored, for ``LinearProbe``, which resizes batch by batch)."""
    ds = datasets.load_dataset(args.dataset, args.data_dir)
    train_x, train_y = ds.train_images[:args.subset], ds.train_labels[:args.subset]
    if args.per_class is not None:
        keep = first_per_class(train_y, args.per_class)
        train_x, train_y = train_x[keep], train_y[keep]
    test_x, test_y = ds.test_images[:args.test_subset], ds.test_labels[:args.test_subset]
    mean, std = transfer.preprocessing() if args.pretrained else datasets.channel_stats(train_x)
    if resolution is not None:
        train_x, test_x = datasets.resize_images(train_x, resolution), datasets.resize_images(test_x, resolution)
    return Data(train_x, train_y, test_x, test_y, list(ds.classes), mean, std, ds.source)


def first_per_class(labels, k):
    """Indices of the first ``k`` examples of each class in ``labels`` (N,), in the dataset's order."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:k] for c in np.unique(labels)]))


@dataclass
class RunState:
    """Where training stands: saved in every checkpoint so a resumed run continues exactly."""
    epoch: int = 0                 # completed epochs
    step_in_epoch: int = 0         # completed steps of the current epoch
    sums: dict = field(default_factory=lambda: dict(loss=0.0, correct=0, seen=0, seconds=0.0))
    history: list = field(default_factory=list)
    best_acc: float = -1.0


def evaluate(model, images, labels, mean, std, batch_size=EVAL_BATCH_SIZE):
    """Eval-mode pass over a dataset of (N, H, W, 3) uint8 images: (mean loss, accuracy, predictions)."""
    batches = (datasets.normalize(images[start:start + batch_size], mean, std).astype(model.dtype, copy=False)
               for start in range(0, len(images), batch_size))
    return score(model, batches, labels)


def score(model, batches, labels):
    """Eval-mode loss and accuracy of ``model`` on ``batches`` of inputs, whose labels are ``labels`` (N,)
    in the same order: (mean loss, accuracy, predictions (N,))."""
    model.eval()
    predictions, total_loss, seen = [], 0.0, 0
    for x in batches:
        y = labels[seen:seen + len(x)]
        seen += len(x)
        logits = model.backend.to_host(model.forward(model.backend.to_device(x)))
        loss, _ = cross_entropy_forward(logits, y)
        total_loss += loss * len(y)
        predictions.append(np.argmax(logits, axis=1))
    predictions = np.concatenate(predictions)
    return total_loss / len(labels), float(np.mean(predictions == labels)), predictions


def train_step(model, optimizer, x, y, lr, label_smoothing=0.0, clip_norm=None):
    """One SGD step of ``model`` on the batch x, y (N,): forward, loss, backward, clip, update. x is what the
    model takes: images (N, H, W, 3) for a network, pooled features (N, F) for a ``transfer.Head``.

    x and y are host arrays; on a model moved to the GPU they are copied there, and only the loss and the
    logits (N, K) come back. Returns ``(loss, correct)``; a loss that is not finite is returned before the
    backward pass, with no parameter changed, so the caller can stop."""
    model.train()
    model.zero_grad()
    backend = model.backend
    labels = backend.to_device(y)
    logits = model.forward(backend.to_device(x))
    loss, probs = backend.loss.cross_entropy_forward(logits, labels, label_smoothing)
    if not np.isfinite(loss):
        return loss, 0
    model.backward(backend.loss.cross_entropy_backward(probs, labels, label_smoothing))
    if clip_norm:
        clip_grad_norm(optimizer.grads, clip_norm)
    optimizer.lr = lr
    optimizer.step()
    return loss, int(np.sum(np.argmax(backend.to_host(logits), axis=1) == y))


def batch_indices(seed, epoch, index, num_examples, batch_size):
    """The training examples of batch ``index`` of epoch ``epoch``: a slice of the epoch's permutation,
    drawn from a generator seeded by (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return order[index * batch_size:(index + 1) * batch_size]


def augmented_batch(data, seed, epoch, index, batch_size):
    """Batch ``index`` of epoch ``epoch`` of ``data`` (a ``Dataset`` with ``mean``, ``std``): images
    (B, H, W, 3) float32, cropped and flipped with a generator seeded by (seed, epoch, index), then
    normalised; labels (B,)."""
    idx = batch_indices(seed, epoch, index, len(data.train_labels), batch_size)
    images = datasets.random_crop_flip(data.train_images[idx], np.random.default_rng([seed, epoch, index]))
    return datasets.normalize(images, data.mean, data.std), data.train_labels[idx]


class Trainer:
    """Trains ``model`` (all of it) on ``data`` and writes the run folder; ``LinearProbe`` trains its head only."""

    def __init__(self, args, config, data, model, run_dir, state=None, optimizer_state=None):
        self.args, self.config, self.data, self.model, self.run_dir = args, config, data, model, run_dir
        self.trainable = self.trainable_part(model)
        self.optimizer = SGD(self.trainable.named_parameters(), self.trainable.named_grads(), args.lr, args.momentum,
                             args.weight_decay, args.nesterov)
        if optimizer_state:
            self.optimizer.load_state_dict(optimizer_state)
        self.state = state or RunState()
        self.steps_per_epoch = len(data.train_images) // args.batch_size or 1
        self.total_steps = self.steps_per_epoch * args.epochs
        self.warmup_steps = int(round(args.warmup_epochs * self.steps_per_epoch))
        self.stop_signal = None
        for sig in EXIT_SIGNAL:            # from here on, Ctrl-C finishes the current step and saves
            signal.signal(sig, self.on_signal)

    def trainable_part(self, model):
        """The layer whose parameters SGD updates: here the whole network."""
        return model

    # --- one step ---------------------------------------------------------------------------------
    def batch_indices(self, epoch, index):
        return batch_indices(self.args.seed, epoch, index, len(self.data.train_labels), self.args.batch_size)

    def batch(self, epoch, index):
        """Batch ``index`` of epoch ``epoch``: images (B, H, W, 3) augmented and normalised, labels (B,)."""
        x, y = augmented_batch(self.data, self.args.seed, epoch, index, self.args.batch_size)
        return x.astype(self.model.dtype, copy=False), y

    def step(self, x, y, lr):
        return train_step(self.trainable, self.optimizer, x, y, lr, self.args.label_smoothing, self.args.clip_grad_norm)

    def measure_step_seconds(self):
        """Time one training step (after one untimed step that compiles the kernels), then undo both."""
        snapshot = {k: v.copy() for k, v in self.model.state_dict().items()}
        velocity = {k: v.copy() for k, v in self.optimizer.state_dict().items()}
        rng_state = self.model.noise_rng.bit_generator.state
        x, y = self.batch(0, 0)
        self.step(x, y, 0.0)
        start = time.perf_counter()
        self.step(x, y, 0.0)
        seconds = time.perf_counter() - start
        self.model.load_state_dict(snapshot)
        self.model.noise_rng.bit_generator.state = rng_state
        self.optimizer.load_state_dict(velocity)
        return seconds

    # --- the loop ---------------------------------------------------------------------------------
    def run(self):
        st, args = self.state, self.args
        while st.epoch < args.epochs:
            epoch = st.epoch
            progress = Progress(self.steps_per_epoch, f"epoch {epoch + 1}/{args.epochs}")
            while st.step_in_epoch < self.steps_per_epoch:
                start = time.perf_counter()
                x, y = self.batch(epoch, st.step_in_epoch)
                lr = learning_rate(epoch * self.steps_per_epoch + st.step_in_epoch, self.total_steps, args.lr,
                                   self.warmup_steps)
                loss, correct = self.step(x, y, lr)
                if not np.isfinite(loss):
                    progress.close()
                    raise TinyEffNetError(
                        f"the training loss became {loss} at epoch {epoch + 1}, step {st.step_in_epoch + 1}; "
                        f"stopped without saving. The last good checkpoint is {self.run_dir}/latest.npz (if any). "
                        f"Try a lower --lr (now {args.lr}) or --clip-grad-norm 5.")
                s = st.sums
                s["loss"] += loss * len(y)
                s["correct"] += correct
                s["seen"] += len(y)
                s["seconds"] += time.perf_counter() - start
                st.step_in_epoch += 1
                progress.update(st.step_in_epoch, loss=f"{s['loss'] / s['seen']:.3f}",
                                acc=f"{100 * s['correct'] / s['seen']:.1f}%", lr=f"{lr:.4f}",
                                **{"img/s": f"{s['seen'] / s['seconds']:.0f}"})
                if self.stop_signal is not None:
                    progress.close()
                    return self.interrupt()
            progress.close()
            self.end_epoch(lr)
        return 0

    def test(self):
        """(loss, accuracy) on the test set in eval mode, after recalibrating batch norm in a short run."""
        if self.needs_recalibration():
            count = min(RECALIBRATION_BATCHES, self.steps_per_epoch)
            recalibrate_batchnorm(self.model, (self.batch(self.state.epoch, i)[0] for i in range(count)))
        return evaluate(self.model, self.data.test_images, self.data.test_labels, self.data.mean, self.data.std)[:2]

    def end_epoch(self, lr):
        st, s = self.state, self.state.sums
        start = time.perf_counter()
        test_loss, test_acc = self.test()
        row = dict(epoch=st.epoch + 1, train_loss=s["loss"] / s["seen"], train_acc=s["correct"] / s["seen"],
                   test_loss=test_loss, test_acc=test_acc, lr=lr, seconds=s["seconds"],
                   eval_seconds=time.perf_counter() - start, images_per_second=s["seen"] / s["seconds"])
        st.history.append(row)
        st.epoch, st.step_in_epoch = st.epoch + 1, 0
        st.sums = RunState().sums
        print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}% | "
              f"test loss {test_loss:.4f} acc {100 * test_acc:.2f}% | {row['seconds']:.0f} s, "
              f"{row['images_per_second']:.0f} img/s", flush=True)
        write_metrics(self.run_dir, st.history)
        if test_acc > st.best_acc:
            st.best_acc = test_acc
            self.save("best.npz")
        self.save("latest.npz")
        plot_curves(st.history, os.path.join(self.run_dir, "curves.png"),
                    title=f"{self.config.name} on {self.args.dataset}")

    def needs_recalibration(self):
        """Short runs: the running statistics still lag the weights (see ``recalibrate_batchnorm``)."""
        steps = (self.state.epoch + 1) * self.steps_per_epoch
        return steps < RECALIBRATION_HORIZON / (1 - self.config.bn_momentum)

    def save(self, name):
        st = self.state
        training = dict(epoch=st.epoch, step_in_epoch=st.step_in_epoch, sums=st.sums, history=st.history,
                        best_acc=st.best_acc, noise_rng=self.model.noise_rng.bit_generator.state,
                        args=vars(self.args), classes=self.data.classes,
                        preprocess=dict(mean=self.data.mean.tolist(), std=self.data.std.tolist(),
                                        resolution=self.config.resolution))
        save_checkpoint(os.path.join(self.run_dir, name), self.model, self.optimizer, training)

    def on_signal(self, signum, frame):
        if self.stop_signal is not None:      # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum
        print(f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
              "(press Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    def interrupt(self):
        self.save("latest.npz")
        print(f"interrupted at epoch {self.state.epoch + 1}, step {self.state.step_in_epoch}; saved "
              f"{self.run_dir}/latest.npz\nresume with: python -m tinyeffnet.train --resume {self.run_dir}",
              file=sys.stderr, flush=True)
        return EXIT_SIGNAL[self.stop_signal]


class LinearProbe(Trainer):
    """``--freeze-body``: only the classifier trains, on the frozen body's pooled features (N, F) computed
    once per run folder (``transfer.cached_features``: eval mode, no augmentation).

    The loop, schedule, loss, signals and checkpoints (of the whole network) are ``Trainer``'s; what differs
    is the batch (features instead of images) and that SGD holds only the head's parameters, so every body
    tensor, batch-norm statistics included, stays exactly as loaded."""

    def __init__(self, args, config, data, model, run_dir, state=None, optimizer_state=None):
        splits = dict(train=(data.train_images, data.train_labels), test=(data.test_images, data.test_labels))
        selection = {name: getattr(args, name) for name in ("dataset", "subset", "per_class", "test_subset")}
        features = transfer.cached_features(os.path.join(run_dir, transfer.FEATURES_FILE), model, splits,
                                            data.mean, data.std, selection)
        self.train_features, self.test_features = features["train"], features["test"]
        super().__init__(args, config, data, model, run_dir, state, optimizer_state)

    def trainable_part(self, model):
        """The model's dropout and classifier (``transfer.Head``), sharing its arrays."""
        return transfer.Head(model)

    def batch(self, epoch, index):
        """Batch ``index`` of epoch ``epoch``: features (B, F) and labels (B,)."""
        idx = self.batch_indices(epoch, index)
        return self.train_features[idx], self.data.train_labels[idx]

    def test(self):
        """(loss, accuracy) of the head on the test features (the body's batch norm has nothing to recalibrate)."""
        batches = (self.test_features[start:start + EVAL_BATCH_SIZE]
                   for start in range(0, len(self.test_features), EVAL_BATCH_SIZE))
        return score(self.trainable, batches, self.data.test_labels)[:2]


def write_metrics(run_dir, history):
    text = "".join(json.dumps(row) + "\n" for row in history)
    atomic_write(os.path.join(run_dir, "metrics.jsonl"), lambda f: f.write(text.encode()))


def resume_source(path):
    """A run folder or a checkpoint file → the checkpoint to resume from."""
    if os.path.isdir(path):
        path = os.path.join(path, "latest.npz")
    if not os.path.isfile(path):
        raise TinyEffNetError(f"nothing to resume: {path} does not exist")
    return path


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (``signum``) before training started."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_now(signum, frame):
    """The handler of SIGINT and SIGTERM until the ``Trainer`` installs its own: stop at once."""
    raise Interrupted(signum)


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
    state = optimizer_state = model_state = None
    if args.resume:
        checkpoint = resume_source(args.resume)
        config, model_state, optimizer_state, training = open_weights(checkpoint)
        if not training or "args" not in training or "epoch" not in training:
            raise TinyEffNetError(f"{checkpoint} holds weights only, no training state to resume from")
        saved = {**vars(parse_args([])), **training["args"]}     # defaults for flags newer than the run
        saved.update(resume=args.resume, epochs=args.epochs or saved["epochs"], data_dir=args.data_dir or saved["data_dir"])
        args = argparse.Namespace(**saved)
        run_dir = os.path.dirname(os.path.abspath(checkpoint))
        state = RunState(training["epoch"], training["step_in_epoch"], training["sums"], training["history"],
                         training["best_acc"])
    args.epochs = args.epochs or DEFAULT_EPOCHS
    if args.lr is None:
        args.lr = PRETRAINED_LR if args.pretrained else DEFAULT_LR
    validate(args)
    if not args.resume:
        num_classes = {"cifar100": 100}.get(args.dataset, 10)
        config = build_config(args, num_classes=num_classes)
        run_dir = args.out or os.path.join("runs", f"{args.dataset}-{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        os.makedirs(run_dir, exist_ok=True)
    data = prepare_data(args, None if args.freeze_body else config.resolution)
    if model_state is not None:
        model = EfficientNet(config, seed=args.seed)
        model.load_state_dict(model_state, args.resume)
        model.noise_rng.bit_generator.state = training["noise_rng"]
    else:
        model = transfer.pretrained_model(config, args.seed) if args.pretrained else EfficientNet(config, args.seed)
        run_config = dict(args=vars(args), model=config.to_dict(), data_source=data.source, classes=data.classes,
                          preprocess=dict(mean=data.mean.tolist(), std=data.std.tolist()))
        atomic_write(os.path.join(run_dir, "config.json"),
                     lambda f: f.write(json.dumps(run_config, indent=2).encode()))
    model.to(args.device)     # parameters, gradients and batch-norm statistics; SGD's state follows them
    for sig in EXIT_SIGNAL:
        signal.signal(sig, stop_now)
    try:
        print_plan(args, config, model, data, run_dir)
        trainer = (LinearProbe if args.freeze_body else Trainer)(args, config, data, model, run_dir, state,
                                                                  optimizer_state)
    except Interrupted as e:
        print(f"\n{signal.Signals(e.signum).name}: {interrupted_before_training(args, run_dir)}", file=sys.stderr,
              flush=True)
        return EXIT_SIGNAL[e.signum]
    print_estimate(args, trainer)
    return trainer.run()


def architecture_note(config):
    if config.stem_stride == 1:
        return "CIFAR adaptation: stem stride 1, so a 32×32 image ends at 2×2 instead of 1×1 (output stride 16)"
    return "faithful EfficientNet (stem stride 2, output stride 32)"


def transfer_note(args, config):
    if not args.pretrained:
        return "from scratch (random initialisation); images normalised with the training set's mean and std"
    what = ("body frozen: only the classifier trains, on pooled features computed once (eval mode, no augmentation)"
            if args.freeze_body else "fine-tuning every layer")
    return (f"ImageNet weights of {config.name}, a new {config.num_classes}-class classifier; {what}; "
            "images normalised as for ImageNet, (x − 127) / 128")


def print_plan(args, config, model, data, run_dir):
    print(f"model     {config.name}: {model.num_parameters():,} parameters, width {config.width:.3g}, "
          f"depth {config.depth:.3g}, resolution {config.resolution}×{config.resolution}")
    print(f"          {architecture_note(config)}")
    print(f"start     {transfer_note(args, config)}")
    print(f"data      {args.dataset}: {len(data.train_images):,} training and {len(data.test_images):,} test "
          f"images from {data.source}")
    print(f"recipe    SGD lr {args.lr} (warm-up {args.warmup_epochs} epochs, cosine decay), momentum "
          f"{args.momentum}{' Nesterov' if args.nesterov else ''}, weight decay {args.weight_decay}, "
          f"batch {args.batch_size}, label smoothing {args.label_smoothing}, dropout {config.dropout}, "
          f"drop connect {config.drop_connect}")
    print(f"run       {run_dir}", flush=True)


def print_estimate(args, trainer):
    print("timing one step (the first call compiles the kernels; later runs reuse the cache)…", flush=True)
    step = trainer.measure_step_seconds()
    remaining = args.epochs * trainer.steps_per_epoch - (trainer.state.epoch * trainer.steps_per_epoch
                                                         + trainer.state.step_in_epoch)
    print(f"estimate  {step:.2f} s per step of {args.batch_size} images → {format_seconds(step * trainer.steps_per_epoch)} "
          f"per epoch, about {format_seconds(step * remaining)} for the {args.epochs - trainer.state.epoch} "
          "epochs to go (plus evaluation)", flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(main))
