"""Plots: the misclassified-image grid shows exactly the wrong predictions, in order, the RandAugment grid the
images it was given and their augmentations; every plot writes a PNG."""

import numpy as np
from PIL import Image

from tinyeffnet.augment import rand_augment
from tinyeffnet.plots import (plot_accuracy_vs_time, plot_augmented_samples, plot_misclassified,
                              plot_throughput_vs_resolution)


def test_misclassified_grid_shows_the_wrong_predictions(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    predictions = np.array([0, 2, 2, 1, 1, 0, 0, 1, 1, 0])
    path = tmp_path / "wrong.png"
    shown = plot_misclassified(images, labels, predictions, ["cat", "dog", "ship"], str(path), count=3, columns=2)
    assert shown == [1, 3, 5]                       # the first three wrong ones, in test-set order
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width > 100 and png.height > 100


def test_misclassified_grid_with_nothing_wrong(tmp_path):
    images = np.zeros((4, 8, 8, 3), np.uint8)
    labels = np.arange(4)
    path = tmp_path / "none.png"
    assert plot_misclassified(images, labels, labels.copy(), list("abcd"), str(path)) == []
    assert path.is_file()


def test_accuracy_vs_time_writes_a_png(tmp_path):
    rows = [dict(epoch=e, seconds=60.0, eval_seconds=6.0, test_acc=0.1 * e) for e in (1, 2, 3)]
    path = tmp_path / "time.png"
    drawn = plot_accuracy_vs_time({"a": rows, "b": rows[:2]}, path)
    assert path.read_bytes().startswith(b"\x89PNG")
    np.testing.assert_allclose(drawn["a"], [1.1, 2.2, 3.3])            # cumulative minutes, evaluation included
    by_epoch = [{"epoch": e, "test_acc": 0.1 * e} for e in (1, 2, 3)]   # no timings: another machine's run
    drawn = plot_accuracy_vs_time({"a": rows, "b": by_epoch}, tmp_path / "epoch.png", against="epoch")
    assert [list(x) for x in drawn.values()] == [[1, 2, 3], [1, 2, 3]]


def test_the_accuracy_legend_is_clear_of_the_curves(tmp_path, monkeypatch):
    """The legend sits outside the axes (below them), so no curve can run under it, wherever the runs end."""
    from tinyeffnet import plots
    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.append(fig))
    rows = [dict(epoch=e, seconds=60.0, eval_seconds=6.0, test_acc=0.1 * e) for e in (1, 2, 3)]
    plots.plot_accuracy_vs_time({"a run with a long label": rows, "b": rows[:1]}, tmp_path / "x.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = saved[0]
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    legend, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend.y1 < axes_box.y0                  # entirely below the plotting area


def test_runs_of_two_machines_are_drawn_in_panels_side_by_side(tmp_path, monkeypatch):
    """{panel: {label: rows}} draws one panel per machine, each run in its own panel with the legend below it."""
    from tinyeffnet import plots
    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.append(fig))
    rows = [dict(epoch=e, seconds=60.0, eval_seconds=6.0, test_acc=0.1 * e) for e in (1, 2, 3)]
    drawn = plots.plot_accuracy_vs_time({"machine A": {"a": rows, "b": rows[:2]}, "machine B": {"c": rows[:1]}},
                                        tmp_path / "x.png")
    np.testing.assert_allclose(drawn["c"], [1.1])
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = saved[0]
    renderer = FigureCanvasAgg(fig).get_renderer()
    assert [ax.get_title() for ax in fig.axes] == ["machine A", "machine B"]
    assert [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes] == [["a", "b"], ["c"]]
    for ax in fig.axes:
        assert ax.get_legend().get_window_extent(renderer).y1 < ax.get_window_extent(renderer).y0


def test_augmented_samples_show_each_image_then_randaugment_at_each_magnitude(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    path = tmp_path / "augmented.png"
    grid = plot_augmented_samples(images, [0, 5, 15], str(path), seed=4)
    assert grid.shape == (3, 4, 16, 16, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[:, 0], images)
    for j, m in enumerate([0, 5, 15], start=1):
        np.testing.assert_array_equal(grid[:, j], rand_augment(images, m, np.random.default_rng([4, j])))
    assert path.read_bytes().startswith(b"\x89PNG")


def test_throughput_vs_resolution_writes_a_png_with_and_without_pytorch(tmp_path):
    points = [dict(model=model, kind=kind, resolution=size, batch=32, images_per_second=1000.0 / size,
                   **({"torch_images_per_second": 500.0 / size} if model == "b0" else {}))
              for model in ("b0", "v2-b0") for kind in ("train", "infer") for size in (32, 64, 128)]
    for name, rows in (("both.png", points), ("inference.png", [p for p in points if p["kind"] == "infer"])):
        plot_throughput_vs_resolution(rows, tmp_path / name)
        with Image.open(tmp_path / name) as png:
            assert png.format == "PNG" and png.width > 300


def test_the_readme_figure_is_drawn_from_the_committed_metrics(tmp_path):
    """``tools/plot_cifar10.py`` redraws docs/cifar10_accuracy_vs_time.png: every run it names is in docs/metrics,
    and each panel holds the runs of one machine."""
    import subprocess
    import sys
    from pathlib import Path
    tool = Path(__file__).resolve().parents[1] / "tools" / "plot_cifar10.py"
    out = tmp_path / "figure.png"
    result = subprocess.run([sys.executable, str(tool), "--out", str(out)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > png.height     # two panels side by side
