# Pythran source of hpcpipe.kernels._stats (compiled by setup.py). Reference: ../stats.py
#pythran export binned_clipped_mean(float32[:,:], uint8[:,:], int, int, float, int)
#pythran export binned_clipped_mean(float64[:,:], uint8[:,:], int, int, float, int)
#pythran export clipped_mean_1d(float32[:], float, int)
#pythran export clipped_mean_1d(float64[:], float, int)
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


def _min_range(a, lo, hi):
    """The smallest of a[lo..hi] (inclusive)."""
    m = a[lo]
    for k in range(lo + 1, hi + 1):
        if a[k] < m:
            m = a[k]
    return m


def _lerp(lo, hi, frac):
    return lo + frac * (hi - lo)


def _order_stats_select(a, n, ranks, out):
    """out[r] = the ranks[r]-th smallest of a[:n] by quickselect (reorders a)."""
    for r in range(ranks.shape[0]):
        out[r] = _select(a, 0, n - 1, ranks[r])


def _order_stats(a, n, ranks, out, counts, slot, work):
    """out[r] = the ranks[r]-th smallest value of a[:n] (0-based), exactly.

    A histogram over a range guessed from a sample of the values finds the bin of each
    rank; only the values of those few bins are then ordered (quickselect). Falls back
    to quickselect on everything when a rank lies outside the histogram's range.
    ``counts`` holds two histograms of ``counts.shape[0] // 2`` bins (the second is
    scratch).
    """
    nbins = counts.shape[0] // 2
    ns = min(n, _NSAMPLE)
    stride = n // ns
    for s in range(ns):
        work[s] = a[s * stride]
    # the sample's 2nd and 98th percentiles (two quickselects: no need to sort it)
    lo = float(_select(work, 0, ns - 1, (ns - 1) // 50))
    hi = float(_select(work, 0, ns - 1, (ns - 1) - (ns - 1) // 50))
    span = hi - lo
    lo -= 0.1 * span
    hi += 0.1 * span
    if not hi > lo:
        _order_stats_select(a, n, ranks, out)
        return
    scale = nbins / (hi - lo)
    counts[:] = 0
    under = 0
    over = 0
    # two interleaved histograms (counts[:nbins] and counts[nbins:]): the increments of a
    # crowded bin no longer wait for each other
    n2 = n - n % 2
    for k in range(0, n2, 2):
        t = (a[k] - lo) * scale
        u = (a[k + 1] - lo) * scale
        if t < 0.0:
            under += 1
        elif t >= nbins:
            over += 1
        else:
            counts[int(t)] += 1
        if u < 0.0:
            under += 1
        elif u >= nbins:
            over += 1
        else:
            counts[nbins + int(u)] += 1
    for k in range(n2, n):
        t = (a[k] - lo) * scale
        if t < 0.0:
            under += 1
        elif t >= nbins:
            over += 1
        else:
            counts[int(t)] += 1
    for b in range(nbins):
        counts[b] += counts[nbins + b]
    nr = ranks.shape[0]
    if ranks[0] < under or ranks[nr - 1] >= n - over:
        _order_stats_select(a, n, ranks, out)
        return
    # the bin and the rank within the bin of each wanted rank
    slot[:] = -1
    bins = np.empty(nr, np.int64)
    within = np.empty(nr, np.int64)
    b = 0
    below = under
    for r in range(nr):
        while below + counts[b] <= ranks[r]:
            below += counts[b]
            b += 1
        bins[r] = b
        within[r] = ranks[r] - below
    # the values of the wanted bins, each bin's run in work
    nslots = 0
    starts = np.zeros(nr + 1, np.int64)
    for r in range(nr):
        if slot[bins[r]] < 0:
            slot[bins[r]] = nslots
            starts[nslots + 1] = starts[nslots] + counts[bins[r]]
            nslots += 1
    total = starts[nslots]
    if total > work.shape[0]:
        _order_stats_select(a, n, ranks, out)
        return
    fill = starts.copy()
    for k in range(n):
        t = (a[k] - lo) * scale
        if t >= 0.0 and t < nbins:
            s = slot[int(t)]
            if s >= 0:
                work[fill[s]] = a[k]
                fill[s] += 1
    for r in range(nr):
        s = slot[bins[r]]
        out[r] = _select(work, starts[s], starts[s + 1] - 1, starts[s] + within[r])


def _quartiles(a, n, counts, slot, work):
    """Linear-interpolated 25th, 50th and 75th percentiles of a[:n] (may reorder a).

    The same values as numpy.percentile(..., method="linear").
    """
    pos = np.array([0.25 * (n - 1), 0.5 * (n - 1), 0.75 * (n - 1)])
    ranks = np.empty(6, np.int64)
    for q in range(3):
        k = int(np.floor(pos[q]))
        ranks[2 * q] = k
        ranks[2 * q + 1] = min(k + 1, n - 1)
    out = np.empty(6)
    _order_stats(a, n, ranks, out, counts, slot, work)
    q25 = _lerp(out[0], out[1], pos[0] - ranks[0])
    median = _lerp(out[2], out[3], pos[1] - ranks[2])
    q75 = _lerp(out[4], out[5], pos[2] - ranks[4])
    return q25, median, q75


def _clip(s, n, nsigma, niter, counts, slot, work):
    """Clipped mean, width and kept count of s[:n] (see the reference for the rule)."""
    q25, center, q75 = _quartiles(s, n, counts, slot, work)
    width = 0.7413 * (q75 - q25)
    kept = n
    n4 = n - n % 4
    for it in range(niter):
        limit = nsigma * width
        # four interleaved partial sums: independent additions instead of one long chain
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        b0 = 0.0
        b1 = 0.0
        b2 = 0.0
        b3 = 0.0
        m = 0
        for k in range(0, n4, 4):
            d0 = s[k] - center
            d1 = s[k + 1] - center
            d2 = s[k + 2] - center
            d3 = s[k + 3] - center
            if abs(d0) <= limit:
                a0 += d0
                b0 += d0 * d0
                m += 1
            if abs(d1) <= limit:
                a1 += d1
                b1 += d1 * d1
                m += 1
            if abs(d2) <= limit:
                a2 += d2
                b2 += d2 * d2
                m += 1
            if abs(d3) <= limit:
                a3 += d3
                b3 += d3 * d3
                m += 1
        for k in range(n4, n):
            d0 = s[k] - center
            if abs(d0) <= limit:
                a0 += d0
                b0 += d0 * d0
                m += 1
        s1 = (a0 + a1) + (a2 + a3)
        s2 = (b0 + b1) + (b2 + b3)
        if m == 0:
            break
        shift = s1 / m
        center = center + shift
        width = np.sqrt(max(s2 / m - shift * shift, 0.0))
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
    counts = np.zeros(2 * _NBINS, np.int64)
    slot = np.zeros(_NBINS, np.int64)
    work = np.empty(n + 4 * _NSAMPLE, values.dtype)
    return _clip(buf, n, nsigma, niter, counts, slot, work)


def binned_clipped_mean(image, bad, bin_x, bin_y, nsigma, niter):
    """Sigma-clipped mean, standard deviation and count of the good pixels of each cell."""
    ny, nx = image.shape
    nby = (ny + bin_y - 1) // bin_y
    nbx = (nx + bin_x - 1) // bin_x
    mean = np.full((nby, nbx), np.nan)
    std = np.full((nby, nbx), np.nan)
    count = np.zeros((nby, nbx), np.int64)
    buf = np.empty(bin_x * bin_y, image.dtype)
    counts = np.zeros(2 * _NBINS, np.int64)
    slot = np.zeros(_NBINS, np.int64)
    work = np.empty(bin_x * bin_y + 4 * _NSAMPLE, image.dtype)
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
            center, width, kept = _clip(buf, n, nsigma, niter, counts, slot, work)
            mean[by, bx] = center
            std[by, bx] = width
            count[by, bx] = kept
    return mean, std, count
