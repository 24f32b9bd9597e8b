"""``python -m tinyeffnet.export (--checkpoint PATH | --pretrained NAME) OUT.safetensors``: weights for PyTorch.

Writes a model's weights and batch-norm buffers under EfficientNet-PyTorch's names and in its layouts, so
that PyTorch loads them with ``load_state_dict(strict=True)`` and computes the same logits.

The file
--------
safetensors (Hugging Face) is a flat format: an 8-byte header length, a JSON header naming each
tensor's dtype, shape and byte range, then the raw bytes. Reading it runs nothing, unlike a pickle. It
is written and read only through the ``safetensors`` package's NumPy API (``pip install -e
".[safetensors]"``). The file holds:

    tensors     every weight and batch-norm buffer under EfficientNet-PyTorch's names and layouts
                (``_blocks.3._depthwise_conv.weight`` (C, 1, k, k), …; ``tinyeffnet.pretrained.counterpart``),
                float32, with ``num_batches_tracked`` as an int64 scalar as ``torch.nn.BatchNorm2d`` keeps it
    metadata    ``{"tinyeffnet": JSON}``: format name and version, the ``ModelConfig``, and from a training
                run the class names, preprocessing and arguments that ``predict`` and ``evaluate`` need
                (the optimiser and resume state stay in the ``.npz``)

Every command that takes ``--checkpoint`` reads such a file (``tinyeffnet.checkpoint.load_checkpoint``).
A ``.safetensors`` file without tinyeffnet's metadata (saved from PyTorch) has its variant recognised from
its tensors, or given with ``--variant`` here.

In PyTorch
----------
B0–B7 load into ``efficientnet_pytorch`` 0.7.1, Lite0–4 into ``efficientnet_lite_pytorch`` 0.1.0; the
command prints the ``EfficientNet.from_name(...)`` call. Pass ``image_size``: it makes the convolutions pad
like TensorFlow's "SAME" for that size, as tinyeffnet's do. A network with the CIFAR stem (stride 1) has
no counterpart there: its tensors load, but PyTorch's stem strides by 2, so the logits differ.
"""

import json
import sys

from tinyeffnet.checkpoint import (SAFETENSORS_SUFFIX, atomic_write, check_header, checkpoint_path, config_from_dict,
                                   load_checkpoint, load_into)
from tinyeffnet.cli import make_parser, run_cli
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.model import EfficientNet
from tinyeffnet.pretrained import (AVAILABLE, BLOCKS, PREPROCESS, counterpart, imagenet_classes, load_pretrained,
                                   load_torch_state, to_torch_state)
from tinyeffnet.scaling import BN_EPSILON, VARIANTS, config_for_variant

METADATA_KEY = "tinyeffnet"
FORMAT = "tinyeffnet-safetensors"
VERSION = 1
USAGE_KEYS = ("args", "classes", "preprocess")     # the part of a training record that using the model needs
INSTALL_HINT = 'pip install -e ".[safetensors]"'
PYTORCH_PACKAGES = {   # (squeeze-and-excitation, activation, fixed stem and head) → package, variant prefix
    (True, "swish", False): ("efficientnet_pytorch", "b"),
    (False, "relu6", True): ("efficientnet_lite_pytorch", "lite"),
}


def safetensors_modules():
    """The optional ``safetensors`` package: (``safetensors``, ``safetensors.numpy``)."""
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise TinyEffNetError(f"reading and writing .safetensors files needs the safetensors package: "
                              f"run {INSTALL_HINT} (or pip install safetensors)") from None
    return safetensors, safetensors.numpy


# --- writing -------------------------------------------------------------------------------------------
def save_safetensors(path, model, training=None):
    """Write ``model``'s tensors under EfficientNet-PyTorch's names and layouts, with its architecture (and
    ``training``'s class names, preprocessing and arguments) in the metadata; atomically."""
    _, st_numpy = safetensors_modules()
    usage = {k: training[k] for k in USAGE_KEYS if k in training} if training else None
    meta = dict(format=FORMAT, version=VERSION, config=model.config.to_dict(), training=usage)
    data = st_numpy.save(to_torch_state(model.state_dict()), metadata={METADATA_KEY: json.dumps(meta)})
    atomic_write(path, lambda f: f.write(data))


# --- reading -------------------------------------------------------------------------------------------
def read_safetensors(path):
    """A .safetensors file → ({name: array}, {metadata key: string}); any problem is a TinyEffNetError."""
    safetensors, _ = safetensors_modules()
    try:
        with safetensors.safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (safetensors.SafetensorError, OSError, ValueError, TypeError) as e:
        raise TinyEffNetError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e}); it may be "
                              "truncated or of another format") from None
    return tensors, metadata


def tinyeffnet_metadata(metadata, path):
    """tinyeffnet's JSON in the metadata → a dict, or None for a file saved elsewhere (e.g. from PyTorch)."""
    if METADATA_KEY not in metadata:
        return None
    try:
        meta = json.loads(metadata[METADATA_KEY])
    except ValueError as e:
        raise TinyEffNetError(f"{path} has malformed tinyeffnet metadata ({e})") from None
    check_header(meta, path, FORMAT, VERSION)
    training = meta.get("training")
    if training is not None and not isinstance(training, dict):
        raise TinyEffNetError(f"{path} has malformed tinyeffnet metadata (training: {training!r})")
    return meta


def signature(config):
    """What tells the variants apart in a file: (MBConv blocks, (C_out, C_in) of the head conv, has SE)."""
    stages = config.stages()
    return sum(s.repeats for s in stages), (config.head_channels, stages[-1].out_channels), config.se


def file_signature(tensors):
    """``signature`` read off EfficientNet-PyTorch tensors."""
    blocks = 0
    while counterpart(f"{BLOCKS}.{blocks}.depthwise.weight")[0] in tensors:
        blocks += 1
    head = tensors.get(counterpart("head.weight")[0])
    se = counterpart(f"{BLOCKS}.0.se.reduce.weight")[0] in tensors
    return blocks, None if head is None else head.shape[:2], se


def describe(signature):
    blocks, head, se = signature
    return f"{blocks} MBConv blocks, head convolution {head}, {'with' if se else 'no'} squeeze-and-excitation"


def num_classes(tensors, path):
    name = counterpart("classifier.weight")[0]
    if name not in tensors or tensors[name].ndim != 2:
        raise TinyEffNetError(f"{path} has no classifier weight {name!r} of shape (classes, features): it is not "
                              "an EfficientNet-PyTorch state dict")
    return tensors[name].shape[0]


def architecture(tensors, meta, variant, path):
    """The ``ModelConfig`` of a file: ``variant`` if given; else tinyeffnet's metadata, checked against the
    tensors before anything is built; else the variant whose signature the tensors have (the classes from
    the classifier, the variant's resolution)."""
    if variant is not None:
        return config_for_variant(variant, num_classes(tensors, path))
    found = file_signature(tensors)
    if meta is not None:
        config = config_from_dict(meta.get("config"), path)
        if signature(config) != found:
            raise TinyEffNetError(f"{path} is inconsistent: its metadata describes {config.name} "
                                  f"({describe(signature(config))}) but its tensors have {describe(found)}")
        return config
    matches = [name for name in VARIANTS if signature(config_for_variant(name)) == found]
    if not matches:
        raise TinyEffNetError(
            f"{path} carries no tinyeffnet metadata, and its tensors ({describe(found)}) are no official variant's; "
            f"name the architecture with python -m tinyeffnet.export --checkpoint {path} --variant NAME "
            f"OUT{SAFETENSORS_SUFFIX}, which writes a copy that carries it")
    return config_for_variant(matches[0], num_classes(tensors, path))


def read_model(path, variant=None):
    """A .safetensors file of EfficientNet-PyTorch tensors → (the model holding them, its training record or None)."""
    tensors, metadata = read_safetensors(path)
    meta = tinyeffnet_metadata(metadata, path)
    model = EfficientNet(architecture(tensors, meta, variant, path))
    load_torch_state(model, tensors, path)
    return model, None if meta is None else meta.get("training")


def load_safetensors(path):
    """``(config, model_state, {}, training)``, as ``checkpoint.load_checkpoint`` returns for a ``.npz``."""
    model, training = read_model(path)
    return model.config, model.state_dict(), {}, training


# --- the command ---------------------------------------------------------------------------------------
def pytorch_call(config):
    """The EfficientNet-PyTorch call that builds the same network, or None where there is none."""
    family = PYTORCH_PACKAGES.get((config.se, config.activation, config.fixed_stem_head))
    if family is None or config.stem_stride != 2:
        return None
    package, prefix = family
    base = config.name if config.name in VARIANTS else f"{prefix}0"
    overrides = {}
    if (config.width, config.depth) != (VARIANTS[base].width, VARIANTS[base].depth):
        overrides.update(width_coefficient=config.width, depth_coefficient=config.depth)
    overrides.update(image_size=config.resolution, num_classes=config.num_classes)
    if config.bn_epsilon != BN_EPSILON:
        overrides.update(batch_norm_epsilon=config.bn_epsilon)
    arguments = "".join(f", {k}={v!r}" for k, v in overrides.items())
    return f"{package}.EfficientNet.from_name('efficientnet-{base}'{arguments})"


def load_source(args):
    """The model to export and its training record, from ``--pretrained`` or ``--checkpoint``."""
    if args.pretrained is not None:
        if args.variant is not None:
            raise TinyEffNetError("--variant is for a --checkpoint file; --pretrained names its own architecture")
        return load_pretrained(args.pretrained), dict(classes=imagenet_classes(), preprocess=PREPROCESS)
    path = checkpoint_path(args.checkpoint)
    if path.endswith(SAFETENSORS_SUFFIX):
        return read_model(path, args.variant)
    if args.variant is not None:
        raise TinyEffNetError(f"--variant is for a {SAFETENSORS_SUFFIX} file saved without tinyeffnet's metadata; "
                              f"{path} names its own architecture")
    config, state, _, training = load_checkpoint(path)
    model = EfficientNet(config)
    load_into(model, state, path)
    return model, training


def main(argv=None):
    p = make_parser("python -m tinyeffnet.export", __doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a run folder (uses best.npz), a .npz checkpoint or a .safetensors file")
    source.add_argument("--pretrained", metavar="NAME", choices=list(AVAILABLE),
                        help=f"ImageNet weights of an installed package: {', '.join(AVAILABLE)}")
    p.add_argument("--variant", choices=list(VARIANTS),
                   help="the architecture of a .safetensors --checkpoint saved without tinyeffnet's metadata "
                        "(e.g. from PyTorch), where its tensors do not tell")
    p.add_argument("out", help=f"the file to write (ends in {SAFETENSORS_SUFFIX})")
    args = p.parse_args(argv)
    if not args.out.endswith(SAFETENSORS_SUFFIX):
        raise TinyEffNetError(f"{args.out} must end in {SAFETENSORS_SUFFIX}: the other commands recognise the "
                              "format by it")
    model, training = load_source(args)
    save_safetensors(args.out, model, training)
    config = model.config
    print(f"wrote {args.out}: {len(model.state_dict())} tensors of {config.name} ({model.num_parameters():,} "
          "parameters) under EfficientNet-PyTorch's names and layouts")
    call = pytorch_call(config)
    if call is None:
        print(f"note: EfficientNet-PyTorch builds no network like this one (stem stride {config.stem_stride}, "
              f"{config.activation}, squeeze-and-excitation {config.se}): the tensors load into the nearest "
              "variant, but its logits will differ")
    else:
        print(f"in PyTorch: {call}.load_state_dict(safetensors.torch.load_file({args.out!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
