"""``python -m tinyeffnet.evaluate RUN_OR_CHECKPOINT``: test accuracy, per-class accuracy and a
confusion-matrix PNG for a trained model.

The weights evaluated are those the run evaluated: with ``--ema``, the moving average the checkpoint keeps
(``checkpoint.evaluated_state``). ``--tta`` adds the accuracy of each image's logits averaged with its
mirror's, beside the plain figures (which the per-class accuracy and the confusion matrix stay).
"""

import json
import os
import sys

import numpy as np

from tinyeffnet import data as datasets
from tinyeffnet.checkpoint import average_state, checkpoint_path, evaluated_state
from tinyeffnet.cli import make_parser, run_cli
from tinyeffnet.engine import evaluate
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.model import EfficientNet
from tinyeffnet.plots import plot_confusion
from tinyeffnet.weights import open_weights


def confusion_matrix(labels, predictions, num_classes):
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def main(argv=None):
    p = make_parser("python -m tinyeffnet.evaluate", __doc__)
    p.add_argument("checkpoint", help="a run folder (uses best.npz), a .npz checkpoint or a .safetensors export")
    p.add_argument("--data-dir", help="folder holding the dataset (default: the one the run used)")
    p.add_argument("--out", help="where to write confusion.png (default: beside the checkpoint)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--tta", action="store_true", help="also the accuracy with each image's logits averaged with its "
                   "mirror's (test-time augmentation), beside the plain one")
    args = p.parse_args(argv)
    path = checkpoint_path(args.checkpoint)
    config, state, optimizer_state, training = open_weights(path)
    if not training or "preprocess" not in training:
        raise TinyEffNetError(f"{path} has no record of its dataset and preprocessing; evaluate a checkpoint "
                              "written by tinyeffnet.train")
    model = EfficientNet(config)
    model.load_state_dict(evaluated_state(state, optimizer_state), path)
    weights = "ema" if average_state(optimizer_state) else "raw"
    run_args = training["args"]
    ds = datasets.load_dataset(run_args["dataset"], args.data_dir or run_args.get("data_dir"))
    test_x = datasets.resize_images(ds.test_images, config.resolution)
    pre = training["preprocess"]
    mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)
    loss, acc, predictions = evaluate(model, test_x, ds.test_labels, mean, std)
    tta = {}
    if args.tta:
        tta = dict(zip(("test_loss_tta", "test_acc_tta"), evaluate(model, test_x, ds.test_labels, mean, std, tta=True)))
    matrix = confusion_matrix(ds.test_labels, predictions, config.num_classes)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    out = args.out or os.path.dirname(os.path.abspath(path))
    os.makedirs(out, exist_ok=True)
    png = os.path.join(out, "confusion.png")
    plot_confusion(matrix, ds.classes, png, title=f"{config.name} on the {run_args['dataset']} test set "
                                                  f"({100 * acc:.2f}%)")
    if args.json:
        print(json.dumps(dict(test_loss=loss, test_acc=acc, **tta, eval_weights=weights,
                              per_class=dict(zip(ds.classes, per_class.tolist())), confusion_png=png,
                              images=len(test_x))))
        return 0
    print(f"{path}: {config.name} on {len(test_x):,} {run_args['dataset']} test images from {ds.source}")
    print(f"test{' (EMA)' if weights == 'ema' else ''} loss {loss:.4f}, accuracy {100 * acc:.2f}%")
    if tta:
        print(f"with test-time augmentation (each image and its mirror): loss {tta['test_loss_tta']:.4f}, "
              f"accuracy {100 * tta['test_acc_tta']:.2f}%")
    for name, a in zip(ds.classes, per_class):
        print(f"  {name:<16}{100 * a:6.2f}%")
    print(f"confusion matrix: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
