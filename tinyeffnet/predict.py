"""``python -m tinyeffnet.predict IMAGE... --checkpoint PATH | --pretrained NAME``: the top-5 classes of each image.

Preprocessing: the central square of the shorter side is cropped, resized to the model's resolution
with Pillow's bicubic filter, scaled to [0, 1] and normalised per channel with the statistics the model
was trained with: stored in its checkpoint, or for ``--pretrained`` ImageNet weights (x − 127) / 128
(``tinyeffnet.pretrained.PREPROCESS``) with the 1000 ImageNet class names."""

import json
import sys

import numpy as np
from PIL import Image, UnidentifiedImageError

from tinyeffnet.checkpoint import checkpoint_path
from tinyeffnet.cli import make_parser, run_cli
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.data import normalize
from tinyeffnet.model import EfficientNet
from tinyeffnet.pretrained import AVAILABLE, PREPROCESS, imagenet_classes, load_pretrained
from tinyeffnet.weights import open_weights

TOP_K = 5


def load_image(path, resolution):
    """An image file → (resolution, resolution, 3) uint8: central square crop, bicubic resize."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise TinyEffNetError(f"cannot read image {path}: {e}") from e
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def load_trained(path):
    """A checkpoint → (model in eval mode, its preprocessing {mean, std}, its class names)."""
    config, state, _, training = open_weights(path)
    if not training or "preprocess" not in training:
        raise TinyEffNetError(f"{path} has no record of its preprocessing and class names")
    model = EfficientNet(config)
    model.load_state_dict(state, path)
    return model.eval(), training["preprocess"], training["classes"]


def main(argv=None):
    p = make_parser("python -m tinyeffnet.predict", __doc__)
    p.add_argument("images", nargs="+", help="image files (any size and format Pillow reads)")
    weights = p.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="a run folder (uses best.npz), a .npz checkpoint or a .safetensors export")
    weights.add_argument("--pretrained", metavar="NAME", choices=list(AVAILABLE),
                         help=f"ImageNet weights of an installed package: {', '.join(AVAILABLE)}")
    p.add_argument("--json", action="store_true", help="one JSON object per line per image")
    args = p.parse_args(argv)
    if args.pretrained is not None:
        model, pre, classes = load_pretrained(args.pretrained), PREPROCESS, imagenet_classes()
    else:
        model, pre, classes = load_trained(checkpoint_path(args.checkpoint))
    mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)
    for image_path in args.images:
        pixels = load_image(image_path, model.config.resolution)
        x = normalize(pixels[None], mean, std)
        probs = softmax(model.forward(x)[0].astype(np.float64))
        top = np.argsort(-probs)[:TOP_K]
        if args.json:
            print(json.dumps(dict(image=image_path, top5=[dict(index=int(i), name=classes[i],
                                                                  probability=float(probs[i])) for i in top])))
        else:
            print(image_path)
            for i in top:
                print(f"  {100 * probs[i]:6.2f}%  {classes[i]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
