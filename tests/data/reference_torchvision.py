"""Writes reference_names_VARIANT.txt and reference_logits_VARIANT.txt for torchvision's EfficientNetV2
(v2-s, v2-m, v2-l): the names, dtypes and shapes of its state_dict, and its logits for the formula weights and
input of ``tests/reference_weights.py``, which tests/test_torchvision.py compares tinyeffnet's against.

Run with torch and torchvision in a side environment (neither is a tinyeffnet dependency), from tests/data:

    python reference_torchvision.py v2-s 10 64       # names and logits: 10 classes, 64×64 images
    python reference_torchvision.py v2-m 1000        # names only, ImageNet's 1000 classes

The model is torchvision's ``efficientnet_v2_*(num_classes=K)``, loaded strictly with ``formula_state`` of its
own table (with ``V2_REFERENCE_GAIN``) and run in eval mode on ``formula_input`` at the given size; every logit is
written with 9 significant digits. The weights are computed, never stored: the test recomputes the same numbers
from the table.

torchvision 0.28.0's compiled operators do not load beside torch 2.13.0 from PyPI on this machine (``import
torchvision`` stops in ``_meta_registrations``: "operator torchvision::nms does not exist"), and the
EfficientNet models need none of them. ``import_torchvision`` then imports the model file itself: it stands
empty packages in for ``torchvision`` and ``torchvision.models`` (skipping their ``__init__``, which registers
the operators), so that ``torchvision.models.efficientnet`` and the pure-Python modules it imports (``ops.misc``,
``ops.stochastic_depth``, ``transforms._presets``) load from the installed package, unchanged."""

import importlib
import importlib.util
import sys
import types
from importlib import metadata
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # tests/, where reference_weights.py lives
from reference_weights import V2_REFERENCE_GAIN, formula_input, formula_state, read_table  # noqa: E402


def import_torchvision():
    """(``torchvision``, with ``torchvision.models.efficientnet_v2_*``, and how it was imported): the package itself
    when it imports, else the installed model file under stand-in packages (see the module docstring)."""
    try:
        return importlib.import_module("torchvision"), "the package"
    except (ImportError, RuntimeError) as error:
        print(f"import torchvision failed ({error}); importing torchvision/models/efficientnet.py alone",
              file=sys.stderr)
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    root = Path(importlib.util.find_spec("torchvision").origin).parent
    for name, folder in (("torchvision", root), ("torchvision.models", root / "models")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    torchvision = sys.modules["torchvision"]
    torchvision.models = sys.modules["torchvision.models"]
    efficientnet = importlib.import_module("torchvision.models.efficientnet")
    for name in efficientnet.__all__:
        setattr(torchvision.models, name, getattr(efficientnet, name))
    return torchvision, "its model file alone, without the compiled operators"


torchvision, IMPORTED = import_torchvision()


def builder(variant):
    """torchvision's constructor of ``variant``: "v2-s" → ``efficientnet_v2_s``."""
    return f"efficientnet_{variant.replace('-', '_')}"


def provenance():
    return ["Generated with torch in a side environment (torch is not a tinyeffnet dependency):",
            f"torchvision {metadata.version('torchvision')} ({IMPORTED}), torch {torch.__version__},",
            f"python {' '.join(sys.argv)}"]


def write(path, header, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(f"# {line}\n" for line in header) + "".join(f"{row}\n" for row in rows))


def main(variant, num_classes, resolution=None):
    call = f"torchvision.models.{builder(variant)}(num_classes={num_classes})"
    model = getattr(torchvision.models, builder(variant))(num_classes=int(num_classes))
    state = model.state_dict()
    names = f"reference_names_{variant}.txt"
    write(names, [f"The state_dict of {call}: {len(state)} tensors.", *provenance(), "name dtype shape"],
          [f"{name} {str(t.dtype).removeprefix('torch.')} ({','.join(map(str, t.shape))})" for name, t in state.items()])
    if resolution is None:
        return
    table = read_table(names)
    state = formula_state(table, V2_REFERENCE_GAIN)
    model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()}, strict=True)
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(formula_input(table, int(resolution)))).numpy()
    header = [f"torchvision's logits for {call}, eval mode, at {resolution}×{resolution},",
              "holding formula weights (gain V2_REFERENCE_GAIN), on a formula input (tests/reference_weights.py:",
              "formula_state, formula_input).",
              *provenance(),
              f"one line per image; min {logits.min():.4g}, max {logits.max():.4g}, argmax {logits.argmax(axis=1).tolist()}"]
    write(f"reference_logits_{variant}.txt", header, [" ".join(f"{v:.9g}" for v in image) for image in logits])


if __name__ == "__main__":
    main(*sys.argv[1:])
