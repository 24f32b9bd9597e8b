"""Small arrays on one thread (kernels/_threads.py): the thread count inside and after the block, each per-tensor
kernel taking the one-thread path for a small tensor only, and giving the same bits on one thread as on all of
them (each element is computed alone, so who computes it cannot change it)."""

from unittest import mock
from unittest.mock import call

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyeffnet.kernels import _threads, adamw, elementwise, ema, rmsprop, sgd

shapes = st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple)


def test_a_small_size_runs_on_one_thread_and_the_count_comes_back():
    threads = numba.get_num_threads()
    with _threads.small_on_one_thread(_threads.MIN_PARALLEL_SIZE - 1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == threads
    with _threads.small_on_one_thread(_threads.MIN_PARALLEL_SIZE):
        assert numba.get_num_threads() == threads


def test_the_count_comes_back_after_an_error():
    threads = numba.get_num_threads()
    with pytest.raises(ZeroDivisionError), _threads.small_on_one_thread(1):
        1 / 0
    assert numba.get_num_threads() == threads


# Each kernel's call on fresh copies of the same arrays: (arrays it is given, the call).
KERNELS = {
    "add_into": (2, lambda a: elementwise.add_into(a[0], a[1])),
    "ema_update": (2, lambda a: ema.ema_update(a[0], a[1], 0.9)),
    "sgd_update": (3, lambda a: sgd.sgd_update(a[0], a[1], a[2], 0.1, 0.9, 1e-4, True)),
    "rmsprop_update": (4, lambda a: rmsprop.rmsprop_update(a[0], a[1], a[2], a[3], 0.01, 0.9, 0.9, 1e-3, 1e-5)),
    "adamw_update": (4, lambda a: adamw.adamw_update(a[0], a[1], a[2], a[3], 1e-3, 0.9, 0.999, 1e-8, 0.05, 3)),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
@given(shape=shapes, dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_one_thread_and_all_threads_give_the_same_bits(name, shape, dtype, seed):
    count, call = KERNELS[name]
    rng = np.random.default_rng(seed)
    arrays = [np.abs(rng.standard_normal(shape)).astype(dtype) for _ in range(count)]   # ≥ 0: mean squares too
    results = []
    for min_size in (2**62, 0):                   # every size on one thread, then every size on all threads
        copies = [a.copy() for a in arrays]
        with mock.patch.object(_threads, "MIN_PARALLEL_SIZE", min_size):
            call(copies)
        results.append(copies)
    for one, every in zip(*results):
        np.testing.assert_array_equal(one, every)


@pytest.mark.parametrize("name", sorted(set(KERNELS) - {"add_into"}))
def test_a_small_tensor_is_updated_on_one_thread_and_a_large_one_on_all(name):
    count, kernel = KERNELS[name]
    for size, calls in ((_threads.MIN_PARALLEL_SIZE - 1, [call(1), call(numba.get_num_threads())]),
                        (_threads.MIN_PARALLEL_SIZE, [])):
        with mock.patch.object(_threads.numba, "set_num_threads", wraps=numba.set_num_threads) as set_threads:
            kernel([np.ones(size, np.float32) for _ in range(count)])
        assert set_threads.call_args_list == calls


def test_add_into_adds_a_large_array_in_the_parallel_loop_and_a_small_one_with_numpy():
    for size, loops in ((_threads.MIN_PARALLEL_SIZE - 1, 0), (_threads.MIN_PARALLEL_SIZE, 1)):
        with mock.patch.object(elementwise, "_add_into", wraps=elementwise._add_into) as loop:
            total = np.ones(size, np.float32)
            elementwise.add_into(total, total.copy())
        assert loop.call_count == loops and (total == 2).all()
