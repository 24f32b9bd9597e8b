"""The numeric core of tinyeffnet: pure functions over NumPy arrays, forward and backward.

Layout: every image tensor is **NHWC** ``(N, H, W, C)`` float32 (float64 is accepted too, for
gradient checks). Channels last keeps a depthwise convolution's inner loop contiguous over channels and
turns a 1×1 convolution into one matrix product ``(N·H·W, C_in) @ (C_in, C_out)``.

Weight layouts (export converts to PyTorch's OIHW):

=================  ===========================  ==========================
operation          weight                       file
=================  ===========================  ==========================
dense k×k conv     ``(k, k, C_in, C_out)``      ``conv2d.py``
depthwise k×k      ``(k, k, C)``                ``depthwise.py``
pointwise 1×1      ``(C_in, C_out)``            ``pointwise.py``
linear             ``(F_in, F_out)`` + bias     ``linear.py``
=================  ===========================  ==========================

Each file pairs ``*_forward`` with ``*_backward`` so the chain rule for one operation reads on one
screen; ``elementwise.py`` (sums of tensors, in place or not) and ``sgd.py`` (the fused optimiser update)
have no backward; ``padding.py`` is the geometry of a window under a padding rule (TensorFlow's SAME, or
PyTorch's symmetric (k − 1)/2), and ``fastexp.py`` the vectorisable e^x behind σ.

``cuda/x.py`` is the CUDA twin of ``x.py`` (numba.cuda): the same functions with the same arguments, over
device arrays, one GPU thread per output element or one block per reduced sum (``cuda/_device.py``). The
unfused batch norm of ``batchnorm.py`` is the CPU reference of the fused ``batchnorm_act.py`` and has no
twin of its own beyond the statistics. Nothing imports the twins unless asked: CPU use never needs CUDA
(``tinyeffnet.device.require_cuda`` says what is missing; ``NUMBA_ENABLE_CUDASIM=1`` runs them without a
GPU). The public functions check shapes and dtypes at the Python boundary (``_checks.py``; a twin runs
its CPU file's checks on device arrays) and then call ``numba.njit(cache=True)`` loops, or NumPy's BLAS for
matrix products (``matmul.py``, which splits a large one among the threads, each block a BLAS call from a Numba
loop: ``blas.py``); the per-tensor updates run a small tensor's loop on one thread (``_threads.py``: waking the
others costs more than the loop). Nothing here keeps state (``matmul.py``'s pool of waiting threads, where
``blas.py`` finds no BLAS to call, aside) or imports ``tinyeffnet``.
"""
