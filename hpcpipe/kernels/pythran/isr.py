# Pythran source of hpcpipe.kernels._isr (compiled by setup.py). Reference: ../isr.py
#pythran export isr_amplifier(uint16[:,:] order(C), int, int, int, int, int, int, float64[:], float64[:], float32[:,:] order(C), float32[:,:] order(C), float32[:,:] order(C), uint8[:,:] order(C), int, int, int, int, float, float, float, float, float, float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int, int, int)
#pythran export isr_amplifier(int32[:,:] order(C), int, int, int, int, int, int, float64[:], float64[:], float32[:,:] order(C), float32[:,:] order(C), float32[:,:] order(C), uint8[:,:] order(C), int, int, int, int, float, float, float, float, float, float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int, int, int)
#pythran export isr_amplifier(float32[:,:] order(C), int, int, int, int, int, int, float64[:], float64[:], float32[:,:] order(C), float32[:,:] order(C), float32[:,:] order(C), uint8[:,:] order(C), int, int, int, int, float, float, float, float, float, float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int, int, int)
#pythran export isr_amplifier(float64[:,:] order(C), int, int, int, int, int, int, float64[:], float64[:], float32[:,:] order(C), float32[:,:] order(C), float32[:,:] order(C), uint8[:,:] order(C), int, int, int, int, float, float, float, float, float, float32[:,:] order(C), float32[:,:] order(C), int32[:,:] order(C), int, int, int)
import numpy as np


def isr_amplifier(raw, ry0, rx0, ty0, tx0, height, width, level, lin, bias, dark, flat, defects,
                  use_bias, use_dark, use_flat, use_defects, gain, read_var, saturation,
                  suspect, dark_time, image, variance, mask, sat_bit, bad_bit, suspect_bit):
    """One pass over one amplifier's pixels: raw ADU to electrons, variance and mask.

    raw[ry0 + i, rx0 + j] goes to image[ty0 + i, tx0 + j]; the calibrations are indexed
    like the trimmed image; ``lin`` holds the linearity coefficients (c2, c3, ...), empty
    for a linear amplifier. See ../isr.py for the rule.

    Written for the C++ compiler's auto-vectoriser (SSE2 on the x86-64 baseline; setup.py
    adds -fno-trapping-math for this kernel so that the selects around the divisions are
    vectorised): each row is a few branch-free loops over contiguous 1-D slices (slices of
    the flattened arrays, whose indexing is plain pointer arithmetic) with a float64 row
    buffer, instead of one loop with branches. A missing calibration reads a row of zeros
    (bias, dark) or ones (flat), which leaves the values unchanged. float64 arithmetic as in
    the reference: r - level - bias cancels.
    """
    zf = np.zeros((1, width), np.float32)
    of = np.ones((1, width), np.float32)
    ebuf = np.empty(width, np.float64)
    rawf = raw.reshape(-1)
    bf = (bias if use_bias else zf).reshape(-1)
    df = (dark if use_dark else zf).reshape(-1)
    ff = (flat if use_flat else of).reshape(-1)
    qf = defects.reshape(-1)
    imf = image.reshape(-1)
    vaf = variance.reshape(-1)
    maf = mask.reshape(-1)
    rn = raw.shape[1]
    tn = image.shape[1]
    dt = dark_time if use_dark else 0.0
    sat_b = np.int32(sat_bit)
    sus_b = np.int32(suspect_bit)
    bad_b = np.int32(bad_bit)
    zero = np.int32(0)
    nlin = lin.shape[0]
    for i in range(height):
        lev = level[i]
        ro = (ry0 + i) * rn + rx0
        to = (ty0 + i) * tn + tx0
        bo = to if use_bias else 0
        do = to if use_dark else 0
        fo = to if use_flat else 0
        rrow = rawf[ro:ro + width]
        brow = bf[bo:bo + width]
        drow = df[do:do + width]
        frow = ff[fo:fo + width]
        irow = imf[to:to + width]
        vrow = vaf[to:to + width]
        mrow = maf[to:to + width]
        # electrons (the operations in the reference's order)
        if nlin == 0:
            for j in range(width):
                ebuf[j] = (float(rrow[j]) - lev - float(brow[j])) * gain - float(drow[j]) * dt
        else:
            # the linearizer's polynomial by Horner's rule: a + a**2 (c2 + a (c3 + ...))
            for j in range(width):
                a = float(rrow[j]) - lev - float(brow[j])
                poly = lin[nlin - 1]
                for k in range(nlin - 2, -1, -1):
                    poly = lin[k] + a * poly
                ebuf[j] = (a + a * a * poly) * gain - float(drow[j]) * dt
        # flat field; a flat that is not positive and finite leaves e and var undivided
        for j in range(width):
            f = float(frow[j])
            ok = (f > 0.0) & (f < np.inf)
            fs = f if ok else 1.0
            e = ebuf[j]
            neg = e < 0.0
            ep = 0.0 if neg else e  # max(e, 0) keeping a NaN, as np.maximum
            # one division: the products by 1 / f differ from the quotients by at most an
            # ulp of float64, far below the float32 results' resolution
            inv = 1.0 / fs
            e = e * inv
            ebuf[j] = e
            irow[j] = e
            vrow[j] = (ep + read_var) * (inv * inv)
        # mask bits: saturated, suspect, bad flat or non-finite result
        for j in range(width):
            r = float(rrow[j])
            f = float(frow[j])
            e = ebuf[j]
            good = (f > 0.0) & (f < np.inf) & (e > -np.inf) & (e < np.inf)
            sat = r >= saturation
            sus = r > suspect
            m = (sat_b if sat else zero) | (sus_b if sus else zero)
            mrow[j] = m | (zero if good else bad_b)
        if use_defects:
            qrow = qf[to:to + width]
            for j in range(width):
                mrow[j] |= bad_b if qrow[j] != 0 else zero
