"""PNG figures: a run's loss and accuracy curves, a confusion matrix, misclassified images, images under
RandAugment, and the benchmark's throughput against resolution. Written atomically.

Figures are built as ``matplotlib.figure.Figure`` objects, not through pyplot: nothing here touches
matplotlib's global backend or open-figure list, so a notebook keeps its inline plots. matplotlib is
imported on the first figure, not with this module: a training process that has not plotted yet holds
about 33 MiB less (measured with ``resource.getrusage``).
"""

import io
import itertools

import numpy as np

from tinyeffnet.augment import NUM_OPS, rand_augment
from tinyeffnet.files import atomic_write


def new_figure(rows=1, columns=1, sharey=False, **figure_options):
    """A matplotlib Figure and its (rows × columns) axes array, without pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(**figure_options)
    return fig, fig.subplots(rows, columns, squeeze=False, sharey=sharey)


def save_figure(fig, path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def plot_curves(history, path, title=""):
    """history: the per-epoch metric rows of ``metrics.jsonl``."""
    epochs = [row["epoch"] for row in history]
    fig, axes = new_figure(1, 2, figsize=(10, 3.8))
    ax_loss, ax_acc = axes[0]
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train (with augmentation)")
    ax_loss.plot(epochs, [r["test_loss"] for r in history], "o-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in history], "o-", label="train (with augmentation)")
    ax_acc.plot(epochs, [100 * r["test_acc"] for r in history], "o-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def plot_confusion(matrix, classes, path, title="confusion matrix (test set)"):
    """matrix[i, j]: images of true class i predicted as j."""
    n = len(classes)
    fig, axes = new_figure(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n) if n <= 20 else (12, 11))
    ax = axes[0, 0]
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    if n <= 20:
        ax.set_xticks(range(n), classes, rotation=60, ha="right")
        ax.set_yticks(range(n), classes)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    save_figure(fig, path)


def plot_misclassified(images, labels, predictions, classes, path, count=24, columns=8,
                       title="misclassified test images"):
    """A grid of the first ``count`` images whose prediction is wrong, each titled "predicted (true)".

    images: (N, H, W, 3) uint8 as stored (not normalised); labels, predictions: (N,) class indices.
    Returns the indices of the images shown."""
    wrong = np.flatnonzero(np.asarray(predictions) != np.asarray(labels))[:count].tolist()
    rows = max(1, -(-len(wrong) // columns))
    fig, axes = new_figure(rows, columns, figsize=(1.5 * columns, 1.75 * rows))
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(images[i], interpolation="nearest")
        ax.set_title(f"{classes[predictions[i]]}\n({classes[labels[i]]})", fontsize=8, color="firebrick")
    fig.suptitle(f"{title}: predicted (true)" if wrong else f"{title}: none", fontsize=10)
    save_figure(fig, path)
    return wrong


def plot_accuracy_vs_time(runs, path, title="test accuracy against training time", against="minutes"):
    """runs: {label: the per-epoch rows of a run's ``metrics.jsonl``}, or {panel title: {label: rows}} for panels
    side by side (runs from different machines: minutes compare only within a panel). One line per run: test
    accuracy after each epoch against the cumulative wall time of its training steps and evaluations, in minutes,
    or with ``against="epoch"`` against the epoch (rows then need only ``epoch`` and ``test_acc``: runs from
    different machines compare). Returns {label: the x values drawn}."""
    panels = runs if all(isinstance(v, dict) for v in runs.values()) else {"": runs}
    fig, axes = new_figure(1, len(panels), figsize=(6.5 * len(panels), 4), sharey=True)
    drawn = {}
    colours = (f"C{i}" for i in itertools.count())      # one colour per run, across the panels too
    for ax, (panel, panel_runs) in zip(axes[0], panels.items()):
        for label, history in panel_runs.items():
            if against == "epoch":
                x = np.array([row["epoch"] for row in history])
            else:
                x = np.cumsum([row["seconds"] + row.get("eval_seconds", 0.0) for row in history]) / 60
            ax.plot(x, [100 * row["test_acc"] for row in history], "o-", markersize=3, label=label,
                    color=next(colours))
            drawn[label] = x
        xlabel = "epoch" if against == "epoch" else "minutes (training steps + evaluation)"
        ax.set(xlabel=xlabel, title=panel or title)
        ax.grid(alpha=0.3)
        ax.tick_params(labelleft=True)
        # below the axes, where no curve can run under it (runs of different lengths end anywhere in the plot)
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), frameon=False, fontsize=8)
    axes[0, 0].set(ylabel="test accuracy (%)")
    if len(panels) > 1:
        fig.suptitle(title)
    save_figure(fig, path)
    return drawn


def plot_augmented_samples(images, magnitudes, path, seed=0, title="RandAugment at several magnitudes"):
    """A grid with one row per image of ``images`` (N, H, W, 3) uint8: the image, then RandAugment of it at each
    magnitude of ``magnitudes`` (``augment.rand_augment``, column j drawn from a generator seeded by (seed, j)).

    Returns the grid's images, (N, 1 + len(magnitudes), H, W, 3) uint8."""
    columns = [images] + [rand_augment(images, m, np.random.default_rng([seed, j]))
                          for j, m in enumerate(magnitudes, start=1)]
    grid = np.stack(columns, axis=1)
    fig, axes = new_figure(len(images), len(columns), figsize=(1.3 * len(columns), 1.35 * len(images)))
    for ax in axes.flat:
        ax.axis("off")
    for i, row in enumerate(grid):
        for j, picture in enumerate(row):
            axes[i, j].imshow(picture, interpolation="nearest")
    for j, label in enumerate(["original"] + [f"m = {m:g}" for m in magnitudes]):
        axes[0, j].set_title(label, fontsize=8)
    fig.suptitle(f"{title} ({NUM_OPS} operations per image)", fontsize=10)
    save_figure(fig, path)
    return grid


def plot_throughput_vs_resolution(points, path, title="images/s against resolution"):
    """points: the rows of ``bench --sweep`` (``model``, ``kind``, ``resolution``, ``batch``,
    ``images_per_second`` unless the point failed and, with PyTorch beside it, ``torch_images_per_second``).
    One panel per kind (training, inference), one colour per (model, batch): tinyeffnet solid, PyTorch
    dashed; log scale."""
    kinds = [kind for kind in ("train", "infer") if any(p["kind"] == kind for p in points)]
    fig, axes = new_figure(1, len(kinds), figsize=(6 * len(kinds), 4.2))
    for ax, kind in zip(axes[0], kinds):
        rows = [p for p in points if p["kind"] == kind and "images_per_second" in p]   # not a failed point
        series = sorted({(p["model"], p["batch"]) for p in rows})
        for colour, (model, batch) in enumerate(series):
            line = sorted((p for p in rows if (p["model"], p["batch"]) == (model, batch)),
                          key=lambda p: p["resolution"])
            sizes = [p["resolution"] for p in line]
            ax.plot(sizes, [p["images_per_second"] for p in line], "o-", color=f"C{colour}",
                    label=f"{model}, batch {batch}")
            theirs = [(p["resolution"], p["torch_images_per_second"]) for p in line
                      if p.get("torch_images_per_second") is not None]
            if theirs:
                ax.plot(*zip(*theirs), "s--", color=f"C{colour}", alpha=0.7, label=f"{model}, batch {batch}, PyTorch")
        ax.set_yscale("log")
        ax.set_xticks(sorted({p["resolution"] for p in rows}))
        ax.set(xlabel="image side (pixels)", ylabel="images/s",
               title="training step" if kind == "train" else "inference (eval mode)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)
