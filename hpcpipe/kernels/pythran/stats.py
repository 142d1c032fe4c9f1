# Pythran source of hpcpipe.kernels._stats (compiled by setup.py). Reference: ../stats.py
#pythran export binned_clipped_mean(float32[:,:], uint8[:,:], int, int, float, int)
#pythran export binned_clipped_mean(float64[:,:], uint8[:,:], int, int, float, int)
#pythran export clipped_mean_1d(float32[:], float, int)
#pythran export clipped_mean_1d(float64[:], float, int)
import numpy as np


def _select(a, left, right, k):
    """Reorder a[left..right] (inclusive) so that a[k] is its k-th smallest (quickselect).

    Everything left of k is <= a[k] and everything right of it >= a[k] afterwards.
    """
    while True:
        if right <= left + 1:
            if right == left + 1 and a[right] < a[left]:
                t = a[left]
                a[left] = a[right]
                a[right] = t
            return a[k]
        mid = (left + right) // 2
        t = a[mid]
        a[mid] = a[left + 1]
        a[left + 1] = t
        if a[left] > a[right]:
            t = a[left]
            a[left] = a[right]
            a[right] = t
        if a[left + 1] > a[right]:
            t = a[left + 1]
            a[left + 1] = a[right]
            a[right] = t
        if a[left] > a[left + 1]:
            t = a[left]
            a[left] = a[left + 1]
            a[left + 1] = t
        i = left + 1
        j = right
        pivot = a[left + 1]
        while True:
            i += 1
            while a[i] < pivot:
                i += 1
            j -= 1
            while a[j] > pivot:
                j -= 1
            if j < i:
                break
            t = a[i]
            a[i] = a[j]
            a[j] = t
        a[left + 1] = a[j]
        a[j] = pivot
        if j >= k:
            right = j - 1
        if j <= k:
            left = i


def _min_range(a, lo, hi):
    """The smallest of a[lo..hi] (inclusive)."""
    m = a[lo]
    for k in range(lo + 1, hi + 1):
        if a[k] < m:
            m = a[k]
    return m


def _lerp(lo, hi, frac):
    return lo + frac * (hi - lo)


def _quartiles(a, n):
    """Linear-interpolated 25th, 50th and 75th percentiles of a[:n] (reorders a).

    The same values as numpy.percentile(..., method="linear"), found by quickselect
    instead of a full sort.
    """
    p50 = 0.5 * (n - 1)
    k50 = int(np.floor(p50))
    m_lo = float(_select(a, 0, n - 1, k50))
    m_hi = m_lo
    if k50 + 1 <= n - 1:
        m_hi = float(_min_range(a, k50 + 1, n - 1))
    median = _lerp(m_lo, m_hi, p50 - k50)
    p25 = 0.25 * (n - 1)
    k25 = int(np.floor(p25))
    if k25 == k50:
        q_lo = m_lo
        q_hi = m_hi
    else:
        q_lo = float(_select(a, 0, k50 - 1, k25))
        if k25 + 1 <= k50 - 1:
            q_hi = float(_min_range(a, k25 + 1, k50 - 1))
        else:
            q_hi = m_lo
    q25 = _lerp(q_lo, q_hi, p25 - k25)
    p75 = 0.75 * (n - 1)
    k75 = int(np.floor(p75))
    if k75 == k50:
        r_lo = m_lo
        r_hi = m_hi
    else:
        r_lo = float(_select(a, k50 + 1, n - 1, k75))
        if k75 + 1 <= n - 1:
            r_hi = float(_min_range(a, k75 + 1, n - 1))
        else:
            r_hi = r_lo
    q75 = _lerp(r_lo, r_hi, p75 - k75)
    return q25, median, q75


def _clip(s, n, nsigma, niter):
    """Clipped mean, width and kept count of s[:n] (see the reference for the rule)."""
    q25, center, q75 = _quartiles(s, n)
    width = 0.7413 * (q75 - q25)
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
    return center, width, kept


def clipped_mean_1d(values, nsigma, niter):
    """Clipped mean, width and kept count of the finite values of a 1-D array."""
    n0 = values.shape[0]
    buf = np.empty(n0, values.dtype)
    n = 0
    for k in range(n0):
        v = values[k]
        if np.isfinite(v):
            buf[n] = v
            n += 1
    if n == 0:
        return np.nan, np.nan, 0
    return _clip(buf, n, nsigma, niter)


def binned_clipped_mean(image, bad, bin_x, bin_y, nsigma, niter):
    """Sigma-clipped mean, standard deviation and count of the good pixels of each cell."""
    ny, nx = image.shape
    nby = (ny + bin_y - 1) // bin_y
    nbx = (nx + bin_x - 1) // bin_x
    mean = np.full((nby, nbx), np.nan)
    std = np.full((nby, nbx), np.nan)
    count = np.zeros((nby, nbx), np.int64)
    buf = np.empty(bin_x * bin_y, image.dtype)
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
            center, width, kept = _clip(buf, n, nsigma, niter)
            mean[by, bx] = center
            std[by, bx] = width
            count[by, bx] = kept
    return mean, std, count
