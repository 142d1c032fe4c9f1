# Pythran source of hpcpipe.kernels._background (compiled by setup.py). Reference: ../background.py
#pythran export evaluate_columns(float64[:,:,:], float64[:], float32[:,:])
#pythran export evaluate_columns(float64[:,:,:], float64[:], float64[:,:])
#pythran export subtract_columns(float64[:,:,:], float64[:], float32[:,:], float32[:,:])
#pythran export subtract_columns(float64[:,:,:], float64[:], float64[:,:], float64[:,:])
import numpy as np


def _model_row(coef, knots, i, k, out):
    """out[i] = the piecewise cubics ``coef`` at row i; k is the interval of the previous row
    (rows come in order); returns row i's interval."""
    m = knots.shape[0]
    y = float(i)
    while k < m - 2 and y >= knots[k + 1]:
        k += 1
    t = y - knots[k]
    # one slice expression per row: the compiler vectorises it (the same arithmetic)
    out[i, :] = coef[0, k, :] + t * (coef[1, k, :] + t * (coef[2, k, :] + t * coef[3, k, :]))
    return k


def evaluate_columns(coef, knots, out):
    """Evaluate, down every column, the piecewise cubics ``coef`` at the rows of ``out``.

    ``coef[p, k, j]`` is the coefficient of ``t**p`` on interval ``k`` (from ``knots[k]``)
    of column ``j``; rows before the first knot or after the last use the end interval.
    """
    k = 0
    for i in range(out.shape[0]):
        k = _model_row(coef, knots, i, k, out)


def subtract_columns(coef, knots, data, out):
    """out = data - (the piecewise cubics ``coef`` down every column), row by row: the same
    values as subtracting the output of evaluate_columns, without that image."""
    k = 0
    for i in range(out.shape[0]):
        # the model row rounded to the output's type first, as evaluate_columns stores it
        k = _model_row(coef, knots, i, k, out)
        out[i, :] = data[i, :] - out[i, :]
