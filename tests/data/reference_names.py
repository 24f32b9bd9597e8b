"""Writes reference_names_VARIANT.txt: the names, dtypes and shapes of EfficientNet-PyTorch's state_dict.

Run with torch in a side environment (torch is never a tinyeffnet dependency), from tests/data:

    python reference_names.py lite1 reference_names_lite1.txt

b0…b7 are built by efficientnet-pytorch (``efficientnet_pytorch``), lite0…lite4 by efficientnet-lite-pytorch
(``efficientnet_lite_pytorch``); ``reference_logits.py`` builds its models here too."""

import sys
from importlib import metadata

import torch

PACKAGES = {"b": "efficientnet-pytorch", "lite": "efficientnet-lite-pytorch"}   # variant family → PyPI name


def package_for(variant):
    """"lite1" → "efficientnet-lite-pytorch", "b3" → "efficientnet-pytorch"."""
    return PACKAGES["lite" if variant.startswith("lite") else "b"]


def constructor(variant, **kwargs):
    """The call that builds ``variant``, as text: ``efficientnet_lite_pytorch.EfficientNet.from_name(…)``."""
    arguments = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return f"{package_for(variant).replace('-', '_')}.EfficientNet.from_name('efficientnet-{variant}'{arguments})"


def build(variant, **kwargs):
    """EfficientNet-PyTorch's model for ``variant``, with random weights."""
    module = __import__(package_for(variant).replace("-", "_"))
    return module.EfficientNet.from_name(f"efficientnet-{variant}", **kwargs)


def provenance(variant):
    """The header lines that say how a file was made: packages, versions and this very command."""
    return ["Generated with torch in a side environment (torch is not a tinyeffnet dependency):",
            f"{package_for(variant)} {metadata.version(package_for(variant))}, torch {torch.__version__}, "
            f"python {' '.join(sys.argv)}"]


def main(variant, out):
    state = build(variant).state_dict()
    header = [f"The state_dict of {constructor(variant)}: {len(state)} tensors.", *provenance(variant),
              "name dtype shape"]
    rows = [f"{name} {str(t.dtype).removeprefix('torch.')} ({','.join(map(str, t.shape))})"
            for name, t in state.items()]
    with open(out, "w", encoding="utf-8") as f:
        f.write("".join(f"# {line}\n" for line in header) + "".join(f"{row}\n" for row in rows))


if __name__ == "__main__":
    main(*sys.argv[1:])
