"""The CUDA twins of the kernels: ``kernels/cuda/x.py`` is the twin of ``kernels/x.py``.

A twin has the same functions with the same arguments as its CPU file, over ``numba.cuda`` device arrays
(float32, C-contiguous), and runs the same argument checks (the CPU file's ``_check_*`` helpers, given
``check_device_array`` as the array check). Read the CPU file for the math; a twin's docstring says how
the work maps onto GPU threads (``_device.py``: launch geometry, index arithmetic, the block-wide sum).

Importing a twin imports ``numba.cuda``; nothing on the CPU path does (``tinyeffnet.device.require_cuda``
says what a GPU run needs, ``NUMBA_ENABLE_CUDASIM=1`` runs the twins in Numba's simulator).
"""
