"""Transfer learning from the ImageNet Lite0 weights (``tinyeffnet.transfer``, ``train --pretrained``): the
classifier is replaced and the body kept, ``--freeze-body`` touches nothing but the classifier, the runs'
checkpoints work with the other commands, the ImageNet preprocessing is recorded and used, and flags that
cannot go together are refused."""

import argparse
import json
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from test_train import signal_when

from tinyeffnet import engine, train, transfer
from tinyeffnet.checkpoint import load_checkpoint, load_model
from tinyeffnet.data import resize_images, synthetic_dataset
from tinyeffnet.model import EfficientNet
from tinyeffnet.pretrained import PREPROCESS, load_pretrained
from tinyeffnet.scaling import ModelConfig, config_for_variant

RESOLUTION = 32                     # lite0's smallest input (output stride 32): fast
PRETRAINED = ["--dataset", "synthetic", "--variant", "lite0", "--pretrained", "--resolution", str(RESOLUTION),
              "--batch-size", "32"]
PROBE = [*PRETRAINED, "--freeze-body", "--subset", "256", "--test-subset", "128"]
PROBE_EPOCHS = 6                    # steps of the probe take microseconds; the extraction takes the time


def run(*args, check=True):
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def imagenet():
    return load_pretrained("lite0").state_dict()


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory):
    """One linear-probe run shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("probe") / "run"
    result = run("tinyeffnet.train", *PROBE, "--epochs", str(PROBE_EPOCHS), "--out", str(out))
    return out, result


def test_pretrained_model_has_a_new_head_on_the_imagenet_body(imagenet):
    config = config_for_variant("lite0", num_classes=10, resolution=RESOLUTION)
    state = transfer.pretrained_model(config).state_dict()
    assert state["classifier.weight"].shape == (1280, 10) and state["classifier.bias"].shape == (10,)
    assert set(state) == set(imagenet) and imagenet["classifier.weight"].shape == (1280, 1000)
    for name, value in state.items():
        if transfer.in_classifier(name):   # new, and zero
            assert not value.any(), name
        else:               # ImageNet's, batch-norm running statistics included
            np.testing.assert_array_equal(value, imagenet[name], err_msg=name)


def test_linear_probe_changes_only_the_classifier(probe_run, imagenet):
    out, result = probe_run
    assert "features" in result.stdout and "body frozen" in result.stdout
    config, state, optimizer_state, training = load_checkpoint(out / "latest.npz")
    assert (config.name, config.num_classes, config.resolution) == ("lite0", 10, RESOLUTION)
    for name, value in state.items():
        if transfer.in_classifier(name):
            assert value.any(), f"{name} did not train"
        else:
            np.testing.assert_array_equal(value, imagenet[name], err_msg=f"{name} changed")
    assert set(optimizer_state) == {"velocity.classifier.weight", "velocity.classifier.bias"}
    with np.load(out / transfer.FEATURES_FILE, allow_pickle=False) as npz:
        assert npz["train"].shape == (256, 1280) and npz["test"].shape == (128, 1280)
    assert training["history"][-1]["test_acc"] > 0.6          # chance is 0.1


def test_pretrained_preprocessing_is_recorded_and_used(probe_run, tmp_path):
    out, _ = probe_run
    _, _, _, training = load_checkpoint(out / "best.npz")
    assert np.allclose(training["preprocess"]["mean"], PREPROCESS["mean"])
    assert np.allclose(training["preprocess"]["std"], PREPROCESS["std"])
    recorded = json.loads((out / "config.json").read_text())["preprocess"]
    assert recorded == {key: training["preprocess"][key] for key in ("mean", "std")}
    # evaluate applies it: its accuracy is the one computed here with the ImageNet normalisation
    info = json.loads(run("tinyeffnet.evaluate", str(out), "--json", "--out", str(tmp_path)).stdout)
    ds = synthetic_dataset()
    mean, std = transfer.preprocessing()
    _, acc, _ = engine.evaluate(load_model(out / "best.npz"), resize_images(ds.test_images, RESOLUTION),
                                ds.test_labels, mean, std)
    assert info["test_acc"] == acc > 0.6


def test_prepare_data_normalises_as_the_weights_were_trained():
    args = train.parse_args(["--dataset", "synthetic", "--subset", "100", "--test-subset", "10", "--batch-size", "8",
                             "--pretrained"])
    data = train.prepare_data(args, RESOLUTION)
    np.testing.assert_allclose(data.mean, PREPROCESS["mean"], rtol=1e-6)
    np.testing.assert_allclose(data.std, PREPROCESS["std"], rtol=1e-6)
    scratch = train.prepare_data(argparse.Namespace(**{**vars(args), "pretrained": False}), RESOLUTION)
    assert not np.allclose(scratch.mean, data.mean)       # from scratch: the training images' own statistics


@pytest.mark.slow
def test_probe_checkpoint_predicts_and_exports(probe_run, tmp_path):
    from PIL import Image
    pytest.importorskip("safetensors")
    out, _ = probe_run
    image = tmp_path / "x.png"
    Image.fromarray(synthetic_dataset().test_images[0]).save(image)
    line = json.loads(run("tinyeffnet.predict", str(image), "--checkpoint", str(out), "--json").stdout)
    assert line["top5"][0]["name"].startswith("class_") and len(line["top5"]) == 5
    exported = tmp_path / "probe.safetensors"
    run("tinyeffnet.export", "--checkpoint", str(out), str(exported))
    again = json.loads(run("tinyeffnet.predict", str(image), "--checkpoint", str(exported), "--json").stdout)
    assert [t["name"] for t in again["top5"]] == [t["name"] for t in line["top5"]]


@pytest.mark.slow
def test_fine_tuning_trains_the_body_and_evaluates(tmp_path, imagenet):
    out = tmp_path / "fine"
    result = run("tinyeffnet.train", *PRETRAINED, "--subset", "64", "--test-subset", "64", "--epochs", "1",
                 "--out", str(out))
    assert "fine-tuning every layer" in result.stdout and f"lr {train.PRETRAINED_LR} " in result.stdout
    _, state, _, training = load_checkpoint(out / "latest.npz")
    assert not np.array_equal(state["stem.weight"], imagenet["stem.weight"])
    assert np.allclose(training["preprocess"]["mean"], PREPROCESS["mean"])
    info = json.loads(run("tinyeffnet.evaluate", str(out), "--json", "--out", str(tmp_path)).stdout)
    assert info["images"] == len(synthetic_dataset().test_labels)


@pytest.mark.slow
def test_interrupted_probe_resumes_to_the_same_weights(probe_run, tmp_path):
    """SIGINT after the first epoch: latest.npz is written, exit 130; the resumed run ends bitwise equal."""
    straight, _ = probe_run
    out = tmp_path / "b"
    returncode, err = signal_when([*PROBE, "--epochs", str(PROBE_EPOCHS), "--out", str(out)], "epoch 1:",
                                  signal.SIGINT)
    assert returncode == 130 and "resume with" in err, err
    assert "features  from" in run("tinyeffnet.train", "--resume", str(out)).stdout      # not extracted again
    a, b = load_checkpoint(straight / "latest.npz")[1], load_checkpoint(out / "latest.npz")[1]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_extracting_features_stops_with_a_clear_message(sig, tmp_path):
    out = tmp_path / "r"        # all 2,000 + 500 synthetic images: seconds of extraction
    returncode, err = signal_when([*PRETRAINED, "--freeze-body", "--out", str(out)], "features  2,000 train", sig)
    assert returncode == engine.EXIT_SIGNAL[sig] and "Traceback" not in err, err
    assert f"{sig.name}: interrupted before training started" in err and "no checkpoint was written" in err, err
    files = sorted(path.name for path in out.iterdir()) if out.exists() else []
    kept = files == ["config.json", transfer.FEATURES_FILE]
    assert kept or files == [], files              # without features to keep, a failed start leaves no folder
    assert ("run the command again to reuse the features finished so far" in err) == kept, err


def not_called(*args):
    raise AssertionError("extract_features was called")


def test_resumed_probe_reuses_the_features(probe_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    shutil.copytree(probe_run[0], out)
    monkeypatch.setattr(transfer, "extract_features", not_called)
    monkeypatch.setattr(signal, "signal", lambda *args: None)     # leave this process's handlers alone
    assert train.main(["--resume", str(out), "--epochs", str(PROBE_EPOCHS + 1)]) == 0
    assert f"features  from {out / transfer.FEATURES_FILE}: 256/256 train, 128/128 test" in capsys.readouterr().out
    assert load_checkpoint(out / "latest.npz")[3]["epoch"] == PROBE_EPOCHS + 1


# --- the features cache, on a tiny random body ----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_body():
    """A tiny random network and synthetic splits: 150 training images (3 batches of 64, the last short), 20 test."""
    config = ModelConfig(name="t", width=0.25, depth=0.1, resolution=32, dropout=0.0, num_classes=10)
    ds = synthetic_dataset(train_size=150, test_size=20)
    return EfficientNet(config), dict(train=(ds.train_images, ds.train_labels), test=(ds.test_images, ds.test_labels))


def features(tiny_body, path, mean_shift=0.0, selection=None):
    """The tiny body's features of its splits, cached at ``path``: name → (N, F)."""
    model, splits = tiny_body
    mean, std = transfer.preprocessing()
    return transfer.cached_features(path, model, splits, mean + mean_shift, std, selection or dict(dataset="synthetic"))


@pytest.fixture(scope="module")
def extracted(tiny_body, tmp_path_factory):
    """The features extracted in one go, and their cache file."""
    path = tmp_path_factory.mktemp("extracted") / transfer.FEATURES_FILE
    return features(tiny_body, path), path


def test_features_are_cached_with_their_labels_and_reused(tiny_body, extracted, monkeypatch, capsys):
    expected, path = extracted
    _, splits = tiny_body
    with np.load(path, allow_pickle=False) as npz:
        for name, (_, labels) in splits.items():
            np.testing.assert_array_equal(npz[name], expected[name])
            np.testing.assert_array_equal(npz[name + "_labels"], labels)
    monkeypatch.setattr(transfer, "extract_features", not_called)
    again = features(tiny_body, path)
    assert "features  from" in capsys.readouterr().out
    for name in expected:
        np.testing.assert_array_equal(again[name], expected[name])


def test_interrupted_extraction_keeps_the_finished_batches(tiny_body, extracted, tmp_path, monkeypatch, capsys):
    """Ctrl-C in the third batch: the cache keeps two batches, and the next run computes only the rest."""
    calls, body_layers = [], transfer.body_layers

    def stop_in_third_batch(x):
        calls.append(len(x))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return x

    monkeypatch.setattr(transfer, "body_layers", lambda model: [*body_layers(model), stop_in_third_batch])
    path = tmp_path / transfer.FEATURES_FILE
    with pytest.raises(KeyboardInterrupt):
        features(tiny_body, path)
    assert "kept the features finished so far" in capsys.readouterr().err
    width = tiny_body[0].config.head_channels
    with np.load(path, allow_pickle=False) as npz:
        assert npz["train"].shape == (2 * transfer.FEATURE_BATCH_SIZE, width) and npz["test"].shape == (0, width)
    monkeypatch.undo()
    resumed = features(tiny_body, path)
    assert "22 train images (from image 129 on)" in capsys.readouterr().out
    for name, expected in extracted[0].items():
        np.testing.assert_array_equal(resumed[name], expected, err_msg=name)


@pytest.mark.parametrize("change, differs", [
    (dict(mean_shift=0.01), "preprocess"),
    (dict(selection=dict(dataset="synthetic", subset=150)), "data"),
])
def test_a_cache_for_another_key_is_recomputed(change, differs, tiny_body, extracted, tmp_path, capsys):
    path = tmp_path / transfer.FEATURES_FILE
    shutil.copy(extracted[1], path)
    features(tiny_body, path, **change)
    out = capsys.readouterr().out
    assert f"it differs in {differs}" in out and "150 train images through the frozen body" in out, out
    features(tiny_body, path, **change)
    assert "features  from" in capsys.readouterr().out             # the cache now holds the new key's features


@pytest.mark.parametrize("damage", [lambda b: b[:len(b) // 2], lambda b: b"not a zip", lambda b: b[:200] + b[201:]],
                         ids=["truncated", "not-a-zip", "a-byte-missing"])
def test_an_unreadable_cache_is_recomputed(damage, tiny_body, extracted, tmp_path, capsys):
    path = tmp_path / transfer.FEATURES_FILE
    path.write_bytes(damage(extracted[1].read_bytes()))
    recomputed = features(tiny_body, path)
    assert "is not a readable features file" in capsys.readouterr().out
    for name, expected in extracted[0].items():
        np.testing.assert_array_equal(recomputed[name], expected, err_msg=name)


@pytest.mark.parametrize("args, message", [
    (["--variant", "lite0", "--freeze-body"], "--freeze-body trains only a new classifier"),
    (["--phi", "0", "--pretrained"], "--phi names none"),
    (["--pretrained"], "use --variant lite0 --pretrained"),
    (["--variant", "b0", "--pretrained"], "no ImageNet weights are packaged"),
    (["--variant", "lite0", "--pretrained", "--width", "0.5"], "--width changes the architecture"),
    (["--variant", "lite0", "--pretrained", "--stem-stride", "1"], "--stem-stride 1"),
    (["--variant", "lite0", "--pretrained", "--per-class", "0"], "argument --per-class: must be at least 1"),
])
def test_bad_combinations_exit_2_with_a_clear_message(args, message, tmp_path):
    result = run("tinyeffnet.train", "--dataset", "synthetic", "--out", str(tmp_path / "r"), *args, check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
