"""Galaxy profiles as Gaussian mixtures, and the ellipse parameterisation of the fit.

Profiles
--------
The exponential (Sersic n=1) and de Vaucouleurs (n=4) profiles are the mixtures of
Hogg & Lang (2013, PASP 125, 719, "Replacing standard galaxy profiles with mixtures of
Gaussians"), with the amplitudes and variances published with The Tractor
(``tractor/mixture_profiles.py``: 6 Gaussians for ``exp``, 8 for ``dev``; variances in units of
the squared half-light radius). Those mixtures fit the SDSS profiles, which follow the pure
profile out to 3 half-light radii and fall to zero by 4; their integral is 0.985 (exp) and
0.931 (dev) of the untruncated profile's. Here the amplitudes are scaled so that the mixture
matches the *untruncated* profile of unit total flux where it follows it: a model's flux is the
total flux of the Sersic profile it approximates (as GalSim's ``Sersic(flux=F)``), and the
mixture itself holds ``PROFILE_FLUX_FRACTION`` of it.

A point source is the PSF itself (one Gaussian of zero variance).

Ellipse
-------
A galaxy's shape is ``(eta1, eta2, ln r)``: ``r = sqrt(a b)`` the half-light radius of the
circle of the same area (arcsec; GalSim's ``half_light_radius`` before ``shear``), and the
conformal shear ``eta`` (``|eta| = ln(a/b)``, direction ``2 theta``). The profile's unit
covariance is::

    Sigma = r**2 (cosh|eta| I + sinh|eta|/|eta| [[eta1, eta2], [eta2, -eta1]])

(eigenvalues ``a**2`` and ``b**2``, ``det = r**4``): smooth everywhere, with any real
``(eta1, eta2)`` a valid ellipse. The reduced shear ``g = tanh(|eta|/2) eta/|eta|``
(``|g| = (a-b)/(a+b) < 1``, GalSim's ``shear(g1=, g2=)``) is what the catalog reports as
``e1``, ``e2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import exp, gamma, pi

import numpy as np

__all__ = ["Profile", "PROFILES", "PROFILE_FLUX_FRACTION", "unit_covariance",
           "shear_from_eta", "eta_from_shear", "shear_jacobian"]

# Hogg & Lang (2013) via The Tractor's mixture_profiles.py: amplitudes (unnormalised, of the
# profiles exp(-1.67835 (x - 1)) and exp(-7.66925 (x**(1/4) - 1)), x = radius / r_e) and
# variances (units of r_e**2)
_EXP_AMP = (2.34853813e-03, 3.07995260e-02, 2.23364214e-01, 1.17949102e+00, 4.33873750e+00,
            5.99820770e+00)
_EXP_VAR = (1.20078965e-03, 8.84526493e-03, 3.91463084e-02, 1.39976817e-01, 4.60962500e-01,
            1.50159566e+00)
_DEV_AMP = (4.26347652e-02, 2.40127183e-01, 6.85907632e-01, 1.51937350e+00, 2.83627243e+00,
            4.46467501e+00, 5.72440830e+00, 5.60989349e+00)
_DEV_VAR = (2.23759216e-04, 1.00220099e-03, 4.18731126e-03, 1.69432589e-02, 6.84850479e-02,
            2.87207080e-01, 1.33320254e+00, 8.40215071e+00)
# the b_n of those profiles (half the light within x = 1)
_B_EXP = 1.67835
_B_DEV = 7.66925


def _sersic_integral(n: float, b: float) -> float:
    """Integral over the plane of exp(-b (x**(1/n) - 1))."""
    return 2.0 * pi * n * exp(b) * gamma(2.0 * n) / b ** (2.0 * n)


@dataclass(frozen=True)
class Profile:
    """A circular profile of unit half-light radius as a Gaussian mixture.

    Attributes
    ----------
    name : str
        ``point``, ``exp`` or ``dev``.
    amp : numpy.ndarray
        Amplitudes: flux of each Gaussian per unit total flux of the profile.
    var : numpy.ndarray
        Variances in units of the squared half-light radius (0 for a point source).
    """

    name: str
    amp: np.ndarray
    var: np.ndarray

    @property
    def has_shape(self) -> bool:
        """Whether the profile has a size and ellipticity (not a point source)."""
        return bool(np.any(self.var > 0))


def _profile(name: str, amp: tuple, var: tuple, n: float, b: float) -> Profile:
    a = np.array(amp, dtype=np.float64)
    a /= _sersic_integral(n, b)
    a.setflags(write=False)
    v = np.array(var, dtype=np.float64)
    v.setflags(write=False)
    return Profile(name, a, v)


#: The profiles by name.
PROFILES: dict[str, Profile] = {
    "point": Profile("point", np.ones(1), np.zeros(1)),
    "exp": _profile("exp", _EXP_AMP, _EXP_VAR, 1.0, _B_EXP),
    "dev": _profile("dev", _DEV_AMP, _DEV_VAR, 4.0, _B_DEV),
}
#: The flux of each mixture per unit total flux of its untruncated profile.
PROFILE_FLUX_FRACTION = {name: float(p.amp.sum()) for name, p in PROFILES.items()}


def _sinhc(eta: float) -> tuple[float, float]:
    """``sinh(eta)/eta`` and ``(eta cosh eta - sinh eta)/eta**3`` (series near 0)."""
    if eta < 1e-3:
        e2 = eta * eta
        return 1.0 + e2 / 6.0 + e2 * e2 / 120.0, 1.0 / 3.0 + e2 / 30.0 + e2 * e2 / 840.0
    return np.sinh(eta) / eta, (eta * np.cosh(eta) - np.sinh(eta)) / eta ** 3


def unit_covariance(eta1: float, eta2: float, lnr: float, deriv: bool = False
                    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The ellipse's covariance ``Sigma`` (2 x 2) and, with ``deriv``, its derivatives.

    Returns
    -------
    numpy.ndarray or tuple
        ``Sigma``; with ``deriv`` also ``dSigma`` of shape ``(3, 2, 2)``: the derivatives
        with respect to ``eta1``, ``eta2`` and ``ln r``.
    """
    eta = float(np.hypot(eta1, eta2))
    f, h = _sinhc(eta)
    c = np.cosh(eta)
    r2 = np.exp(2.0 * lnr)
    m = np.array([[eta1, eta2], [eta2, -eta1]])
    sigma = r2 * (c * np.eye(2) + f * m)
    if not deriv:
        return sigma
    d = np.empty((3, 2, 2))
    d[0] = r2 * (f * eta1 * np.eye(2) + h * eta1 * m + f * np.array([[1.0, 0.0], [0.0, -1.0]]))
    d[1] = r2 * (f * eta2 * np.eye(2) + h * eta2 * m + f * np.array([[0.0, 1.0], [1.0, 0.0]]))
    d[2] = 2.0 * sigma
    return sigma, d


def shear_from_eta(eta1: float, eta2: float) -> tuple[float, float]:
    """Reduced shear ``(g1, g2)`` of the conformal shear ``(eta1, eta2)``."""
    eta = float(np.hypot(eta1, eta2))
    if eta == 0.0:
        return 0.0, 0.0
    t = np.tanh(0.5 * eta) / eta
    return float(t * eta1), float(t * eta2)


def eta_from_shear(g1: float, g2: float) -> tuple[float, float]:
    """Conformal shear of the reduced shear ``(g1, g2)`` (``|g| < 1``)."""
    g = float(np.hypot(g1, g2))
    if g == 0.0:
        return 0.0, 0.0
    if g >= 1.0:
        raise ValueError(f"reduced shear |g| = {g} must be below 1")
    t = 2.0 * np.arctanh(g) / g
    return float(t * g1), float(t * g2)


def shear_jacobian(eta1: float, eta2: float) -> np.ndarray:
    """``d(g1, g2)/d(eta1, eta2)`` (2 x 2), for the propagation of errors."""
    eta = float(np.hypot(eta1, eta2))
    if eta < 1e-6:
        return 0.5 * np.eye(2)
    t = np.tanh(0.5 * eta) / eta
    # dt/deta = (0.5 sech^2(eta/2) eta - tanh(eta/2)) / eta**2
    dt = (0.5 / np.cosh(0.5 * eta) ** 2 * eta - np.tanh(0.5 * eta)) / eta ** 2
    u = np.array([eta1, eta2]) / eta
    return t * np.eye(2) + dt * eta * np.outer(u, u)
