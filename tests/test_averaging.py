"""The moving average of the weights: its kernel against NumPy, the warm-up decay over several updates,
the swap in and out that restores the model's own arrays, and the state for resuming."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyeffnet.averaging import DECAY, WeightAverage
from tinyeffnet.kernels.ema import ema_update
from tinyeffnet.layers import BatchNorm, Layer, Linear

FLOAT64 = dict(rtol=1e-14, atol=1e-14)
shapes = st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple)
seeds = st.integers(0, 2**16)


@given(shapes, seeds, st.lists(st.floats(0, 1), min_size=1, max_size=4))
def test_ema_kernel_matches_numpy(shape, seed, decays):
    rng = np.random.default_rng(seed)
    average = rng.standard_normal(shape)
    expected = average.copy()
    for d in decays:
        x = rng.standard_normal(shape)
        expected = d * expected + (1 - d) * x
        ema_update(average, x, d)
    np.testing.assert_allclose(average, expected, **FLOAT64)


def test_ema_kernel_rejects_bad_input():
    a = np.zeros((3, 3))
    with pytest.raises(ValueError, match="average must be C-contiguous"):
        ema_update(a.T, a, 0.9)
    with pytest.raises(ValueError, match="x has shape"):
        ema_update(a, np.zeros(3), 0.9)
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\]"):
        ema_update(a, a.copy(), 1.5)


class Tiny(Layer):
    """A linear layer and a batch norm: weights, a bias, γ, β, running statistics and an integer counter."""

    def __init__(self, dtype=np.float64):
        super().__init__()
        self.linear = Linear(3, 2, np.random.default_rng(0), dtype=dtype)
        self.norm = BatchNorm(2, momentum=0.99, epsilon=1e-3, dtype=dtype)


def train_a_little(model, rng):
    """Stand-in for an optimiser step and a batch-norm forward: parameters change in place, the running
    statistics are replaced by new arrays (as ``BatchNorm.forward`` does), the counter counts."""
    for p in model.named_parameters().values():
        p += 0.1 * rng.standard_normal(p.shape)
    buffers = model.norm.buffers
    buffers["running_mean"] = buffers["running_mean"] + rng.standard_normal(2)
    buffers["running_var"] = buffers["running_var"] * 1.1
    buffers["num_batches_tracked"] += 1


def floating_state(model):
    state = {**model.named_parameters(), **model.named_buffers()}
    return {k: v.copy() for k, v in state.items() if np.issubdtype(v.dtype, np.floating)}


def test_average_follows_the_warm_up_decay():
    model, rng = Tiny(), np.random.default_rng(1)
    average = WeightAverage(model)
    expected = floating_state(model)                       # the average starts as a copy
    assert set(average.average) == set(expected)           # every parameter and running statistic, no counter
    for t in range(1, 6):
        train_a_little(model, rng)
        d = min(DECAY, (1 + t) / (10 + t))                  # 2/11, 3/12, …: follows quickly at first
        assert average.current_decay() == pytest.approx(d)
        expected = {k: d * expected[k] + (1 - d) * v for k, v in floating_state(model).items()}
        average.update()
    assert average.t == 5
    for k, v in expected.items():
        np.testing.assert_allclose(average.average[k], v, **FLOAT64, err_msg=k)


def test_the_decay_reaches_its_limit():
    average = WeightAverage(Tiny(), decay=0.5)
    assert average.current_decay() == pytest.approx(2 / 11)
    average.t = 100
    assert average.current_decay() == 0.5
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\]"):
        WeightAverage(Tiny(), decay=-0.1)


def test_applied_swaps_the_averages_in_and_restores_the_model_bitwise():
    model, rng = Tiny(), np.random.default_rng(2)
    average = WeightAverage(model)
    for _ in range(3):
        train_a_little(model, rng)
        average.update()
    own = {**model.named_parameters(), **model.named_buffers()}
    own_values = {k: v.copy() for k, v in own.items()}
    averaged = {k: v.copy() for k, v in average.average.items()}
    x = rng.standard_normal((4, 3))
    with average.applied():
        inside = {**model.named_parameters(), **model.named_buffers()}
        for k, v in averaged.items():
            np.testing.assert_array_equal(inside[k], v, err_msg=k)
        assert inside["norm.num_batches_tracked"] is own["norm.num_batches_tracked"]
        averaged_output = model.linear.eval().forward(x)
    after = {**model.named_parameters(), **model.named_buffers()}
    for k, v in own.items():
        assert after[k] is v
        np.testing.assert_array_equal(v, own_values[k], err_msg=k)
    for k, v in averaged.items():
        np.testing.assert_array_equal(average.average[k], v, err_msg=k)
    expected = x @ averaged["linear.weight"] + averaged["linear.bias"]
    np.testing.assert_allclose(averaged_output, expected, **FLOAT64)


def test_applied_restores_after_an_exception():
    model = Tiny()
    average = WeightAverage(model)
    weight = model.linear.params["weight"]
    with pytest.raises(RuntimeError), average.applied():
        raise RuntimeError
    assert model.linear.params["weight"] is weight


def test_state_dict_resumes_bitwise():
    """Two updates, the state saved (copied, as into a checkpoint), a new average loads it, three more:
    bitwise the same as five in one go."""
    def run(model, average, rng, count):
        for _ in range(count):
            train_a_little(model, rng)
            average.update()

    model, rng = Tiny(), np.random.default_rng(3)
    uninterrupted = WeightAverage(model)
    run(model, uninterrupted, rng, 5)

    model, rng = Tiny(), np.random.default_rng(3)
    first = WeightAverage(model)
    run(model, first, rng, 2)
    saved = {k: np.array(v) for k, v in first.state_dict().items()}
    assert saved["step"].shape == () and saved["step"].dtype == np.int64 and "average.linear.weight" in saved
    resumed = WeightAverage(model)
    resumed.load_state_dict(saved)
    run(model, resumed, rng, 3)

    assert resumed.t == uninterrupted.t == 5
    for k, v in uninterrupted.average.items():
        np.testing.assert_array_equal(resumed.average[k], v, err_msg=k)
