"""Training end to end through the command line, on the learnable synthetic set with a tiny network:
it learns, it writes its run folder, it resumes exactly, it survives signals and bad input."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tinyeffnet import engine, train
from tinyeffnet.checkpoint import load_checkpoint
from tinyeffnet.cli import run_cli
from tinyeffnet.data import normalize, synthetic_dataset
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.layers import BatchNorm, recalibrate_batchnorm
from tinyeffnet.model import EfficientNet
from tinyeffnet.scaling import ModelConfig

TINY = ["--dataset", "synthetic", "--phi", "0", "--width", "0.25", "--depth", "0.1", "--subset", "1024",
        "--test-subset", "256", "--batch-size", "64"]
METRIC_KEYS = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds", "images_per_second"}


def run(*args, check=True):
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 3-epoch run shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("run") / "a"
    result = run("tinyeffnet.train", *TINY, "--epochs", "3", "--out", str(out))
    return out, result


def test_training_learns_and_writes_the_run_folder(trained):
    out, result = trained
    for name in ("config.json", "metrics.jsonl", "latest.npz", "best.npz", "curves.png"):
        assert (out / name).is_file(), name
    rows = metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all(METRIC_KEYS <= set(r) for r in rows)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["test_acc"] > 0.6          # chance is 0.1
    assert "parameters" in result.stdout and "estimate" in result.stdout and "synthetic" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["width"] == 0.25 and config["classes"][0]


def test_evaluate_and_predict(trained, tmp_path):
    out, _ = trained
    info = json.loads(run("tinyeffnet.evaluate", str(out), "--json", "--out", str(tmp_path)).stdout)
    assert info["images"] == len(synthetic_dataset().test_labels)    # the whole test set, not --test-subset
    assert info["test_acc"] > 0.6
    assert (tmp_path / "confusion.png").is_file() and len(info["per_class"]) == 10
    ds = synthetic_dataset()
    image = tmp_path / "x.png"
    Image.fromarray(ds.test_images[0]).resize((57, 41)).save(image)   # any size Pillow reads
    line = json.loads(run("tinyeffnet.predict", str(image), "--checkpoint", str(out), "--json").stdout)
    assert len(line["top5"]) == 5 and line["image"] == str(image)
    probs = [t["probability"] for t in line["top5"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    result = run("tinyeffnet.predict", str(bad), "--checkpoint", str(out), check=False)
    assert result.returncode == 2 and "cannot read image" in result.stderr and "Traceback" not in result.stderr


def signal_when(args, prefix, sig):
    """Start ``python -m tinyeffnet.train *args``, send it ``sig`` when it prints a line starting with
    ``prefix``, and return (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "tinyeffnet.train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith(prefix):
            proc.send_signal(sig)
            break
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def test_interrupt_and_resume_equal_an_uninterrupted_run(trained, tmp_path):
    """SIGINT mid-run: the step finishes, latest.npz is written, exit 130; resuming ends bitwise equal."""
    straight, _ = trained
    out = tmp_path / "b"
    returncode, err = signal_when([*TINY, "--epochs", "3", "--out", str(out)], "epoch 1:", signal.SIGINT)
    assert returncode == 130, err
    assert "resume with: python -m tinyeffnet.train --resume" in err
    _, _, _, training = load_checkpoint(out / "latest.npz")
    assert training["epoch"] == 1 and training["step_in_epoch"] >= 1      # saved in the middle of epoch 2
    _, _, _, training = load_checkpoint(out / "latest.npz")
    resumed = run("tinyeffnet.train", "--resume", str(out))
    assert (f"start     resuming {out} from epoch 2/3, step {training['step_in_epoch']} (checkpoint "
            f"{out / 'latest.npz'})") in resumed.stdout
    a = load_checkpoint(straight / "latest.npz")[1]
    b = load_checkpoint(out / "latest.npz")[1]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert [r["test_acc"] for r in metrics(out)] == [r["test_acc"] for r in metrics(straight)]


def test_sigterm_exits_143_with_a_checkpoint(tmp_path):
    out = tmp_path / "c"
    returncode, err = signal_when([*TINY, "--epochs", "50", "--out", str(out)], "estimate", signal.SIGTERM)
    assert returncode == 143, err
    assert load_checkpoint(out / "latest.npz")[3]["epoch"] == 0


def test_a_finished_run_says_how_to_extend_it_and_writes_nothing(trained):
    out, _ = trained
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    result = run("tinyeffnet.train", "--resume", str(out))
    assert result.stdout == f"{out} already finished its 3 epochs; to train longer, add --epochs M (M > 3)\n"
    shorter = run("tinyeffnet.train", "--resume", str(out), "--epochs", "2", check=False)
    assert shorter.returncode == 2 and "--epochs 2 is fewer than the 3 epochs" in shorter.stderr
    assert "add --epochs M (M > 3)" in shorter.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_bad_input_through_the_command_line_is_one_line_without_traceback(tmp_path):
    result = run("tinyeffnet.train", "--dataset", "synthetic", "--epochs", "0", "--out", str(tmp_path / "r"),
                 check=False)
    assert result.returncode == 2 and result.stderr.startswith("error: argument --epochs: must be at least 1, got 0")
    assert result.stderr.count("\n") == 1 and not (tmp_path / "r").exists()


def exit_status(argv):
    """The exit status of ``python -m tinyeffnet.train *argv``, run in this process."""
    try:
        return run_cli(train.main, argv)
    except SystemExit as e:            # argparse's errors
        return e.code


@pytest.fixture
def in_folder(tmp_path, monkeypatch):
    """Run ``train.main`` in this process, in an empty folder, leaving the process's signal handlers alone."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["--phi", "-1"], "argument --phi: must be a finite number ≥ 0, got '-1'"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--resolution", "8"], "too small"),
    (["--resume", "/nonexistent/run"], "nothing to resume"),
    (["--subset", "999999"], "--subset 999999 is more than the 2,000 training images of synthetic"),
    (["--subset", "999999", "--per-class", "5"], "--subset 999999 is more than the 2,000 training images of synthetic"),
    (["--test-subset", "501"], "--test-subset 501 is more than the 500 test images of synthetic"),
    (["--per-class", "201"], "--per-class 201 asks for more images of class 'class_0' than the training images"),
    (["--subset", "100", "--per-class", "20"], "than the first 100 training images of synthetic hold"),
    (["--subset", "100", "--batch-size", "128"], "--batch-size 128 is more than the 100 training images selected"),
    (["--freeze-body"], "add --pretrained"),
])
@pytest.mark.parametrize("out", [None, "new/run"])
def test_bad_input_exits_2_and_leaves_no_run_folder(args, message, out, in_folder, capsys):
    """Nothing is created, neither the default runs/<…> nor an --out (and its missing parents)."""
    assert exit_status(["--dataset", "synthetic", *args, *(["--out", out] if out else [])]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1
    assert list(in_folder.iterdir()) == []


def test_missing_data_says_where_it_looked_and_leaves_no_run_folder(tmp_path):
    """No data, and the download fails (offline) or finds nothing: the error names the folder and --data-dir."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    result = subprocess.run([sys.executable, "-m", "tinyeffnet.train", "--dataset", "cifar10", "--data-dir",
                             str(data_dir)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 2 and str(data_dir) in result.stderr and "--data-dir" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


def failing(exception):
    def fail(*args, **kwargs):
        raise exception
    return fail


@pytest.mark.parametrize("where, exception, status", [
    ("EfficientNet", TinyEffNetError("the model could not be built"), 2),       # building the model
    ("Trainer", TinyEffNetError("the trainer could not start"), 2),             # after config.json and the plan
    ("Trainer", engine.Interrupted(signal.SIGINT), 130),                        # Ctrl-C before the first step
    ("print_estimate", engine.Interrupted(signal.SIGTERM), 143),
])
def test_a_failed_start_removes_the_folder_it_created(where, exception, status, in_folder, monkeypatch, capsys):
    monkeypatch.setattr(train, where, failing(exception))
    assert exit_status([*TINY, "--out", "runs/a/b"]) == status
    assert list(in_folder.iterdir()) == []
    err = capsys.readouterr().err
    assert ("interrupted before training started" if status != 2 else str(exception)) in err
    assert exit_status(TINY) == status                       # the default runs/<dataset>-<model>-<time>
    assert list(in_folder.iterdir()) == []


def test_a_failed_start_never_removes_a_folder_that_existed(in_folder, monkeypatch):
    mine = in_folder / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    monkeypatch.setattr(train, "Trainer", failing(engine.Interrupted(signal.SIGINT)))
    assert exit_status([*TINY, "--out", str(mine)]) == 130
    assert (mine / "notes.txt").read_text() == "keep me"


def test_corrupt_checkpoint_is_refused_and_left_alone(trained, tmp_path):
    out, _ = trained
    bad = tmp_path / "latest.npz"
    data = (out / "latest.npz").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    result = run("tinyeffnet.train", "--resume", str(bad), check=False)
    assert result.returncode == 2 and "not a readable tinyeffnet checkpoint" in result.stderr
    assert bad.read_bytes() == data[: len(data) // 2]


def test_non_finite_loss_stops_with_a_clear_message(tmp_path):
    result = run("tinyeffnet.train", *TINY, "--epochs", "1", "--lr", "1e30", "--out", str(tmp_path / "r"),
                 check=False)
    assert result.returncode == 2 and "loss became" in result.stderr and "--lr" in result.stderr


def test_recalibration_averages_batch_statistics():
    """The remedy for short runs: running statistics become the exact mean of the batches' statistics."""
    config = ModelConfig(name="t", width=0.25, depth=0.1, resolution=16, dropout=0.0, num_classes=3, drop_connect=0.0)
    model = EfficientNet(config, dtype=np.float64)
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=i, size=(4, 16, 16, 3)) for i in range(3)]
    recalibrate_batchnorm(model, batches)
    model.train()
    means = []
    for x in batches:                      # the stem's batch norm sees the stem conv's output
        h = model.stem.forward(x)
        means.append(h.reshape(-1, h.shape[-1]).mean(axis=0))
    np.testing.assert_allclose(model.stem_bn.buffers["running_mean"], np.mean(means, axis=0), rtol=1e-10)
    assert all(bn.momentum_override is None for _, bn in model.named_layers() if isinstance(bn, BatchNorm))


def test_short_run_eval_matches_train_mode_accuracy():
    """After a few dozen steps the eval-mode accuracy (running statistics) is close to the train-mode one."""
    from tinyeffnet.kernels.loss import cross_entropy_backward, cross_entropy_forward
    from tinyeffnet.optim import SGD
    ds = synthetic_dataset(train_size=1024, test_size=256)
    mean, std = ds.train_images.reshape(-1, 3).mean(0) / 255, ds.train_images.reshape(-1, 3).std(0) / 255
    config = ModelConfig(name="t", width=0.25, depth=0.1, resolution=32, dropout=0.0, num_classes=10)
    model = EfficientNet(config)
    opt = SGD(model.named_parameters(), model.named_grads(), lr=0.05)
    for step in range(40):
        idx = np.arange(step * 64, step * 64 + 64) % 1024
        x, y = normalize(ds.train_images[idx], mean, std), ds.train_labels[idx]
        model.train()
        model.zero_grad()
        _, probs = cross_entropy_forward(model.forward(x), y)
        model.backward(cross_entropy_backward(probs, y))
        opt.step()
    recalibrate_batchnorm(model, [normalize(ds.train_images[i * 64:(i + 1) * 64], mean, std) for i in range(10)])
    xt, yt = normalize(ds.test_images, mean, std), ds.test_labels
    train_mode = np.mean(np.argmax(model.train().forward(xt), axis=1) == yt)
    eval_mode = np.mean(np.argmax(model.eval().forward(xt), axis=1) == yt)
    assert train_mode > 0.5 and abs(eval_mode - train_mode) < 0.1
