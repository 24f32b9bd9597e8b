"""``python -m tinyeffnet.export (--checkpoint PATH | --pretrained NAME) OUT.safetensors``: weights for PyTorch.

Writes a model's weights and batch-norm buffers under the names and in the layouts of its PyTorch counterpart
(EfficientNet-PyTorch for EfficientNet, torchvision for EfficientNetV2-S, -M and -L), so that PyTorch loads
them with ``load_state_dict(strict=True)`` and computes the same logits.

The file is described in ``tinyeffnet.safetensors_file``. Every command that takes ``--checkpoint`` reads
it (``tinyeffnet.weights.open_weights``). A ``.safetensors`` file without tinyeffnet's metadata (saved from
PyTorch) has its variant recognised from its tensors, or given with ``--variant`` here.

In PyTorch
----------
B0–B7 load into ``efficientnet_pytorch`` 0.7.1, Lite0–4 into ``efficientnet_lite_pytorch`` 0.1.0; the
command prints the Python that builds the network (``EfficientNet.from_name(...)``) and loads the file. Pass ``image_size``: it makes the convolutions pad
like TensorFlow's "SAME" for that size, as tinyeffnet's do. A network with the CIFAR stem (stride 1) has
no counterpart there: its tensors load, but PyTorch's stem strides by 2, so the logits differ.

V2-S, -M and -L load into torchvision's ``efficientnet_v2_s``, ``_m``, ``_l`` (``num_classes=K``; torchvision has
no V2-B0–B3 or XL, which are refused). Those pad every convolution by (k − 1)/2 on each side, as tinyeffnet's V2
variants do (``kernels/padding.py``'s "symmetric"); a V2 network of another width or depth, or with the CIFAR stem
or "same" padding, has no torchvision counterpart: its tensors carry over where the shapes agree, its logits not.
"""

import sys

from tinyeffnet.checkpoint import SAFETENSORS_SUFFIX, checkpoint_path
from tinyeffnet.cli import PAPER_STEM_STRIDE, make_parser, run_cli
from tinyeffnet.errors import TinyEffNetError
from tinyeffnet.kernels.padding import SYMMETRIC
from tinyeffnet.model import EfficientNet
from tinyeffnet.pretrained import AVAILABLE, PREPROCESS, imagenet_classes, load_pretrained
from tinyeffnet.safetensors_file import save_safetensors
from tinyeffnet.scaling import BN_EPSILON, VARIANTS
from tinyeffnet.torchvision_names import TORCHVISION_BUILDERS
from tinyeffnet.weights import open_weights

PYTORCH_PACKAGES = {   # (squeeze-and-excitation, activation, fixed stem and head) → package, variant prefix
    (True, "swish", False): ("efficientnet_pytorch", "b"),
    (False, "relu6", True): ("efficientnet_lite_pytorch", "lite"),
}


# --- the command ---------------------------------------------------------------------------------------
def pytorch_family(config):
    """(EfficientNet-PyTorch package, variant prefix) of the same network, or None where there is none."""
    family = PYTORCH_PACKAGES.get((config.se, config.activation, config.fixed_stem_head))
    return family if config.stem_stride == 2 else None


def torchvision_call(config):
    """The torchvision call that builds the same V2-S, -M or -L network, or None where there is none (another
    width or depth, the CIFAR stem, "same" padding, another ε: torchvision's V2 is fixed but for its classes)."""
    built = (config.width, config.depth, config.stem_stride, config.padding, config.bn_epsilon)
    if built != (1.0, 1.0, PAPER_STEM_STRIDE, SYMMETRIC, BN_EPSILON):
        return None
    return f"torchvision.models.{TORCHVISION_BUILDERS[config.family]}(num_classes={config.num_classes})"


def pytorch_call(config):
    """The call (EfficientNet-PyTorch's, or torchvision's for V2) that builds the same network, or None where
    there is none."""
    if config.family in TORCHVISION_BUILDERS:
        return torchvision_call(config)
    family = pytorch_family(config)
    if family is None:
        return None
    package, prefix = family
    base = config.name if config.name in VARIANTS else f"{prefix}0"
    overrides = {}
    if (config.width, config.depth) != (VARIANTS[base].width, VARIANTS[base].depth):
        overrides.update(width_coefficient=config.width, depth_coefficient=config.depth)
    overrides.update(image_size=config.resolution, num_classes=config.num_classes)
    if config.bn_epsilon != BN_EPSILON:
        overrides.update(batch_norm_epsilon=config.bn_epsilon)
    arguments = "".join(f", {k}={v!r}" for k, v in overrides.items())
    return f"{package}.EfficientNet.from_name('efficientnet-{base}'{arguments})"


def pytorch_snippet(config, path):
    """Python that builds the same network in PyTorch and loads the file ``path`` into it, or None."""
    call = pytorch_call(config)
    if call is None:
        return None
    package = call.split(".", 1)[0]
    return "\n".join(["import safetensors.torch",
                      f"import {package}",
                      "",
                      f"model = {call}",
                      f"model.load_state_dict(safetensors.torch.load_file({path!r}), strict=True)",
                      "model.eval()"])


def load_source(args):
    """The model to export and its training record, from ``--pretrained`` or ``--checkpoint``."""
    if args.pretrained is not None:
        if args.variant is not None:
            raise TinyEffNetError("--variant is for a --checkpoint file; --pretrained names its own architecture")
        return load_pretrained(args.pretrained), dict(classes=imagenet_classes(), preprocess=PREPROCESS)
    path = checkpoint_path(args.checkpoint)
    if args.variant is not None and not path.endswith(SAFETENSORS_SUFFIX):
        raise TinyEffNetError(f"--variant is for a {SAFETENSORS_SUFFIX} file saved without tinyeffnet's metadata; "
                              f"{path} names its own architecture")
    config, state, _, training = open_weights(path, args.variant)
    model = EfficientNet(config)
    model.load_state_dict(state, path)
    return model, training


def main(argv=None):
    p = make_parser("python -m tinyeffnet.export", __doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a run folder (uses best.npz), a .npz checkpoint or a .safetensors file")
    source.add_argument("--pretrained", metavar="NAME", choices=list(AVAILABLE),
                        help=f"ImageNet weights of an installed package: {', '.join(AVAILABLE)}")
    p.add_argument("--variant", choices=list(VARIANTS),
                   help="the architecture of a .safetensors --checkpoint saved without tinyeffnet's metadata "
                        "(e.g. from PyTorch), where its tensors do not tell")
    p.add_argument("out", help=f"the file to write (ends in {SAFETENSORS_SUFFIX})")
    args = p.parse_args(argv)
    if not args.out.endswith(SAFETENSORS_SUFFIX):
        raise TinyEffNetError(f"{args.out} must end in {SAFETENSORS_SUFFIX}: the other commands recognise the "
                              "format by it")
    model, training = load_source(args)
    save_safetensors(args.out, model, training)
    config = model.config
    torchvision = config.family in TORCHVISION_BUILDERS
    library = "torchvision" if torchvision else "EfficientNet-PyTorch"
    print(f"wrote {args.out}: {len(model.state_dict())} tensors of {config.name} ({model.num_parameters():,} "
          f"parameters) under {library}'s names and layouts")
    snippet = pytorch_snippet(config, args.out)
    if snippet is None:
        if torchvision:
            built = (f"width {config.width:g}, depth {config.depth:g}, stem stride {config.stem_stride}, "
                     f"padding {config.padding}")
        else:
            built = f"stem stride {config.stem_stride}, {config.activation}, squeeze-and-excitation {config.se}"
        print(f"note: {library} builds no network like this one ({built}): the tensors load into the nearest "
              "variant, but its logits will differ")
    else:
        print(f"in PyTorch:\n{snippet}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
