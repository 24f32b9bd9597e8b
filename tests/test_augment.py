"""RandAugment's operations against tiny hand-made references (or Pillow's own, where automl copied Pillow),
the whole policy's determinism and range, and Mixup's images and soft targets."""

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from tinyeffnet import augment
from tinyeffnet.augment import OPS, mixup, rand_augment

# At level 0 these leave an image as it is; the others change it (see tinyeffnet.augment).
IDENTITY_AT_ZERO = {"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout", "SolarizeAdd"}
LEVELS = [0.0, 0.3, 1.0, 2.5]       # magnitudes 0, 3, 10 and 25


def image(h=7, w=9, seed=0, low=40, high=220):
    """A random (h, w, 3) uint8 image, away from 0 and 255 so that AutoContrast has something to stretch."""
    return np.random.default_rng(seed).integers(low, high, (h, w, 3), dtype=np.uint8)


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("level", LEVELS)
def test_every_op_keeps_shape_dtype_and_range(name, level):
    for h, w in [(7, 9), (32, 32), (1, 2)]:
        out = OPS[name](image(h, w), level, rng())
        assert out.shape == (h, w, 3) and out.dtype == np.uint8, name


def test_at_level_zero_only_the_geometric_ops_cutout_and_solarize_add_are_the_identity():
    x = image(16, 16)
    unchanged = {name for name, op in OPS.items() if np.array_equal(op(x, 0.0, rng()), x)}
    assert unchanged == IDENTITY_AT_ZERO


def test_invert():
    x = np.array([[[0, 1, 255], [128, 127, 3]]], np.uint8)
    np.testing.assert_array_equal(augment.invert(x, 0.5, rng()), [[[255, 254, 0], [127, 128, 252]]])


def test_rotate_by_ninety_degrees_turns_the_array_either_way():
    x = image(6, 6)
    seen = set()
    for seed in range(8):
        out = augment.rotate(x, 3.0, rng(seed))                # magnitude 30: 90°
        turns = [k for k in (1, -1) if np.array_equal(out, np.rot90(x, k))]
        assert len(turns) == 1
        seen.add(turns[0])
    assert seen == {1, -1}                                     # both signs are drawn


def test_rotate_fills_the_uncovered_corners_with_grey():
    out = augment.rotate(np.full((15, 15, 3), 255, np.uint8), 1.5, rng())     # 45°
    assert np.all(out[0, 0] == augment.FILL) and np.all(out[7, 7] == 255)


def shifted(x, dx, dy):
    """x moved by (−dx, −dy): output (r, c) = x[r + dy, c + dx], grey outside."""
    out = np.full_like(x, augment.FILL)
    h, w = x.shape[:2]
    for r in range(h):
        for c in range(w):
            if 0 <= r + dy < h and 0 <= c + dx < w:
                out[r, c] = x[r + dy, c + dx]
    return out


@pytest.mark.parametrize("op, axis", [(augment.translate_x, 1), (augment.translate_y, 0)])
def test_translate_shifts_by_the_fraction_of_the_side(op, axis):
    x = image(32, 32)
    level = 4 / (augment.TRANSLATE_FRACTION * 32)               # 4 pixels of 32
    outs = {seed: op(x, level, rng(seed)) for seed in range(8)}
    expected = [shifted(x, *((s, 0) if axis == 1 else (0, s))) for s in (4, -4)]
    for out in outs.values():
        assert any(np.array_equal(out, e) for e in expected)
    assert all(any(np.array_equal(out, e) for out in outs.values()) for e in expected)


def sheared(x, shear):
    """Output (r, c) takes the pixel whose cell holds (c + shear · r, r) (cell centres at +0.5), grey outside."""
    h, w = x.shape[:2]
    out = np.full_like(x, augment.FILL)
    for r in range(h):
        for c in range(w):
            source = int(np.floor(c + 0.5 + shear * (r + 0.5)))
            if 0 <= source < w:
                out[r, c] = x[r, source]
    return out


def test_shear_x_moves_each_row_by_its_height_times_the_shear():
    x = image(8, 10)
    for seed in range(4):
        out = augment.shear_x(x, 1.0, rng(seed))                # magnitude 10: ±0.3
        assert sum(np.array_equal(out, sheared(x, s)) for s in (0.3, -0.3)) == 1


def test_posterize_keeps_the_high_bits_as_pillow():
    x = np.array([[[0b10110111, 0b01111111, 255]]], np.uint8)
    np.testing.assert_array_equal(augment.posterize(x, 0.5, rng()), [[[0b10000000, 0b01000000, 0b11000000]]])
    y = image(5, 5, low=0, high=256)
    for level, bits in [(0.25, 1), (0.5, 2), (1.0, 4), (2.0, 8), (3.0, 8)]:
        want = np.asarray(ImageOps.posterize(Image.fromarray(y), bits))
        np.testing.assert_array_equal(augment.posterize(y, level, rng()), want)
    assert not augment.posterize(y, 0.0, rng()).any()          # 0 bits: black


def test_solarize_inverts_above_the_threshold_as_pillow():
    y = image(5, 5, low=0, high=256)
    for level in (0.0, 0.5, 0.9):
        want = np.asarray(ImageOps.solarize(Image.fromarray(y), int(256 * level)))
        np.testing.assert_array_equal(augment.solarize(y, level, rng()), want)
    np.testing.assert_array_equal(augment.solarize(y, 1.5, rng()), y)      # threshold 384: nothing inverted


def test_solarize_add_brightens_only_the_dark_bytes():
    x = np.array([[[0, 100, 127], [128, 200, 250]]], np.uint8)
    np.testing.assert_array_equal(augment.solarize_add(x, 0.5, rng()), [[[55, 155, 182], [128, 200, 250]]])
    np.testing.assert_array_equal(augment.solarize_add(x, 2.0, rng())[0, 0], [220, 255, 255])   # +220, clipped


def test_auto_contrast_stretches_each_channel():
    x = np.zeros((1, 3, 3), np.uint8)
    x[0, :, 0] = [10, 20, 30]
    x[0, :, 1] = 7                                             # constant: left alone
    x[0, :, 2] = [0, 100, 255]                                 # already full range
    out = augment.auto_contrast(x, 0.0, rng())
    np.testing.assert_array_equal(out[0, :, 0], [0, 127, 255])  # 127.5 truncated
    np.testing.assert_array_equal(out[0, :, 1:], x[0, :, 1:])


def test_equalize_is_pillow_s():
    for seed in range(3):
        y = image(12, 11, seed=seed, low=30, high=90)
        np.testing.assert_array_equal(augment.equalize(y, 0.0, rng()), np.asarray(ImageOps.equalize(Image.fromarray(y))))


@pytest.mark.parametrize("op, enhancer", [(augment.color, ImageEnhance.Color),
                                          (augment.brightness, ImageEnhance.Brightness),
                                          (augment.contrast, ImageEnhance.Contrast)])
@pytest.mark.parametrize("level", [0.0, 0.3, 1.0, 2.0])
def test_blends_agree_with_pillow_s_enhancers(op, enhancer, level):
    y = image(9, 8, low=0, high=256)
    factor = 1.8 * level + 0.1
    want = np.asarray(enhancer(Image.fromarray(y)).enhance(factor)).astype(int)
    got = op(y, level, rng()).astype(int)
    assert np.abs(got - want).max() <= 1                       # Pillow rounds in places where the blend truncates


def test_sharpness_blends_with_the_smoothed_image():
    x = np.zeros((5, 5, 3), np.uint8)
    x[2, 2] = 130
    out = augment.sharpness(x, 0.0, rng())                     # f = 0.1: 0.9 · smooth + 0.1 · x
    # smooth: 130·5/13 = 50 at the centre, 130/13 = 10 beside it, the border kept (0).
    np.testing.assert_array_equal(out[2, 2], 58)               # 50 + 0.1·(130 − 50)
    np.testing.assert_array_equal(out[1, 1], 9)                # 10 + 0.1·(0 − 10)
    assert not out[0].any() and not out[:, 0].any()
    flat = np.full((6, 7, 3), 77, np.uint8)
    np.testing.assert_array_equal(augment.sharpness(flat, 2.0, rng()), flat)


def test_cutout_greys_one_square_of_the_half_side():
    half = int(augment.CUTOUT_FRACTION * 1.0 * 32)             # 5 at 32×32, magnitude 10
    for seed in range(6):
        out = augment.cutout(np.zeros((32, 32, 3), np.uint8), 1.0, rng(seed))
        rows, cols = np.nonzero(out[..., 0])
        assert np.all(out[rows, cols] == augment.FILL)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert len(rows) == height * width                     # one rectangle
        assert 1 <= height <= 2 * half and 1 <= width <= 2 * half


# --- the policy ---------------------------------------------------------------------------------------------
def batch(n=6, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, 10, 12, 3), dtype=np.uint8)


def test_rand_augment_is_deterministic_for_a_seed():
    x = batch()
    first, again, other = (rand_augment(x, 9, rng(s)) for s in (3, 3, 4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == x.shape and first.dtype == np.uint8
    assert not np.array_equal(first, x)


def test_rand_augment_applies_num_ops_operations_to_each_image():
    x = batch()
    np.testing.assert_array_equal(rand_augment(x, 9, rng(), num_ops=0), x)
    generator, expected = rng(5), x[0]                         # the draws of image 0, replayed by hand
    for _ in range(augment.NUM_OPS):
        expected = list(OPS.values())[generator.integers(len(OPS))](expected, 0.9, generator)
    np.testing.assert_array_equal(rand_augment(x, 9, rng(5))[0], expected)


@pytest.mark.parametrize("call, error, message", [
    (lambda: rand_augment(batch(), -1, rng()), ValueError, "magnitude must be a finite number ≥ 0, got -1"),
    (lambda: rand_augment(batch().astype(np.float32), 9, rng()), ValueError, r"images must be a \(N, H, W, 3\) uint8"),
    (lambda: rand_augment(batch()[..., :1], 9, rng()), ValueError, r"got uint8 \(6, 10, 12, 1\)"),
    (lambda: rand_augment(batch(), 9, np.random.RandomState(0)), TypeError, "rng must be a numpy.random.Generator"),
    (lambda: mixup(batch(), np.zeros(6, int), 3, -0.5, rng()), ValueError, "alpha must be a finite number ≥ 0"),
    (lambda: mixup(batch(), np.array([0, 1, 2, 3, 0, 1]), 3, 0.2, rng()), ValueError, r"labels must be 6 integers in \[0, 3\)"),
    (lambda: mixup(batch(), np.zeros(5, int), 3, 0.2, rng()), ValueError, "of shape \\(5,\\)"),
])
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --- Mixup -------------------------------------------------------------------------------------------------
LABELS = np.array([0, 2, 1, 1, 3, 2])


def test_mixup_with_alpha_zero_is_the_batch_and_one_hot_targets():
    x = batch()
    images, targets = mixup(x, LABELS, 4, 0.0, rng())
    assert images.dtype == np.float32 and targets.dtype == np.float32
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(targets, np.eye(4)[LABELS])


def test_mixup_blends_each_image_with_its_mirror_in_the_batch():
    x = batch()
    images, targets = mixup(x, LABELS, 4, 0.2, rng(2))
    lam = targets[0, LABELS[0]]                                # y_0 = 0 and its partner y_5 = 2 differ
    assert 0.5 <= lam <= 1 and targets[0, LABELS[5]] == pytest.approx(1 - lam, abs=1e-6)
    want = lam * x.astype(np.float64) + (1 - lam) * x[::-1].astype(np.float64)
    np.testing.assert_allclose(images, want, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    assert np.all(targets[np.arange(6), LABELS] >= 0.5)        # y_i keeps the larger share
    again = mixup(x, LABELS, 4, 0.2, rng(2))
    np.testing.assert_array_equal(again[0], images)
    np.testing.assert_array_equal(again[1], targets)


def test_mixup_of_equal_labels_gives_one_hot_targets():
    _, targets = mixup(batch(), np.full(6, 3), 5, 1.0, rng(7))
    np.testing.assert_array_equal(targets, np.eye(5)[np.full(6, 3)])
