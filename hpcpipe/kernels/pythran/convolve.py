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


def _symmetric(kernel):
    """True if the kernel reads the same both ways."""
    n = kernel.shape[0]
    for t in range(n // 2):
        if kernel[t] != kernel[n - 1 - t]:
            return False
    return True


def _row_edges(image, kernel_x, i, work, slot, lo, hi):
    """The columns of work[slot] within half a kernel of an edge (nearest-pixel padding)."""
    nx = image.shape[1]
    nkx = kernel_x.shape[0]
    hx = nkx // 2
    for j in list(range(0, lo)) + list(range(hi, nx)):
        acc = 0.0
        for t in range(nkx):
            jj = min(max(j - hx + t, 0), nx - 1)
            acc += kernel_x[t] * image[i, jj]
        work[slot, j] = acc


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
    _row_edges(image, kernel_x, i, work, slot, lo, hi)


def _row_symmetric(image, kernel_x, i, work, slot):
    """_row for a symmetric kernel: the two pixels of a pair are added before their one
    product, and up to four pairs go into one pass over the row."""
    nx = image.shape[1]
    nkx = kernel_x.shape[0]
    h = nkx // 2
    lo = min(h, nx)
    hi = max(nx - h, lo)
    if hi > lo:
        s = image[i]
        dst = work[slot, lo:hi]
        dst[:] = kernel_x[h] * s[lo:hi]
        k = h + 1  # the next pair: weight kernel_x[k], offsets -(k - h) and +(k - h)
        while k < nkx:
            left = nkx - k
            # the pair at offset +-d runs over s[a - d:b - d] and s[a + d:b + d]
            a = lo + h - k
            b = hi + h - k
            c = lo + k - h
            e = hi + k - h
            w = kernel_x
            if left >= 4:
                dst[:] += (w[k] * (s[a:b] + s[c:e]) + w[k + 1] * (s[a - 1:b - 1] + s[c + 1:e + 1])
                           + w[k + 2] * (s[a - 2:b - 2] + s[c + 2:e + 2])
                           + w[k + 3] * (s[a - 3:b - 3] + s[c + 3:e + 3]))
                k += 4
            elif left == 3:
                dst[:] += (w[k] * (s[a:b] + s[c:e]) + w[k + 1] * (s[a - 1:b - 1] + s[c + 1:e + 1])
                           + w[k + 2] * (s[a - 2:b - 2] + s[c + 2:e + 2]))
                k += 3
            elif left == 2:
                dst[:] += w[k] * (s[a:b] + s[c:e]) + w[k + 1] * (s[a - 1:b - 1] + s[c + 1:e + 1])
                k += 2
            else:
                dst[:] += w[k] * (s[a:b] + s[c:e])
                k += 1
    _row_edges(image, kernel_x, i, work, slot, lo, hi)


def _column_symmetric(kernel_y, i, ny, work, dst):
    """dst = the rows around row i of the ring ``work`` correlated with a symmetric kernel
    (the two rows of a pair added first, up to four pairs in one pass)."""
    w = kernel_y
    nky = w.shape[0]
    h = nky // 2
    ring = work.shape[0]
    dst[:] = w[h] * work[i % ring]
    k = h + 1
    while k < nky:
        left = nky - k
        # rows i - d and i + d (edges repeated) for the pairs d = k - h, k - h + 1, ...
        u0 = max(i + h - k, 0) % ring
        v0 = min(i + k - h, ny - 1) % ring
        u1 = max(i + h - k - 1, 0) % ring
        v1 = min(i + k - h + 1, ny - 1) % ring
        u2 = max(i + h - k - 2, 0) % ring
        v2 = min(i + k - h + 2, ny - 1) % ring
        u3 = max(i + h - k - 3, 0) % ring
        v3 = min(i + k - h + 3, ny - 1) % ring
        if left >= 4:
            dst[:] += (w[k] * (work[u0] + work[v0]) + w[k + 1] * (work[u1] + work[v1])
                       + w[k + 2] * (work[u2] + work[v2]) + w[k + 3] * (work[u3] + work[v3]))
            k += 4
        elif left == 3:
            dst[:] += (w[k] * (work[u0] + work[v0]) + w[k + 1] * (work[u1] + work[v1])
                       + w[k + 2] * (work[u2] + work[v2]))
            k += 3
        elif left == 2:
            dst[:] += w[k] * (work[u0] + work[v0]) + w[k + 1] * (work[u1] + work[v1])
            k += 2
        else:
            dst[:] += w[k] * (work[u0] + work[v0])
            k += 1


def correlate_separable(image, kernel_x, kernel_y, work, out):
    """Correlate rows with kernel_x, then columns with kernel_y into out.

    Edges repeat the nearest pixel (scipy.ndimage mode 'nearest'). ``work`` holds the
    row-correlated rows as a ring: row r in ``work[r % len(work)]``; it needs at least
    ``min(len(kernel_y), ny)`` rows (the rows one output row needs stay in cache).
    Symmetric kernels take the folded paths (half the products, a quarter of the passes).
    """
    ny, nx = image.shape
    nky = kernel_y.shape[0]
    hy = nky // 2
    ring = work.shape[0]
    sym_x = _symmetric(kernel_x)
    sym_y = _symmetric(kernel_y)
    done = 0  # rows correlated so far
    for i in range(ny):
        last = min(i + hy, ny - 1)
        while done <= last:
            if sym_x:
                _row_symmetric(image, kernel_x, done, work, done % ring)
            else:
                _row(image, kernel_x, done, work, done % ring)
            done += 1
        if sym_y:
            _column_symmetric(kernel_y, i, ny, work, out[i])
        else:
            out[i, :] = 0
            for t in range(nky):
                r = min(max(i - hy + t, 0), ny - 1)
                out[i, :] += kernel_y[t] * work[r % ring]


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
    """Correlate with a 2-D kernel, edges repeating the nearest pixel.

    Each image row the output row needs is copied once into a padded row (edges repeated);
    its taps are then added up to four at a time in whole-row expressions (vectorised).
    """
    ny, nx = image.shape
    nky, nkx = kernel.shape
    hy = nky // 2
    hx = nkx // 2
    pad = np.empty(nx + 2 * hx, image.dtype)
    for i in range(ny):
        acc = out[i]
        acc[:] = 0
        for u in range(nky):
            r = min(max(i - hy + u, 0), ny - 1)
            pad[hx:hx + nx] = image[r]
            pad[:hx] = image[r, 0]
            pad[hx + nx:] = image[r, nx - 1]
            w = kernel[u]
            t = 0
            while t < nkx:
                left = nkx - t
                if left >= 4:
                    acc[:] += (w[t] * pad[t:t + nx] + w[t + 1] * pad[t + 1:t + 1 + nx]
                               + w[t + 2] * pad[t + 2:t + 2 + nx]
                               + w[t + 3] * pad[t + 3:t + 3 + nx])
                    t += 4
                elif left == 3:
                    acc[:] += (w[t] * pad[t:t + nx] + w[t + 1] * pad[t + 1:t + 1 + nx]
                               + w[t + 2] * pad[t + 2:t + 2 + nx])
                    t += 3
                elif left == 2:
                    acc[:] += w[t] * pad[t:t + nx] + w[t + 1] * pad[t + 1:t + 1 + nx]
                    t += 2
                else:
                    acc[:] += w[t] * pad[t:t + nx]
                    t += 1


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
