"""The image data model: images, masks, masked images and exposures (afw.image style)."""

from hpcpipe.image.calib import FilterLabel, PhotoCalib
from hpcpipe.image.detector import Amplifier, Detector
from hpcpipe.image.exposure import Exposure
from hpcpipe.image.image import PIXEL_TYPES, Image
from hpcpipe.image.mask import STANDARD_MASK_PLANES, Mask
from hpcpipe.image.masked_image import MaskedImage
from hpcpipe.image.psf import GaussianPsf, PixelPsf, Psf
from hpcpipe.image.visit_info import VisitInfo

__all__ = [
    "Amplifier",
    "Detector",
    "Exposure",
    "FilterLabel",
    "GaussianPsf",
    "Image",
    "Mask",
    "MaskedImage",
    "PIXEL_TYPES",
    "PhotoCalib",
    "PixelPsf",
    "Psf",
    "STANDARD_MASK_PLANES",
    "VisitInfo",
]
