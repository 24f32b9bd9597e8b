"""The ``.safetensors`` format of tinyeffnet's exports: PyTorch's tensors plus tinyeffnet's metadata.

safetensors (Hugging Face) is a flat format: an 8-byte header length, a JSON header naming each
tensor's dtype, shape and byte range, then the raw bytes. Reading it runs nothing, unlike a pickle. It
is written and read only through the ``safetensors`` package's NumPy API (``pip install -e
".[safetensors]"``). The file holds:

    tensors     every weight and batch-norm buffer under EfficientNet-PyTorch's names and layouts
                (``_blocks.3._depthwise_conv.weight`` (C, 1, k, k), …; ``tinyeffnet.torch_names``), or for
                EfficientNetV2-S, -M and -L torchvision's (``features.4.0.block.1.0.weight``, …;
                ``tinyeffnet.torchvision_names``): ``pytorch_names`` picks by the family,
                float32, with ``num_batches_tracked`` as an int64 scalar as ``torch.nn.BatchNorm2d`` keeps it
    metadata    ``{"tinyeffnet": JSON}``: format name and version, the ``ModelConfig``, and from a training
                run the class names, preprocessing and arguments that ``predict`` and ``evaluate`` need
                (the optimiser and resume state stay in the ``.npz``)

A file without tinyeffnet's metadata (saved from PyTorch) has its variant recognised from its tensors
(``architecture``; torchvision's names by its stem, ``features.0.0.weight``), or named by the caller.
"""

import json

from tinyeffnet.checkpoint import SAFETENSORS_SUFFIX, config_from_dict
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.files import atomic_write, check_header
from tinyeffnet.model import EfficientNet
from tinyeffnet.scaling import VARIANTS, config_for_variant
from tinyeffnet import torchvision_names
from tinyeffnet.torch_names import (BLOCK_PREFIX, PYTORCH_FAMILIES, counterpart, load_torch_state, to_torch_state,
                                    torch_block_index)

METADATA_KEY = "tinyeffnet"
FORMAT = "tinyeffnet-safetensors"
VERSION = 1
USAGE_KEYS = ("args", "classes", "preprocess")     # the part of a training record that using the model needs
INSTALL_HINT = 'pip install -e ".[safetensors]"'


def safetensors_modules():
    """The optional ``safetensors`` package: (``safetensors``, ``safetensors.numpy``)."""
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise TinyEffNetError(f"reading and writing .safetensors files needs the safetensors package: "
                              f"run {INSTALL_HINT} (or pip install safetensors)") from None
    return safetensors, safetensors.numpy


def pytorch_names(config):
    """The tensor-name map (tinyeffnet name → (PyTorch's name, ``Layout``)) of ``config``'s PyTorch counterpart:
    EfficientNet-PyTorch's ``counterpart`` for B0–B7 and Lite0–4, torchvision's for V2-S, -M and -L; another
    family (V2-B0–B3, V2-XL) is refused in one line."""
    return counterpart if config.family in PYTORCH_FAMILIES else torchvision_names.counterparts(config)


# --- writing -------------------------------------------------------------------------------------------
def save_safetensors(path, model, training=None):
    """Write ``model``'s tensors under its PyTorch counterpart's names and layouts (``pytorch_names``), with its
    architecture (and ``training``'s class names, preprocessing and arguments) in the metadata; atomically. A
    model that PyTorch has no network for (V2-B0–B3, V2-XL) is refused before anything is written."""
    names = pytorch_names(model.config)
    _, st_numpy = safetensors_modules()
    usage = {k: training[k] for k in USAGE_KEYS if k in training} if training else None
    meta = dict(format=FORMAT, version=VERSION, config=model.config.to_dict(), training=usage)
    data = st_numpy.save(to_torch_state(model.state_dict(), names), metadata={METADATA_KEY: json.dumps(meta)})
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
    """What tells the variants apart in a file: (blocks, (C_out, C_in) of the head conv, has SE)."""
    stages = config.stages()
    return sum(s.repeats for s in stages), (config.head_channels, stages[-1].out_channels), config.se


def file_signature(tensors):
    """``signature`` read off PyTorch tensors: the blocks counted by index, whatever their type and layers; SE if
    any block has it (torchvision's names: ``torchvision_names.file_signature``)."""
    if torchvision_names.is_torchvision_state(tensors):
        return torchvision_names.file_signature(tensors)
    blocks = {torch_block_index(name) for name in tensors} - {None}
    head = tensors.get(counterpart("head.weight")[0])
    se = any(counterpart(f"{BLOCK_PREFIX}.{i}.se.reduce.weight")[0] in tensors for i in blocks)
    return len(blocks), None if head is None else head.shape[:2], se


def describe(signature):
    blocks, head, se = signature
    return f"{blocks} blocks, head convolution {head}, {'with' if se else 'no'} squeeze-and-excitation"


def num_classes(tensors, path):
    torchvision = torchvision_names.is_torchvision_state(tensors)
    name = f"{torchvision_names.CLASSIFIER}.weight" if torchvision else counterpart("classifier.weight")[0]
    if name not in tensors or tensors[name].ndim != 2:
        raise TinyEffNetError(f"{path} has no classifier weight {name!r} of shape (classes, features): it is not "
                              "a PyTorch EfficientNet state dict")
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
    torchvision = torchvision_names.is_torchvision_state(tensors)
    families = torchvision_names.TORCHVISION_BUILDERS if torchvision else PYTORCH_FAMILIES
    matches = [name for name, v in VARIANTS.items()
               if v.family in families and signature(config_for_variant(name)) == found]
    if not matches:
        raise TinyEffNetError(
            f"{path} carries no tinyeffnet metadata, and its tensors ({describe(found)}) are no official variant's; "
            f"name the architecture with python -m tinyeffnet.export --checkpoint {path} --variant NAME "
            f"OUT{SAFETENSORS_SUFFIX}, which writes a copy that carries it")
    return config_for_variant(matches[0], num_classes(tensors, path))


def torch_model(tensors, meta, variant, path):
    """{PyTorch name: array} → the tinyeffnet model holding them (its config by ``architecture``, the names by
    ``pytorch_names``)."""
    model = EfficientNet(architecture(tensors, meta, variant, path))
    load_torch_state(model, tensors, path, pytorch_names(model.config))
    return model


def read_model(path, variant=None):
    """A .safetensors file of PyTorch tensors → (the model holding them, its training record or None)."""
    tensors, metadata = read_safetensors(path)
    meta = tinyeffnet_metadata(metadata, path)
    return torch_model(tensors, meta, variant, path), None if meta is None else meta.get("training")
