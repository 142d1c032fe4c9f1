# Pythran kernel of hpcpipe.kernels.detect: thresholding, labelling and the watershed deblender.
#
# The footprints are handled as runs: maximal horizontal stretches of foreground pixels, in
# raster order (``ry``, ``rx0``, ``rx1``: row, first and last x; ``first[y]``: the index of
# the first run at or after row y). Two runs on neighbouring rows touch (8-connectivity) when
# their x ranges overlap after widening by one pixel. The caller allocates the run arrays;
# the functions finding runs return -1 when they are too short (a row holds at most
# (nx + 1) // 2 runs).
#pythran export threshold_runs(float32[:,:], uint8[:,:], float64, int64, int64[:], int64[:], int64[:], int64[:])
#pythran export grow_runs(int64[:], int64[:], int64[:], int64, int64, uint8[:,:], int64[:], int64[:], int64[:], int64[:])
#pythran export mask_runs(uint8[:,:], int64[:], int64[:], int64[:], int64[:])
#pythran export label_runs(int64[:], int64[:], int64[:], int64, int64[:])
#pythran export footprints(int64[:], int64[:], int64[:], int64[:], int64, int64, int32[:,:], int64[:,:], int64[:], int64[:])
#pythran export gather(float32[:,:], uint8[:,:], int64, int64[:], int64[:], int64[:], int64[:], int64[:], int32[:,:], int32[:], int64[:], int64[:], float64[:], int64[:])
#pythran export sort_footprints(float64[:], int64[:], int64[:], int64[:])
#pythran export watershed(float64[:], int64[:], int64[:], int64[:], int32[:,:], float64, float64, float64)
#pythran export number_peaks(int64[:], int64[:], float64[:], int64[:], int64[:], int64[:], int64[:], int32[:], float64, int64, int32[:,:], int64[:,:], int64[:,:])
import numpy as np

# The columns of the footprint table ``fp`` and the peak table ``pk`` (the same numbers as in
# ../detect.py, which builds its tables from them; a test compares the two).
FP_NPIX = 0        # pixel count
FP_X0 = 1          # inclusive bounding box
FP_Y0 = 2
FP_X1 = 3
FP_Y1 = 4
FP_NPEAKS = 5      # number of peaks
FP_FIRST_PEAK = 6  # row of its first peak in the peak table
FP_NCOLS = 7
PK_FOOTPRINT = 0   # footprint number, from 1
PK_X = 1           # peak pixel
PK_Y = 2
PK_NCOLS = 3


def threshold_runs(image, bad, thr, sign, ry, rx0, rx1, first):
    """The runs of good pixels with ``sign * value > thr``; returns their number.

    ``thr`` is compared with the float32 pixels as given (the caller rounds it as NumPy
    would); NaN pixels are never above it.
    """
    ny, nx = image.shape
    n = 0
    lo = -thr
    for y in range(ny):
        first[y] = n
        x = 0
        while x < nx:
            # skip 32 pixels at a time while none is a candidate, then pixel by pixel
            if sign > 0:
                while x + 32 <= nx and not np.any(image[y, x:x + 32] > thr):
                    x += 32
                while x < nx and not image[y, x] > thr:
                    x += 1
            else:
                while x + 32 <= nx and not np.any(image[y, x:x + 32] < lo):
                    x += 32
                while x < nx and not image[y, x] < lo:
                    x += 1
            if x >= nx:
                break
            if bad[y, x] != 0:
                x += 1
                continue
            start = x
            x += 1
            if sign > 0:
                while x < nx and image[y, x] > thr and bad[y, x] == 0:
                    x += 1
            else:
                while x < nx and image[y, x] < lo and bad[y, x] == 0:
                    x += 1
            if n == ry.shape[0]:
                return -1
            ry[n] = y
            rx0[n] = start
            rx1[n] = x - 1
            n += 1
    first[ny] = n
    return n


def _row_runs(mask, y, x, end, n, ry, rx0, rx1):
    """Append the runs of non-zero pixels of mask[y, x:end] after the first n runs; returns
    the new number of runs, or -1 when the run arrays are full."""
    while x < end:
        # skip 32 pixels at a time while all are zero, then pixel by pixel
        while x + 32 <= end and not np.any(mask[y, x:x + 32]):
            x += 32
        while x < end and mask[y, x] == 0:
            x += 1
        if x >= end:
            break
        start = x
        while x < end and mask[y, x] != 0:
            x += 1
        if n == ry.shape[0]:
            return -1
        ry[n] = y
        rx0[n] = start
        rx1[n] = x - 1
        n += 1
    return n


def mask_runs(mask, ry, rx0, rx1, first):
    """The runs of the non-zero pixels of ``mask``; returns their number."""
    ny, nx = mask.shape
    n = 0
    for y in range(ny):
        first[y] = n
        n = _row_runs(mask, y, 0, nx, n, ry, rx0, rx1)
        if n < 0:
            return -1
    first[ny] = n
    return n


def grow_runs(ry, rx0, rx1, n, radius, mask, gy, gx0, gx1, first):
    """The runs of the pixels within ``radius`` of a pixel of the ``n`` runs (a disc
    dilation), painted into ``mask`` (zeros, the image's shape); returns their number."""
    ny, nx = mask.shape
    reach = np.zeros(radius + 1, np.int64)  # the half-width of the disc dy rows away
    for dy in range(radius + 1):
        w = 0
        while (w + 1) * (w + 1) + dy * dy <= radius * radius:
            w += 1
        reach[dy] = w
    xlo = np.zeros(ny, np.int64)
    xhi = np.zeros(ny, np.int64)
    for y in range(ny):
        xlo[y] = nx
        xhi[y] = -1
    for i in range(n):
        for dy in range(-radius, radius + 1):
            yy = ry[i] + dy
            if yy < 0 or yy >= ny:
                continue
            w = reach[abs(dy)]
            a = max(rx0[i] - w, 0)
            b = min(rx1[i] + w, nx - 1)
            for x in range(a, b + 1):
                mask[yy, x] = 1
            xlo[yy] = min(xlo[yy], a)
            xhi[yy] = max(xhi[yy], b)
    m = 0
    for y in range(ny):
        first[y] = m
        m = _row_runs(mask, y, xlo[y], xhi[y] + 1, m, gy, gx0, gx1)
        if m < 0:
            return -1
    first[ny] = m
    return m


def _find(parent, b):
    while parent[b] != b:
        parent[b] = parent[parent[b]]
        b = parent[b]
    return b


def label_runs(rx0, rx1, first, n, comp):
    """8-connected components of the runs: ``comp[i]`` = the number (from 1) of run i's
    component, in raster order of the components' first pixels (scipy.ndimage.label's
    numbering). Returns the number of components.

    A union-find in which the smaller run index always becomes the root: a component's root
    is its first run, and ``parent[i] <= i`` throughout.
    """
    ny = first.shape[0] - 1
    parent = np.zeros(n, np.int64)
    for i in range(n):
        parent[i] = i
    for y in range(1, ny):
        j = first[y - 1]
        jend = first[y]
        for i in range(first[y], first[y + 1]):
            a = rx0[i] - 1
            b = rx1[i] + 1
            while j < jend and rx1[j] < a:
                j += 1
            k = j
            while k < jend and rx0[k] <= b:
                ri = _find(parent, i)
                rk = _find(parent, k)
                if ri < rk:
                    parent[rk] = ri
                elif rk < ri:
                    parent[ri] = rk
                k += 1
    count = 0
    for i in range(n):
        p = parent[i]
        if p == i:
            count += 1
            comp[i] = count
        else:
            comp[i] = comp[p]
    return count


def footprints(ry, rx0, rx1, comp, n, sign, labels, fp, start, grouped):
    """Footprint sizes and boxes, their labels, and their runs grouped by footprint.

    ``comp``: the footprint (from 1) of each of the ``n`` runs. Fills the columns FP_NPIX
    to FP_Y1 of ``fp`` (zeroed by the caller), writes ``sign * id`` into ``labels``, and
    puts the runs of footprint f at ``grouped[start[f]:start[f + 1]]`` in raster order (a
    stable counting sort; ``start`` zeroed by the caller, one longer than ``fp``).
    """
    ny, nx = labels.shape
    nfp = fp.shape[0]
    for f in range(nfp):
        fp[f, FP_X0] = nx
        fp[f, FP_Y0] = ny
        fp[f, FP_X1] = -1
        fp[f, FP_Y1] = -1
    for i in range(n):
        f = comp[i] - 1
        y = ry[i]
        fp[f, FP_NPIX] += rx1[i] - rx0[i] + 1
        fp[f, FP_X0] = min(fp[f, FP_X0], rx0[i])
        fp[f, FP_Y0] = min(fp[f, FP_Y0], y)
        fp[f, FP_X1] = max(fp[f, FP_X1], rx1[i])
        fp[f, FP_Y1] = max(fp[f, FP_Y1], y)
        start[f + 1] += 1
        lab = sign * comp[i]
        for x in range(rx0[i], rx1[i] + 1):
            labels[y, x] = lab
    for f in range(nfp):
        start[f + 1] += start[f]
    # the counting sort, with fp's column FP_FIRST_PEAK as the fill pointers (the caller's
    # number_peaks sets it afterwards)
    for f in range(nfp):
        fp[f, FP_FIRST_PEAK] = start[f]
    for i in range(n):
        f = comp[i] - 1
        grouped[fp[f, FP_FIRST_PEAK]] = i
        fp[f, FP_FIRST_PEAK] += 1


def gather(image, bad, sign, ry, rx0, rx1, start, grouped, index, prev, ys, xs, vals, pstart):
    """The good pixels of every footprint, footprint by footprint, raster order within.

    Fills ``ys``, ``xs``, ``vals`` (``sign * value`` in float64) and ``pstart`` (footprint
    f's pixels are ``pstart[f]:pstart[f + 1]``). Writes ``k + 1`` into ``index`` at good
    pixel k, after saving what was there in ``prev[k]`` (``index`` can be the segment
    image: :func:`number_peaks` puts the values back). Returns the number of good pixels.
    """
    nfp = start.shape[0] - 1
    fsign = 1.0 if sign > 0 else -1.0
    n = 0
    for f in range(nfp):
        pstart[f] = n
        for g in range(start[f], start[f + 1]):
            i = grouped[g]
            y = ry[i]
            for x in range(rx0[i], rx1[i] + 1):
                v = fsign * image[y, x]
                if bad[y, x] == 0 and np.isfinite(v):
                    ys[n] = y
                    xs[n] = x
                    vals[n] = v
                    prev[n] = index[y, x]
                    index[y, x] = n + 1
                    n += 1
    pstart[nfp] = n
    return n


def _before(vals, a, b):
    """Whether pixel a floods before pixel b: brighter, or as bright and earlier."""
    return vals[a] > vals[b] or (vals[a] == vals[b] and a < b)


def sort_footprints(vals, pstart, order, tmp):
    """Each footprint's pixels by decreasing value, ties in raster order: ``order`` lists
    the pixels of footprint f at ``pstart[f]:pstart[f + 1]`` in flood order.

    A merge sort of each footprint (insertion sort of blocks of 16, then merges).
    """
    nfp = pstart.shape[0] - 1
    for f in range(nfp):
        s0 = pstart[f]
        e0 = pstart[f + 1]
        width = 16
        for s in range(s0, e0, width):
            e = min(s + width, e0)
            for i in range(s, e):
                order[i] = i
            for i in range(s + 1, e):
                v = order[i]
                j = i - 1
                while j >= s and _before(vals, v, order[j]):
                    order[j + 1] = order[j]
                    j -= 1
                order[j + 1] = v
        into_tmp = True
        while width < e0 - s0:
            for s in range(s0, e0, 2 * width):
                m = min(s + width, e0)
                e = min(s + 2 * width, e0)
                i = s
                j = m
                for t in range(s, e):
                    if into_tmp:
                        if j >= e or (i < m and not _before(vals, order[j], order[i])):
                            tmp[t] = order[i]
                            i += 1
                        else:
                            tmp[t] = order[j]
                            j += 1
                    else:
                        if j >= e or (i < m and not _before(vals, tmp[j], tmp[i])):
                            order[t] = tmp[i]
                            i += 1
                        else:
                            order[t] = tmp[j]
                            j += 1
            into_tmp = not into_tmp
            width *= 2
        if not into_tmp:
            for t in range(s0, e0):
                order[t] = tmp[t]


def watershed(vals, ys, xs, order, index, level, prom_level, contrast):
    """Flood the footprint pixels from the brightest down (see detect.py's module doc).

    ``vals``, ``ys``, ``xs``: the good pixels of every footprint and ``index`` (good pixel
    k holds k + 1) from :func:`gather`; ``order``: the flood order (:func:`sort_footprints`).
    A neighbour takes part when its ``index`` value leads back to it (elsewhere ``index``
    may hold anything). Pixels of different footprints are never neighbours, so one flood
    over all of them is the flood of each.

    Returns the basin of each pixel (after merging), and per basin its parent (a basin is a
    root when it is its own parent), peak value and peak pixel.
    """
    n = vals.shape[0]
    ny, nx = index.shape
    basin = np.full(n, -1, np.int64)
    parent = np.zeros(n, np.int64)
    peak_v = np.zeros(n, np.float64)
    peak_k = np.zeros(n, np.int64)
    roots = np.zeros(8, np.int64)
    nb = 0
    for t in range(n):
        k = order[t]
        y = ys[k]
        x = xs[k]
        v = vals[k]
        nroots = 0
        steep = -1
        steep_v = 0.0
        for dy in range(-1, 2):
            yy = y + dy
            if yy < 0 or yy >= ny:
                continue
            for dx in range(-1, 2):
                xx = x + dx
                if (dy == 0 and dx == 0) or xx < 0 or xx >= nx:
                    continue
                q = index[yy, xx] - 1
                if q < 0 or q >= n or ys[q] != yy or xs[q] != xx or basin[q] < 0:
                    continue
                if steep < 0 or vals[q] > steep_v:
                    steep = q
                    steep_v = vals[q]
                r = _find(parent, basin[q])
                seen = False
                for j in range(nroots):
                    if roots[j] == r:
                        seen = True
                if not seen:
                    roots[nroots] = r
                    nroots += 1
        if nroots == 0:
            parent[nb] = nb
            peak_v[nb] = v
            peak_k[nb] = k
            basin[k] = nb
            nb += 1
            continue
        best = roots[0]
        for j in range(1, nroots):
            r = roots[j]
            if peak_v[r] > peak_v[best] or (peak_v[r] == peak_v[best] and r < best):
                best = r
        for j in range(nroots):
            r = roots[j]
            if r == best:
                continue
            rise = peak_v[r] - v
            if peak_v[r] <= level or rise < prom_level or rise < contrast * peak_v[r]:
                parent[r] = best
        basin[k] = _find(parent, basin[steep])
    for k in range(n):
        basin[k] = _find(parent, basin[k])
    return basin, parent[:nb].copy(), peak_v[:nb].copy(), peak_k[:nb].copy()


def number_peaks(basin, parent, peak_v, peak_k, ys, xs, pstart, prev, level, sign, segments,
                 fp, pk):
    """Number the peaks and write the segments.

    The basins left as roots with a peak above ``level`` are the peaks; the flood made
    them footprint by footprint, each footprint's brightest first (ties in raster order),
    which is the order they are numbered in. Fills ``fp``'s columns FP_NPEAKS and
    FP_FIRST_PEAK, ``pk`` (PK_FOOTPRINT from 1, PK_X, PK_Y; at least one row per basin) and
    ``sign * (peak number + 1)`` into ``segments`` on the pixels assigned to a peak (the
    other good pixels get back their ``prev`` values). Returns the number of peaks.
    """
    nb = parent.shape[0]
    nfp = pstart.shape[0] - 1
    number = np.full(nb, -1, np.int64)
    npk = 0
    f = 0
    for b in range(nb):
        if parent[b] != b or not peak_v[b] > level:
            continue
        k = peak_k[b]
        while pstart[f + 1] <= k:
            f += 1
        number[b] = npk
        pk[npk, PK_FOOTPRINT] = f + 1
        pk[npk, PK_X] = xs[k]
        pk[npk, PK_Y] = ys[k]
        fp[f, FP_NPEAKS] += 1
        npk += 1
    first = 0
    for f in range(nfp):
        fp[f, FP_FIRST_PEAK] = first
        first += fp[f, FP_NPEAKS]
    for k in range(basin.shape[0]):
        b = number[basin[k]]
        if b >= 0:
            segments[ys[k], xs[k]] = sign * (b + 1)
        else:
            segments[ys[k], xs[k]] = prev[k]
    return npk
