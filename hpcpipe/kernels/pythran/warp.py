# Pythran source of hpcpipe.kernels._warp (compiled by setup.py). Reference: ../warp.py
#pythran export warp_lanczos3(float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), float64[:,:] order(C), float64[:,:] order(C), float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int)
#pythran export warp_bilinear(float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), float64[:,:] order(C), float64[:,:] order(C), float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int)
import numpy as np


def _weights(x, sin_t, cos_t, w):
    """w[k] = the Lanczos-3 kernel at x - (k - 2), k = 0..5, for 0 <= x < 1, normalised.

    L(u) = 3 sin(pi u) sin(pi u / 3) / (pi u)**2 with u = x - t: sin(pi (x - t)) =
    (-1)^t sin(pi x) is common to the six taps and cancels in the normalisation, and
    sin(pi (x - t) / 3) = sin(pi x / 3) cos(pi t / 3) - cos(pi x / 3) sin(pi t / 3), with
    cos(pi x / 3) = sqrt(1 - sin(pi x / 3)**2) (the angle is below pi / 3): one sine per
    axis instead of three (the weights are the reference's within float rounding).
    """
    if x == 0.0:
        for k in range(6):
            w[k] = 0.0
        w[2] = 1.0
        return
    s3 = np.sin(np.pi * x / 3.0)
    c3 = np.sqrt(1.0 - s3 * s3)
    total = 0.0
    for k in range(6):
        u = x - (k - 2)
        sign = 1.0 - 2.0 * (k % 2)
        v = sign * (s3 * cos_t[k] - c3 * sin_t[k]) / (u * u)
        w[k] = v
        total += v
    for k in range(6):
        w[k] = w[k] / total


def _taps(image, variance, iy, ix, wx, wy, res):
    """res = (sum of w image, sum of w**2 variance) over the 6x6 taps around (iy, ix)."""
    acc = 0.0
    vacc = 0.0
    for u in range(6):
        a = 0.0
        b = 0.0
        for t in range(6):
            a += wx[t] * image[iy - 2 + u, ix - 2 + t]
            b += wx[t] * wx[t] * variance[iy - 2 + u, ix - 2 + t]
        acc += wy[u] * a
        vacc += wy[u] * wy[u] * b
    res[0] = acc
    res[1] = vacc


def warp_lanczos3(image, variance, mask, src_x, src_y, out_image, out_variance, out_mask,
                  no_data_bit):
    """Lanczos-3 resampling of image (weights), variance (squared weights), mask (2x2 OR).

    (The tap sums live in a helper: written inline, g++ needs tens of GB to compile them.)
    """
    ny, nx = image.shape
    dy, dx = src_x.shape
    wx = np.zeros(6)
    wy = np.zeros(6)
    res = np.zeros(2)
    sin_t = np.zeros(6)
    cos_t = np.zeros(6)
    for k in range(6):
        sin_t[k] = np.sin(np.pi * (k - 2) / 3.0)
        cos_t[k] = np.cos(np.pi * (k - 2) / 3.0)
    for i in range(dy):
        for j in range(dx):
            sx = src_x[i, j]
            sy = src_y[i, j]
            ok = 0
            if np.isfinite(sx) and np.isfinite(sy):
                if sx >= 2.0 and sy >= 2.0 and sx < nx - 3.0 and sy < ny - 3.0:
                    ok = 1
            if ok == 0:
                out_image[i, j] = np.nan
                out_variance[i, j] = np.nan
                out_mask[i, j] = no_data_bit
            else:
                ix = int(sx)
                iy = int(sy)
                ax = sx - ix
                ay = sy - iy
                _weights(ax, sin_t, cos_t, wx)
                _weights(ay, sin_t, cos_t, wy)
                _taps(image, variance, iy, ix, wx, wy, res)
                m = mask[iy, ix]
                if ax > 0.0:
                    m = m | mask[iy, ix + 1]
                if ay > 0.0:
                    m = m | mask[iy + 1, ix]
                    if ax > 0.0:
                        m = m | mask[iy + 1, ix + 1]
                if not np.isfinite(res[0]):
                    m = m | no_data_bit
                out_image[i, j] = res[0]
                out_variance[i, j] = res[1]
                out_mask[i, j] = m


def warp_bilinear(image, variance, mask, src_x, src_y, out_image, out_variance, out_mask,
                  no_data_bit):
    """Bilinear resampling (2x2 taps) of image, variance (squared weights) and mask (OR)."""
    ny, nx = image.shape
    dy, dx = src_x.shape
    for i in range(dy):
        for j in range(dx):
            sx = src_x[i, j]
            sy = src_y[i, j]
            ok = np.isfinite(sx) and np.isfinite(sy)
            if ok:
                fx = np.floor(sx)
                fy = np.floor(sy)
                ax = sx - fx
                ay = sy - fy
                ok = fx >= 0.0 and fy >= 0.0 and fx <= nx - 1.0 and fy <= ny - 1.0
                if ok and ax > 0.0 and fx > nx - 2.0:
                    ok = False
                if ok and ay > 0.0 and fy > ny - 2.0:
                    ok = False
            if not ok:
                out_image[i, j] = np.nan
                out_variance[i, j] = np.nan
                out_mask[i, j] = no_data_bit
                continue
            ix = int(fx)
            iy = int(fy)
            ix1 = ix + 1 if ax > 0.0 else ix
            iy1 = iy + 1 if ay > 0.0 else iy
            w00 = (1.0 - ax) * (1.0 - ay)
            w01 = ax * (1.0 - ay)
            w10 = (1.0 - ax) * ay
            w11 = ax * ay
            val = (w00 * image[iy, ix] + w01 * image[iy, ix1]
                   + w10 * image[iy1, ix] + w11 * image[iy1, ix1])
            out_image[i, j] = val
            out_variance[i, j] = (w00 * w00 * variance[iy, ix] + w01 * w01 * variance[iy, ix1]
                                  + w10 * w10 * variance[iy1, ix]
                                  + w11 * w11 * variance[iy1, ix1])
            m = mask[iy, ix] | mask[iy, ix1] | mask[iy1, ix] | mask[iy1, ix1]
            if not np.isfinite(val):
                m |= no_data_bit
            out_mask[i, j] = m
