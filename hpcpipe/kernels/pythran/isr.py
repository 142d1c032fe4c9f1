# Pythran source of hpcpipe.kernels._isr (compiled by setup.py). Reference: ../isr.py
#pythran export isr_amplifier(uint16[:,:] order(C), int, int, int, int, int, int, float64[:], float32[:,:] order(C), float32[:,:] order(C), float32[:,:] order(C), uint8[:,:] order(C), int, int, int, int, float, float, float, float, float, float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int, int, int)
#pythran export isr_amplifier(int32[:,:] order(C), int, int, int, int, int, int, float64[:], float32[:,:] order(C), float32[:,:] order(C), float32[:,:] order(C), uint8[:,:] order(C), int, int, int, int, float, float, float, float, float, float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int, int, int)
#pythran export isr_amplifier(float32[:,:] order(C), int, int, int, int, int, int, float64[:], float32[:,:] order(C), float32[:,:] order(C), float32[:,:] order(C), uint8[:,:] order(C), int, int, int, int, float, float, float, float, float, float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int, int, int)
#pythran export isr_amplifier(float64[:,:] order(C), int, int, int, int, int, int, float64[:], float32[:,:] order(C), float32[:,:] order(C), float32[:,:] order(C), uint8[:,:] order(C), int, int, int, int, float, float, float, float, float, float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int, int, int)
import numpy as np


def isr_amplifier(raw, ry0, rx0, ty0, tx0, height, width, level, bias, dark, flat, defects,
                  use_bias, use_dark, use_flat, use_defects, gain, read_var, saturation,
                  suspect, dark_time, image, variance, mask, sat_bit, bad_bit, suspect_bit):
    """One pass over one amplifier's pixels: raw ADU to electrons, variance and mask.

    raw[ry0 + i, rx0 + j] goes to image[ty0 + i, tx0 + j]; the calibrations are indexed
    like the trimmed image. See ../isr.py for the rule.
    """
    for i in range(height):
        lev = level[i]
        ri = ry0 + i
        ti = ty0 + i
        for j in range(width):
            r = float(raw[ri, rx0 + j])
            tj = tx0 + j
            m = 0
            if r >= saturation:
                m |= sat_bit
            if r > suspect:
                m |= suspect_bit
            adu = r - lev
            if use_bias:
                adu -= bias[ti, tj]
            e = adu * gain
            if use_dark:
                e -= dark[ti, tj] * dark_time
            v = max(e, 0.0) + read_var
            if use_flat:
                f = float(flat[ti, tj])
                if f > 0.0 and f < np.inf:
                    e = e / f
                    v = v / (f * f)
                else:
                    m |= bad_bit
            if use_defects:
                if defects[ti, tj] != 0:
                    m |= bad_bit
            if not abs(e) < np.inf:  # NaN or infinite (cheaper than isfinite)
                m |= bad_bit
            image[ti, tj] = e
            variance[ti, tj] = v
            mask[ti, tj] = m
