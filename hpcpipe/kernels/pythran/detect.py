# Pythran kernel of hpcpipe.kernels.detect: the watershed deblender over every footprint.
#pythran export watershed(float64[:], int64[:], int64[:], int64[:], int64, int64, float64, float64, float64)
#pythran export grow_disc(uint8[:,:], int64)
import numpy as np


def grow_disc(above, radius):
    """Every pixel whose centre lies within ``radius`` of a flagged pixel (a disc dilation)."""
    ny, nx = above.shape
    out = np.zeros((ny, nx), np.uint8)
    r2 = radius * radius
    for y in range(ny):
        for x in range(nx):
            if above[y, x] == 0:
                continue
            for dy in range(-radius, radius + 1):
                yy = y + dy
                if yy < 0 or yy >= ny:
                    continue
                for dx in range(-radius, radius + 1):
                    xx = x + dx
                    if xx >= 0 and xx < nx and dx * dx + dy * dy <= r2:
                        out[yy, xx] = 1
    return out


def _find(parent, b):
    while parent[b] != b:
        parent[b] = parent[parent[b]]
        b = parent[b]
    return b


def watershed(vals, ys, xs, order, ny, nx, level, prom_level, contrast):
    """Flood the footprint pixels from the brightest down (see detect.py's module doc).

    ``vals``, ``ys``, ``xs``: the good pixels of every footprint; ``order``: the indices of
    the pixels by decreasing value (ties in raster order). Pixels of different footprints
    are never neighbours, so one flood over all of them is the flood of each.

    Returns the basin of each pixel (after merging), and per basin its parent (a basin is a
    root when it is its own parent), peak value and peak pixel.
    """
    n = vals.shape[0]
    index = np.full(ny * nx, -1, np.int32)
    for k in range(n):
        index[ys[k] * nx + xs[k]] = k
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
                q = index[yy * nx + xx]
                if q < 0 or basin[q] < 0:
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
