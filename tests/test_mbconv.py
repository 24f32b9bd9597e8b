"""One MBConv block: its gradients against central differences, and what it keeps between the passes.

(That no layer holds a saved tensor after the backward is checked on a whole network in test_model.py.)"""

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gradcheck import assert_block_gradients
from tinyeffnet.mbconv import MBConv
from tinyeffnet.scaling import ModelConfig

CONFIG = ModelConfig(name="tiny", width=1.0, depth=1.0, resolution=5, dropout=0.0, num_classes=3)
CHANNELS, EXPAND, DROP_RATE = 4, 3, 0.5


def block_and_input(seed=0, batch=4, size=CONFIG.resolution, in_channels=CHANNELS, out_channels=CHANNELS,
                    stride=1):
    """A block with expansion and SE (and, when stride is 1 and the channels match, the identity skip with
    drop connect); float64, training mode."""
    block = MBConv(in_channels, out_channels, kernel=3, stride=stride, expand=EXPAND, se_ratio=0.25,
                   drop_rate=DROP_RATE, config=CONFIG, rng=np.random.default_rng(seed),
                   noise_rng=np.random.default_rng(seed + 1), dtype=np.float64).train()
    x = np.random.default_rng(seed + 2).normal(size=(batch, size, size, in_channels))
    return block, x


@settings(max_examples=8)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 4), size=st.integers(2, 6),
       in_channels=st.integers(1, 4), out_channels=st.integers(1, 4), stride=st.sampled_from([1, 2]))
@example(seed=0, batch=4, size=CONFIG.resolution, in_channels=CHANNELS, out_channels=CHANNELS, stride=1)
def test_block_gradients_match_central_differences(seed, batch, size, in_channels, out_channels, stride):
    """dL/dx and dL/dθ for L = Σ y·dy, every element, with the drop-connect mask held fixed (the noise
    generator is rewound before each forward); with the skip, seeds where the mask drops some samples
    and keeps others are the ones that exercise drop connect."""
    block, x = block_and_input(seed, batch, size, in_channels, out_channels, stride)
    assert_block_gradients(block, x, seed)


def test_the_default_block_drops_some_samples_and_keeps_others():
    """The explicit example above (seed 0) exercises drop connect: at least one sample dropped, one kept."""
    block, x = block_and_input()
    block.forward(x)
    assert 0 < np.count_nonzero(block.keep) < len(block.keep)


def test_projection_remakes_the_se_output_bitwise_instead_of_keeping_it():
    """The projection's backward needs its input, SE's output: it is not kept but remade from SE's x and g,
    and the remade array equals the forward's bit for bit."""
    block, x = block_and_input()
    seen = []
    project_forward = block.project.forward
    block.project.forward = lambda h: seen.append(h) or project_forward(h)
    block.forward(x)
    assert getattr(block.project, "x", None) is None
    np.testing.assert_array_equal(block.se.output(), seen[0])
