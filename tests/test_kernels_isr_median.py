"""The overscan median helper gives np.median's value exactly."""

from __future__ import annotations

import numpy as np

from hpcpipe.kernels.isr import _median


def test_median_equals_numpy_median():
    rng = np.random.default_rng(3)
    for size in list(range(1, 12)) + [100, 101, 4096 * 32]:
        for decimals in (0, 1, 6):
            values = rng.normal(2000.0, 30.0, size).round(decimals)  # ties when rounded
            assert _median(values) == float(np.median(values))
