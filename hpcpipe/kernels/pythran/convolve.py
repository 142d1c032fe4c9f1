# Pythran source of hpcpipe.kernels._convolve (compiled by setup.py). Reference: ../convolve.py
#pythran export correlate_separable(float32[:,:], float32[:], float32[:], float32[:,:], float32[:,:])
#pythran export correlate_separable(float64[:,:], float64[:], float64[:], float64[:,:], float64[:,:])
import numpy as np


def correlate_separable(image, kernel_x, kernel_y, work, out):
    """Correlate rows with kernel_x into work, then columns with kernel_y into out.

    Edges repeat the nearest pixel (scipy.ndimage mode 'nearest').
    """
    ny, nx = image.shape
    nkx = kernel_x.shape[0]
    hx = nkx // 2
    for i in range(ny):
        for j in range(nx):
            acc = 0.0
            if j >= hx and j + hx < nx:
                for t in range(nkx):
                    acc += kernel_x[t] * image[i, j - hx + t]
            else:
                for t in range(nkx):
                    jj = min(max(j - hx + t, 0), nx - 1)
                    acc += kernel_x[t] * image[i, jj]
            work[i, j] = acc
    nky = kernel_y.shape[0]
    hy = nky // 2
    for i in range(ny):
        for j in range(nx):
            out[i, j] = 0.0
        for t in range(nky):
            r = min(max(i - hy + t, 0), ny - 1)
            w = kernel_y[t]
            for j in range(nx):
                out[i, j] += w * work[r, j]
