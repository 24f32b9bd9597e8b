"""What the tests of whole training runs share: reading a run's metrics, and stopping a run mid-way."""

import json
import signal

from tinyeffnet import engine, train

TIMING = {"seconds", "eval_seconds", "images_per_second"}        # the metrics that differ between two runs


def metrics(run_dir, drop=TIMING):
    """The rows of ``run_dir``'s metrics.jsonl, without the keys in ``drop``."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


def interrupted_in_epoch_2(monkeypatch, argv):
    """Run ``train.main(argv)`` and stop it, as Ctrl-C does, after the first step of epoch 2."""
    end_epoch = engine.Trainer.end_epoch

    def then_stop(trainer, lr):
        end_epoch(trainer, lr)
        trainer.stop_signal = signal.SIGINT

    with monkeypatch.context() as m:
        m.setattr(engine.Trainer, "end_epoch", then_stop)
        assert train.main(argv) == engine.EXIT_SIGNAL[signal.SIGINT]
