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

Two things must match what the body was trained with:

* the preprocessing: (x − 127) / 128 per channel (``pretrained.PREPROCESS``), not the dataset's own mean
  and standard deviation. The run records it in its config and checkpoints, so ``evaluate`` and
  ``predict`` apply it too;
* the architecture: ``--width``, ``--depth``, ``--stem-stride 1`` or ``--phi`` would build a network
  the weights do not fit, and are refused. The resolution is free (the weights do not depend on it):
  CIFAR's 32×32 images are upscaled once (bicubic) to ``--resolution``, as for φ > 0.
"""

import time

import numpy as np

from tinyeffnet import data as datasets
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.layers import Layer
from tinyeffnet.model import EfficientNet
from tinyeffnet.pretrained import PREPROCESS, load_pretrained, weights_path
from tinyeffnet.progress import Progress, format_seconds

CLASSIFIER = "classifier"          # the one layer a pretrained model does not keep
FEATURE_BATCH_SIZE = 64            # images per forward pass while extracting features
ARCHITECTURE_FLAGS = ("width", "depth")


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
                              "use --variant lite0 --pretrained")
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


def extract_features(model, images, mean, std, name, batch_size=FEATURE_BATCH_SIZE):
    """The frozen body's pooled features of ``images`` (N, h, w, 3) uint8 → (N, F) float32.

    Evaluation mode (running batch-norm statistics, no dropout), no augmentation. Each batch is resized
    to the model's resolution on the way in, so the upscaled dataset never has to fit in memory at once.
    Prints a progress line (``name``: "train", "test") every few seconds."""
    model.eval()
    layers, size = body_layers(model), model.config.resolution
    features = np.empty((len(images), model.config.head_channels), model.dtype)
    progress = Progress(len(images), f"features of the {name} images at {size}×{size}")
    start_time = time.perf_counter()
    for start in range(0, len(images), batch_size):
        x = datasets.normalize(datasets.resize_images(images[start:start + batch_size], size), mean, std)
        x = x.astype(model.dtype, copy=False)
        for layer in layers:
            x = layer(x)
        features[start:start + len(x)] = x
        progress.update(start + len(x))
    progress.close()
    seconds = time.perf_counter() - start_time
    print(f"features  {len(images):,} {name} images → {features.shape} in {format_seconds(seconds)} "
          f"({len(images) / seconds:.0f} img/s)", flush=True)
    return features
