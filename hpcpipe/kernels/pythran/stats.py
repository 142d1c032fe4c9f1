# Pythran source of hpcpipe.kernels._stats (compiled by setup.py). Reference: ../stats.py
# (binned_clipped_mean_reference; the algorithm is described in that module's docstring).
#pythran export binned_clipped_mean(float32[:,:], uint8[:,:], int, int, float, int, float32[:], float32[:], float32[:], int64[:], int64[:], int64[:], int64[:], int16[:])
#
# Pythran notes (compile time and memory): the work arrays come from the caller, and the helpers
# return scalars or tuples of scalars. A driver that makes its own arrays and passes them to
# helpers that write into them makes Pythran's type inference (and then g++) take gigabytes.
import numpy as np

_NBINS = 1024
_NSAMPLE = 256


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


def _lerp(lo, hi, frac):
    return lo + frac * (hi - lo)


def _range(image, bad, y0, y1, x0, x1, samp):
    """lohi = the histogram's range, from a 16 x 16 grid sample of the cell's good pixels.

    Any range gives the same results; a poor one only costs time.
    """
    h = y1 - y0
    w = x1 - x0
    ns = 0
    for r in range(samp.shape[0]):
        i = y0 + ((r // 16) * h) // 16
        j = x0 + ((r % 16) * w) // 16
        v = image[i, j]
        if bad[i, j] == 0 and np.isfinite(v):
            samp[ns] = v
            ns += 1
    lo = 0.0
    hi = 0.0
    if ns > 1:
        lo = float(_select(samp, 0, ns - 1, (ns - 1) // 50))
        hi = float(_select(samp, 0, ns - 1, (ns - 1) - (ns - 1) // 50))
    span = hi - lo
    lo -= 0.1 * span
    hi += 0.1 * span
    if not hi > lo:
        lo = -1.0
        hi = 1.0
    return lo, hi


def _count(v, lo, scale, cnt, idx, n):
    """Count a value in its bin (kept in idx[n]); returns v - lo inside the histogram's range,
    else 0."""
    t = (v - lo) * scale
    if t >= _NBINS:
        cnt[_NBINS + 1] += 1
        idx[n] = _NBINS + 1
        return 0.0
    if t >= 0.0:
        b = int(t) + 1
        cnt[b] += 1
        idx[n] = b
        return v - lo
    cnt[0] += 1
    idx[n] = 0
    return 0.0


def _gather(image, bad, y0, y1, x0, x1, lo, scale, buf, cnt, idx):
    """The cell's good pixels into buf, their histogram into cnt; returns their number and
    the sums of v - lo and (v - lo)**2 over the values in the histogram's range (two sums
    each, over even and odd columns: two short dependency chains instead of one long)."""
    for b in range(cnt.shape[0]):
        cnt[b] = 0
    n = 0
    s1a = 0.0
    s2a = 0.0
    s1b = 0.0
    s2b = 0.0
    for i in range(y0, y1):
        for j in range(x0, x1, 2):
            v = float(image[i, j])
            if bad[i, j] == 0 and np.isfinite(v):
                buf[n] = v
                e = _count(v, lo, scale, cnt, idx, n)
                n += 1
                s1a += e
                s2a += e * e
            if j + 1 < x1:
                v = float(image[i, j + 1])
                if bad[i, j + 1] == 0 and np.isfinite(v):
                    buf[n] = v
                    e = _count(v, lo, scale, cnt, idx, n)
                    n += 1
                    s1b += e
                    s2b += e * e
    return n, s1a + s1b, s2a + s2b


def _want_ranks(n, cnt, pos, want):
    """pos = the start of each bin in the grouped order; want = 1 for the bins of the ranks
    the quartiles need and for the two outer bins, 0 for the others."""
    nb = cnt.shape[0]
    for b in range(nb):
        pos[b + 1] = pos[b] + cnt[b]
        want[b] = 0
    want[0] = 1
    want[nb - 1] = 1
    b = 0
    for r in range(6):
        p = 0.25 * (r // 2 + 1) * (n - 1)
        k = min(int(np.floor(p)) + r % 2, n - 1)
        while pos[b + 1] <= k:
            b += 1
        want[b] = 1


def _pick(n, buf, idx, pos, fill, want, srt):
    """The values of the bins with want = 1 to their places in srt (bin b at pos[b]:pos[b + 1])."""
    nb = want.shape[0]
    for b in range(nb):
        if want[b] == 1:
            fill[b] = pos[b]
    for k in range(n):
        b = idx[k]
        if want[b] == 1:
            srt[fill[b]] = buf[k]
            fill[b] += 1


def _quartiles(n, srt, pos):
    """q = numpy.percentile(values, [25, 50, 75]) (linear) from exact order statistics."""
    q = [0.0, 0.0, 0.0]
    b = 0
    for r in range(3):
        p = 0.25 * (r + 1) * (n - 1)
        k = int(np.floor(p))
        k1 = min(k + 1, n - 1)
        while pos[b + 1] <= k:
            b += 1
        v0 = float(_select(srt, pos[b], pos[b + 1] - 1, k))
        b1 = b
        while pos[b1 + 1] <= k1:
            b1 += 1
        v1 = float(_select(srt, pos[b1], pos[b1 + 1] - 1, k1))
        q[r] = _lerp(v0, v1, p - k)
    return q[0], q[1], q[2]


def _pass(n, buf, srt, pos, cnt, lo, scale, s1, s2, center, limit):
    """One clipping pass: (kept count, sum of v - center, sum of (v - center)**2) over the
    values with |v - center| <= limit.

    When both limits lie two bins or more outside the histogram's range, every value in the
    range is kept: their sums come from the range's sums, and only the values outside the
    range (grouped in srt) are tested one by one. Otherwise every value is tested.
    """
    nb = cnt.shape[0]
    m = 0
    a = 0.0
    qq = 0.0
    tl = (center - limit - lo) * scale
    th = (center + limit - lo) * scale
    if tl <= -2.0 and th >= _NBINS + 2.0:
        m = n - cnt[0] - cnt[nb - 1]
        g = center - lo
        a = s1 - m * g
        qq = s2 - 2.0 * g * s1 + m * (g * g)
        for p in range(pos[0], pos[1]):
            d = float(srt[p]) - center
            if abs(d) <= limit:
                a += d
                qq += d * d
                m += 1
        for p in range(pos[nb - 1], pos[nb]):
            d = float(srt[p]) - center
            if abs(d) <= limit:
                a += d
                qq += d * d
                m += 1
    else:
        for k in range(n):
            d = float(buf[k]) - center
            if abs(d) <= limit:
                a += d
                qq += d * d
                m += 1
    return m, a, qq


def binned_clipped_mean(image, bad, bin_x, bin_y, nsigma, niter, buf, srt, samp, cnt, pos, fill,
                        want, idx):
    """Sigma-clipped mean, standard deviation and count of the good pixels of each cell.

    Work arrays: ``buf``, ``srt`` (float32) and ``idx`` (int16) of ``bin_x * bin_y``, ``samp``
    float32 of _NSAMPLE, ``cnt``, ``fill`` and ``want`` int64 of _NBINS + 2, ``pos`` int64 of
    _NBINS + 3 with ``pos[0] == 0``.
    """
    ny, nx = image.shape
    nby = (ny + bin_y - 1) // bin_y
    nbx = (nx + bin_x - 1) // bin_x
    mean = np.full((nby, nbx), np.nan)
    std = np.full((nby, nbx), np.nan)
    count = np.zeros((nby, nbx), np.int64)
    for by in range(nby):
        y0 = by * bin_y
        y1 = min(y0 + bin_y, ny)
        for bx in range(nbx):
            x0 = bx * bin_x
            x1 = min(x0 + bin_x, nx)
            lo, hi = _range(image, bad, y0, y1, x0, x1, samp)
            scale = _NBINS / (hi - lo)
            n, s1, s2 = _gather(image, bad, y0, y1, x0, x1, lo, scale, buf, cnt, idx)
            if n == 0:
                continue
            _want_ranks(n, cnt, pos, want)
            _pick(n, buf, idx, pos, fill, want, srt)
            q25, center, q75 = _quartiles(n, srt, pos)
            width = 0.7413 * (q75 - q25)
            kept = n
            for it in range(niter):
                limit = nsigma * width
                if not limit >= 0.0:
                    break
                m, a, qq = _pass(n, buf, srt, pos, cnt, lo, scale, s1, s2, center, limit)
                if m == 0:
                    break
                shift = a / m
                center = center + shift
                width = np.sqrt(max(qq / m - shift * shift, 0.0))
                kept = m
            mean[by, bx] = center
            std[by, bx] = width
            count[by, bx] = kept
    return mean, std, count
