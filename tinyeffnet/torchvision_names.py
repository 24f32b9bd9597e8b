"""torchvision's EfficientNetV2 names and layouts ↔ tinyeffnet's, for V2-S, V2-M and V2-L.

torchvision (``torchvision/models/efficientnet.py``, 0.28) builds ``efficientnet_v2_s``, ``_m`` and ``_l``; it has
no V2-B0–B3 and no V2-XL. Its network is one ``features`` sequence, then ``classifier``:

    features.0                  the stem: a Conv2dNormActivation, ``.0`` the convolution, ``.1`` the batch norm
    features.1 … features.n     the n stages, each a sequence of blocks: ``features.{s+1}.{i}`` is block i of stage s
    features.n+1                the head's 1×1 convolution and batch norm (``.0``, ``.1``)
    classifier.1                the linear layer (``classifier.0`` is the dropout)

Inside a block, ``block.u`` numbers the block's layers in forward order, a convolution with its batch norm
counting as one (``.0`` and ``.1``) and squeeze-and-excitation as one (its 1×1 convolutions ``fc1``, ``fc2``).
tinyeffnet keeps the blocks in one flat list, ``blocks.b``, so the table (``BLOCK_LAYERS``) is keyed by the
block type and whether it expands, and the block's place in its stage comes from the config:

    tinyeffnet layer        Fused-MBConv e ≠ 1   Fused-MBConv e = 1   MBConv e ≠ 1
    expand, expand_bn       block.0.0, .0.1      –                    block.0.0, .0.1
    depthwise, …_bn         –                    –                    block.1.0, .1.1
    se.reduce, se.expand    –                    –                    block.2.fc1, .2.fc2
    project, project_bn     block.1.0, .1.1      block.0.0, .0.1      block.3.0, .3.1

The layouts are EfficientNet-PyTorch's (``torch_names``): convolutions OIHW, depthwise (C, 1, k, k), 1×1
convolutions (C_out, C_in, 1, 1), squeeze-and-excitation's linear layers as 1×1 convolutions with bias, the
classifier (out, in).

What else must agree for the same logits, read in torchvision 0.28's source:

* padding: ``Conv2dNormActivation`` pads ``(k − 1) // 2`` on each side: tinyeffnet's "symmetric" rule, which the
  V2 families use (``scaling.V2_RULES``); a V2 model with "same" padding loads but computes other logits;
* batch norm: ``partial(nn.BatchNorm2d, eps=1e-03)`` for V2 (its V1 keeps PyTorch's 1e-5), tinyeffnet's
  BN_EPSILON; momentum PyTorch's default 0.1 (running = 0.9·running + 0.1·batch), tinyeffnet's V2_BN_MOMENTUM 0.9
  in TensorFlow's sense, both averaging the unbiased batch variance;
* squeeze-and-excitation: ``max(1, C_in // 4)`` channels from the block's input, SiLU then sigmoid, as here;
* stochastic depth 0.2 · (block index) / (block count), per sample, and dropout 0.2 / 0.3 / 0.4 before the
  classifier: training only, so eval logits do not depend on them.
"""

import re

from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.torch_names import AS_IS, BATCHNORM, CONV, DEPTHWISE, LINEAR, POINTWISE

TORCHVISION_BUILDERS = {                    # scaling.FAMILIES → torchvision's constructor of that network
    "efficientnetv2-s": "efficientnet_v2_s",
    "efficientnetv2-m": "efficientnet_v2_m",
    "efficientnetv2-l": "efficientnet_v2_l",
}
STEM, CLASSIFIER = "features.0", "classifier.1"
# (Stage.block, expands) → {tinyeffnet layer inside a block: (torchvision module inside the block, layout)}
BLOCK_LAYERS = {
    ("fused_mbconv", True): {"expand": ("block.0.0", CONV), "expand_bn": ("block.0.1", BATCHNORM),
                             "project": ("block.1.0", POINTWISE), "project_bn": ("block.1.1", BATCHNORM)},
    ("fused_mbconv", False): {"project": ("block.0.0", CONV), "project_bn": ("block.0.1", BATCHNORM)},
    ("mbconv", True): {"expand": ("block.0.0", POINTWISE), "expand_bn": ("block.0.1", BATCHNORM),
                       "depthwise": ("block.1.0", DEPTHWISE), "depthwise_bn": ("block.1.1", BATCHNORM),
                       "se.reduce": ("block.2.fc1", POINTWISE), "se.expand": ("block.2.fc2", POINTWISE),
                       "project": ("block.3.0", POINTWISE), "project_bn": ("block.3.1", BATCHNORM)},
}
BLOCK_NAME = re.compile(r"features\.(\d+)\.(\d+)\.block\.")     # features.{s+1}.{i}.block.… : a block's tensor


def require_torchvision(config):
    """Raise a TinyEffNetError unless torchvision builds ``config``'s family (V2-S, V2-M, V2-L)."""
    if config.family not in TORCHVISION_BUILDERS:
        raise TinyEffNetError(
            f"{config.name} ({config.family}) has no PyTorch export or import: torchvision builds EfficientNetV2-S, "
            "-M and -L only (efficientnet_v2_s, _m, _l), not V2-B0–B3 or V2-XL, and EfficientNet-PyTorch has no "
            "Fused-MBConv blocks; keep the .npz checkpoint")


def layer_table(config):
    """{tinyeffnet layer: (torchvision module, layout)} for the network ``config`` builds."""
    stages = config.stages()
    table = {"stem": (f"{STEM}.0", CONV), "stem_bn": (f"{STEM}.1", BATCHNORM),
             "head": (f"features.{len(stages) + 1}.0", POINTWISE),
             "head_bn": (f"features.{len(stages) + 1}.1", BATCHNORM),
             "classifier": (CLASSIFIER, LINEAR)}
    index = 0
    for s, stage in enumerate(stages):
        for i in range(stage.repeats):
            for layer, (module, layout) in BLOCK_LAYERS[stage.block, stage.expand != 1].items():
                table[f"blocks.{index}.{layer}"] = (f"features.{s + 1}.{i}.{module}", layout)
            index += 1
    return table


def counterparts(config):
    """The map of ``config``'s tensor names, for ``torch_names.to_torch_state`` and ``load_torch_state``: a function
    tinyeffnet name → (torchvision's name, ``Layout``), e.g. for V2-S ``blocks.2.expand.weight`` →
    (``features.2.0.block.0.0.weight``, CONV) and ``blocks.2.expand_bn.gamma`` → (``features.2.0.block.0.1.weight``,
    AS_IS)."""
    require_torchvision(config)
    table = layer_table(config)

    def counterpart(name):
        layer, _, param = name.rpartition(".")
        if layer not in table:
            raise ValueError(f"tensor {name!r} has no counterpart in torchvision's "
                             f"{TORCHVISION_BUILDERS[config.family]}")
        module, layout = table[layer]
        return f"{module}.{layout.torch_params.get(param, param)}", layout if param == "weight" else AS_IS
    return counterpart


def is_torchvision_state(tensors):
    """Whether a state dict is under torchvision's EfficientNet names (its stem is ``features.0.0``)."""
    return f"{STEM}.0.weight" in tensors


def file_signature(tensors):
    """``safetensors_file.signature`` read off torchvision tensors: (blocks, (C_out, C_in) of the head
    convolution, has SE). The blocks are the distinct ``features.{s}.{i}``; the head is the last ``features``."""
    blocks = {match.groups() for match in map(BLOCK_NAME.match, tensors) if match}
    head = tensors.get(f"features.{1 + max((int(s) for s, _ in blocks), default=0)}.0.weight")
    se = any(".fc1." in name for name in tensors)
    return len(blocks), None if head is None else head.shape[:2], se
