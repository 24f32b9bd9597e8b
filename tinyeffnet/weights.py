"""One door for every weights file: ``open_weights(path)`` reads it by its name, whatever its format.

    name ends in     format                                          read by
    .safetensors     EfficientNet-PyTorch's (V2: torchvision's)      ``safetensors_file.read_model``
                     tensors + tinyeffnet's metadata
                     (``python -m tinyeffnet.export``)
    .pth             legacy ``torch.save`` of EfficientNet-PyTorch   ``pretrained.load_legacy_torch``
                     tensors (before PyTorch 1.6)
    anything else    a tinyeffnet ``.npz`` checkpoint                ``checkpoint.load_checkpoint``

Every reader answers the same four things, so a command never picks a loader: the ``ModelConfig``, the
model's state dict (tinyeffnet's names and layouts), the optimiser's state (empty but for a training
checkpoint) and the training record (or None).
"""

import os

from tinyeffnet.checkpoint import SAFETENSORS_SUFFIX, load_checkpoint, require_file
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.pretrained import load_legacy_torch
from tinyeffnet.safetensors_file import read_model, torch_model

LEGACY_TORCH_SUFFIX = ".pth"


def open_weights(path, variant=None):
    """A weights file → ``(config, model_state, optimizer_state, training)``; any problem is a TinyEffNetError.

    ``variant`` names the architecture of EfficientNet-PyTorch tensors saved without tinyeffnet's metadata
    (a ``.safetensors`` from PyTorch, a ``.pth``) where their shapes do not tell; a ``.npz`` names its own."""
    path = os.fspath(path)
    require_file(path)
    if path.endswith(SAFETENSORS_SUFFIX):
        model, training = read_model(path, variant)
    elif path.endswith(LEGACY_TORCH_SUFFIX):
        model, training = torch_model(load_legacy_torch(path), None, variant, path), None
    elif variant is not None:
        raise TinyEffNetError(f"{path} is a tinyeffnet checkpoint, which names its own architecture: drop "
                              f"the variant {variant!r}")
    else:
        return load_checkpoint(path)
    return model.config, model.state_dict(), {}, training
