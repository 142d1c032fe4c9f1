"""Synthetic observations of orbits: an LSST-like cadence and noisy detections (no images).

Used by the tests and the linking benchmark, and by the image simulation for the truth of
its asteroids: :func:`ephemerides` gives every object's astrometric position and magnitude
at every visit; :func:`lsst_cadence` gives visit times in pairs of the same field 15-90
minutes apart, the field revisited every few nights; :func:`synthetic_detections` turns
ephemerides into detections with astrometric noise inside the field.
"""

from __future__ import annotations

import numpy as np

from hpcpipe.solarsystem import kepler
from hpcpipe.solarsystem.population import states_of

__all__ = ["DETECTION_DTYPE", "ephemerides", "lsst_cadence", "synthetic_detections"]

#: A detection: ``objectId`` is the truth (-1 for a false or static detection).
DETECTION_DTYPE = np.dtype([("diaSourceId", "i8"), ("mjd", "f8"), ("ra", "f8"),
                            ("dec", "f8"), ("raErr", "f8"), ("decErr", "f8"),
                            ("mag", "f8"), ("visit", "i8"), ("objectId", "i8")])


def ephemerides(orbits: np.ndarray, mjd_tai: np.ndarray,
                site: kepler.Site | None = kepler.RUBIN_SITE) -> dict[str, np.ndarray]:
    """Astrometric positions (light-time corrected) of every orbit at every time.

    Returns a dict of ``(n_orbits, n_times)`` arrays: ``ra``, ``dec`` (degrees), ``mag``
    (V from H, G), ``delta``, ``r`` (au), ``phase`` (degrees), and the rates
    ``rate_ra``, ``rate_dec`` (deg/day, RA rate on the sky, i.e. times cos Dec) from a
    finite difference of 1 minute.
    """
    mjd_tai = np.atleast_1d(np.asarray(mjd_tai, dtype=float))
    r0, v0 = states_of(orbits)
    epoch = orbits["epoch"][:, None]
    out: dict[str, np.ndarray] = {}
    step = 1.0 / 1440.0
    for key, times in (("", mjd_tai), ("_next", mjd_tai + step)):
        obs = kepler.observer_position(times, site)
        eph = kepler.observe(r0[:, None, :], v0[:, None, :], epoch, times[None, :],
                             obs[None, :, :])
        out["ra" + key], out["dec" + key] = eph["ra"], eph["dec"]
        if not key:
            out["delta"], out["r"], out["phase"] = eph["delta"], eph["r"], eph["phase"]
    dra = (out.pop("ra_next") - out["ra"] + 180.0) % 360.0 - 180.0
    out["rate_ra"] = dra * np.cos(np.radians(out["dec"])) / step
    out["rate_dec"] = (out.pop("dec_next") - out["dec"]) / step
    out["mag"] = kepler.hg_magnitude(orbits["H"][:, None], orbits["G"][:, None], out["r"],
                                     out["delta"], out["phase"])
    return out


def lsst_cadence(start_mjd_tai: float, nights: int, rng: np.random.Generator,
                 night_step: tuple[int, int] = (2, 4), pair_gap_min: tuple[float, float]
                 = (15.0, 90.0), visits_per_night: int = 2) -> np.ndarray:
    """Visit times (MJD TAI) of one field: ``visits_per_night`` visits a night, each
    15-90 minutes after the previous one, on ``nights`` nights each 2-4 nights after the
    previous one (the LSST wide-fast-deep pattern). Visits start around local midnight
    (04:00 UTC at Cerro Pachon) give or take two hours."""
    times = []
    night = 0
    for k in range(nights):
        if k:
            night += int(rng.integers(night_step[0], night_step[1] + 1))
        t = np.floor(start_mjd_tai) + night + (4.0 + rng.uniform(-2, 2)) / 24.0
        for j in range(visits_per_night):
            if j:
                t += rng.uniform(*pair_gap_min) / 1440.0
            times.append(t)
    return np.asarray(times)


def synthetic_detections(orbits: np.ndarray, mjd_tai: np.ndarray, ra_deg: float,
                         dec_deg: float, radius_deg: float, rng: np.random.Generator,
                         sigma_arcsec: float = 0.1, limiting_mag: float | None = None,
                         site: kepler.Site | None = kepler.RUBIN_SITE,
                         n_false_per_visit: int = 0) -> np.ndarray:
    """Detections of ``orbits`` at the visits ``mjd_tai`` of a circular field.

    Each object inside the field (and brighter than ``limiting_mag`` if given) at a visit
    gives a detection at its astrometric position plus Gaussian noise ``sigma_arcsec`` per
    axis; ``n_false_per_visit`` random false detections (``objectId`` -1) are added per
    visit, uniform over the field. Rows of :data:`DETECTION_DTYPE`, by time.
    """
    eph = ephemerides(orbits, mjd_tai, site)
    centre = kepler.vectors_from_radec(ra_deg, dec_deg)
    parts = []
    for j, t in enumerate(np.atleast_1d(mjd_tai)):
        u = kepler.vectors_from_radec(eph["ra"][:, j], eph["dec"][:, j])
        inside = np.degrees(np.arccos(np.clip(u @ centre, -1, 1))) < radius_deg
        if limiting_mag is not None:
            inside &= eph["mag"][:, j] < limiting_mag
        n = int(inside.sum())
        rows = np.zeros(n + n_false_per_visit, DETECTION_DTYPE)
        sig = sigma_arcsec / 3600.0
        dec = eph["dec"][inside, j] + rng.normal(0, sig, n)
        ra = eph["ra"][inside, j] + rng.normal(0, sig, n) / np.cos(np.radians(dec))
        rows["ra"][:n], rows["dec"][:n] = ra % 360.0, dec
        rows["mag"][:n] = eph["mag"][inside, j]
        rows["objectId"][:n] = orbits["ssObjectId"][inside]
        if n_false_per_visit:
            # uniform on the spherical cap
            cosr = np.cos(np.radians(radius_deg))
            z = rng.uniform(cosr, 1.0, n_false_per_visit)
            phi = rng.uniform(0, 2 * np.pi, n_false_per_visit)
            local = np.stack([np.sqrt(1 - z * z) * np.cos(phi),
                              np.sqrt(1 - z * z) * np.sin(phi), z], axis=-1)
            ra_f, dec_f = kepler.radec_from_vectors(local @ _frame(ra_deg, dec_deg))
            rows["ra"][n:], rows["dec"][n:] = ra_f, dec_f
            rows["mag"][n:] = 22.0
            rows["objectId"][n:] = -1
        rows["mjd"] = t
        rows["visit"] = j
        rows["raErr"] = rows["decErr"] = sigma_arcsec / 3600.0
        parts.append(rows)
    out = np.concatenate(parts) if parts else np.zeros(0, DETECTION_DTYPE)
    out["diaSourceId"] = np.arange(len(out))
    return out


def _frame(ra_deg: float, dec_deg: float) -> np.ndarray:
    """Rows: the unit vectors east, north and the centre of a field (a local frame)."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    centre = np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    east = np.array([-np.sin(ra), np.cos(ra), 0.0])
    north = np.cross(centre, east)
    return np.stack([east, north, centre])
