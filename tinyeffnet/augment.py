"""RandAugment and Mixup: the regularization EfficientNetV2 strengthens as its images grow, for batches of
``(N, H, W, 3) uint8`` images.

**RandAugment** (Cubuk et al., 2020) as automl's EfficientNetV2 applies it (google/automl,
``efficientnetv2/autoaugment.py``, ``distort_image_with_randaugment``): each image gets ``num_ops``
operations in a row (automl's ``ra_num_layers`` = 2), each drawn uniformly from the 16 of ``OPS`` and always
applied, every one at the same magnitude m. m is on automl's scale, where ``MAX_LEVEL`` = 10 is the top of
the range the original policy search used; it may go beyond (V2-L trains at 20), so each operation reads
its argument from the level l = m / 10:

    AutoContrast, Equalize, Invert           no argument
    Rotate                                   ±30° · l                      (the sign drawn with probability ½)
    Posterize                                keep int(4 · l) high bits of each byte (at most 8)
    Solarize                                 invert the bytes ≥ int(256 · l)
    SolarizeAdd                              add int(110 · l) to the bytes < 128, clipped at 255
    Color, Contrast, Brightness, Sharpness   blend with a degenerate image by f = 1.8 · l + 0.1
    ShearX, ShearY                           ±0.3 · l
    TranslateX, TranslateY                   ±(100 / 224) · l of the image's width / height
    Cutout                                   grey square of half-side int((40 / 224) · l · min(H, W))

A blend is ``degenerate + f · (image − degenerate)``, clipped to 0…255 and truncated to uint8 (f = 1 is the
image, f = 0 the degenerate one, f > 1 extrapolates): Color blends with the image's grey (PIL's
``convert("L")``), Contrast with its mean grey, Brightness with black, Sharpness with the image smoothed by
PIL's 3×3 SMOOTH kernel (borders kept). Geometric operations sample the nearest pixel (Pillow) and, like
Cutout, fill what they uncover with grey ``FILL`` = 128, as automl does.

Where this differs from automl, adapted to 32×32 CIFAR images:

* automl's translation (100) and Cutout (40) are pixels, set for 224-pixel ImageNet crops (and kept at V2's
  128–384-pixel stages); here they are those fractions of the side (``TRANSLATE_FRACTION``,
  ``CUTOUT_FRACTION``): the same pixels at 224, and 14 and 5 at 32 with m = 10, rather than a 32-pixel image
  shifted out of sight;
* automl's Contrast blends with the pixel count / 256 (its histogram's sum, not the mean grey: 4 at
  32×32, a near-black); here with the mean grey, as PIL's ``ImageEnhance.Contrast``;
* Posterize to 0 bits (m < 2.5) gives black, as PIL's; TensorFlow leaves a shift by 8 undefined.

At m = 0 the geometric operations, Cutout and SolarizeAdd leave an image unchanged; the others do not
(AutoContrast, Equalize and Invert ignore m, Posterize keeps no bits, Solarize inverts every byte, the blends
use f = 0.1). That is why the training command's ``--randaugment 0`` means off.

**Mixup** (Zhang et al., 2018), with automl's partner and weight (``efficientnetv2/datasets.py``, ``mixup``):
each image is mixed with the batch in reverse order,

    x̃_i = λ · x_i + (1 − λ) · x_{N−1−i},    ỹ_i = λ · onehot(y_i) + (1 − λ) · onehot(y_{N−1−i}),
    λ = max(λ', 1 − λ'),  λ' ~ Beta(α, α),

with one λ for the whole batch, the paper's formulation (automl draws one per image). The max keeps each
image's own label the larger share, so y_i is still the label of the image that dominates x̃_i. The soft
targets ỹ go through ``kernels.loss.soft_cross_entropy_forward``, label smoothing applied there.
"""

import math

import numpy as np
from PIL import Image

MAX_LEVEL = 10.0                   # automl's _MAX_LEVEL: level l = m / MAX_LEVEL
NUM_OPS = 2                        # operations per image (automl's ra_num_layers)
FILL = 128                         # the grey a geometric operation or Cutout leaves behind
ROTATE_DEGREES = 30.0
POSTERIZE_BITS = 4
SOLARIZE_THRESHOLD = 256
SOLARIZE_ADD = 110
SOLARIZE_ADD_BELOW = 128
ENHANCE_SCALE, ENHANCE_FLOOR = 1.8, 0.1     # blend factor f = 1.8 · l + 0.1
SHEAR = 0.3
AUTOML_SIDE = 224                  # ImageNet's 224-pixel crops, for which automl's pixel constants were set
TRANSLATE_FRACTION = 100 / AUTOML_SIDE
CUTOUT_FRACTION = 40 / AUTOML_SIDE
SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32)     # PIL's ImageFilter.SMOOTH, over its sum 13


# --- the operations: (H, W, 3) uint8 image, level l, generator → (H, W, 3) uint8 ------------------------------
def _signed(value, rng):
    """``value`` or ``−value``, with probability ½ each (automl's _randomly_negate_tensor)."""
    return value if rng.random() < 0.5 else -value


def _to_uint8(x):
    """Float pixels clipped to 0…255 and truncated, as TensorFlow's cast."""
    return np.clip(x, 0, 255).astype(np.uint8)


def _blend(degenerate, image, factor):
    """degenerate + f · (image − degenerate), clipped and truncated; degenerate broadcasts against image."""
    degenerate = np.asarray(degenerate, np.float32)
    return _to_uint8(degenerate + np.float32(factor) * (image.astype(np.float32) - degenerate))


def _enhance_factor(level):
    return ENHANCE_SCALE * level + ENHANCE_FLOOR


def _grey(image):
    """(H, W) uint8: PIL's convert("L"), L = 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2)."""
    return np.asarray(Image.fromarray(image).convert("L"))


def _affine(image, coefficients):
    """Output pixel (x, y) takes the input's nearest to (a·x + b·y + c, d·x + e·y + f); uncovered: ``FILL``."""
    return np.asarray(Image.fromarray(image).transform(
        image.shape[1::-1], Image.Transform.AFFINE, coefficients, Image.Resampling.NEAREST, fillcolor=(FILL,) * 3))


def auto_contrast(image, level, rng):
    """Stretch each channel to 0…255: (x − lo) · 255 / (hi − lo); a constant channel stays as it is."""
    lo, hi = image.min(axis=(0, 1)), image.max(axis=(0, 1))
    span = (hi - lo).astype(np.float32)
    stretched = (image - lo.astype(np.float32)) * 255 / np.maximum(span, 1)
    return np.where(span > 0, _to_uint8(stretched), image)


def equalize(image, level, rng):
    """PIL's histogram equalisation, per channel: the lookup table (cumulative count + step // 2) // step,
    shifted by one, with step = (pixels − the last nonzero bin's count) // 255; step 0 leaves the channel."""
    out = image.copy()
    for c in range(image.shape[-1]):
        channel = image[..., c]
        histogram = np.bincount(channel.ravel(), minlength=256)
        nonzero = histogram[histogram > 0]
        step = (nonzero.sum() - nonzero[-1]) // 255
        if step:
            lut = (np.cumsum(histogram) + step // 2) // step
            out[..., c] = np.clip(np.concatenate([[0], lut[:-1]]), 0, 255)[channel]
    return out


def invert(image, level, rng):
    return 255 - image


def rotate(image, level, rng):
    """Rotate by ±30° · l about the centre (counter-clockwise for +)."""
    angle = _signed(ROTATE_DEGREES * level, rng)
    return np.asarray(Image.fromarray(image).rotate(angle, Image.Resampling.NEAREST, fillcolor=(FILL,) * 3))


def posterize(image, level, rng):
    """Keep the int(4 · l) high bits of every byte (at most 8; 0 bits: black)."""
    bits = min(8, int(POSTERIZE_BITS * level))
    return image & np.uint8((0xFF << (8 - bits)) & 0xFF)


def solarize(image, level, rng):
    """Invert (255 − x) the bytes x ≥ int(256 · l)."""
    threshold = int(SOLARIZE_THRESHOLD * level)          # may exceed 255: then nothing is inverted
    return np.where(image.astype(np.int64) < threshold, image, 255 - image)


def solarize_add(image, level, rng):
    """Add int(110 · l) to the bytes < 128, clipped at 255."""
    added = np.minimum(image.astype(np.int64) + int(SOLARIZE_ADD * level), 255).astype(np.uint8)
    return np.where(image < SOLARIZE_ADD_BELOW, added, image)


def color(image, level, rng):
    return _blend(_grey(image)[..., None], image, _enhance_factor(level))


def contrast(image, level, rng):
    """Blend with the mean grey, rounded (PIL's ImageEnhance.Contrast; automl's differs, see the top)."""
    return _blend(math.floor(_grey(image).mean() + 0.5), image, _enhance_factor(level))


def brightness(image, level, rng):
    return _blend(0.0, image, _enhance_factor(level))


def sharpness(image, level, rng):
    """Blend with the image smoothed by ``SMOOTH`` (truncated to uint8; the 1-pixel border kept)."""
    smooth = image.astype(np.float32)
    h, w = image.shape[:2]
    if h > 2 and w > 2:
        weighted = sum(SMOOTH[i, j] * smooth[i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3))
        window = weighted / SMOOTH.sum()                # an exact integer sum, divided once
        smooth[1:-1, 1:-1] = np.floor(np.clip(window, 0, 255))
    return _blend(smooth, image, _enhance_factor(level))


def shear_x(image, level, rng):
    return _affine(image, (1, _signed(SHEAR * level, rng), 0, 0, 1, 0))


def shear_y(image, level, rng):
    return _affine(image, (1, 0, 0, _signed(SHEAR * level, rng), 1, 0))


def translate_x(image, level, rng):
    """Shift by ±(100 / 224) · l of the width (+: the content moves left)."""
    return _affine(image, (1, 0, _signed(TRANSLATE_FRACTION * level * image.shape[1], rng), 0, 1, 0))


def translate_y(image, level, rng):
    return _affine(image, (1, 0, 0, 0, 1, _signed(TRANSLATE_FRACTION * level * image.shape[0], rng)))


def cutout(image, level, rng):
    """Fill with ``FILL`` the square of half-side int((40 / 224) · l · min(H, W)) around a uniform pixel,
    clipped at the edges."""
    h, w = image.shape[:2]
    half = int(CUTOUT_FRACTION * level * min(h, w))
    cy, cx = rng.integers(h), rng.integers(w)
    out = image.copy()
    out[max(0, cy - half):cy + half, max(0, cx - half):cx + half] = FILL
    return out


# automl's list, in its order (the index a draw picks)
OPS = {
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert, "Rotate": rotate,
    "Posterize": posterize, "Solarize": solarize, "Color": color, "Contrast": contrast,
    "Brightness": brightness, "Sharpness": sharpness, "ShearX": shear_x, "ShearY": shear_y,
    "TranslateX": translate_x, "TranslateY": translate_y, "Cutout": cutout, "SolarizeAdd": solarize_add,
}


def _check_images(images):
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"images must be a (N, H, W, 3) uint8 array, got {got}")


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")


def _check_labels(labels, count, num_classes):
    labels = np.asarray(labels)
    if (labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer)
            or np.any((labels < 0) | (labels >= num_classes))):
        raise ValueError(f"labels must be {count} integers in [0, {num_classes}), one per image; got "
                         f"{labels.dtype} of shape {labels.shape}")


def rand_augment(images, magnitude, rng, num_ops=NUM_OPS):
    """RandAugment at magnitude m (automl's scale, m ≥ 0): each image of ``images`` (N, H, W, 3) uint8 gets
    ``num_ops`` operations drawn uniformly from ``OPS`` by ``rng`` (a ``numpy.random.Generator``), which also
    draws their signs and Cutout's centre. Returns a new (N, H, W, 3) uint8 array."""
    _check_images(images)
    _check_rng(rng)
    if not (math.isfinite(magnitude) and magnitude >= 0):
        raise ValueError(f"magnitude must be a finite number ≥ 0, got {magnitude}")
    level, ops = magnitude / MAX_LEVEL, list(OPS.values())
    out = np.empty_like(images)
    for i, image in enumerate(images):
        for _ in range(num_ops):
            image = ops[rng.integers(len(ops))](image, level, rng)
        out[i] = image
    return out


def mixup(images, labels, num_classes, alpha, rng):
    """Mixup of a batch with its reverse (see the top): ``(mixed images (N, H, W, 3) float32 on the 0…255
    scale, targets (N, K) float32)``, each target row λ on y_i and 1 − λ on y_{N−1−i} (summing to 1).

    images: (N, H, W, 3) uint8; labels: (N,) integers in [0, K); α ≥ 0 (0: no mixing, λ = 1, one-hot
    targets); rng draws λ. Written as partner + λ · (own − partner), so equal labels give exactly one-hot."""
    _check_images(images)
    _check_rng(rng)
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number ≥ 0, got {alpha}")
    _check_labels(labels, len(images), num_classes)
    one_hot = np.eye(num_classes, dtype=np.float32)[labels]
    x = images.astype(np.float32)
    if alpha == 0:
        return x, one_hot
    draw = rng.beta(alpha, alpha)
    lam = np.float32(max(draw, 1.0 - draw))
    return x[::-1] + lam * (x - x[::-1]), one_hot[::-1] + lam * (one_hot - one_hot[::-1])
