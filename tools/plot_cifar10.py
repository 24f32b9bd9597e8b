"""Draws the README's CIFAR-10 figure, ``docs/cifar10_accuracy_vs_time.png``, from the runs' ``metrics.jsonl``
kept in ``docs/metrics``: test accuracy after each epoch against minutes, one panel per machine (minutes
compare only within a machine).

    python tools/plot_cifar10.py [--out docs/cifar10_accuracy_vs_time.png]
"""

import argparse
import json
from pathlib import Path

from tinyeffnet.plots import plot_accuracy_vs_time

METRICS = Path(__file__).resolve().parent.parent / "docs" / "metrics"

# panel (the machine) → [(label, metrics file)], in the README table's order
RUNS = {
    "2-core Intel Xeon, 2 threads each": [
        ("tinyeffnet, default (AdamW + average, stem stride 1), 24 epochs, code of 6973a90",
         "cifar10_default_rerun_2026-12-07.jsonl"),
        ("PyTorch + efficientnet_pytorch, the same recipe, 5 epochs", "cifar10_torch_default_2026-12-07.jsonl"),
        ("tinyeffnet, default of 2026-12-02 (paper's stem, stride 2), 60 epochs", "cifar10_default_2026-12-02.jsonl"),
    ],
    "2-core AMD EPYC, 2 threads each": [
        ("tinyeffnet, default (AdamW + average, stem stride 1), 24 epochs, code of e50119d "
         "(epochs 2-14: tests beside it)",
         "cifar10_default_amd_2026-12-07.jsonl"),
        ("tinyeffnet, faithful SGD baseline (SGD, paper's init and stem), 60 epochs",
         "cifar10_sgd_baseline_2026-12-07.jsonl"),
    ],
}


def read_rows(path):
    """The per-epoch rows of a metrics.jsonl."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(METRICS.parent / "cifar10_accuracy_vs_time.png"))
    args = parser.parse_args()
    panels = {panel: {label: read_rows(METRICS / name) for label, name in runs} for panel, runs in RUNS.items()}
    plot_accuracy_vs_time(panels, args.out, title="B0 on CIFAR-10, the shared copy")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
