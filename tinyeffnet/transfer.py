"""Transfer learning: start from ImageNet weights instead of random ones.

``python -m tinyeffnet.train --variant lite0 --pretrained --dataset cifar10 --resolution 96`` builds
Lite0 with its published ImageNet weights (``tinyeffnet.pretrained``) and replaces the 1000-way
classifier by a new, zero-initialised ``Linear`` for the dataset's classes (``pretrained_model`` says why
zero). Everything else keeps its ImageNet values, batch-norm running statistics included. Then one of two
things trains:

    fine-tuning    (the default) every layer, from the ImageNet values, with the ordinary training loop;
    linear probe   (``--freeze-body``) only the new classifier. The body is a fixed feature extractor:
                   its pooled features (N, 1280) are computed once for the training and the test images,
                   in evaluation mode (batch norm with the ImageNet running statistics) and *without
                   augmentation* (one fixed view of each image), and the classifier trains on them. A step
                   is one (B, 1280) @ (1280, K) product instead of a pass through the network, so the
                   extraction is what takes the time (minutes on a CPU).

The probe (``LinearProbe``: the engine's ``Trainer``, fed features instead of images) keeps the features in
its run folder (``features.npz``: each split's (N, F) float32 features and (N,) labels, and the key they were
computed for; 300 MB for CIFAR-10), so ``--resume`` and a run with the same ``--out`` reuse them instead of
extracting again. The key holds digests of the body's weights and of the images, the resolution and the
preprocessing; a cache for another key, or an unreadable one, is ignored with a line saying why. Interrupted
(Ctrl-C, SIGTERM), the extraction saves the rows it finished, and the next run continues from there. A fresh
run folder starts without a cache.

Two things must match what the body was trained with:

* the preprocessing: (x − 127) / 128 per channel (``pretrained.PREPROCESS``), not the dataset's own mean
  and standard deviation. The run records it in its config and checkpoints, so ``evaluate`` and
  ``predict`` apply it too;
* the architecture: ``--width``, ``--depth``, ``--stem-stride 1`` or ``--phi`` would build a network
  the weights do not fit, and are refused. The resolution is free (the weights do not depend on it):
  CIFAR's 32×32 images are upscaled once (bicubic) to ``--resolution``, as for φ > 0.
"""

import hashlib
import json
import os
import signal
import sys
import time
import zipfile
from dataclasses import dataclass

import numpy as np

from tinyeffnet import data as datasets
from tinyeffnet.engine import EVAL_BATCH_SIZE, ONE_PROCESS, Trainer, score
from tinyeffnet.files import atomic_write
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.layers import Layer
from tinyeffnet.model import EfficientNet
from tinyeffnet.pretrained import AVAILABLE, PREPROCESS, load_pretrained, weights_path
from tinyeffnet.progress import format_seconds

CLASSIFIER = "classifier"          # the one layer a pretrained model does not keep
FEATURE_BATCH_SIZE = 64            # images per forward pass while extracting features
ARCHITECTURE_FLAGS = ("width", "depth")
FEATURES_FILE = "features.npz"     # the linear probe's cache, in the run folder
FEATURES_FORMAT, FEATURES_VERSION = "tinyeffnet-features", 1
KEY, LABELS = "__key__", "_labels"  # the cache's JSON key, and the suffix of each split's labels


def check_arguments(args):
    """Refuse combinations of ``--pretrained`` and ``--freeze-body`` with flags they cannot honour."""
    if args.freeze_body and not args.pretrained:
        raise TinyEffNetError("--freeze-body trains only a new classifier on top of pretrained features; "
                              "add --pretrained (e.g. --variant lite0 --pretrained --freeze-body)")
    if not args.pretrained:
        return
    if args.variant is None:
        flag = "--phi" if args.phi is not None else "no --variant"
        raise TinyEffNetError(f"--pretrained loads the ImageNet weights of a named variant, and {flag} names none: "
                              f"use --variant lite0 --pretrained (ImageNet weights: {', '.join(AVAILABLE)})")
    for name in ARCHITECTURE_FLAGS:
        if getattr(args, name) is not None:
            raise TinyEffNetError(f"--{name} changes the architecture, so the ImageNet weights of {args.variant} "
                                  "would not fit it; drop it, or train from scratch without --pretrained")
    if args.stem_stride == 1:
        raise TinyEffNetError(f"--stem-stride 1 changes what the ImageNet weights of {args.variant} compute; "
                              "drop it, or train from scratch without --pretrained")
    weights_path(args.variant)     # the weights are installed, or a clear error says what to install


def preprocessing():
    """The pretrained weights' per-channel (mean, std) on the 0…1 scale: two (3,) float32 arrays."""
    return tuple(np.asarray(PREPROCESS[key], np.float32) for key in ("mean", "std"))


def in_classifier(name):
    """Whether the tensor ``name`` (``classifier.weight``, ``blocks.3.depthwise.weight``…) is the classifier's."""
    return name.startswith(CLASSIFIER + ".")


def pretrained_model(config, seed=0):
    """``config``'s network with the variant's ImageNet weights in every layer but the classifier, which
    starts at zero.

    ``config`` is a variant with weights (``config.name``, e.g. "lite0") at any resolution and any number
    of classes. Why zero, as in Big Transfer (Kolesnikov et al., 2020), and not the random initialisation
    of a network trained from scratch: the pretrained features are not normalised (after ReLU6 and the
    pool they average about 0.9, and |f|² is about 4,500 over 1280 channels), so a random (1280, 10) head,
    uniform in ±1/sqrt(10), starts with logits of ±10 and a loss near 10, and the first steps go into
    undoing it. A zero head starts every logit at 0 (loss ln K), and its first step moves each class's
    weights towards that class's mean feature (less the overall mean). ``seed`` seeds dropout's generator."""
    imagenet = load_pretrained(config.name)
    model = EfficientNet(config, seed=seed)
    body = {name: value for name, value in imagenet.state_dict().items() if not in_classifier(name)}
    head = {name: np.zeros_like(value) for name, value in model.state_dict().items() if in_classifier(name)}
    model.load_state_dict({**body, **head})
    return model


def body_layers(model):
    """Stem → blocks → head → pool: everything before dropout and the classifier, in forward order."""
    return [layer for layer in model.layers() if layer not in (model.dropout, model.classifier)]


class Head(Layer):
    """A model's dropout and classifier, (N, F) pooled features → (N, num_classes) logits.

    It holds the model's own layers, not copies: training the head trains the model's classifier."""

    def __init__(self, model):
        super().__init__()
        self.dropout, self.classifier = model.dropout, model.classifier

    def forward(self, features):
        return self.classifier(self.dropout(features))

    def backward(self, dlogits):
        return self.dropout.backward(self.classifier.backward(dlogits))


@dataclass
class Features:
    """One split's pooled features as far as they are computed: the first ``done`` rows of ``values`` (N, F)."""
    values: np.ndarray
    done: int = 0


def extract_features(model, images, mean, std, name, features, batch_size=FEATURE_BATCH_SIZE, world=ONE_PROCESS):
    """Fill in the frozen body's pooled features of ``images`` (N, h, w, 3) uint8: ``features.values``
    (N, F) from row ``features.done`` (< N) on.

    Evaluation mode (running batch-norm statistics, no dropout), no augmentation. Each batch is resized
    to the model's resolution on the way in, so the upscaled dataset never has to fit in memory at once.
    ``features.done`` moves on after each batch, so an interrupted extraction leaves in ``features`` the
    rows it finished. With several processes (``world``) each computes its ``share`` of the rows, the first
    share the main process's (so what an interruption leaves there is still the rows up to ``done``), and
    then every process gets them all (``gather``). Prints a line when it starts and a progress line
    (``name``: "train", "test") every few seconds."""
    first, total = features.done, len(images)
    begin, end = world.share(first, total)
    model.eval()
    layers, size = body_layers(model), model.config.resolution
    shared = f", shared by {world.size} processes" if world.size > 1 else ""
    world.print(f"features  {total - first:,} {name} images" + (f" (from image {first + 1:,} on)" if first else "")
                + f" through the frozen body at {size}×{size}, {batch_size} at a time{shared}…", flush=True)
    progress = world.progress(end - begin, f"features of the {name} images at {size}×{size}")
    start_time = time.perf_counter()
    features.done = begin
    try:
        for start in range(begin, end, batch_size):
            x = datasets.normalize(datasets.resize_images(images[start:min(start + batch_size, end)], size),
                                   mean, std)
            x = x.astype(model.dtype, copy=False)
            for layer in layers:
                x = layer(x)
            features.values[start:start + len(x)] = x
            features.done = start + len(x)
            progress.update(features.done - begin)
    finally:
        progress.close()
    world.gather(features.values, first, total)
    features.done = total
    seconds = time.perf_counter() - start_time
    world.print(f"features  {total - first:,} {name} images → {features.values.shape[1]} features each in "
                f"{format_seconds(seconds)} ({(total - first) / seconds:.0f} img/s)", flush=True)


# --- the cache: features.npz in the run folder ------------------------------------------------------------
def digest(arrays):
    """SHA-256 (hex) of a dict name → array: names, shapes, dtypes and bytes; equal only for equal arrays."""
    h = hashlib.sha256()
    for name, a in arrays.items():
        h.update(f"{name} {a.shape} {a.dtype.str};".encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def features_key(model, splits, mean, std, selection):
    """Everything the features depend on, as JSON values: the body's weights (batch-norm statistics
    included), the images and labels of every split, the resolution and the preprocessing (``mean``, ``std``
    (3,)). ``selection`` (the dataset, --subset, --per-class, --test-subset) and the variant are part of the
    key too, so a mismatch names what changed; a cache is reused only if every entry is equal."""
    body = {name: value for name, value in model.state_dict().items() if not in_classifier(name)}
    images = {f"{name}_{part}": a for name, pair in splits.items() for part, a in zip(("images", "labels"), pair)}
    return dict(format=FEATURES_FORMAT, version=FEATURES_VERSION, variant=model.config.name,
                resolution=model.config.resolution, weights=digest(body), data=selection, images=digest(images),
                preprocess=dict(mean=mean.tolist(), std=std.tolist()))


def finished_rows(rows, n, width, dtype):
    """``rows`` read from a cache, checked to be the first few of n images' features: (≤ n, ``width``) ``dtype``."""
    if rows.dtype != dtype or rows.ndim != 2 or rows.shape[1] != width or len(rows) > n:
        raise ValueError(f"features of {rows.dtype} {rows.shape} where (n ≤ {n}, {width}) {np.dtype(dtype)} belong")
    return rows


def load_features(path, key, splits, width, dtype, world=ONE_PROCESS):
    """name → ``Features`` of each split, holding the rows the cache at ``path`` has for ``key``, if any.

    A missing file means nothing computed yet; an unreadable one, or one computed for another key, is
    ignored, with a line saying why (printed by the main process of ``world``; every process reads the file)."""
    features = {name: Features(np.empty((len(labels), width), dtype)) for name, (_, labels) in splits.items()}
    if not os.path.exists(path):
        return features
    try:
        with np.load(path, allow_pickle=False) as npz:
            cached_key = json.loads(npz[KEY].tobytes().decode())
            differ = [name for name in key if cached_key.get(name) != key[name]]
            rows = {} if differ else {name: finished_rows(npz[name], len(labels), width, dtype)
                                      for name, (_, labels) in splits.items()}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, AttributeError) as e:
        world.print(f"features  {path} is not a readable features file ({type(e).__name__}: {e}); computing them "
                    "again", flush=True)
        return features
    if differ:
        world.print(f"features  {path} was computed for something else (it differs in {', '.join(differ)}); "
                    "computing them again", flush=True)
        return features
    for name, f in features.items():
        f.values[:len(rows[name])], f.done = rows[name], len(rows[name])
    world.print(f"features  from {path}: {counts(features)} images", flush=True)
    return features


def counts(features):
    """How far each split's ``Features`` are, e.g. "1,280/2,000 train, 0/500 test"."""
    return ", ".join(f"{f.done:,}/{len(f.values):,} {name}" for name, f in features.items())


def save_features(path, key, splits, features):
    """Write the finished rows of every split's ``Features``, the labels and ``key`` to ``path``, atomically.

    Ctrl-C and SIGTERM wait until the file is in place (they are blocked while it is written, seconds for
    CIFAR-10): arriving mid-write, they would otherwise discard the file and every row of this run."""
    arrays = {KEY: np.frombuffer(json.dumps(key).encode(), np.uint8)}
    for name, (_, labels) in splits.items():
        arrays[name], arrays[name + LABELS] = features[name].values[:features[name].done], labels
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)


def cached_features(path, model, splits, mean, std, selection, world=ONE_PROCESS):
    """The frozen body's pooled features of every split, computed once per run folder, in every process of
    ``world`` (each extracting its share of the rows; the main process alone writes the cache).

    ``splits``: name ("train", "test") → (images (N, h, w, 3) uint8, labels (N,)); returns name → (N, F)
    float32. What the cache file ``path`` holds for the same key (``features_key``) is reused, the rest is
    computed (``extract_features``) and the cache saved: when done, or when interrupted (KeyboardInterrupt,
    re-raised) with the rows finished so far, so that the next run continues from there."""
    key = features_key(model, splits, mean, std, selection)
    features = load_features(path, key, splits, model.config.head_channels, model.dtype, world)
    found = {name: f.done for name, f in features.items()}

    def save_new_rows():
        """Save the cache (the main process) if this run computed rows; whether it did."""
        new = any(f.done > found[name] for name, f in features.items())
        if new and world.is_main:
            save_features(path, key, splits, features)
        return new

    try:
        for name, (images, _) in splits.items():
            if features[name].done < len(images):
                extract_features(model, images, mean, std, name, features[name], world=world)
    except KeyboardInterrupt:
        if save_new_rows():
            world.print(f"kept the features finished so far in {path}: {counts(features)} images",
                        file=sys.stderr, flush=True)
        raise
    save_new_rows()
    return {name: f.values for name, f in features.items()}


class LinearProbe(Trainer):
    """``--freeze-body``: only the classifier trains, on the frozen body's pooled features (N, F) computed
    once per run folder (``cached_features``: eval mode, no augmentation).

    The loop, schedule, loss, signals and checkpoints (of the whole network) are the engine's ``Trainer``'s;
    what differs is the batch (features instead of images) and that the optimiser holds only the head's
    parameters, so every body tensor, batch-norm statistics included, stays exactly as loaded."""

    def __init__(self, args, config, data, model, run_dir, state=None, optimizer_state=None, world=ONE_PROCESS):
        splits = dict(train=(data.train_images, data.train_labels), test=(data.test_images, data.test_labels))
        selection = {name: getattr(args, name) for name in ("dataset", "subset", "per_class", "test_subset")}
        features = cached_features(os.path.join(run_dir, FEATURES_FILE), model, splits, data.mean, data.std,
                                   selection, world)
        self.train_features, self.test_features = features["train"], features["test"]
        super().__init__(args, config, data, model, run_dir, state, optimizer_state, world)

    def trainable_part(self, model):
        """The model's dropout and classifier (``Head``), sharing its arrays."""
        return Head(model)

    def batch(self, epoch, index):
        """Batch ``index`` of epoch ``epoch``: features (B, F), labels (B,) and no soft targets (None)."""
        idx = self.batch_indices(epoch, index)
        return self.train_features[idx], self.data.train_labels[idx], None

    def test(self):
        """(loss, accuracy) of the head on the test features (the body's batch norm has nothing to recalibrate)."""
        batches = (self.test_features[start:start + EVAL_BATCH_SIZE]
                   for start in range(0, len(self.test_features), EVAL_BATCH_SIZE))
        return score(self.trainable, batches, self.data.test_labels)[:2]
