"""The hot pixel loops, compiled with Pythran, each beside its NumPy reference.

Each public kernel function checks its inputs, then calls the compiled module
``hpcpipe.kernels._<name>`` when it was built at install time, and the NumPy reference of
the same function otherwise. ``HPCPIPE_KERNELS=numpy`` in the environment forces the
references (for debugging and for the tests that compare the two).
"""

from hpcpipe.kernels._loader import kernel_status, kernels_used, load_native, use_native

__all__ = ["kernel_status", "kernels_used", "load_native", "use_native"]
