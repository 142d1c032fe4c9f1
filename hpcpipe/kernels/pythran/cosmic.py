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


def _fill_run_rows(image, variance, use_var, bad, done, max_width, one_sided):
    """Fill the not-yet-done pixels of each bad run along the rows."""
    ny, nx = image.shape
    for i in range(ny):
        j = 0
        while j < nx:
            if bad[i, j] == 0:
                j += 1
                continue
            start = j
            while j < nx and bad[i, j] != 0:
                j += 1
            end = j
            if end - start > max_width:
                continue
            left = start - 1
            right = end
            if left >= 0 and right < nx:
                if one_sided:
                    continue
                a = float(image[i, left])
                b = float(image[i, right])
                va = float(variance[i, left]) if use_var else 0.0
                vb = float(variance[i, right]) if use_var else 0.0
                span = float(right - left)
                for k in range(start, end):
                    if done[i, k] == 0:
                        t = (k - left) / span
                        image[i, k] = a + t * (b - a)
                        if use_var:
                            variance[i, k] = (1.0 - t) * (1.0 - t) * va + t * t * vb
                        done[i, k] = 1
            elif one_sided and (left >= 0 or right < nx):
                src = left if left >= 0 else right
                for k in range(start, end):
                    if done[i, k] == 0:
                        image[i, k] = image[i, src]
                        if use_var:
                            variance[i, k] = variance[i, src]
                        done[i, k] = 1


def _fill_run_columns(image, variance, use_var, bad, done, max_width, one_sided, cols):
    """Fill the not-yet-done pixels of each bad run down the columns listed in cols."""
    ny, nx = image.shape
    for c in range(cols.shape[0]):
        j = cols[c]
        i = 0
        while i < ny:
            if bad[i, j] == 0:
                i += 1
                continue
            start = i
            while i < ny and bad[i, j] != 0:
                i += 1
            end = i
            if end - start > max_width:
                continue
            low = start - 1
            high = end
            if low >= 0 and high < ny:
                if one_sided:
                    continue
                a = float(image[low, j])
                b = float(image[high, j])
                va = float(variance[low, j]) if use_var else 0.0
                vb = float(variance[high, j]) if use_var else 0.0
                span = float(high - low)
                for k in range(start, end):
                    if done[k, j] == 0:
                        t = (k - low) / span
                        image[k, j] = a + t * (b - a)
                        if use_var:
                            variance[k, j] = (1.0 - t) * (1.0 - t) * va + t * t * vb
                        done[k, j] = 1
            elif one_sided and (low >= 0 or high < ny):
                src = low if low >= 0 else high
                for k in range(start, end):
                    if done[k, j] == 0:
                        image[k, j] = image[src, j]
                        if use_var:
                            variance[k, j] = variance[src, j]
                        done[k, j] = 1


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
    _fill_run_rows(image, variance, use_var, bad, done, max_width_row, False)
    cols = _pending_columns(bad, done)
    if cols.shape[0] == 0:
        return
    _fill_run_columns(image, variance, use_var, bad, done, max_width_col, False, cols)
    _fill_run_rows(image, variance, use_var, bad, done, max_width_row, True)
    cols = _pending_columns(bad, done)
    if cols.shape[0] > 0:
        _fill_run_columns(image, variance, use_var, bad, done, max_width_col, True, cols)
