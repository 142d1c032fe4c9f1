"""Filter labels and photometric calibration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FilterLabel", "PhotoCalib", "AB_NANOJANSKY_ZERO_POINT"]

#: The AB magnitude of a source of 1 nJy (AB mag = 31.4 - 2.5 log10(flux / nJy)).
AB_NANOJANSKY_ZERO_POINT = 31.4


@dataclass(frozen=True)
class FilterLabel:
    """A filter, by its abstract band and the physical filter that realises it.

    Parameters
    ----------
    band : str
        ``"u"``, ``"g"``, ``"r"``, ``"i"``, ``"z"`` or ``"y"`` (any name is accepted).
    physical : str, optional
        The instrument's name of the physical filter (defaults to ``band``).
    """

    band: str
    physical: str = ""

    def __post_init__(self) -> None:
        if not self.physical:
            object.__setattr__(self, "physical", self.band)


@dataclass(frozen=True)
class PhotoCalib:
    """A photometric zero point: ``mag_AB = zero_point - 2.5 log10(instFlux)``.

    ``instFlux`` is in counts (the image's units) over the whole exposure.

    Parameters
    ----------
    zero_point : float
        The AB magnitude of a source giving one count.
    zero_point_err : float
        Its uncertainty (mag).
    """

    zero_point: float
    zero_point_err: float = 0.0

    @property
    def calibration_mean(self) -> float:
        """nJy per count (LSST's PhotoCalib ``calibrationMean``)."""
        return float(10.0 ** (-0.4 * (self.zero_point - AB_NANOJANSKY_ZERO_POINT)))

    def instflux_to_magnitude(
        self, instflux: np.ndarray | float, instflux_err: np.ndarray | float | None = None
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """AB magnitudes (and their errors, including the zero point's, if errors are given)."""
        flux = np.asarray(instflux, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = self.zero_point - 2.5 * np.log10(flux)
            if instflux_err is None:
                return mag
            rel = np.asarray(instflux_err, dtype=np.float64) / flux
            err = np.hypot(2.5 / np.log(10.0) * rel, self.zero_point_err)
        return mag, err

    def magnitude_to_instflux(self, mag: np.ndarray | float) -> np.ndarray:
        """Counts of a source of AB magnitude ``mag``."""
        return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - self.zero_point))

    def instflux_to_nanojansky(
        self, instflux: np.ndarray | float, instflux_err: np.ndarray | float | None = None
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Fluxes in nJy (and their errors, including the zero point's, if errors are given)."""
        scale = self.calibration_mean
        flux = np.asarray(instflux, dtype=np.float64) * scale
        if instflux_err is None:
            return flux
        err_zp = np.abs(flux) * np.log(10.0) / 2.5 * self.zero_point_err
        err = np.hypot(np.asarray(instflux_err, dtype=np.float64) * scale, err_zp)
        return flux, err
