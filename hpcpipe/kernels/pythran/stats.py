# Pythran source of hpcpipe.kernels._stats (compiled by setup.py). Reference: ../stats.py
#pythran export binned_clipped_mean(float32[:,:], uint8[:,:], int, int, float, int)
#pythran export binned_clipped_mean(float64[:,:], uint8[:,:], int, int, float, int)
import numpy as np


def _percentile_sorted(s, n, q):
    pos = q * (n - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return s[lo] + frac * (s[hi] - s[lo])


def binned_clipped_mean(image, bad, bin_x, bin_y, nsigma, niter):
    """Sigma-clipped mean, standard deviation and count of the good pixels of each cell."""
    ny, nx = image.shape
    nby = (ny + bin_y - 1) // bin_y
    nbx = (nx + bin_x - 1) // bin_x
    mean = np.full((nby, nbx), np.nan)
    std = np.full((nby, nbx), np.nan)
    count = np.zeros((nby, nbx), np.int64)
    buf = np.empty(bin_x * bin_y, np.float64)
    for by in range(nby):
        for bx in range(nbx):
            n = 0
            for i in range(by * bin_y, min((by + 1) * bin_y, ny)):
                for j in range(bx * bin_x, min((bx + 1) * bin_x, nx)):
                    v = image[i, j]
                    if bad[i, j] == 0 and np.isfinite(v):
                        buf[n] = v
                        n += 1
            if n == 0:
                continue
            s = np.sort(buf[:n])
            center = _percentile_sorted(s, n, 0.5)
            width = 0.7413 * (_percentile_sorted(s, n, 0.75) - _percentile_sorted(s, n, 0.25))
            kept = n
            for it in range(niter):
                limit = nsigma * width
                total = 0.0
                m = 0
                for k in range(n):
                    if abs(s[k] - center) <= limit:
                        total += s[k]
                        m += 1
                if m == 0:
                    break
                mu = total / m
                total2 = 0.0
                for k in range(n):
                    if abs(s[k] - center) <= limit:
                        total2 += (s[k] - mu) * (s[k] - mu)
                center = mu
                width = np.sqrt(total2 / m)
                kept = m
            mean[by, bx] = center
            std[by, bx] = width
            count[by, bx] = kept
    return mean, std, count
