"""Progressive learning (issue 19): the plan interpolated as Algorithm 1 says, epochs mapped to their stages,
training runs that change the image size and dropout stage by stage and resume exactly in the middle of the
plan, and bad flags refused. Training runs go through ``train.main`` in this process, on the synthetic set
with a tiny network whose CIFAR stem (stride 1) takes sizes from 16 up."""

import re
import signal

import numpy as np
import pytest
from runs import TIMING, interrupted_in_epoch_2, metrics

from tinyeffnet import data as datasets
from tinyeffnet import engine, progressive, train
from tinyeffnet.checkpoint import META, load_checkpoint
from tinyeffnet.cli import build_config, run_cli
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.progressive import Stage, default_min_size, make_plan, stage_at, stage_sizes

TINY = ["--dataset", "synthetic", "--phi", "0", "--width", "0.25", "--depth", "0.1", "--subset", "256",
        "--test-subset", "64", "--batch-size", "64"]
CIFAR_STEM = ["--stem-stride", "1"]                       # output stride 16: sizes 16 … 32
STAGE_KEYS = {"stage", "image_size"}


@pytest.fixture(autouse=True)
def keep_signal_handlers(monkeypatch):
    """``train.main`` installs SIGINT/SIGTERM handlers; leave this process's alone."""
    monkeypatch.setattr(signal, "signal", lambda *args: None)


def assert_same_checkpoints(a, b):
    for name in ("latest.npz", "best.npz"):
        with np.load(a / name) as x, np.load(b / name) as y:
            assert sorted(x.files) == sorted(y.files), name
            for key in x.files:
                if key != META:                                   # the meta holds each run's own arguments
                    np.testing.assert_array_equal(x[key], y[key], err_msg=f"{name}: {key}")


# --- the plan ------------------------------------------------------------------------------------------------
def test_the_plan_interpolates_each_value_from_the_first_stage_to_the_last():
    plan = make_plan(10, 4, sizes=(16, 32), dropout=(0.1, 0.3), magnitude=(5, 15), mixup_alpha=(0, 0.2))
    # By hand: t = 0, 1/3, 2/3, 1; epochs end at ⌊10·(i + 1)/4⌋ = 2, 5, 7, 10;
    # sizes 16, 21.3, 26.7, 32 → 16, 20, 28, 32.
    assert [s.epochs for s in plan] == [2, 3, 2, 3]
    assert [s.size for s in plan] == [16, 20, 28, 32]
    np.testing.assert_allclose([s.dropout for s in plan], [0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3], rtol=1e-12)
    np.testing.assert_allclose([s.magnitude for s in plan], [5, 5 + 10 / 3, 5 + 20 / 3, 15], rtol=1e-12)
    np.testing.assert_allclose([s.mixup_alpha for s in plan], [0, 0.2 / 3, 0.4 / 3, 0.2], rtol=1e-12)
    assert (plan[0].dropout, plan[-1].dropout, plan[-1].magnitude) == (0.1, 0.3, 15)    # the ends exactly


def test_one_stage_is_the_maximum_for_every_epoch():
    assert make_plan(5, 1, (16, 32), (0.1, 0.3), (5, 15), (0, 0.2)) == (Stage(5, 32, 0.3, 15, 0.2),)


def test_table_6_sizes_at_imagenet_scale():
    # The design file's reading of Algorithm 1: V2-S 128, 185.3, 242.7, 300; V2-M/L 128, 212, 296, 380.
    assert stage_sizes(128, 300, 4) == [128, 184, 244, 300]
    assert stage_sizes(128, 380, 4) == [128, 212, 296, 380]
    assert stage_sizes(16, 36, 3) == [16, 28, 36]                # 26 is halfway: rounded up
    assert stage_sizes(30, 33, 3) == [30, 32, 33]                # 31.5 → 32, within [30, 33]


def test_each_epoch_maps_to_its_stage():
    plan = make_plan(10, 4, (16, 32), (0.1, 0.3), (5, 15), (0, 0))
    assert [stage_at(plan, e)[0] for e in range(11)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3]   # 10 done: the last
    assert stage_at(plan, 4)[1] is plan[1]
    assert [s.epochs for s in make_plan(3, 3, (16, 32), (0, 0), (0, 0), (0, 0))] == [1, 1, 1]


def test_the_crop_shifts_each_stage_s_images_by_the_same_fraction():
    assert [progressive.crop_pad(size, 32) for size in (16, 20, 24, 28, 32)] == [2, 3, 3, 4, 4]   # 2.5, 3.5 up
    assert progressive.crop_pad(37, 37) == datasets.CROP_PAD


def test_the_default_first_size_keeps_table_6_s_proportion_above_the_output_stride():
    assert default_min_size(300, 32) == 128                    # the paper's, at its own scale
    assert default_min_size(128, 32) == 56                     # 54.6
    assert default_min_size(64, 16) == 28                      # 27.3
    assert default_min_size(32, 16) == 16                      # 13.7 → 12, below the CIFAR stem's stride 16
    assert default_min_size(32, 32) == 32                      # the paper's stem at 32×32: no smaller size


# --- training ------------------------------------------------------------------------------------------------
def test_a_two_stage_run_trains_at_each_size_and_evaluates_at_the_final_one(tmp_path, monkeypatch, capsys):
    steps, strengths, evaluated, resized = [], set(), [], []
    train_step, augmented_batch = engine.train_step, engine.augmented_batch
    evaluate, resize, crop = engine.evaluate, datasets.resize_images, datasets.random_crop_flip
    pads = set()

    def spy_step(model, optimizer, x, *args, **kwargs):
        steps.append((x.shape[1], model.dropout.rate))
        return train_step(model, optimizer, x, *args, **kwargs)

    def spy_batch(data, seed, epoch, index, batch_size, magnitude=0.0, mixup_alpha=0.0, crop_pad=datasets.CROP_PAD):
        strengths.add((data.train_images.shape[1], magnitude, mixup_alpha))
        return augmented_batch(data, seed, epoch, index, batch_size, magnitude, mixup_alpha, crop_pad)

    def spy_crop(images, rng, pad):
        pads.add((images.shape[1], pad))
        return crop(images, rng, pad)

    def spy_evaluate(model, images, *args, **kwargs):
        evaluated.append(images.shape[1])
        return evaluate(model, images, *args, **kwargs)

    def spy_resize(images, size):
        resized.append((len(images), size))
        return resize(images, size)

    monkeypatch.setattr(engine, "train_step", spy_step)
    monkeypatch.setattr(engine, "augmented_batch", spy_batch)
    monkeypatch.setattr(datasets, "random_crop_flip", spy_crop)
    monkeypatch.setattr(engine, "evaluate", spy_evaluate)
    monkeypatch.setattr(datasets, "resize_images", spy_resize)
    out = tmp_path / "run"
    assert train.main([*TINY, *CIFAR_STEM, "--epochs", "2", "--progressive", "--stages", "2", "--mixup-range", "0",
                       "0.4", "--out", str(out)]) == 0
    timing, trained = steps[:4], steps[4:]                   # two timed steps in each stage (the last stage first),
    assert [size for size, _ in timing] == [32, 32, 16, 16]  # then 4 steps an epoch
    assert trained == [(16, 0.1)] * 4 + [(32, 0.3)] * 4
    # RandAugment and Mixup of each stage; and batch norm's recalibration before each evaluation of this short run,
    # on batches at the final size without either
    assert strengths == {(16, 5, 0), (32, 15, 0.4), (32, 0.0, 0.0)}
    assert pads == {(16, 2), (32, 4)}                        # the crop's ±4 pixels at 32, the same fraction at 16
    assert evaluated == [32, 32]
    # prepare_dataset: the training and test images at the model's resolution; then the estimate times the stages
    # last to first, leaving the first stage's images cached for training, which resizes once per stage after that
    assert resized == [(256, 32), (64, 32), (256, 32), (256, 16), (256, 32)]
    rows = metrics(out)
    assert [(r["stage"], r["image_size"]) for r in rows] == [(1, 16), (2, 32)]
    text = capsys.readouterr().out
    assert ("stage     1/2: epoch 1, 16×16 images, dropout 0.1, RandAugment magnitude 5, Mixup α 0\n"
            "stage     2/2: epoch 2, 32×32 images, dropout 0.3, RandAugment magnitude 15, Mixup α 0.4\n") in text
    assert "augmentation: random crop and flip, then RandAugment and Mixup at each stage's strength (below)" in text
    assert "epoch 1: train (16×16) loss" in text and "epoch 2: train (32×32) loss" in text
    assert "s per step of 64 images in the stages left (timed in each)" in text
    config, _, _, training = load_checkpoint(out / "latest.npz")
    assert config.dropout == 0.3 and (training["stage"], training["image_size"]) == (2, 32)
    assert training["preprocess"]["resolution"] == 32


def test_resuming_in_the_middle_of_the_plan_continues_its_stage_and_equals_an_uninterrupted_run(
        tmp_path, monkeypatch, capsys):
    recipe = [*TINY, *CIFAR_STEM, "--epochs", "3", "--progressive", "--stages", "3", "--dropout-range", "0.1", "0.5",
              "--mixup-range", "0", "0.2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train.main([*recipe, "--out", str(straight)]) == 0
    interrupted_in_epoch_2(monkeypatch, [*recipe, "--out", str(resumed)])
    training = load_checkpoint(resumed / "latest.npz")[3]
    assert (training["epoch"], training["step_in_epoch"], training["stage"], training["image_size"]) == (1, 1, 2, 24)
    capsys.readouterr()
    assert train.main(["--resume", str(resumed)]) == 0
    assert f"from epoch 2/3, step 1, stage 2 (24×24) (checkpoint {resumed / 'latest.npz'})" in capsys.readouterr().out
    assert_same_checkpoints(straight, resumed)
    assert metrics(straight) == metrics(resumed)
    assert [r["image_size"] for r in metrics(resumed)] == [16, 24, 32]
    with pytest.raises(TinyEffNetError, match=re.escape("trains a progressive plan whose stages are spread over its "
                                                        "3 epochs, and another total would move them")):
        train.main(["--resume", str(resumed), "--epochs", "4"])
    assert train.main(["--resume", str(resumed)]) == 0
    assert "stages are spread over its epochs, so it cannot be extended" in capsys.readouterr().out


def test_a_plan_of_one_stage_at_the_model_s_own_values_trains_as_without_progressive(tmp_path):
    """The progressive machinery changes nothing by itself; and without --progressive nothing records a stage."""
    dropout = build_config(train.parse_args(TINY)).dropout
    plain, planned = tmp_path / "plain", tmp_path / "planned"
    assert train.main([*TINY, "--epochs", "2", "--out", str(plain)]) == 0
    assert train.main([*TINY, "--epochs", "2", "--progressive", "--stages", "1", "--dropout-range", str(dropout),
                       str(dropout), "--randaugment-range", "0", "0", "--mixup-range", "0", "0",
                       "--out", str(planned)]) == 0
    assert_same_checkpoints(plain, planned)
    assert metrics(plain) == metrics(planned, drop=TIMING | STAGE_KEYS)
    assert not STAGE_KEYS & set(metrics(plain)[0]) and not STAGE_KEYS & set(load_checkpoint(plain / "latest.npz")[3])


def test_the_paper_s_stem_at_32_keeps_every_stage_at_32_and_says_why(tmp_path, capsys):
    assert train.main([*TINY, "--epochs", "2", "--progressive", "--stages", "2", "--out", str(tmp_path)]) == 0
    assert [r["image_size"] for r in metrics(tmp_path)] == [32, 32]
    assert ("every stage trains at 32×32: the network's output stride is 32, so no smaller size is allowed"
            in capsys.readouterr().out)


# --- bad flags -----------------------------------------------------------------------------------------------
def exit_status(argv):
    """The exit status of ``python -m tinyeffnet.train *argv``, run in this process."""
    try:
        return run_cli(train.main, argv)
    except SystemExit as e:            # argparse's errors
        return e.code


@pytest.mark.parametrize("args, message", [
    (["--stages", "3"], "--stages sets a stage of progressive learning; add --progressive, or drop it"),
    (["--mixup-range", "0", "0.2"], "--mixup-range sets a stage of progressive learning; add --progressive"),
    (["--progressive", "--epochs", "2", "--stages", "3"], "--stages 3 is more than the 2 epochs to train"),
    (["--progressive", *CIFAR_STEM, "--min-size", "8"], "--min-size 8 is below this network's output stride 16"),
    (["--progressive", "--min-size", "16"], "--min-size 16 is below this network's output stride 32"),
    (["--progressive", "--min-size", "40"], "--min-size 40 is larger than the final size, the model's resolution 32"),
    (["--progressive", "--dropout-range", "0.3", "0.1"], "--dropout-range 0.3 0.1: the first stage's value is above"),
    (["--progressive", "--randaugment-range", "15", "5"], "--randaugment-range 15 5: the first stage's value"),
    (["--progressive", "--mixup-range", "0.4", "0.2"], "--mixup-range 0.4 0.2: the first stage's value"),
    (["--progressive", "--randaugment", "10"], "--randaugment 10 holds its strength fixed, but --progressive grows "
                                               "it stage by stage; give --randaugment-range MIN MAX instead"),
    (["--progressive", "--mixup", "0.2"], "--mixup 0.2 holds its strength fixed"),
    (["--progressive", "--mixup-range", "0", "0.2", "--num-classes", "5"], "--mixup-range blends the labels of "
     "synthetic's 10 classes, but --num-classes 5 gives the classifier another number of outputs"),
    (["--progressive", "--dropout-range", "0.1", "1"], "argument --dropout-range: must be a number in [0, 1), got '1'"),
    (["--progressive", "--mixup-range", "-1", "0"], "argument --mixup-range: must be a finite number ≥ 0, got '-1'"),
    (["--progressive", "--stages", "0"], "argument --stages: must be at least 1, got 0"),
    (["--progressive", "--min-size", "0"], "argument --min-size: must be at least 1, got 0"),
])
def test_bad_progressive_flags_exit_2_with_one_line_and_leave_no_run_folder(args, message, tmp_path, monkeypatch,
                                                                           capsys):
    monkeypatch.chdir(tmp_path)
    assert exit_status([*TINY, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_progressive_with_a_frozen_body_is_refused():
    args = train.parse_args([*TINY, "--progressive", "--freeze-body"])
    with pytest.raises(TinyEffNetError, match="--freeze-body trains on features computed once"):
        progressive.check_arguments(args)
