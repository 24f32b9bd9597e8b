"""Every tolerance the kernel tests compare with, each value defined once, named for what is compared.

Forward passes against a float64 NumPy formula, by how much rounding the kernel adds beyond it:

    ELEMENTWISE_*   one formula per element (the activations): a few ulp
    SMALL_SUMS_*    pooling, channel scale, linear, cross-entropy: short sums in another order than NumPy's
    LONG_SUMS_*     batch norm and the convolutions: sums over a batch or a window in another order;
                    LONG_SUMS_F32 is also the CUDA twins' forward against the CPU's (float32 both sides)

Backward passes:

    GRADIENT        against central differences in float64 (``gradcheck.py``, ε = 1e-6): truncation
                    error ~ε² and the rounding of L divided by 2ε ~1e-10 relative leave ~1e-6 of noise
    TWIN_GRADIENT   the CUDA twins' backward against the CPU's, float32 both sides: the weight and
                    batch-norm gradients are long sums, added in another order
    TRAINING        a few SGD steps on the CPU and on CUDA (``test_device_training.py``): the float32
                    differences of the last bits are carried from step to step
"""

ELEMENTWISE_F64 = dict(rtol=1e-14, atol=1e-15)
ELEMENTWISE_F32 = dict(rtol=1e-6, atol=1e-6)
SMALL_SUMS_F64 = dict(rtol=1e-13, atol=1e-14)
SMALL_SUMS_F32 = dict(rtol=1e-5, atol=1e-6)
LONG_SUMS_F64 = dict(rtol=1e-12, atol=1e-12)
LONG_SUMS_F32 = dict(rtol=1e-5, atol=1e-5)

GRADIENT = dict(rtol=1e-5, atol=1e-6)
TWIN_GRADIENT = dict(rtol=1e-4, atol=1e-5)
# Both sides of TRAINING compute in float32 but add in different orders (BLAS against a tiled matrix
# product, and another order of the batch-norm sums); measured under the simulator after three steps:
# 2e-7 relative on the losses and at most 2e-5 relative on any parameter, statistic or velocity (1.5e-8
# absolute). Five times that:
TRAINING = dict(rtol=1e-4, atol=1e-6)
