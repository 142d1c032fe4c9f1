# Pythran source of hpcpipe.kernels._cosmic (compiled by setup.py). Reference: ../cosmic.py
#pythran export find_cosmic_ray_pixels(float32[:,:] order(C), float32[:,:] order(C), uint8[:,:] order(C), float, float, float, float, float, float, uint8[:,:] order(C))
#pythran export interpolate_runs(float32[:,:] order(C), float32[:,:] order(C), uint8[:,:] order(C), int, int, int, uint8[:,:] order(C))
import numpy as np


def find_cosmic_ray_pixels(image, variance, bad, background, nsigma, cond3_fac, cond3_fac2,
                           ratio_1, ratio_2, out):
    """out[i, j] = 1 where a pixel is nsigma above the background and sharper than the PSF.

    For each of the four directions (horizontal, vertical, two diagonals) whose two opposite
    neighbours are inside the image, good and finite: a cosmic ray if
    cond3_fac2 * ratio * (p - cond3_fac * s) > mean + cond3_fac * s_mean, with p the pixel
    above the background, s its noise, mean the neighbours' mean above the background,
    s_mean its noise and ratio the PSF's value at the neighbours' distance over its peak.
    """
    ny, nx = image.shape
    for i in range(ny):
        for j in range(nx):
            out[i, j] = 0
            if bad[i, j] != 0:
                continue
            v = variance[i, j]
            p = image[i, j] - background
            if not (v > 0.0 and np.isfinite(p)):
                continue
            s = np.sqrt(v)
            if p < nsigma * s:
                continue
            for d in range(4):
                di = 0 if d == 0 else 1
                dj = 1 if d != 1 else 0
                if d == 3:
                    dj = -1
                ia = i - di
                ja = j - dj
                ib = i + di
                jb = j + dj
                if ia < 0 or ib >= ny or ja < 0 or ja >= nx or jb < 0 or jb >= nx:
                    continue
                if bad[ia, ja] != 0 or bad[ib, jb] != 0:
                    continue
                a = image[ia, ja]
                b = image[ib, jb]
                va = variance[ia, ja]
                vb = variance[ib, jb]
                if not (np.isfinite(a) and np.isfinite(b) and va >= 0.0 and vb >= 0.0):
                    continue
                mean = 0.5 * (a + b) - background
                s_mean = 0.5 * np.sqrt(va + vb)
                ratio = ratio_1 if d < 2 else ratio_2
                if cond3_fac2 * ratio * (p - cond3_fac * s) > mean + cond3_fac * s_mean:
                    out[i, j] = 1
                    break


def _fill_runs(image, variance, use_var, bad, done, lines, along_rows, max_width, one_sided):
    """Fill the not-yet-done pixels of each bad run along the rows (``along_rows``) or down
    the columns listed in ``lines``.

    Pixel k of line c is (lines[c], k) along rows and (k, lines[c]) down columns. One
    function for both directions: the former separate row and column copies were not faster
    (interpolation over the cosmic rays of the 4096 x 4096 benchmark frame plus a 3-column
    and a 2-row defect, CPU time, 9 interleaved runs: this one / the two copies = 1.01
    [0.97-1.02]).
    """
    ny, nx = image.shape
    length = nx if along_rows else ny
    # (row, column) of pixel k of line c: (c * li + k * ki, c * lj + k * kj)
    li = 1 if along_rows else 0
    lj = 1 - li
    ki = lj
    kj = li
    for c in range(lines.shape[0]):
        i0 = lines[c] * li
        j0 = lines[c] * lj
        k = 0
        while k < length:
            if bad[i0 + k * ki, j0 + k * kj] == 0:
                k += 1
                continue
            start = k
            while k < length and bad[i0 + k * ki, j0 + k * kj] != 0:
                k += 1
            end = k
            if end - start > max_width:
                continue
            low = start - 1
            high = end
            if low >= 0 and high < length:
                if one_sided:
                    continue
                a = float(image[i0 + low * ki, j0 + low * kj])
                b = float(image[i0 + high * ki, j0 + high * kj])
                va = float(variance[i0 + low * ki, j0 + low * kj]) if use_var else 0.0
                vb = float(variance[i0 + high * ki, j0 + high * kj]) if use_var else 0.0
                span = float(high - low)
                for m in range(start, end):
                    i = i0 + m * ki
                    j = j0 + m * kj
                    if done[i, j] == 0:
                        t = (m - low) / span
                        image[i, j] = a + t * (b - a)
                        if use_var:
                            variance[i, j] = (1.0 - t) * (1.0 - t) * va + t * t * vb
                        done[i, j] = 1
            elif one_sided and (low >= 0 or high < length):
                src = low if low >= 0 else high
                si = i0 + src * ki
                sj = j0 + src * kj
                for m in range(start, end):
                    i = i0 + m * ki
                    j = j0 + m * kj
                    if done[i, j] == 0:
                        image[i, j] = image[si, sj]
                        if use_var:
                            variance[i, j] = variance[si, sj]
                        done[i, j] = 1


def _pending_columns(bad, done):
    ny, nx = bad.shape
    flag = np.zeros(nx, np.uint8)
    for i in range(ny):
        for j in range(nx):
            if bad[i, j] != 0 and done[i, j] == 0:
                flag[j] = 1
    return np.nonzero(flag)[0]


def interpolate_runs(image, variance, bad, use_var, max_width_row, max_width_col, done):
    """Replace bad pixels in place: rows (both sides), columns (both sides), then one side."""
    ny = image.shape[0]
    rows = np.zeros(ny, np.int64)
    for i in range(ny):
        rows[i] = i
    _fill_runs(image, variance, use_var, bad, done, rows, True, max_width_row, False)
    cols = _pending_columns(bad, done)
    if cols.shape[0] == 0:
        return
    _fill_runs(image, variance, use_var, bad, done, cols, False, max_width_col, False)
    _fill_runs(image, variance, use_var, bad, done, rows, True, max_width_row, True)
    cols = _pending_columns(bad, done)
    if cols.shape[0] > 0:
        _fill_runs(image, variance, use_var, bad, done, cols, False, max_width_col, True)
