"""Simulated solar-system populations: main belt, near-Earth objects, trans-Neptunian objects.

The element distributions are simple but shaped like the observed ones:

Main belt (``kind`` 0)
    ``a`` uniform-ish in 2.1-3.3 au with the Kirkwood gaps at the 3:1 (2.50 au) and 5:2
    (2.82 au) resonances emptied; ``e`` Rayleigh (scale 0.08) below 0.3; ``i`` Rayleigh
    (scale 7 deg) below 25 deg; absolute magnitude ``H`` with the cumulative law
    ``N(<H) ~ 10 ** (0.3 H)`` (Jedicke & Metcalfe 1998) between ``h_range``.
Near-Earth objects (``kind`` 1)
    ``a`` 0.8-3.0 au, ``e`` up to 0.75 with perihelion ``q = a (1 - e) < 1.3`` au (Amors,
    Apollos, Atens), ``i`` Rayleigh (scale 12 deg); fainter ``H`` range shifted by +3 mag
    (smaller bodies seen closer).
Trans-Neptunian objects (``kind`` 2)
    ``a`` 39-48 au (plutinos and the classical belt), ``e < 0.2``, ``i`` Rayleigh (scale
    6 deg), ``H`` 5-8.

``G`` (slope parameter) is 0.15, the IAU default, with a small scatter.

:func:`draw_population` draws elements with random orientations (as for a whole-sky
population); :func:`population_in_field` rotates each orbit about the ecliptic pole (a change
of the node longitude, which leaves the orbit's shape and inclination as drawn) so that the
object is seen near a given field at a given time, then keeps the ones inside the field:
a realistic population of what one field sees without drawing millions of orbits.
"""

from __future__ import annotations

import numpy as np

from hpcpipe.solarsystem import kepler

__all__ = ["ORBIT_DTYPE", "KIND_NAMES", "draw_population", "population_in_field",
           "states_of"]

#: The columns of an orbit table (elements at ``epoch``, MJD TDB; angles in degrees).
ORBIT_DTYPE = np.dtype([("ssObjectId", "i8"), ("kind", "i2"), ("epoch", "f8"), ("a", "f8"),
                        ("e", "f8"), ("inc", "f8"), ("node", "f8"), ("argperi", "f8"),
                        ("M", "f8"), ("H", "f8"), ("G", "f8")])
#: The populations, by their code in the ``kind`` column.
KIND_NAMES = {0: "main belt", 1: "near-Earth", 2: "trans-Neptunian"}
#: The Kirkwood gaps (au) emptied from the main belt, with their half widths.
KIRKWOOD_GAPS = ((2.50, 0.02), (2.82, 0.015), (2.95, 0.01))


def _rayleigh_below(rng: np.random.Generator, scale: float, limit: float, n: int
                    ) -> np.ndarray:
    out = rng.rayleigh(scale, n)
    bad = out >= limit
    while np.any(bad):
        out[bad] = rng.rayleigh(scale, int(bad.sum()))
        bad = out >= limit
    return out


def _h_power_law(rng: np.random.Generator, lo: float, hi: float, n: int,
                 slope: float = 0.3) -> np.ndarray:
    """Draws of H with ``dN/dH ~ 10 ** (slope H)`` between ``lo`` and ``hi``."""
    u = rng.random(n)
    b = slope * np.log(10.0)
    return np.log(np.exp(b * lo) + u * (np.exp(b * hi) - np.exp(b * lo))) / b


def _main_belt_a(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.uniform(2.1, 3.3, n)
    for _ in range(100):
        bad = np.zeros(n, bool)
        for centre, half in KIRKWOOD_GAPS:
            bad |= np.abs(a - centre) < half
        if not bad.any():
            break
        a[bad] = rng.uniform(2.1, 3.3, int(bad.sum()))
    return a


def draw_population(counts: dict[int, int] | int, epoch: float, rng: np.random.Generator,
                    h_range: tuple[float, float] = (14.0, 20.0), first_id: int = 1
                    ) -> np.ndarray:
    """Draw orbits with random orientations.

    Parameters
    ----------
    counts : dict or int
        Number of objects per kind (:data:`KIND_NAMES`); an int means main-belt only.
    epoch : float
        Epoch of the elements (MJD TDB).
    rng : numpy.random.Generator
        The random generator (the population is reproducible from its seed).
    h_range : (float, float)
        Main-belt absolute magnitudes (NEOs get the range shifted by 3 mag).
    first_id : int
        ``ssObjectId`` of the first object (then consecutive).

    Returns
    -------
    numpy.ndarray
        Rows of :data:`ORBIT_DTYPE`.
    """
    if isinstance(counts, int):
        counts = {0: counts}
    unknown = set(counts) - set(KIND_NAMES)
    if unknown:
        raise ValueError(f"draw_population: unknown kinds {sorted(unknown)} "
                         f"(known: {KIND_NAMES})")
    parts = []
    for kind, n in sorted(counts.items()):
        if n <= 0:
            continue
        rows = np.zeros(n, ORBIT_DTYPE)
        rows["kind"] = kind
        if kind == 0:
            rows["a"] = _main_belt_a(rng, n)
            rows["e"] = _rayleigh_below(rng, 0.08, 0.3, n)
            rows["inc"] = _rayleigh_below(rng, 7.0, 25.0, n)
            rows["H"] = _h_power_law(rng, h_range[0], h_range[1], n)
        elif kind == 1:
            a = rng.uniform(0.8, 3.0, n)
            e = rng.uniform(0.05, 0.75, n)
            bad = (a * (1 - e) >= 1.3) | (a * (1 + e) <= 0.983)
            while bad.any():
                a[bad] = rng.uniform(0.8, 3.0, int(bad.sum()))
                e[bad] = rng.uniform(0.05, 0.75, int(bad.sum()))
                bad = (a * (1 - e) >= 1.3) | (a * (1 + e) <= 0.983)
            rows["a"], rows["e"] = a, e
            rows["inc"] = _rayleigh_below(rng, 12.0, 60.0, n)
            rows["H"] = _h_power_law(rng, h_range[0] + 3.0, h_range[1] + 3.0, n)
        else:
            rows["a"] = rng.uniform(39.0, 48.0, n)
            rows["e"] = rng.uniform(0.0, 0.2, n)
            rows["inc"] = _rayleigh_below(rng, 6.0, 30.0, n)
            rows["H"] = rng.uniform(5.0, 8.0, n)
        rows["node"] = rng.uniform(0, 360, n)
        rows["argperi"] = rng.uniform(0, 360, n)
        rows["M"] = rng.uniform(0, 360, n)
        rows["G"] = np.clip(rng.normal(0.15, 0.05, n), -0.1, 0.5)
        parts.append(rows)
    out = np.concatenate(parts) if parts else np.zeros(0, ORBIT_DTYPE)
    out["epoch"] = epoch
    out["ssObjectId"] = first_id + np.arange(len(out))
    return out


def states_of(orbits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heliocentric equatorial states (au, au/day) of orbit rows at their epoch."""
    rad = np.radians
    return kepler.elements_to_state(orbits["a"], orbits["e"], rad(orbits["inc"]),
                                    rad(orbits["node"]), rad(orbits["argperi"]),
                                    rad(orbits["M"]))


def population_in_field(counts: dict[int, int] | int, ra_deg: float, dec_deg: float,
                        radius_deg: float, mjd_tai: float, rng: np.random.Generator,
                        h_range: tuple[float, float] = (14.0, 20.0),
                        site: kepler.Site | None = kepler.RUBIN_SITE, first_id: int = 1,
                        max_rounds: int = 200) -> np.ndarray:
    """Draw orbits seen within ``radius_deg`` of a field at ``mjd_tai``.

    Each drawn orbit is turned about the ecliptic pole (its node moved) until its
    geocentric ecliptic longitude matches a random longitude across the field (a few
    fixed-point steps); the ones whose latitude also falls in the field are kept, until
    ``counts`` are reached. Elements are given at the epoch ``mjd_tai`` (as TDB).

    Raises
    ------
    ValueError
        When the field is too far from the ecliptic for the drawn inclinations to reach it
        within ``max_rounds`` rounds of draws.
    """
    if isinstance(counts, int):
        counts = {0: counts}
    epoch = float(kepler.tai_to_tdb(mjd_tai))
    obs = kepler.observer_position(mjd_tai, site)[0]
    obs_ecl = kepler.equatorial_to_ecliptic(obs)
    centre = kepler.vectors_from_radec(ra_deg, dec_deg)
    centre_ecl = kepler.equatorial_to_ecliptic(centre)
    lam_c = np.arctan2(centre_ecl[1], centre_ecl[0])
    beta_c = np.arcsin(np.clip(centre_ecl[2], -1, 1))
    half_lon = np.radians(radius_deg) / max(np.cos(beta_c), 0.05)
    kept: list[np.ndarray] = []
    for kind, n in sorted(counts.items()):
        got = 0
        for _ in range(max_rounds):
            if got >= n:
                break
            batch = max(64, 8 * (n - got))
            rows = draw_population({kind: batch}, epoch, rng, h_range)
            rows["node"] = 0.0
            r, _ = kepler.elements_to_state(rows["a"], rows["e"], np.radians(rows["inc"]),
                                            np.zeros(batch), np.radians(rows["argperi"]),
                                            np.radians(rows["M"]), equatorial=False)
            target = lam_c + rng.uniform(-half_lon, half_lon, batch)
            node = np.zeros(batch)
            for _ in range(8):
                c, s = np.cos(node), np.sin(node)
                rot = np.stack([c * r[:, 0] - s * r[:, 1], s * r[:, 0] + c * r[:, 1],
                                r[:, 2]], axis=-1)
                geo = rot - obs_ecl
                node += np.angle(np.exp(1j * (target - np.arctan2(geo[:, 1], geo[:, 0]))))
            rows["node"] = np.degrees(np.remainder(node, 2 * np.pi))
            r_eq, _ = states_of(rows)
            seen = r_eq - obs
            seen /= np.linalg.norm(seen, axis=1)[:, None]
            inside = np.degrees(np.arccos(np.clip(seen @ centre, -1, 1))) < radius_deg
            take = rows[inside][: n - got]
            kept.append(take)
            got += len(take)
        if got < n:
            raise ValueError(f"population_in_field: only {got} of {n} {KIND_NAMES[kind]} "
                             f"objects reach the field at RA={ra_deg}, Dec={dec_deg} "
                             f"(too far from the ecliptic?)")
    out = np.concatenate(kept) if kept else np.zeros(0, ORBIT_DTYPE)
    out["ssObjectId"] = first_id + np.arange(len(out))
    return out
