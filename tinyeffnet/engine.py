"""The training engine: the step, the batches, evaluation and the loop that trains a model and writes its run folder.

One step (``train_step``): forward, softmax cross-entropy (with label smoothing; against soft targets with
Mixup), backward, the gradients' reduction across processes (``World.reduce_gradients``), optional clipping,
then the optimiser's update (SGD, RMSProp or AdamW by ``--optimizer``, built from ``optim.OPTIMIZERS``) at the
scheduled learning rate and, with ``--ema``, the update of the weights' moving average
(``averaging.WeightAverage``). The loop (``Trainer.run``) feeds it augmented batches (random crop + flip; with
``--randaugment`` and ``--mixup`` also RandAugment and Mixup, ``tinyeffnet.augment``, at the strengths
``Trainer.regularization`` gives; then normalisation); after each epoch the test set is evaluated in eval mode
(``Trainer.evaluation``: the model's own weights, or with ``--ema`` their average; with ``--tta`` also each
image averaged with its mirror, reported beside the plain figures) and the run folder gets

    metrics.jsonl    one JSON object per epoch
    latest.npz       the checkpoint after the last epoch (or the step where it was interrupted)
    best.npz         the checkpoint with the best test accuracy so far
    curves.png       loss and accuracy per epoch

Progressive learning (``--progressive``, ``tinyeffnet.progressive``): each epoch asks the plan for its stage,
trains on the training images resized to the stage's size (once per stage, ``Trainer.train_data``; the random
crop's shift scaled with them) with the stage's dropout rate, RandAugment magnitude and Mixup α, and records
the stage and its size in its row; evaluation stays at the model's resolution.

Reproducibility: the shuffling of epoch e and the augmentation of batch b are drawn from generators seeded by
(seed, e) and (seed, e, b) (RandAugment and Mixup each from its own, (seed, e, b, 1) and (seed, e, b, 2)), and
dropout draws from the model's own generator, whose state is saved in every checkpoint (with several processes,
each process's from one seeded by (seed, e, b, rank): ``World.seed_noise``); so the same seed and thread count
give the same run, also across a resume.

Signals: once a ``Trainer`` exists, Ctrl-C (or SIGTERM) finishes the current step, saves ``latest.npz`` and
prints how to resume; a second one aborts at once. Before that, ``stop_now`` stops at once.

Processes: everything that prints or writes files asks ``World.is_main``. One process is rank 0 of 1, and every
other ``World`` method leaves what it is given as it is; data parallelism (``tinyeffnet.distributed``) supplies
another rank and size, gives each process its rows of every batch (``shard``) and adds up across processes
the losses, gradients and signals the loop sees.
"""

import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from tinyeffnet import data as datasets
from tinyeffnet import progressive
from tinyeffnet.augment import mixup, rand_augment
from tinyeffnet.averaging import WeightAverage
from tinyeffnet.checkpoint import average_state, save_checkpoint
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.files import atomic_write
from tinyeffnet.kernels.loss import cross_entropy_forward
from tinyeffnet.layers import recalibrate_batchnorm
from tinyeffnet.optim import clip_grad_norm, global_grad_norm, hyper_parameters, learning_rate, make_optimizer
from tinyeffnet.plots import plot_curves
from tinyeffnet.progress import Progress

EVAL_BATCH_SIZE = 256
RECALIBRATION_BATCHES = 10          # batches averaged by recalibrate_batchnorm before a short run's evaluation
RECALIBRATION_HORIZON = 10          # …while fewer than 10 / (1 − momentum) steps have been trained
RANDAUGMENT_STREAM, MIXUP_STREAM = 1, 2   # the 4th seed word of their generators (the crop and flip's have 3)
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass(frozen=True)
class World:
    """The processes training together: ``size`` of them, this one being ``rank`` (0 … size − 1).

    ``World()`` is a single process, rank 0 of 1, whose methods below change nothing. Data-parallel training
    (``tinyeffnet.distributed.MPIWorld``) supplies its rank and size and overrides them."""
    rank: int = 0
    size: int = 1

    @property
    def is_main(self):
        """Rank 0: the one process that prints and writes the run folder."""
        return self.rank == 0

    def print(self, *args, **kwargs):
        """``print``, in the main process only."""
        if self.is_main:
            print(*args, **kwargs)

    def progress(self, total, prefix):
        """A ``Progress`` bar on stderr in the main process; in the others one that writes nowhere."""
        return Progress(total, prefix, stream=None if self.is_main else open(os.devnull, "w"))

    def shard(self, rows):
        """This process's rows of a batch ``rows`` (B, …): all of them."""
        return rows

    def share(self, begin, end):
        """This process's part (b, e) of the rows [begin, end) of some work shared out: all of them."""
        return begin, end

    def gather(self, values, begin, end):
        """``values[begin:end]`` complete in every process, each having filled in its ``share``: here, it is."""

    def broadcast(self, model):
        """Make ``model`` the same in every process (rank 0's parameters and buffers)."""

    def batch_mean(self, loss, correct, count):
        """(mean loss, correct count) over the whole batch, from this process's mean ``loss`` and ``correct``
        over its ``count`` rows: here, as they are."""
        return loss, correct

    def reduce_gradients(self, grads, count, statistics):
        """The one place between backward and the optimizer step where gradients are transformed: ``grads``
        (name → array, the ones SGD reads, this process's mean over its ``count`` rows) in place, with the
        model's buffers ``statistics``. Data parallelism averages both over processes, weighted by ``count``,
        so that every process takes the same step; a single process has nothing to do."""

    def average_statistics(self, statistics, count):
        """The float32 buffers in ``statistics`` (batch norm's running mean and variance, from this process's
        ``count`` rows of each batch) ← their average over processes weighted by ``count``, in place, as
        ``reduce_gradients`` averages them: nothing to do for one process."""

    def agree_stop(self, signum):
        """The signal (or None) that every process stops for after this step: here, this one's."""
        return signum

    def seed_noise(self, noise_rng, seed, epoch, index):
        """Before step ``index`` of ``epoch``: the state of ``noise_rng``, the model's dropout and drop-connect
        generator. One process leaves it running on (its state is in every checkpoint); data parallelism
        gives each process its own stream, so that they drop different units of their different images."""

    def command(self, module):
        """The command line that starts ``module`` again with these processes, for the hints printed."""
        return f"python -m {module}"

    def abandon(self, status):
        """Leave with exit ``status`` without the other processes' agreement (a signal before training, which
        each process meets wherever it is): here, return it."""
        return status


ONE_PROCESS = World()


@dataclass
class RunState:
    """Where training stands: saved in every checkpoint so a resumed run continues exactly."""
    epoch: int = 0                 # completed epochs
    step_in_epoch: int = 0         # completed steps of the current epoch
    sums: dict = field(default_factory=lambda: dict(loss=0.0, correct=0, seen=0, seconds=0.0, steps=0,
                                                    grad_norm=0.0, grad_norm_max=0.0))
    history: list = field(default_factory=list)
    best_acc: float = -1.0


# --- the batches -------------------------------------------------------------------------------------------
def batch_indices(seed, epoch, index, num_examples, batch_size):
    """The training examples of batch ``index`` of epoch ``epoch``: a slice of the epoch's permutation,
    drawn from a generator seeded by (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return order[index * batch_size:(index + 1) * batch_size]


def augmented_batch(data, seed, epoch, index, batch_size, magnitude=0.0, mixup_alpha=0.0,
                    crop_pad=datasets.CROP_PAD):
    """Batch ``index`` of epoch ``epoch`` of ``data`` (a ``data.Dataset`` with its ``mean`` and ``std`` set):
    ``(x, y, targets)``. x: images (B, H, W, 3) float32, cropped (shifted by up to ±``crop_pad`` pixels) and
    flipped with a generator seeded by (seed, epoch, index), then with ``magnitude`` > 0 RandAugment at that magnitude, then with ``mixup_alpha``
    > 0 Mixup, each from a generator of its own seeded by (seed, epoch, index, its ``*_STREAM``), then
    normalised; y: labels (B,); targets: None without Mixup, else its soft targets (B, K) float32 (y_i is
    then the label of the image that dominates x_i, see ``augment.mixup``). Without either, the batch is the
    crop and flip alone, bit for bit."""
    idx = batch_indices(seed, epoch, index, len(data.train_labels), batch_size)
    images = datasets.random_crop_flip(data.train_images[idx], np.random.default_rng([seed, epoch, index]), crop_pad)
    labels, targets = data.train_labels[idx], None
    if magnitude > 0:
        images = rand_augment(images, magnitude, np.random.default_rng([seed, epoch, index, RANDAUGMENT_STREAM]))
    if mixup_alpha > 0:
        images, targets = mixup(images, labels, len(data.classes), mixup_alpha,
                                np.random.default_rng([seed, epoch, index, MIXUP_STREAM]))
    return datasets.normalize(images, data.mean, data.std), labels, targets


# --- the optimiser ------------------------------------------------------------------------------------------
def optimizer_settings(args):
    """The hyper-parameters of the optimiser ``args.optimizer`` from the training command's flags, by the names
    its class takes (``optim.hyper_parameters``), e.g. ``{"decay": 0.9, "momentum": 0.9, "epsilon": 0.001,
    "weight_decay": 1e-5}`` for RMSProp. A flag left unset (``--eps``) keeps the class's default."""
    flags = dict(momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay,
                 decay=args.rmsprop_decay, epsilon=args.eps, beta1=args.betas[0], beta2=args.betas[1])
    return {name: default if flags.get(name) is None else flags[name]
            for name, default in hyper_parameters(args.optimizer).items()}


# --- one step, and evaluation --------------------------------------------------------------------------------
def train_step(model, optimizer, x, y, lr, label_smoothing=0.0, clip_norm=None, world=ONE_PROCESS, average=None,
               targets=None):
    """One optimiser step of ``model`` on the batch x, y (N,): forward, loss, backward, reduce, clip, update,
    and then the moving average ``average`` (a ``WeightAverage`` of ``model``, or None). x is what the model
    takes: images (N, H, W, 3) for a network, pooled features (N, F) for a ``transfer.Head``. With ``targets``
    (N, K), soft targets such as Mixup's, the loss is the cross-entropy against them
    (``soft_cross_entropy_*``) instead of against y; y then only counts the correct predictions (for Mixup,
    the label of the image that dominates each mix).

    x and y are host arrays; on a model moved to the GPU they are copied there, and only the loss and the
    logits (N, K) come back. Returns ``(loss, correct, grad_norm)``, grad_norm the global norm ‖g‖ of the
    (reduced) gradients before any clipping: the figure that shows an unstable step (``Trainer`` reports its
    mean and maximum per epoch). A loss that is not finite is returned before the backward pass, as
    ``(loss, 0, None)``, and a norm that is not finite before the update, in both cases with no parameter
    changed, so the caller can stop. With several processes (``world``) each
    takes its rows of the batch, and the loss and count are the whole batch's."""
    model.train()
    model.zero_grad()
    backend = model.backend
    x, y = world.shard(x), world.shard(y)
    if targets is None:
        truth, forward, backward = y, backend.loss.cross_entropy_forward, backend.loss.cross_entropy_backward
    else:
        truth = world.shard(targets)
        forward, backward = backend.loss.soft_cross_entropy_forward, backend.loss.soft_cross_entropy_backward
    truth = backend.to_device(truth)
    logits = model.forward(backend.to_device(x))
    loss, probs = forward(logits, truth, label_smoothing)
    correct = int(np.sum(np.argmax(backend.to_host(logits), axis=1) == y))
    loss, correct = world.batch_mean(loss, correct, len(y))
    if not np.isfinite(loss):
        return loss, 0, None
    model.backward(backward(probs, truth, label_smoothing))
    world.reduce_gradients(optimizer.grads, len(y), model.named_buffers())
    if clip_norm:                       # after the reduction: every process clips the same gradients
        grad_norm = clip_grad_norm(optimizer.grads, clip_norm)
    else:
        grad_norm = global_grad_norm(optimizer.grads)
    if not np.isfinite(grad_norm):      # overflowed: leave the parameters as they are, for the caller to stop
        return loss, correct, grad_norm
    optimizer.lr = lr
    optimizer.step()
    if average is not None:
        average.update()
    return loss, correct, grad_norm


def evaluate(model, images, labels, mean, std, tta=False, batch_size=EVAL_BATCH_SIZE):
    """Eval-mode pass over a dataset of (N, H, W, 3) uint8 images: (mean loss, accuracy, predictions); with
    ``tta``, those of each image's logits averaged with its mirror's (``logits``)."""
    batches = (datasets.normalize(images[start:start + batch_size], mean, std).astype(model.dtype, copy=False)
               for start in range(0, len(images), batch_size))
    return score(model, batches, labels, tta)


def logits(model, x, tta=False):
    """Eval-mode logits (N, K) of the inputs x, as a host array. With ``tta`` (test-time augmentation; x must be
    images (N, H, W, C)) the mean of two passes, over x and over its horizontal mirror x[:, :, ::-1]:
    (f(x) + f(mirror x)) / 2, as the training's random flips make both equally likely images."""
    model.eval()
    out = model.backend.to_host(model.forward(model.backend.to_device(x)))
    if tta:
        mirrored = np.ascontiguousarray(x[:, :, ::-1])
        out = (out + model.backend.to_host(model.forward(model.backend.to_device(mirrored)))) / 2
    return out


def score(model, batches, labels, tta=False):
    """Eval-mode loss and accuracy of ``model`` on ``batches`` of inputs, whose labels are ``labels`` (N,)
    in the same order, with or without ``tta`` (``logits``): (mean loss, accuracy, predictions (N,))."""
    predictions, total_loss, seen = [], 0.0, 0
    for x in batches:
        y = labels[seen:seen + len(x)]
        seen += len(x)
        z = logits(model, x, tta)
        loss, _ = cross_entropy_forward(z, y)
        total_loss += loss * len(y)
        predictions.append(np.argmax(z, axis=1))
    predictions = np.concatenate(predictions)
    return total_loss / len(labels), float(np.mean(predictions == labels)), predictions


# --- the loop ------------------------------------------------------------------------------------------------
class Trainer:
    """Trains ``model`` (all of it) on ``data`` (a prepared ``data.Dataset``) with the recipe in ``args`` (the
    training command's arguments) and writes the run folder ``run_dir``; ``transfer.LinearProbe`` trains the
    classifier only. ``state`` and ``optimizer_state`` (the optimiser's arrays and, with ``--ema``, the
    average's) continue a run from its checkpoint."""

    def __init__(self, args, config, data, model, run_dir, state=None, optimizer_state=None, world=ONE_PROCESS):
        self.args, self.config, self.data, self.model, self.run_dir = args, config, data, model, run_dir
        self.world = world
        self.trainable = self.trainable_part(model)
        self.optimizer = make_optimizer(args.optimizer, self.trainable.named_parameters(), self.trainable.named_grads(),
                                        args.lr, **optimizer_settings(args))
        self.average = WeightAverage(self.trainable, args.ema) if args.ema else None
        self.eval_weights = "ema" if self.average else "raw"      # which weights each epoch's evaluation uses
        if optimizer_state:
            self.optimizer.load_state_dict(optimizer_state)
            if self.average:
                self.average.load_state_dict(average_state(optimizer_state))
        self.state = state or RunState()
        self.steps_per_epoch = len(data.train_images) // args.batch_size or 1
        self.total_steps = self.steps_per_epoch * args.epochs
        self.warmup_steps = int(round(args.warmup_epochs * self.steps_per_epoch))
        self.plan = progressive.plan_for(args, config.resolution) if args.progressive else None
        self.stage_data = None     # with a plan: the data of the stage last asked for, its images resized
        self.stop_signal = None
        world.broadcast(model)
        for sig in EXIT_SIGNAL:            # from here on, Ctrl-C finishes the current step and saves
            signal.signal(sig, self.on_signal)

    def run(self):
        """Train from ``self.state`` to ``args.epochs``; returns the exit status (0, or 130/143 after a signal)."""
        st, args = self.state, self.args
        while st.epoch < args.epochs:
            epoch = st.epoch
            if self.plan is not None:
                self.model.dropout.rate = self.stage(epoch).dropout
            progress = self.world.progress(self.steps_per_epoch, f"epoch {epoch + 1}/{args.epochs}")
            while st.step_in_epoch < self.steps_per_epoch:
                start = time.perf_counter()
                x, y, targets = self.batch(epoch, st.step_in_epoch)
                lr = learning_rate(epoch * self.steps_per_epoch + st.step_in_epoch, self.total_steps, args.lr,
                                   self.warmup_steps)
                self.world.seed_noise(self.model.noise_rng, args.seed, epoch, st.step_in_epoch)
                loss, correct, grad_norm = self.step(x, y, lr, targets)
                if not (np.isfinite(loss) and np.isfinite(grad_norm)):
                    progress.close()
                    what = f"training loss became {loss}" if grad_norm is None else f"gradient norm became {grad_norm}"
                    clip = (f"a lower --clip-grad-norm (now {args.clip_grad_norm:g})" if args.clip_grad_norm
                            else "--clip-grad-norm 1")
                    raise TinyEffNetError(
                        f"the {what} at epoch {epoch + 1}, step {st.step_in_epoch + 1}; stopped without saving. "
                        f"The last good checkpoint is {self.run_dir}/latest.npz (if any). Try a lower --lr "
                        f"(now {args.lr:g}) or {clip}.")
                s = st.sums
                s["loss"] += loss * len(y)
                s["correct"] += correct
                s["seen"] += len(y)
                s["seconds"] += time.perf_counter() - start
                s["steps"] += 1
                s["grad_norm"] += grad_norm
                s["grad_norm_max"] = max(s["grad_norm_max"], grad_norm)
                st.step_in_epoch += 1
                progress.update(st.step_in_epoch, loss=f"{s['loss'] / s['seen']:.3f}",
                                acc=f"{100 * s['correct'] / s['seen']:.1f}%", lr=f"{lr:.4f}",
                                **{"img/s": f"{s['seen'] / s['seconds']:.0f}"})
                stop = self.world.agree_stop(self.stop_signal)
                if stop is not None:
                    self.stop_signal = stop
                    progress.close()
                    return self.interrupt()
            progress.close()
            self.end_epoch(lr)
        return 0

    def trainable_part(self, model):
        """The layer whose parameters the optimiser updates (and ``--ema`` averages): here the whole network."""
        return model

    def batch_indices(self, epoch, index):
        return batch_indices(self.args.seed, epoch, index, len(self.data.train_labels), self.args.batch_size)

    def regularization(self, epoch):
        """(RandAugment magnitude, Mixup α) for epoch ``epoch``: with a plan its stage's; else --randaugment and
        --mixup, the same every epoch (0: off)."""
        if self.plan is not None:
            stage = self.stage(epoch)
            return stage.magnitude, stage.mixup_alpha
        return self.args.randaugment, self.args.mixup

    def batch(self, epoch, index):
        """Batch ``index`` of epoch ``epoch``: ``(x, y, targets)``, images (B, H, W, 3) augmented and normalised,
        labels (B,) and, with Mixup, its soft targets (B, K) (else None); see ``augmented_batch``."""
        magnitude, mixup_alpha = self.regularization(epoch)
        data = self.train_data(epoch)
        pad = progressive.crop_pad(data.train_images.shape[1], self.config.resolution)
        x, y, targets = augmented_batch(data, self.args.seed, epoch, index, self.args.batch_size, magnitude,
                                        mixup_alpha, pad)
        if targets is not None:
            targets = targets.astype(self.model.dtype, copy=False)
        return x.astype(self.model.dtype, copy=False), y, targets

    def stage(self, epoch):
        """The ``progressive.Stage`` that trains epoch ``epoch`` (0-based: once ``epoch`` epochs are done)."""
        return progressive.stage_at(self.plan, epoch)[1]

    def train_data(self, epoch):
        """The data epoch ``epoch`` trains on: ``self.data``, or with a plan a copy whose training images are
        resized (``data.resize_images``, from the model's resolution) to the stage's size, made once per stage."""
        if self.plan is None:
            return self.data
        size = self.stage(epoch).size
        if self.stage_data is None or self.stage_data.train_images.shape[1] != size:
            self.stage_data = replace(self.data, train_images=datasets.resize_images(self.data.train_images, size))
        return self.stage_data

    def step(self, x, y, lr, targets=None):
        return train_step(self.trainable, self.optimizer, x, y, lr, self.args.label_smoothing,
                          self.args.clip_grad_norm, self.world, self.average, targets)

    def end_epoch(self, lr):
        """Evaluate, record the epoch's row, and (main process) print it and write the run folder."""
        st, s = self.state, self.state.sums
        start = time.perf_counter()
        figures = self.evaluation(self.eval_weights, self.args.tta)
        stage = self.stage_fields(st.epoch)
        row = dict(epoch=st.epoch + 1, **stage, train_loss=s["loss"] / s["seen"], train_acc=s["correct"] / s["seen"],
                   **figures, lr=lr, seconds=s["seconds"], eval_seconds=time.perf_counter() - start,
                   images_per_second=s["seen"] / s["seconds"], **gradient_fields(s))
        st.history.append(row)
        st.epoch, st.step_in_epoch = st.epoch + 1, 0
        st.sums = RunState().sums
        which = " (EMA)" if row["eval_weights"] == "ema" else ""
        tta = f" (TTA {100 * row['test_acc_tta']:.2f}%)" if "test_acc_tta" in row else ""
        size = f" ({row['image_size']}×{row['image_size']})" if stage else ""
        grads = (f" | grad norm {row['grad_norm_mean']:.3g} (max {row['grad_norm_max']:.3g})"
                 if "grad_norm_mean" in row else "")
        self.world.print(f"epoch {row['epoch']}: train{size} loss {row['train_loss']:.4f} acc "
                         f"{100 * row['train_acc']:.2f}% | test{which} loss {row['test_loss']:.4f} acc "
                         f"{100 * row['test_acc']:.2f}%{tta} | {row['seconds']:.0f} s, "
                         f"{row['images_per_second']:.0f} img/s{grads}", flush=True)
        if self.world.is_main:
            write_metrics(self.run_dir, st.history)
        if row["test_acc"] > st.best_acc:
            st.best_acc = row["test_acc"]
            self.save("best.npz")
        self.save("latest.npz")
        if self.world.is_main:
            plot_curves(st.history, os.path.join(self.run_dir, "curves.png"),
                        title=f"{self.config.name} on {self.args.dataset}")

    def stage_fields(self, epoch):
        """What a row and a checkpoint record of epoch ``epoch``'s stage: {"stage": i (1-based), "image_size"},
        or nothing without a plan."""
        if self.plan is None:
            return {}
        i, stage = progressive.stage_at(self.plan, epoch)
        return dict(stage=i + 1, image_size=stage.size)

    def evaluation(self, weights, tta):
        """The test set's figures after an epoch, with ``weights``: "raw", the model's own, or "ema", their
        moving average (swapped in for the while, ``WeightAverage.applied``). With ``tta`` also the figures of
        each image's logits averaged with its mirror's, beside the plain ones, never instead:
        ``{"test_loss", "test_acc"[, "test_loss_tta", "test_acc_tta"], "eval_weights"}``."""
        with self.average.applied() if weights == "ema" else contextlib.nullcontext():
            figures = dict(zip(("test_loss", "test_acc"), self.test()))
            if tta:
                figures.update(zip(("test_loss_tta", "test_acc_tta"), self.test(tta=True)))
        return {**figures, "eval_weights": weights}

    def test(self, tta=False):
        """(loss, accuracy) of the model as it stands on the test set in eval mode, with or without ``tta``
        (``engine.logits``), after recalibrating batch norm in a short run; with several processes each scores
        its rows of the test set (and recalibrates on its rows of the batches).

        Recalibration sees the epoch's batches as the test set will be seen: at the model's resolution, cropped
        and flipped only (no stage's smaller size, no RandAugment, no Mixup's blends, whose variance is smaller);
        without those options these are exactly the batches trained on."""
        if self.needs_recalibration():         # each process on its rows of the batches, then averaged
            count = min(RECALIBRATION_BATCHES, self.steps_per_epoch)
            batches = (augmented_batch(self.data, self.args.seed, self.state.epoch, i, self.args.batch_size)[0]
                       for i in range(count))
            recalibrate_batchnorm(self.model, (self.world.shard(x.astype(self.model.dtype, copy=False))
                                               for x in batches))
            begin, end = self.world.share(0, self.args.batch_size)
            self.world.average_statistics(self.model.named_buffers(), end - begin)
        images, labels = self.world.shard(self.data.test_images), self.world.shard(self.data.test_labels)
        loss, _, predictions = evaluate(self.model, images, labels, self.data.mean, self.data.std, tta)
        loss, correct = self.world.batch_mean(loss, int(np.sum(predictions == labels)), len(labels))
        return loss, correct / len(self.data.test_labels)

    def needs_recalibration(self):
        """Short runs: the running statistics still lag the weights (see ``recalibrate_batchnorm``)."""
        steps = (self.state.epoch + 1) * self.steps_per_epoch
        return steps < RECALIBRATION_HORIZON / (1 - self.config.bn_momentum)

    def save(self, name):
        """Write the checkpoint ``run_dir/name`` (main process only): model, optimizer, average and ``RunState``."""
        if not self.world.is_main:
            return
        st = self.state
        training = dict(epoch=st.epoch, step_in_epoch=st.step_in_epoch, sums=st.sums, history=st.history,
                        best_acc=st.best_acc, noise_rng=self.model.noise_rng.bit_generator.state,
                        args=vars(self.args), classes=self.data.classes,
                        preprocess=dict(mean=self.data.mean.tolist(), std=self.data.std.tolist(),
                                        resolution=self.config.resolution), **self.stage_fields(st.epoch))
        save_checkpoint(os.path.join(self.run_dir, name), self.model, self.optimizer, training, self.average)

    # --- signals, and timing one step ----------------------------------------------------------------------
    def on_signal(self, signum, frame):
        if self.stop_signal is not None:      # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum
        self.world.print(f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
                         "(press Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    def interrupt(self):
        self.save("latest.npz")
        again = self.world.command("tinyeffnet.train")
        self.world.print(f"interrupted at epoch {self.state.epoch + 1}, step {self.state.step_in_epoch}; saved "
                         f"{self.run_dir}/latest.npz\nresume with: {again} --resume {self.run_dir}",
                         file=sys.stderr, flush=True)
        return EXIT_SIGNAL[self.stop_signal]

    def measure_step_seconds(self, epoch=0):
        """Time one training step on a batch of epoch ``epoch`` (after one untimed step that compiles the
        kernels), then undo both."""
        parts = [part for part in (self.model, self.optimizer, self.average) if part is not None]
        snapshots = [{k: v.copy() for k, v in part.state_dict().items()} for part in parts]
        rng_state = self.model.noise_rng.bit_generator.state
        x, y, targets = self.batch(epoch, 0)
        self.step(x, y, 0.0, targets)
        start = time.perf_counter()
        self.step(x, y, 0.0, targets)
        seconds = time.perf_counter() - start
        for part, snapshot in zip(parts, snapshots):
            part.load_state_dict(snapshot)
        self.model.noise_rng.bit_generator.state = rng_state
        return seconds


def gradient_fields(sums):
    """The epoch's gradient norms for its row: {"grad_norm_mean", "grad_norm_max"}, ‖g‖ before clipping, over the
    steps the sums hold (after a resume from a checkpoint older than these fields, the steps since; none: {})."""
    if not sums["steps"]:
        return {}
    return dict(grad_norm_mean=sums["grad_norm"] / sums["steps"], grad_norm_max=sums["grad_norm_max"])


def write_metrics(run_dir, history):
    text = "".join(json.dumps(row) + "\n" for row in history)
    atomic_write(os.path.join(run_dir, "metrics.jsonl"), lambda f: f.write(text.encode()))


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (``signum``) before training started."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_now(signum, frame):
    """The handler of SIGINT and SIGTERM until the ``Trainer`` installs its own: stop at once."""
    raise Interrupted(signum)
