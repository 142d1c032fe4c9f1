# Pythran source of hpcpipe.kernels._convolve (compiled by setup.py). Reference: ../convolve.py
#pythran export correlate_separable(float32[:,:], float32[:], float32[:], float32[:,:], float32[:,:])
#pythran export correlate_separable(float64[:,:], float64[:], float64[:], float64[:,:], float64[:,:])
#pythran export correlate_separable_masked(float32[:,:], uint8[:,:], float32[:], float32[:], float32[:,:], float32[:,:], float32[:,:])
#pythran export correlate_separable_masked(float64[:,:], uint8[:,:], float64[:], float64[:], float64[:,:], float64[:,:], float64[:,:])
#pythran export correlate_2d(float32[:,:], float32[:,:], float32[:,:])
#pythran export correlate_2d(float64[:,:], float64[:,:], float64[:,:])
#pythran export correlate_2d_masked(float32[:,:], uint8[:,:], float32[:,:], float32[:,:])
#pythran export correlate_2d_masked(float64[:,:], uint8[:,:], float64[:,:], float64[:,:])
import numpy as np


def _row(image, kernel_x, i, work, slot):
    """work[slot] = row i of image correlated with kernel_x, edges repeating the nearest
    pixel."""
    nx = image.shape[1]
    nkx = kernel_x.shape[0]
    hx = nkx // 2
    lo = min(hx, nx)
    hi = max(nx - hx, lo)
    # whole-slice updates: the compiler vectorises them (the same sums, tap by tap)
    work[slot, lo:hi] = 0
    for t in range(nkx):
        w = kernel_x[t]
        off = t - hx
        work[slot, lo:hi] += w * image[i, lo + off:hi + off]
    for j in list(range(0, lo)) + list(range(hi, nx)):
        acc = 0.0
        for t in range(nkx):
            jj = min(max(j - hx + t, 0), nx - 1)
            acc += kernel_x[t] * image[i, jj]
        work[slot, j] = acc


def correlate_separable(image, kernel_x, kernel_y, work, out):
    """Correlate rows with kernel_x, then columns with kernel_y into out.

    Edges repeat the nearest pixel (scipy.ndimage mode 'nearest'). ``work`` holds the
    row-correlated rows as a ring: row r in ``work[r % len(work)]``; it needs at least
    ``min(len(kernel_y), ny)`` rows (the rows one output row needs stay in cache).
    """
    ny, nx = image.shape
    nky = kernel_y.shape[0]
    hy = nky // 2
    ring = work.shape[0]
    done = 0  # rows correlated so far
    for i in range(ny):
        last = min(i + hy, ny - 1)
        while done <= last:
            _row(image, kernel_x, done, work, done % ring)
            done += 1
        out[i, :] = 0
        for t in range(nky):
            r = min(max(i - hy + t, 0), ny - 1)
            w = kernel_y[t]
            out[i, :] += w * work[r % ring, :]


def correlate_separable_masked(image, bad, kernel_x, kernel_y, num, den, out):
    """Normalised separable correlation leaving out bad, non-finite and outside pixels.

    out = sum(K v g) / sum(K g) * sum(K), g = 1 for good pixels; NaN where sum(K g) == 0.
    """
    ny, nx = image.shape
    nkx = kernel_x.shape[0]
    hx = nkx // 2
    nky = kernel_y.shape[0]
    hy = nky // 2
    for i in range(ny):
        for j in range(nx):
            num[i, j] = 0.0
            den[i, j] = 0.0
        for t in range(nkx):
            w = kernel_x[t]
            off = t - hx
            for j in range(max(0, -off), min(nx, nx - off)):
                v = image[i, j + off]
                if bad[i, j + off] == 0 and np.isfinite(v):
                    num[i, j] += w * v
                    den[i, j] += w
    total = 0.0
    for t in range(nkx):
        for u in range(nky):
            total += kernel_x[t] * kernel_y[u]
    for i in range(ny):
        for j in range(nx):
            out[i, j] = 0.0
        acc = np.zeros(nx)
        for t in range(nky):
            r = i - hy + t
            if r < 0 or r >= ny:
                continue
            w = kernel_y[t]
            for j in range(nx):
                out[i, j] += w * num[r, j]
                acc[j] += w * den[r, j]
        for j in range(nx):
            if acc[j] != 0.0:
                out[i, j] = out[i, j] / acc[j] * total
            else:
                out[i, j] = np.nan


def correlate_2d(image, kernel, out):
    """Correlate with a 2-D kernel, edges repeating the nearest pixel."""
    ny, nx = image.shape
    nky, nkx = kernel.shape
    hy = nky // 2
    hx = nkx // 2
    for i in range(ny):
        for j in range(nx):
            out[i, j] = 0.0
        for u in range(nky):
            r = min(max(i - hy + u, 0), ny - 1)
            for t in range(nkx):
                w = kernel[u, t]
                off = t - hx
                lo = min(max(0, -off), nx)
                hi = max(min(nx, nx - off), lo)
                for j in range(lo, hi):
                    out[i, j] += w * image[r, j + off]
                for j in range(0, lo):
                    out[i, j] += w * image[r, 0]
                for j in range(hi, nx):
                    out[i, j] += w * image[r, nx - 1]


def correlate_2d_masked(image, bad, kernel, out):
    """Normalised 2-D correlation leaving out bad, non-finite and outside pixels."""
    ny, nx = image.shape
    nky, nkx = kernel.shape
    hy = nky // 2
    hx = nkx // 2
    total = 0.0
    for u in range(nky):
        for t in range(nkx):
            total += kernel[u, t]
    num = np.zeros(nx)
    den = np.zeros(nx)
    for i in range(ny):
        num[:] = 0.0
        den[:] = 0.0
        for u in range(nky):
            r = i - hy + u
            if r < 0 or r >= ny:
                continue
            for t in range(nkx):
                w = kernel[u, t]
                off = t - hx
                for j in range(max(0, -off), min(nx, nx - off)):
                    v = image[r, j + off]
                    if bad[r, j + off] == 0 and np.isfinite(v):
                        num[j] += w * v
                        den[j] += w
        for j in range(nx):
            if den[j] != 0.0:
                out[i, j] = num[j] / den[j] * total
            else:
                out[i, j] = np.nan
