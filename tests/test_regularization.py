"""RandAugment and Mixup in training (issue 19): the batches they change and the ones they must not, the step
on soft targets, the flags, and one epoch end to end. Training runs go through ``train.main`` in this process,
on the synthetic set with a tiny network."""

import json
import signal

import numpy as np
import pytest

from tinyeffnet import engine, train
from tinyeffnet.augment import rand_augment
from tinyeffnet.cli import build_config
from tinyeffnet.data import normalize, random_crop_flip
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.model import EfficientNet
from tinyeffnet.optim import SGD
from tinyeffnet.scaling import ModelConfig

TINY = ["--dataset", "synthetic", "--phi", "0", "--width", "0.25", "--depth", "0.1", "--subset", "256",
        "--test-subset", "64", "--batch-size", "64", "--epochs", "1"]
K = 10                                                            # the synthetic set's classes
SEED, EPOCH, INDEX, BATCH = 3, 1, 2, 64


@pytest.fixture(autouse=True)
def keep_signal_handlers(monkeypatch):
    """``train.main`` and ``Trainer`` install SIGINT/SIGTERM handlers; leave this process's alone."""
    monkeypatch.setattr(signal, "signal", lambda *args: None)


@pytest.fixture(scope="module")
def data():
    args = train.parse_args(TINY)
    return train.prepare_data(args, build_config(args, num_classes=K).resolution)


def crops(data):
    """The batch's images as the crop and flip alone leave them (what every run did before issue 19)."""
    idx = engine.batch_indices(SEED, EPOCH, INDEX, len(data.train_labels), BATCH)
    return random_crop_flip(data.train_images[idx], np.random.default_rng([SEED, EPOCH, INDEX])), idx


def test_a_batch_without_randaugment_or_mixup_is_the_crop_and_flip_alone_bit_for_bit(data):
    x, y, targets = engine.augmented_batch(data, SEED, EPOCH, INDEX, BATCH)
    images, idx = crops(data)
    np.testing.assert_array_equal(x, normalize(images, data.mean, data.std))
    np.testing.assert_array_equal(y, data.train_labels[idx])
    assert targets is None


def test_randaugment_runs_on_the_same_crops_from_its_own_generator(data):
    x, y, targets = engine.augmented_batch(data, SEED, EPOCH, INDEX, BATCH, magnitude=9)
    images, idx = crops(data)
    own = np.random.default_rng([SEED, EPOCH, INDEX, engine.RANDAUGMENT_STREAM])
    np.testing.assert_array_equal(x, normalize(rand_augment(images, 9, own), data.mean, data.std))
    np.testing.assert_array_equal(y, data.train_labels[idx])
    assert targets is None


def test_mixup_gives_soft_targets_of_the_batch_labels(data):
    x, y, targets = engine.augmented_batch(data, SEED, EPOCH, INDEX, BATCH, mixup_alpha=0.2)
    assert x.dtype == np.float32 and targets.shape == (BATCH, K) and targets.dtype == np.float32
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(targets[np.arange(BATCH), y] >= 0.5)                # y: the label of the dominant image
    assert np.all((targets > 0).sum(axis=1) <= 2)
    _, _, with_randaugment = engine.augmented_batch(data, SEED, EPOCH, INDEX, BATCH, magnitude=9, mixup_alpha=0.2)
    np.testing.assert_array_equal(with_randaugment, targets)         # Mixup's λ does not depend on RandAugment


def tiny_model():
    config = ModelConfig(name="t", width=0.25, depth=0.1, resolution=16, dropout=0.0, num_classes=3, drop_connect=0.0)
    return EfficientNet(config, seed=0)


def test_a_step_on_one_hot_targets_is_the_step_on_labels_and_a_mixed_one_is_not():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 16, 16, 3), dtype=np.float32), np.array([0, 1, 2, 1])
    models = [tiny_model() for _ in range(3)]
    targets = [None, np.eye(3, dtype=np.float32)[y], np.eye(3, dtype=np.float32)[y[::-1]] * 0.3
               + np.eye(3, dtype=np.float32)[y] * 0.7]
    losses = [engine.train_step(m, SGD(m.named_parameters(), m.named_grads(), lr=0.1), x, y, 0.1, 0.1, targets=t)
              for m, t in zip(models, targets)]
    assert losses[0] == losses[1] and losses[2][0] != losses[0][0]
    assert losses[2][1] == losses[0][1]                               # correct: counted against y
    labels, one_hot, mixed = (m.named_parameters() for m in models)
    for name, p in labels.items():
        np.testing.assert_array_equal(one_hot[name], p, err_msg=name)
    assert any(not np.array_equal(mixed[name], p) for name, p in labels.items())


def test_the_trainer_reads_its_regularization_from_the_flags(data):
    args = train.parse_args([*TINY, "--randaugment", "9", "--mixup", "0.2"])
    train.fill_recipe_defaults(args)
    config = build_config(args, num_classes=K)
    trainer = engine.Trainer(args, config, data, EfficientNet(config, args.seed), "unused")
    assert trainer.regularization(0) == (9.0, 0.2)
    x, y, targets = trainer.batch(EPOCH, INDEX)
    want = engine.augmented_batch(data, args.seed, EPOCH, INDEX, args.batch_size, 9.0, 0.2)
    for got, expected in zip((x, y, targets), want):
        np.testing.assert_array_equal(got, expected)


def test_one_epoch_with_randaugment_and_mixup_ends_with_a_finite_loss(tmp_path, capsys):
    assert train.main([*TINY, "--randaugment", "9", "--mixup", "0.2", "--out", str(tmp_path)]) == 0
    assert ("augmentation: random crop and flip, RandAugment magnitude 9 (2 operations per image), "
            "Mixup α 0.2 (soft targets)") in capsys.readouterr().out
    (row,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["test_loss"])
    saved = json.loads((tmp_path / "config.json").read_text())["args"]
    assert (saved["randaugment"], saved["mixup"]) == (9.0, 0.2)


@pytest.mark.parametrize("flags, message", [
    (["--randaugment", "-1"], "argument --randaugment: must be a finite number ≥ 0, got '-1'"),
    (["--mixup", "nan"], "argument --mixup: must be a finite number ≥ 0, got 'nan'"),
])
def test_bad_numbers_are_refused_by_the_parser(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train.main([*TINY, "--out", str(tmp_path / "r"), *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, message", [
    (["--randaugment", "9", "--freeze-body"], "--randaugment augments training images, but --freeze-body trains"),
    (["--mixup", "0.2", "--freeze-body"], "--mixup augments training images, but --freeze-body trains"),
    (["--mixup", "0.2", "--num-classes", "20"], "--mixup blends the labels of synthetic's 10 classes, but "
                                                "--num-classes 20"),
])
def test_flags_that_cannot_work_together_say_which(flags, message, tmp_path):
    with pytest.raises(TinyEffNetError, match=message):
        train.main([*TINY, "--out", str(tmp_path / "r"), *flags])
    assert not (tmp_path / "r").exists()
