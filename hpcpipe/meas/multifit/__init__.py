"""Multifit: galaxy models fitted jointly to the pixels of every epoch (and CModel).

:mod:`~hpcpipe.meas.multifit.profiles` (Gaussian-mixture profiles, the ellipse),
:mod:`~hpcpipe.meas.multifit.psfgmm` (the PSF as a Gaussian mixture),
:mod:`~hpcpipe.meas.multifit.fit` (the least-squares fit and CModel),
:mod:`~hpcpipe.meas.multifit.epochs` (cutouts of exposures as epochs). The pixel work is the
kernel :mod:`hpcpipe.kernels.gmrender`. See docs/multifit.md.
"""

from hpcpipe.meas.multifit.fit import (
                                       FLAG_BITS,
                                       CModelFit,
                                       Epoch,
                                       EpochSet,
                                       ModelFit,
                                       fit_cmodel,
                                       fit_model,
                                       initial_theta,
)
from hpcpipe.meas.multifit.profiles import PROFILES, shear_from_eta
from hpcpipe.meas.multifit.psfgmm import PsfMixture, fit_psf_mixture

__all__ = ["FLAG_BITS", "CModelFit", "Epoch", "EpochSet", "ModelFit", "PROFILES", "PsfMixture",
           "fit_cmodel", "fit_model", "fit_psf_mixture", "initial_theta", "shear_from_eta"]
