"""The engine's two seams for data-parallel training: the gradients pass through ``World.reduce_gradients``
between backward and the update, and only the main process prints or writes the run folder; and the gradient
norm each step returns (before clipping) and each epoch's row reports."""

import signal

import numpy as np
import pytest

from tinyeffnet import engine, optim, train
from tinyeffnet.cli import build_config
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.model import EfficientNet
from tinyeffnet.optim import SGD
from tinyeffnet.scaling import ModelConfig

TINY = ["--dataset", "synthetic", "--phi", "0", "--width", "0.25", "--depth", "0.1", "--subset", "256",
        "--test-subset", "64", "--batch-size", "64", "--epochs", "1"]


def tiny_model():
    config = ModelConfig(name="t", width=0.25, depth=0.1, resolution=16, dropout=0.0, num_classes=3, drop_connect=0.0)
    return EfficientNet(config, seed=0)


def test_reduce_gradients_sees_the_gradients_between_backward_and_the_update():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 16, 16, 3), dtype=np.float32), np.array([0, 1, 2, 1])
    halved, plain = tiny_model(), tiny_model()
    before = {name: p.copy() for name, p in halved.named_parameters().items()}
    calls = []

    class Halving(engine.World):
        """Transforms the gradients: g ← g / 2, checking they are fresh and not yet applied."""

        def reduce_gradients(self, grads, count, statistics):
            calls.append(sorted(grads))
            assert any(np.any(g != 0) for g in grads.values())                # backward has run
            for name, p in halved.named_parameters().items():
                np.testing.assert_array_equal(p, before[name], err_msg=name)  # the update has not
            for g in grads.values():
                g *= 0.5

    def sgd(model):
        return SGD(model.named_parameters(), model.named_grads(), lr=0.0, momentum=0.9, weight_decay=0.0)

    engine.train_step(halved, sgd(halved), x, y, lr=0.1, world=Halving())
    engine.train_step(plain, sgd(plain), x, y, lr=0.05)       # without decay, the first step is linear in g
    assert calls == [sorted(halved.named_grads())]
    for (name, a), b in zip(halved.named_parameters().items(), plain.named_parameters().values()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_the_step_returns_the_gradient_norm_before_clipping(clip):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 16, 16, 3), dtype=np.float32), np.array([0, 1, 2, 1])
    model = tiny_model()
    sgd = SGD(model.named_parameters(), model.named_grads(), lr=0.0, momentum=0.0, weight_decay=0.0)
    _, _, norm = engine.train_step(model, sgd, x, y, lr=0.0, clip_norm=clip)
    after = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in sgd.grads.values()))
    reference = tiny_model()               # the same model and batch, never clipped: the norm before clipping
    plain = SGD(reference.named_parameters(), reference.named_grads(), lr=0.0, momentum=0.0, weight_decay=0.0)
    engine.train_step(reference, plain, x, y, lr=0.0)
    before = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in plain.grads.values()))
    assert norm == pytest.approx(before, rel=1e-6) and before > 1e-2
    assert after == pytest.approx(before if clip is None else clip, rel=1e-5)


def test_a_gradient_norm_that_is_not_finite_stops_the_run_before_the_update(tmp_path, monkeypatch):
    for module in (engine, optim):                 # the norm of an unclipped step, and clip_grad_norm's
        monkeypatch.setattr(module, "global_grad_norm", lambda grads: float("inf"))
    model = tiny_model()
    before = {name: p.copy() for name, p in model.named_parameters().items()}
    sgd = SGD(model.named_parameters(), model.named_grads(), lr=0.1)
    x, y = np.random.default_rng(2).standard_normal((4, 16, 16, 3), dtype=np.float32), np.array([0, 1, 2, 1])
    loss, _, norm = engine.train_step(model, sgd, x, y, lr=0.1)
    assert np.isfinite(loss) and norm == float("inf")
    for name, p in model.named_parameters().items():
        np.testing.assert_array_equal(p, before[name], err_msg=name)
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    with pytest.raises(TinyEffNetError, match=r"the gradient norm became inf at epoch 1, step 1; stopped without "
                                              r"saving\..*Try a lower --lr \(now 0\.003\) or a lower "
                                              r"--clip-grad-norm \(now 1\)"):
        train.main([*TINY, "--out", str(tmp_path / "r")])


def test_each_epoch_reports_the_mean_and_largest_gradient_norm(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    args = train.parse_args([*TINY, "--out", str(tmp_path), "--batch-size", "32"])
    train.fill_recipe_defaults(args)
    config = build_config(args, num_classes=10)
    norms = []
    step = engine.train_step

    def spy(*a, **k):
        out = step(*a, **k)
        norms.append(out[2])
        return out

    monkeypatch.setattr(engine, "train_step", spy)
    trainer = engine.Trainer(args, config, train.prepare_data(args, config.resolution),
                             EfficientNet(config, args.seed), str(tmp_path))
    assert trainer.run() == 0
    row = trainer.state.history[0]
    assert len(norms) == 256 // 32 and len(set(norms)) > 1
    assert row["grad_norm_mean"] == pytest.approx(np.mean(norms)) and row["grad_norm_max"] == max(norms)
    assert f"grad norm {row['grad_norm_mean']:.3g} (max {row['grad_norm_max']:.3g})" in capsys.readouterr().out


@pytest.mark.parametrize("rank", [0, 1])
def test_only_the_main_process_prints_and_writes_the_run_folder(rank, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(signal, "signal", lambda *args: None)     # leave this process's handlers alone
    args = train.parse_args([*TINY, "--out", str(tmp_path)])
    train.fill_recipe_defaults(args)
    config = build_config(args, num_classes=10)
    trainer = engine.Trainer(args, config, train.prepare_data(args, config.resolution),
                             EfficientNet(config, args.seed), str(tmp_path), world=engine.World(rank, size=2))
    assert trainer.run() == 0 and len(trainer.state.history) == 1
    out, err = capsys.readouterr()
    files = sorted(path.name for path in tmp_path.iterdir())
    if rank == 0:
        assert out.startswith("epoch 1: train loss") and "epoch 1/1" in err
        assert files == ["best.npz", "curves.png", "latest.npz", "metrics.jsonl"]
    else:
        assert (out, err, files) == ("", "", [])
