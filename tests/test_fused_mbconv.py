"""One Fused-MBConv block: its forward against a NumPy composition written here, and its gradients against
central differences, with and without the expansion, the stride and the identity skip, under either padding rule."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gradcheck import assert_block_gradients
from tolerances import LONG_SUMS_F64
from tinyeffnet.fused_mbconv import FusedMBConv
from tinyeffnet.scaling import V2_BASE_STAGES, ModelConfig

CONFIG = ModelConfig(name="tiny", width=1.0, depth=1.0, resolution=5, dropout=0.0, num_classes=3,
                     family="efficientnetv2")
KERNEL, DROP_RATE = 3, 0.5
shapes = dict(seed=st.integers(0, 2**16), batch=st.integers(1, 4), size=st.integers(1, 6),
              in_channels=st.integers(1, 4), out_channels=st.integers(1, 4), stride=st.sampled_from([1, 2]),
              expand=st.sampled_from([1, 3]), padding=st.sampled_from(["same", "symmetric"]))


def block_and_input(seed=0, batch=4, size=5, in_channels=3, out_channels=3, stride=1, expand=3, padding="same"):
    """A float64 block in training mode, with drop connect on its skip (when it has one), and an input."""
    config = replace(CONFIG, padding=padding)
    block = FusedMBConv(in_channels, out_channels, KERNEL, stride, expand, DROP_RATE, config,
                        rng=np.random.default_rng(seed), noise_rng=np.random.default_rng(seed + 1),
                        dtype=np.float64).train()
    x = np.random.default_rng(seed + 2).normal(size=(batch, size, size, in_channels))
    return block, x


# --- an independent forward: a padded convolution by loops, batch norm and SiLU by their formulas ----------
def conv_padded(x, w, stride, padding):
    """y[n,i,j,d] = Σ x[n, i·s + p − top, j·s + q − left, c]·w[p,q,c,d], zeros outside; top = left is TF "SAME"'s
    smaller half of the padding, or (k − 1)/2 for "symmetric" (the output size is ceil(size/s) either way)."""
    k, size = w.shape[0], x.shape[1]
    out = -(-size // stride)
    top = max((out - 1) * stride + k - size, 0) // 2 if padding == "same" else (k - 1) // 2
    padded = np.zeros((x.shape[0], size + 2 * k, size + 2 * k, x.shape[3]))
    padded[:, k:k + size, k:k + size] = x
    y = np.zeros((x.shape[0], out, out, w.shape[3]))
    for i in range(out):
        for j in range(out):
            r, c = k + i * stride - top, k + j * stride - top
            y[:, i, j] = np.einsum("npqc,pqcd->nd", padded[:, r:r + k, c:c + k], w)
    return y


def batch_norm(x, bn, act):
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    y = bn.params["gamma"] * (x - mean) / np.sqrt(var + CONFIG.bn_epsilon) + bn.params["beta"]
    return y / (1 + np.exp(-y)) if act else y


def reference_forward(block, x, padding):
    """What the module docstring draws, from the block's own parameters and drop-connect mask, padded as the
    config the block was built from says."""
    if hasattr(block, "expand"):
        h = batch_norm(conv_padded(x, block.expand.params["weight"], block.expand.stride, padding), block.expand_bn,
                       True)
        h = batch_norm(h @ block.project.params["weight"], block.project_bn, False)
    else:
        h = batch_norm(conv_padded(x, block.project.params["weight"], block.project.stride, padding),
                       block.project_bn, True)
    if not block.has_skip:
        return h
    kept = 1.0 if block.keep is None else block.keep[:, None, None, None]
    return x + kept * h


@settings(max_examples=10)
@given(**shapes)
@example(seed=0, batch=4, size=5, in_channels=3, out_channels=3, stride=1, expand=3, padding="same")
@example(seed=0, batch=4, size=5, in_channels=3, out_channels=3, stride=1, expand=1, padding="same")
@example(seed=0, batch=2, size=6, in_channels=2, out_channels=3, stride=2, expand=3, padding="symmetric")
def test_forward_matches_the_composition_of_its_layers(seed, batch, size, in_channels, out_channels, stride,
                                                       expand, padding):
    block, x = block_and_input(seed, batch, size, in_channels, out_channels, stride, expand, padding)
    y = block.forward(x)
    assert y.shape == (batch, -(-size // stride), -(-size // stride), out_channels)
    np.testing.assert_allclose(y, reference_forward(block, x, padding), **LONG_SUMS_F64)


@settings(max_examples=10)
@given(**shapes)
@example(seed=0, batch=4, size=5, in_channels=3, out_channels=3, stride=1, expand=3, padding="same")
@example(seed=0, batch=1, size=3, in_channels=1, out_channels=1, stride=1, expand=1, padding="same")
@example(seed=0, batch=2, size=4, in_channels=2, out_channels=2, stride=2, expand=1, padding="symmetric")
def test_block_gradients_match_central_differences(seed, batch, size, in_channels, out_channels, stride, expand,
                                                   padding):
    """dL/dx and dL/dθ for L = Σ y·dy, every element, with the drop-connect mask held fixed (the noise
    generator is rewound before each forward)."""
    block, x = block_and_input(seed, batch, size, in_channels, out_channels, stride, expand, padding)
    assert_block_gradients(block, x, seed)


def test_the_default_block_drops_some_samples_and_keeps_others():
    """The explicit examples above (seed 0) exercise drop connect: at least one sample dropped, one kept."""
    block, x = block_and_input()
    block.forward(x)
    assert 0 < np.count_nonzero(block.keep) < len(block.keep)


@pytest.mark.parametrize("stride, in_channels, out_channels, skip", [(1, 3, 3, True), (2, 3, 3, False),
                                                                      (1, 3, 4, False)])
def test_the_skip_exists_only_at_stride_1_between_equal_widths(stride, in_channels, out_channels, skip):
    block, _ = block_and_input(stride=stride, in_channels=in_channels, out_channels=out_channels)
    assert block.has_skip is skip


def test_layers_and_shapes_with_and_without_the_expansion():
    """e > 1: k×k C_in → C_in·e, then 1×1 to C_out, no activation after it; e = 1: one k×k C_in → C_out with
    its activation. ``project_bn`` is the last batch norm either way."""
    expanded, _ = block_and_input(in_channels=3, out_channels=5, expand=4)
    assert expanded.expand.params["weight"].shape == (KERNEL, KERNEL, 3, 12)
    assert expanded.project.params["weight"].shape == (12, 5)
    assert expanded.expand_bn.activation == "swish" and expanded.project_bn.activation is None
    single, _ = block_and_input(in_channels=3, out_channels=5, expand=1)
    assert not hasattr(single, "expand") and single.project.params["weight"].shape == (KERNEL, KERNEL, 3, 5)
    assert single.project_bn.activation == "swish"
    assert [type(layer).__name__ for layer in single.branch_layers()] == ["Conv2d", "BatchNorm"]


def test_a_stage_row_asking_for_squeeze_and_excitation_is_refused():
    with pytest.raises(ValueError, match="no squeeze-and-excitation"):
        FusedMBConv.from_stage(replace(V2_BASE_STAGES[1], se_ratio=0.25), 16, 32, 2, 0.0, CONFIG,
                               np.random.default_rng(0), np.random.default_rng(1), np.float64)
