"""Transients, variable stars and moving objects with known light curves, for image differencing.

Three kinds of point sources are added to the static sky of :mod:`hpcpipe.sim.sky`:

Transients (``kind == 0``, supernova-like)
    Nothing before the explosion time ``t0``; then the flux rises as ``((t - t0) / rise)**2``
    to its peak ``peak_mag`` at ``t0 + rise`` days (a fireball), and fades linearly in
    magnitude, by one magnitude every ``fall`` days, after the peak.
Periodic variables (``kind == 1``)
    ``mag = mean_mag + amplitude * f(phase)``, ``phase = ((t - t0) / period) mod 1``, with
    ``f = sin(2 pi phase)`` (``shape == 0``) or the sawtooth ``f = 2 phase - 1`` of an
    RR Lyrae-like star that brightens quickly and fades slowly (``shape == 1``).
Moving objects (``kind == 2``)
    Constant brightness ``peak_mag`` and linear motion ``mu_ra``, ``mu_dec`` (arcsec per
    hour, ``mu_ra`` along the great circle, i.e. already multiplied by cos dec) from
    ``(ra, dec)`` at the reference time ``t_ref`` (the survey's start). The object is drawn as
    a point source at its mid-exposure position (trailing within one 30 s exposure is less
    than a pixel at the default speeds).

Times are MJD (TAI). All three kinds are placed where the simulated CCDs look at the nominal
pointing (away from the CCD edges by more than the dither), so that they fall on the images;
moving objects are placed on a CCD at a random time of the survey. The colours are small
random offsets between bands.

:func:`make_transients` draws the population (the *truth table*, one row per object);
:func:`epoch_truth` gives their magnitudes and positions at one visit in the format of the
static sky's truth (so that :func:`hpcpipe.sim.raw.render_ccd` draws them);
:func:`light_curves` lists every object at every visit (the *light-curve truth*).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.time import Time, TimeDelta

from hpcpipe.sim.raw import VisitPlan, ccd_true_wcs
from hpcpipe.sim.sky import AB_NJY_ZERO_POINT, BANDS
from hpcpipe.table import Catalog, Schema

__all__ = ["TransientConfig", "KINDS", "TRANSIENT_ID_BASE", "make_transients", "magnitudes_at",
           "positions_at", "epoch_truth", "light_curves", "transient_truth_catalog",
           "light_curve_catalog", "visit_mjd"]

#: The kinds of objects, by their code in the truth table's ``kind`` column.
KINDS = {0: "transient", 1: "variable", 2: "mover"}
#: Ids of the injected objects start here (the static sky's ids are small).
TRANSIENT_ID_BASE = 1_000_000_000
#: A magnitude standing for no flux at all (before a transient's explosion).
NO_FLUX_MAG = 99.0


@dataclass(frozen=True)
class TransientConfig:
    """The injected population.

    Parameters
    ----------
    transients, variables, movers : int
        How many of each kind.
    peak_mags : tuple of float
        r-band peak magnitudes of the transients (uniform).
    rise_days, fall_days : tuple of float
        Ranges of the rise time (days from explosion to peak) and of the fading time (days
        per magnitude after the peak).
    explosion_window : tuple of float
        Explosion times, as fractions of the survey's span (0: first visit, 1: last visit).
        The default (0.5, 0.7) leaves the first half of the survey free of transients (for
        the templates and a transient-free visit) and lets most of them rise before the last
        visit.
    variable_mags : tuple of float
        r-band mean magnitudes of the variables.
    amplitudes : tuple of float
        Semi-amplitudes of the variables, magnitudes.
    periods : tuple of float
        Periods of the variables, days.
    mover_mags : tuple of float
        r-band magnitudes of the moving objects.
    speeds : tuple of float
        Speeds of the moving objects, arcsec per hour.
    """

    transients: int = 0
    variables: int = 0
    movers: int = 0
    peak_mags: tuple[float, float] = (19.5, 22.5)
    rise_days: tuple[float, float] = (0.5, 3.0)
    fall_days: tuple[float, float] = (5.0, 20.0)
    explosion_window: tuple[float, float] = (0.5, 0.7)
    variable_mags: tuple[float, float] = (18.0, 21.0)
    amplitudes: tuple[float, float] = (0.2, 0.8)
    periods: tuple[float, float] = (0.3, 5.0)
    mover_mags: tuple[float, float] = (19.0, 21.5)
    speeds: tuple[float, float] = (5.0, 60.0)

    def __post_init__(self) -> None:
        for name in ("transients", "variables", "movers"):
            if getattr(self, name) < 0:
                raise ValueError(f"the number of {name} must be 0 or more; "
                                 f"got {getattr(self, name)}")
        lo, hi = self.explosion_window
        if not 0.0 <= lo <= hi:
            raise ValueError(f"explosion_window must be (lo, hi) with 0 <= lo <= hi; got "
                             f"{self.explosion_window}")

    @property
    def total(self) -> int:
        """The number of injected objects."""
        return self.transients + self.variables + self.movers


def visit_mjd(plan: Any) -> float:
    """The MJD (TAI) of the middle of a visit's exposure."""
    start = Time(plan.date, format="isot", scale="tai")
    return float((start + TimeDelta(plan.exp_time / 2.0, format="sec")).mjd)


def _positions_on_ccds(rng: np.random.Generator, n: int, camera: Any, ccds: list[int],
                       ra: float, dec: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random sky positions on the CCDs at the nominal pointing, ``margin`` pixels in."""

    plan = VisitPlan(visit=0, band="r", date="2026-01-01T00:00:00", ra=ra, dec=dec)
    c = camera.config
    if 2 * margin >= min(c.width, c.height):
        raise ValueError(f"the CCDs ({c.width}x{c.height} pixels) are too small for a margin "
                         f"of {margin:.0f} pixels (the dither plus 30) around the injected "
                         "transients, variables and movers: use larger CCDs or a smaller "
                         "dither")
    which = rng.integers(0, len(ccds), n)
    x = rng.uniform(margin, c.width - 1 - margin, n)
    y = rng.uniform(margin, c.height - 1 - margin, n)
    out_ra, out_dec = np.empty(n), np.empty(n)
    for k, ccd in enumerate(ccds):
        sel = which == k
        if sel.any():
            out_ra[sel], out_dec[sel] = ccd_true_wcs(camera, plan, ccd).all_pix2world(
                x[sel], y[sel], 0)
    return out_ra, out_dec


def make_transients(config: TransientConfig, camera: Any, ccds: list[int], ra: float,
                    dec: float, mjd_range: tuple[float, float], margin: float, seed: int = 0
                    ) -> dict[str, np.ndarray]:
    """Draw the injected population (the truth table).

    Parameters
    ----------
    config : TransientConfig
    camera : SimCamera
    ccds : list of int
        The simulated CCDs.
    ra, dec : float
        The nominal pointing, degrees.
    mjd_range : tuple of float
        MJD of the first and last visits.
    margin : float
        Pixels between the objects and the CCD edges at the nominal pointing.
    seed : int

    Returns
    -------
    dict of numpy.ndarray
        One row per object: ``id``, ``kind``, ``ra``, ``dec`` (degrees; a mover's position
        at ``t_ref``), ``mag_<band>`` (peak, mean or constant magnitude), ``t0`` (MJD of a
        transient's explosion or a variable's phase zero), ``rise``, ``fall`` (days),
        ``period`` (days), ``amplitude`` (mag), ``shape`` (0 sine, 1 sawtooth), ``mu_ra``,
        ``mu_dec`` (arcsec/hour), ``t_ref`` (MJD).
    """
    rng = np.random.default_rng([seed, 9])
    nt, nv, nm = config.transients, config.variables, config.movers
    n = nt + nv + nm
    t_first, t_last = (float(v) for v in mjd_range)
    span = t_last - t_first
    kind = np.repeat(np.array([0, 1, 2], np.int32), [nt, nv, nm])
    ra_, dec_ = _positions_on_ccds(rng, n, camera, ccds, ra, dec, margin)
    base = np.concatenate([rng.uniform(*config.peak_mags, nt),
                           rng.uniform(*config.variable_mags, nv),
                           rng.uniform(*config.mover_mags, nm)])
    out: dict[str, np.ndarray] = {
        "id": TRANSIENT_ID_BASE + np.arange(1, n + 1, dtype=np.int64),
        "kind": kind,
    }
    colour = {"g": rng.uniform(0.0, 0.6, n), "r": np.zeros(n), "i": -rng.uniform(0.0, 0.4, n)}
    t0 = np.zeros(n)
    lo, hi = config.explosion_window
    t0[:nt] = t_first + span * rng.uniform(lo, hi, nt)
    t0[nt:nt + nv] = t_first - rng.uniform(0.0, 10.0, nv)
    rise = np.zeros(n)
    fall = np.zeros(n)
    rise[:nt] = rng.uniform(*config.rise_days, nt)
    fall[:nt] = rng.uniform(*config.fall_days, nt)
    period = np.zeros(n)
    amplitude = np.zeros(n)
    shape = np.zeros(n, np.int32)
    period[nt:nt + nv] = rng.uniform(*config.periods, nv)
    amplitude[nt:nt + nv] = rng.uniform(*config.amplitudes, nv)
    shape[nt:nt + nv] = rng.integers(0, 2, nv)
    mu_ra = np.zeros(n)
    mu_dec = np.zeros(n)
    speed = rng.uniform(*config.speeds, nm)
    angle = rng.uniform(0, 2 * np.pi, nm)
    mu_ra[nt + nv:] = speed * np.cos(angle)
    mu_dec[nt + nv:] = speed * np.sin(angle)
    # a mover is on a CCD at a random time of the survey: move it back to t_ref
    t_on = t_first + span * rng.uniform(0, 1, nm)
    hours = (t_on - t_first) * 24.0
    mover = slice(nt + nv, n)
    dec_[mover] = dec_[mover] - mu_dec[mover] * hours / 3600.0
    ra_[mover] = ra_[mover] - mu_ra[mover] * hours / 3600.0 / np.cos(np.radians(dec_[mover]))
    out.update(ra=ra_, dec=dec_)
    for band in BANDS:
        out[f"mag_{band}"] = base + colour.get(band, np.zeros(n))
    out.update(t0=t0, rise=rise, fall=fall, period=period, amplitude=amplitude, shape=shape,
               mu_ra=mu_ra, mu_dec=mu_dec, t_ref=np.full(n, t_first))
    return out


def magnitudes_at(table: dict[str, np.ndarray], mjd: float, band: str) -> np.ndarray:
    """Every object's magnitude in ``band`` at ``mjd`` (:data:`NO_FLUX_MAG` for no flux)."""
    base = np.asarray(table[f"mag_{band}"], dtype=np.float64)
    kind = np.asarray(table["kind"])
    mag = base.copy()
    # transients
    tr = kind == 0
    if tr.any():
        dt = mjd - table["t0"][tr]
        rise, fall = table["rise"][tr], table["fall"][tr]
        with np.errstate(divide="ignore"):
            rising = base[tr] - 5.0 * np.log10(np.clip(dt / rise, 1e-30, None))
        fading = base[tr] + (dt - rise) / fall
        mag[tr] = np.where(dt <= 0, NO_FLUX_MAG, np.where(dt < rise, rising, fading))
        mag[tr] = np.minimum(mag[tr], NO_FLUX_MAG)
    var = kind == 1
    if var.any():
        phase = np.mod((mjd - table["t0"][var]) / table["period"][var], 1.0)
        f = np.where(table["shape"][var] == 0, np.sin(2 * np.pi * phase), 2 * phase - 1)
        mag[var] = base[var] + table["amplitude"][var] * f
    return mag


def positions_at(table: dict[str, np.ndarray], mjd: float) -> tuple[np.ndarray, np.ndarray]:
    """Every object's position (degrees) at ``mjd``: only the movers move."""
    hours = (mjd - np.asarray(table["t_ref"])) * 24.0
    dec = np.asarray(table["dec"]) + np.asarray(table["mu_dec"]) * hours / 3600.0
    ra = np.asarray(table["ra"]) + np.asarray(table["mu_ra"]) * hours / 3600.0 / np.cos(
        np.radians(dec))
    return ra, dec


def epoch_truth(table: dict[str, np.ndarray], plan: Any) -> dict[str, np.ndarray]:
    """The objects as seen at visit ``plan``, in the format of the static sky's truth.

    Point sources (``is_star`` true, ``sigma`` 0) at their positions at mid-exposure with their
    magnitudes then in every band (no flux: :data:`NO_FLUX_MAG`).
    """
    mjd = visit_mjd(plan)
    n = len(table["id"])
    ra, dec = positions_at(table, mjd)
    out = {"id": np.asarray(table["id"]), "ra": ra, "dec": dec, "is_star": np.ones(n, bool)}
    for band in BANDS:
        out[f"mag_{band}"] = magnitudes_at(table, mjd, band)
    out.update(sigma=np.zeros(n), e1=np.zeros(n), e2=np.zeros(n))
    return out


def light_curves(table: dict[str, np.ndarray], plans: list[Any]) -> dict[str, np.ndarray]:
    """Every object at every visit: the light-curve truth.

    Returns
    -------
    dict of numpy.ndarray
        ``id``, ``kind``, ``visit``, ``band`` (str), ``mjd``, ``ra``, ``dec`` (degrees),
        ``mag`` and ``flux`` (nJy; 0 before a transient's explosion).
    """
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("id", "kind", "visit", "band", "mjd",
                                                          "ra", "dec", "mag", "flux")}
    n = len(table["id"])
    for plan in plans:
        mjd = visit_mjd(plan)
        ra, dec = positions_at(table, mjd)
        mag = magnitudes_at(table, mjd, plan.band)
        flux = np.where(mag >= NO_FLUX_MAG, 0.0, 10 ** (-0.4 * (mag - AB_NJY_ZERO_POINT)))
        for key, value in (("id", table["id"]), ("kind", table["kind"]),
                           ("visit", np.full(n, plan.visit)), ("band", np.full(n, plan.band)),
                           ("mjd", np.full(n, mjd)), ("ra", ra), ("dec", dec), ("mag", mag),
                           ("flux", flux)):
            rows[key].append(np.asarray(value))
    return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in rows.items()}


def transient_truth_catalog(table: dict[str, np.ndarray]) -> Any:
    """The truth table as a :class:`~hpcpipe.table.Catalog` (``transient_truth``)."""

    schema = Schema()
    schema.add_field("id", "L", doc="object id")
    schema.add_field("kind", "I", doc="0 transient (SN-like), 1 periodic variable, 2 mover")
    schema.add_field("ra", "D", doc="right ascension (a mover's at t_ref)", units="deg")
    schema.add_field("dec", "D", doc="declination (a mover's at t_ref)", units="deg")
    for band in BANDS:
        schema.add_field(f"mag_{band}", "D", doc=f"{band} AB magnitude: a transient's peak, "
                         "a variable's mean, a mover's constant", units="mag")
    schema.add_field("t0", "D", doc="a transient's explosion, a variable's phase zero (MJD)",
                     units="d")
    schema.add_field("rise", "D", doc="a transient's days from explosion to peak", units="d")
    schema.add_field("fall", "D", doc="a transient's days per magnitude of fading", units="d")
    schema.add_field("period", "D", doc="a variable's period", units="d")
    schema.add_field("amplitude", "D", doc="a variable's semi-amplitude", units="mag")
    schema.add_field("shape", "I", doc="a variable's light curve: 0 sine, 1 sawtooth")
    schema.add_field("mu_ra", "D", doc="a mover's motion in RA (times cos dec)",
                     units="arcsec/h")
    schema.add_field("mu_dec", "D", doc="a mover's motion in Dec", units="arcsec/h")
    schema.add_field("t_ref", "D", doc="the time of ra, dec (MJD)", units="d")
    return Catalog.from_columns(schema, {name: table[name] for name in schema.names})


def light_curve_catalog(curves: dict[str, np.ndarray]) -> Any:
    """The light-curve truth as a :class:`~hpcpipe.table.Catalog` (``transient_lightcurves``)."""

    schema = Schema()
    schema.add_field("id", "L", doc="object id (transient_truth)")
    schema.add_field("kind", "I", doc="0 transient, 1 variable, 2 mover")
    schema.add_field("visit", "L", doc="visit")
    schema.add_field("band", "U1", doc="the visit's band")
    schema.add_field("mjd", "D", doc="middle of the exposure (MJD, TAI)", units="d")
    schema.add_field("ra", "D", doc="position at mjd", units="deg")
    schema.add_field("dec", "D", doc="position at mjd", units="deg")
    schema.add_field("mag", "D", doc="true AB magnitude (99: no flux)", units="mag")
    schema.add_field("flux", "D", doc="true flux", units="nJy")
    columns = dict(curves)
    columns["band"] = np.asarray(columns["band"], dtype="U1")
    return Catalog.from_columns(schema, {name: columns[name] for name in schema.names})
