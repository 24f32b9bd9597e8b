"""Writes reference_logits_VARIANT.txt: PyTorch's logits for the formula weights and input of
``tests/reference_weights.py``, which tests/test_export.py compares tinyeffnet's against.

Run with torch in a side environment (torch is never a tinyeffnet dependency), from tests/data, after
``reference_names.py`` (its table says which tensors get which formula values):

    python reference_logits.py lite1 32 reference_names_lite1.txt reference_logits_lite1.txt

The model is built at the given image size, loaded with ``formula_state`` and run in eval mode on
``formula_input``; every REFERENCE_STEP-th logit of each image is written with 9 significant digits."""

import sys
from pathlib import Path

import torch
from reference_names import build, constructor, provenance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # tests/, where reference_weights.py lives
from reference_weights import REFERENCE_STEP, formula_input, formula_state, read_table  # noqa: E402


def main(variant, resolution, names, out):
    table = read_table(names)
    model = build(variant, image_size=int(resolution))
    model.load_state_dict({name: torch.from_numpy(value) for name, value in formula_state(table).items()})
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(formula_input(table, int(resolution)))).numpy()
    header = [f"PyTorch's logits[:, ::{REFERENCE_STEP}] for {constructor(variant, image_size=int(resolution))}, "
              "eval mode,",
              "holding formula weights, on a formula input (tests/reference_weights.py: formula_state, formula_input).",
              *provenance(variant),
              f"one line per image; full logits: min {logits.min():.4g}, max {logits.max():.4g}, "
              f"argmax {logits.argmax(axis=1).tolist()}"]
    rows = [" ".join(f"{v:.9g}" for v in image[::REFERENCE_STEP]) for image in logits]
    with open(out, "w", encoding="utf-8") as f:
        f.write("".join(f"# {line}\n" for line in header) + "".join(f"{row}\n" for row in rows))


if __name__ == "__main__":
    main(*sys.argv[1:])
