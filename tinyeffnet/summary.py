"""``python -m tinyeffnet.summary``: a per-layer table of output shapes, parameters and multiply-adds.

Multiply-adds count the products of convolutions and linear layers in one forward pass of one image
(batch norm, activations, pooling and the SE gate are left out, as in the paper's FLOP counts). They
are found by running the network once on a blank image and asking each layer what its call cost.
"""

import json
import sys

import numpy as np

from tinyeffnet.cli import add_model_arguments, build_config, make_parser, run_cli
from tinyeffnet.model import EfficientNet


def summarize(model, resolution=None):
    """Rows ``(name, kind, output_shape, params, macs)`` for every layer that has parameters or products."""
    resolution = resolution or model.config.resolution
    records = []
    names = {}
    for name, layer in model.named_layers():
        names[id(layer)] = name.rstrip(".")
        layer.trace = records
    try:
        model.eval()
        model.forward(np.zeros((1, resolution, resolution, 3), model.dtype))
    finally:
        for _, layer in model.named_layers():
            layer.trace = None
    rows = []
    for layer, in_shape, out_shape in records:
        params = sum(p.size for p in layer.params.values())
        macs = layer.macs(in_shape, out_shape)
        if params or macs:
            rows.append((names[id(layer)], type(layer).__name__, tuple(out_shape[1:]), params, macs))
    return rows


def main(argv=None):
    parser = make_parser("python -m tinyeffnet.summary", __doc__)
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    config = build_config(args)
    model = EfficientNet(config)
    rows = summarize(model)
    totals = dict(params=model.num_parameters(), macs=sum(r[4] for r in rows), resolution=config.resolution,
                  width=config.width, depth=config.depth, name=config.name, family=config.family,
                  num_classes=config.num_classes, stem_stride=config.stem_stride)
    if args.json:
        print(json.dumps(totals))
        return
    print(f"{'layer':<34}{'type':<18}{'output (H, W, C)':<20}{'params':>12}{'mult-adds':>16}")
    for name, kind, shape, params, macs in rows:
        print(f"{name:<34}{kind:<18}{str(shape):<20}{params:>12,}{macs:>16,}")
    print(f"\n{config.name} ({config.family}): width {config.width:.4g}, depth {config.depth:.4g}, "
          f"resolution {config.resolution}, {config.num_classes} classes")
    print(f"total: {totals['params']:,} parameters, {totals['macs'] / 1e6:,.2f} M multiply-adds per image")


if __name__ == "__main__":
    sys.exit(run_cli(main))
