# Sigma-clipped weighted mean over a stack of warps, per pixel (hpcpipe.kernels.coadd).
#pythran export clipped_mean_rows(float32[:,:] list, float32[:,:] list, int32[:,:] list, float64[:], float, int, int, int, int, float32[:,:], float32[:,:], int32[:,:], int32[:,:])
import numpy as np


def _kth(a, n, k):
    """The k-th smallest of a[:n] (0-based), partitioning a in place (Wirth's selection):
    afterwards a[i] <= a[k] for i < k and a[i] >= a[k] for i > k."""
    lo = 0
    hi = n - 1
    while lo < hi:
        x = a[k]
        i = lo
        j = hi
        while True:
            while a[i] < x:
                i += 1
            while x < a[j]:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
            if i > j:
                break
        if j < k:
            lo = i
        if k < i:
            hi = j
    return a[k]


def _median(vals, m, work):
    """Median of vals[:m]: insertion sort of a copy for short stacks, selection (linear
    time) for deep ones; the same value either way."""
    if m > 16:
        for i in range(m):
            work[i] = vals[i]
        h = m // 2
        upper = _kth(work, m, h)
        if m % 2 == 1:
            return upper
        lower = work[0]
        for i in range(1, h):
            if work[i] > lower:
                lower = work[i]
        return 0.5 * (lower + upper)
    for i in range(m):
        v = vals[i]
        j = i - 1
        while j >= 0 and work[j] > v:
            work[j + 1] = work[j]
            j -= 1
        work[j + 1] = v
    h = m // 2
    if m % 2 == 1:
        return work[h]
    return 0.5 * (work[h - 1] + work[h])


def _std(vals, m):
    """Population standard deviation (ddof 0) of vals[:m], two passes."""
    s = 0.0
    for i in range(m):
        s += vals[i]
    mean = s / m
    q = 0.0
    for i in range(m):
        d = vals[i] - mean
        q += d * d
    return np.sqrt(q / m)


def clipped_mean_rows(images, variances, masks, weights, nsigma, niter, bad_bits,
                      clipped_bit, no_data_bit, out_image, out_var, out_mask, out_count):
    n = len(images)
    ny = out_image.shape[0]
    nx = out_image.shape[1]
    vals = np.empty(n)
    work = np.empty(n)
    which = np.empty(n, np.int64)
    for y in range(ny):
        for x in range(nx):
            m = 0
            for k in range(n):
                v = images[k][y, x]
                var = variances[k][y, x]
                if (masks[k][y, x] & bad_bits) == 0 and np.isfinite(v) and np.isfinite(var):
                    vals[m] = v
                    which[m] = k
                    m += 1
            clipped = False
            for _ in range(niter):
                if m == 0:
                    break
                centre = _median(vals, m, work)
                width = _std(vals, m) * nsigma
                lo = centre - width
                hi = centre + width
                kept = 0
                for i in range(m):
                    if vals[i] >= lo and vals[i] <= hi:
                        vals[kept] = vals[i]
                        which[kept] = which[i]
                        kept += 1
                if kept == m:
                    break
                clipped = True
                m = kept
            if m == 0:
                out_image[y, x] = np.nan
                out_var[y, x] = np.nan
                out_mask[y, x] = no_data_bit
                out_count[y, x] = 0
                continue
            sw = 0.0
            swv = 0.0
            sww = 0.0
            bits = 0
            for i in range(m):
                k = which[i]
                w = weights[k]
                sw += w
                swv += w * vals[i]
                sww += w * w * variances[k][y, x]
                bits |= masks[k][y, x]
            if clipped:
                bits |= clipped_bit
            out_image[y, x] = swv / sw
            out_var[y, x] = sww / (sw * sw)
            out_mask[y, x] = bits
            out_count[y, x] = m
