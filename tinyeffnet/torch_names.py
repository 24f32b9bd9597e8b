"""EfficientNet-PyTorch's names and layouts ↔ tinyeffnet's: one table, both directions.

EfficientNet-PyTorch (``efficientnet-pytorch`` for B0–B7, ``efficientnet-lite-pytorch`` for Lite0–4) calls
the tensors ``_blocks.3._bn1.weight`` where tinyeffnet says ``blocks.3.depthwise_bn.gamma``, and stores
convolutions channels-first ("OIHW") where tinyeffnet's NHWC kernels want them channels-last. One table
(``TOP_LAYERS``, ``BLOCK_LAYERS``) pairs each layer with its counterpart and its ``Layout``, and serves
both directions: reading PyTorch's weights (``tinyeffnet.pretrained``, ``tinyeffnet.safetensors_file``) and
writing PyTorch-loadable files (``tinyeffnet.export``).

``BLOCK_LAYERS`` is keyed by the layer's name inside a block, whatever the block type: a new block type
adds the rows of the layers it names differently (the SE and projection layers are shared).

EfficientNet-PyTorch builds EfficientNet (B0–B7, Lite0–4) only: ``require_counterpart`` refuses a model of
another family in one line, before any of its tensors is renamed. EfficientNetV2-S, -M and -L go to torchvision
instead, under other names (``tinyeffnet.torchvision_names``) but in these layouts: ``to_torch_state`` and
``load_torch_state`` take its name map in place of ``counterpart``.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tinyeffnet.errors import TinyEffNetError


def as_is(w):
    return w


@dataclass(frozen=True)
class Layout:
    """How one kind of layer keeps its tensors here and in EfficientNet-PyTorch.

    ``to_torch`` reshapes tinyeffnet's ``weight`` into PyTorch's layout and ``to_ours`` undoes it (biases
    and batch-norm vectors are laid out alike); ``torch_params`` renames the parameters PyTorch calls
    otherwise."""
    to_torch: Callable = as_is
    to_ours: Callable = as_is
    torch_params: dict = field(default_factory=dict)


AS_IS = Layout()
CONV = Layout(lambda w: w.transpose(3, 2, 0, 1),               # (k, k, C_in, C_out) ↔ (C_out, C_in, k, k) "OIHW"
              lambda w: w.transpose(2, 3, 1, 0))
DEPTHWISE = Layout(lambda w: w.transpose(2, 0, 1)[:, None],    # (k, k, C) ↔ (C, 1, k, k): groups = C
                   lambda w: w[:, 0].transpose(1, 2, 0))
POINTWISE = Layout(lambda w: w.T[:, :, None, None],            # (C_in, C_out) ↔ 1×1 conv (C_out, C_in, 1, 1)
                   lambda w: w[:, :, 0, 0].T)
LINEAR = Layout(np.transpose, np.transpose)                    # (in, out) ↔ (out, in)
BATCHNORM = Layout(torch_params={"gamma": "weight", "beta": "bias"})   # all (C,); running_mean, running_var
                                                                       # and num_batches_tracked keep their names
# tinyeffnet layer → (EfficientNet-PyTorch module, layout); blocks are ``blocks.i.…`` here, ``_blocks.i.…`` there
TOP_LAYERS = {"stem": ("_conv_stem", CONV), "stem_bn": ("_bn0", BATCHNORM),
              "head": ("_conv_head", POINTWISE), "head_bn": ("_bn1", BATCHNORM), "classifier": ("_fc", LINEAR)}
BLOCK_LAYERS = {"expand": ("_expand_conv", POINTWISE), "expand_bn": ("_bn0", BATCHNORM),
                "depthwise": ("_depthwise_conv", DEPTHWISE), "depthwise_bn": ("_bn1", BATCHNORM),
                "se.reduce": ("_se_reduce", POINTWISE), "se.expand": ("_se_expand", POINTWISE),
                "project": ("_project_conv", POINTWISE), "project_bn": ("_bn2", BATCHNORM)}
PYTORCH_FAMILIES = ("efficientnet",)          # the ``scaling.FAMILIES`` EfficientNet-PyTorch builds
BLOCK_PREFIX = "blocks"                        # the model's list of blocks: blocks.<i>.<layer>.<param>
TORCH_BLOCK_PREFIX = f"_{BLOCK_PREFIX}."


def require_counterpart(config):
    """Raise a TinyEffNetError unless EfficientNet-PyTorch builds ``config``'s network (its family)."""
    if config.family not in PYTORCH_FAMILIES:
        raise TinyEffNetError(
            f"{config.name} ({config.family}) has no counterpart in EfficientNet-PyTorch, which builds B0–B7 and "
            "Lite0–4 only (EfficientNetV2-S, -M and -L go to torchvision: tinyeffnet.torchvision_names)")


def counterpart(name):
    """tinyeffnet's tensor ``name`` → (EfficientNet-PyTorch's name for it, the ``Layout`` of that tensor).

    ``blocks.3.depthwise.weight`` → ``_blocks.3._depthwise_conv.weight``, DEPTHWISE;
    ``blocks.3.depthwise_bn.gamma`` → ``_blocks.3._bn1.weight``, AS_IS."""
    layer, _, param = name.rpartition(".")
    prefix, table = "", TOP_LAYERS
    if layer.startswith(BLOCK_PREFIX + "."):
        _, index, layer = layer.split(".", 2)
        prefix, table = f"{TORCH_BLOCK_PREFIX}{index}.", BLOCK_LAYERS
    if layer not in table:
        raise ValueError(f"tensor {name!r} has no counterpart in EfficientNet-PyTorch")
    module, layout = table[layer]
    return f"{prefix}{module}.{layout.torch_params.get(param, param)}", layout if param == "weight" else AS_IS


def to_torch_state(state, names=counterpart):
    """{tinyeffnet name: array} → {EfficientNet-PyTorch name: a C-contiguous copy in PyTorch's layout}.

    ``names`` maps a name to its counterpart and layout: EfficientNet-PyTorch's ``counterpart``, or torchvision's
    for a V2 model (``torchvision_names.counterparts(config)``)."""
    torch_state = {}
    for name, value in state.items():
        torch_name, layout = names(name)
        torch_state[torch_name] = np.array(layout.to_torch(value), order="C")
    return torch_state


def load_torch_state(model, torch_state, source, names=None):
    """Load {EfficientNet-PyTorch name: array} into ``model``, converting names and layouts.

    Every tensor of the model must be there with PyTorch's shape for it, and nothing else; otherwise a
    ``TinyEffNetError`` names the first that is not, in the file's own names. ``names`` as in ``to_torch_state``;
    None means EfficientNet-PyTorch's, for a model of its family (``require_counterpart``)."""
    if names is None:
        require_counterpart(model.config)
        names = counterpart
    state, known, arch = {}, set(), model.config.name
    for name, value in model.state_dict().items():
        torch_name, layout = names(name)
        known.add(torch_name)
        expected = layout.to_torch(value).shape
        if torch_name not in torch_state:
            raise TinyEffNetError(f"{source} does not fit this model: tensor {torch_name!r} of {arch} is "
                                  "missing from it (is it for another architecture?)")
        found = np.shape(torch_state[torch_name])
        if found != expected:
            raise TinyEffNetError(f"{source} does not fit this model: tensor {torch_name!r} has shape {found} "
                                  f"in it but {expected} in {arch} (is it for another architecture?)")
        state[name] = layout.to_ours(torch_state[torch_name])
    extra = [torch_name for torch_name in torch_state if torch_name not in known]
    if extra:
        raise TinyEffNetError(f"{source} does not fit this model: it holds tensor {extra[0]!r}, which {arch} "
                              "does not have (is it for another architecture?)")
    model.load_state_dict(state, source)


def torch_block_index(torch_name):
    """The block an EfficientNet-PyTorch tensor belongs to (``_blocks.3._bn1.weight`` → 3), else None."""
    index, _, _ = torch_name.removeprefix(TORCH_BLOCK_PREFIX).partition(".")
    return int(index) if torch_name.startswith(TORCH_BLOCK_PREFIX) and index.isdigit() else None
