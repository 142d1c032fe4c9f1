"""Association of diaSources with diaObjects, and the diaObjects' light-curve statistics.

The rule (LSST's ``AssociationTask`` in spirit): each diaSource of a visit joins the nearest
diaObject within the match radius, one to one within the visit (pairs are taken nearest
first; a source or object already paired is skipped), and a diaSource left alone starts a
new diaObject. An object's position is the mean of its sources' positions (on the sphere);
its statistics are recomputed from all its sources (:func:`light_curve_stats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from astropy.time import Time
from scipy.spatial import cKDTree

from hpcpipe.ap.apdb import (
    BANDS,
    DIA_OBJECT_DTYPE,
    DIA_SOURCE_DTYPE,
    STAT_NAMES,
    Apdb,
    new_rows,
)

__all__ = ["AssociationResult", "PSF_STAT_NAMES", "associate", "associate_visit",
           "light_curve_stats", "now_mjd_tai", "object_row", "unit_vectors",
           "with_forced_stats"]

#: The difference-image PSF-flux statistics of :func:`light_curve_stats`.
PSF_STAT_NAMES = ("psfFluxMean", "psfFluxMeanErr", "psfFluxSigma", "psfFluxNdata",
                  "psfFluxMin", "psfFluxMax", "psfFluxMaxSlope", "psfFluxErrMean")


def unit_vectors(ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike) -> np.ndarray:
    """(n, 3) unit vectors of sky positions in degrees."""
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def associate(src_ra: np.ndarray, src_dec: np.ndarray, obj_ra: np.ndarray,
              obj_dec: np.ndarray, radius_arcsec: float) -> np.ndarray:
    """Pair sources with objects one to one, nearest pairs first, within ``radius_arcsec``.

    Returns
    -------
    numpy.ndarray
        For each source, the index of its object, or -1.
    """
    if not radius_arcsec > 0:
        raise ValueError(f"associate: the match radius must be positive; got {radius_arcsec}")
    n_src = len(src_ra)
    match = np.full(n_src, -1, np.int64)
    if n_src == 0 or len(obj_ra) == 0:
        return match
    chord = 2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0)
    src, obj = unit_vectors(src_ra, src_dec), unit_vectors(obj_ra, obj_dec)
    pairs = cKDTree(src).sparse_distance_matrix(cKDTree(obj), chord, output_type="ndarray")
    if len(pairs) == 0:
        return match
    order = np.lexsort((pairs["j"], pairs["i"], pairs["v"]))
    taken = np.zeros(len(obj_ra), bool)
    for k in order:
        i, j = int(pairs["i"][k]), int(pairs["j"][k])
        if match[i] < 0 and not taken[j]:
            match[i] = j
            taken[j] = True
    return match


def light_curve_stats(flux: np.ndarray, err: np.ndarray, mjd: np.ndarray | None = None,
                      prefix: str = "psfFlux") -> dict[str, float]:
    """Light-curve statistics of fluxes with errors (Rubin's DiaObject per-band columns).

    ``<prefix>Mean`` is the inverse-variance weighted mean and ``<prefix>MeanErr`` its error;
    for ``prefix="psfFlux"`` (the difference-image fluxes) also ``psfFluxSigma`` (standard
    deviation, ``ddof=1``; NaN with one point), ``psfFluxChi2`` (chi-square about the
    weighted mean: against a constant flux; not a DiaObject column of Rubin's),
    ``psfFluxNdata`` (the number of points), ``psfFluxMin`` and ``psfFluxMax`` (their
    difference is the amplitude), ``psfFluxErrMean`` (mean error) and, given the times
    ``mjd``, ``psfFluxMaxSlope`` (the largest ``delta flux / delta t`` between consecutive
    points, nJy per day; NaN with fewer than two distinct times). Points with a non-finite
    flux or a non-positive error are left out; with no point left every value is NaN and the
    count 0.
    """
    flux, err = np.asarray(flux, float), np.asarray(err, float)
    times = np.zeros(len(flux)) if mjd is None else np.asarray(mjd, float)
    ok = np.isfinite(flux) & np.isfinite(err) & (err > 0)
    f, e, t = flux[ok], err[ok], times[ok]
    n = len(f)
    if prefix != "psfFlux":
        if n == 0:
            return {f"{prefix}Mean": float("nan"), f"{prefix}MeanErr": float("nan")}
        w = 1.0 / e**2
        return {f"{prefix}Mean": float(np.sum(w * f) / np.sum(w)),
                f"{prefix}MeanErr": float(1.0 / np.sqrt(np.sum(w)))}
    if n == 0:
        out = {name: float("nan") for name in (*PSF_STAT_NAMES, "psfFluxChi2")}
        out["psfFluxNdata"] = 0
        return out
    w = 1.0 / e**2
    mean = float(np.sum(w * f) / np.sum(w))
    slope = float("nan")
    if mjd is not None:
        order = np.argsort(t, kind="stable")
        dt, df = np.diff(t[order]), np.diff(f[order])
        if np.any(dt > 0):
            slope = float(np.max(df[dt > 0] / dt[dt > 0]))
    return {"psfFluxMean": mean, "psfFluxMeanErr": float(1.0 / np.sqrt(np.sum(w))),
            "psfFluxSigma": float(np.std(f, ddof=1)) if n > 1 else float("nan"),
            "psfFluxChi2": float(np.sum(w * (f - mean) ** 2)), "psfFluxNdata": n,
            "psfFluxMin": float(f.min()), "psfFluxMax": float(f.max()),
            "psfFluxMaxSlope": slope, "psfFluxErrMean": float(e.mean())}


def now_mjd_tai() -> float:
    """The current time as an MJD in TAI (Rubin's ``timeProcessedMjdTai``...)."""
    return float(Time.now().tai.mjd)


def object_row(object_id: int, sources: np.ndarray, forced: np.ndarray | None = None,
               validity_start: float | None = None) -> np.void:
    """A diaObject from all its diaSources (and forced sources): Rubin's DiaObject columns.

    The position is the mean of the sources' (on the sphere); ``raErr``, ``decErr`` and
    ``ra_dec_Cov`` are those of that mean (from the sources' own, NaN if one lacks them).
    Per band: :func:`light_curve_stats` of the difference-image PSF fluxes, the weighted mean
    of the science fluxes (``scienceFluxMean``) and of the forced difference-image fluxes
    (``fpFluxMean``, from ``forced``).
    """
    row = new_rows(DIA_OBJECT_DTYPE, 1)[0]
    row["diaObjectId"] = object_id
    row["validityStartMjdTai"] = now_mjd_tai() if validity_start is None else validity_start
    mean = unit_vectors(sources["ra"], sources["dec"]).mean(axis=0)
    row["ra"] = float(np.degrees(np.arctan2(mean[1], mean[0])) % 360.0)
    row["dec"] = float(np.degrees(np.arctan2(mean[2], np.hypot(mean[0], mean[1]))))
    n = len(sources)
    row["raErr"] = np.sqrt(np.sum(sources["raErr"].astype(float) ** 2)) / n
    row["decErr"] = np.sqrt(np.sum(sources["decErr"].astype(float) ** 2)) / n
    row["ra_dec_Cov"] = np.sum(sources["ra_dec_Cov"].astype(float)) / n**2
    row["nDiaSources"] = n
    row["firstDiaSourceMjdTai"] = float(sources["midpointMjdTai"].min())
    row["lastDiaSourceMjdTai"] = float(sources["midpointMjdTai"].max())
    for band in BANDS:
        mine = sources[sources["band"] == band]
        stats = light_curve_stats(mine["psfFlux"], mine["psfFluxErr"], mine["midpointMjdTai"])
        stats.update(light_curve_stats(mine["scienceFlux"], mine["scienceFluxErr"],
                                       prefix="scienceFlux"))
        if forced is not None:
            fp = forced[forced["band"] == band]
            stats.update(light_curve_stats(fp["psfFlux"], fp["psfFluxErr"], prefix="fpFlux"))
        else:
            stats.update({"fpFluxMean": np.nan, "fpFluxMeanErr": np.nan})
        for name in STAT_NAMES:
            row[f"{band}_{name}"] = stats[name]
    return row


def with_forced_stats(objects: np.ndarray, forced: np.ndarray) -> np.ndarray:
    """``objects`` with their ``<band>_fpFluxMean`` and ``<band>_fpFluxMeanErr`` recomputed
    from ``forced`` (all their diaForcedSources)."""
    out = np.array(objects, dtype=DIA_OBJECT_DTYPE, copy=True)
    for k, oid in enumerate(out["diaObjectId"]):
        mine = forced[forced["diaObjectId"] == oid]
        for band in BANDS:
            fp = mine[mine["band"] == band]
            for name, value in light_curve_stats(fp["psfFlux"], fp["psfFluxErr"],
                                                 prefix="fpFlux").items():
                out[f"{band}_{name}"][k] = value
    return out


@dataclass
class AssociationResult:
    """One visit's association.

    Attributes
    ----------
    sources : numpy.ndarray
        The visit's diaSources (:data:`DIA_SOURCE_DTYPE`) with their ``diaObjectId`` set.
    objects : numpy.ndarray
        The new and updated diaObjects.
    n_new, n_matched : int
        Sources that started an object, and sources that joined one.
    """

    sources: np.ndarray
    objects: np.ndarray
    n_new: int
    n_matched: int


def associate_visit(apdb: Apdb, visit: int, sources: np.ndarray, radius_arcsec: float = 1.0,
                    store: bool = True, ccds: Sequence[int] | None = None
                    ) -> AssociationResult:
    """Associate one visit's diaSources with the APDB's diaObjects, and store them.

    Parameters
    ----------
    apdb : Apdb
        The database (read for the objects near the sources; written if ``store``).
    visit : int
        The visit.
    sources : numpy.ndarray
        The diaSources of the visit's detectors ``ccds`` (:data:`DIA_SOURCE_DTYPE`;
        ``diaObjectId`` is filled in).
    ccds : sequence of int, optional
        The CCDs processed (default: those of the sources); each (visit, ccd) is stored once:
        storing it again raises :class:`~hpcpipe.ap.apdb.ApdbError`.
    radius_arcsec : float
        The match radius.
    store : bool
        Write the new and updated objects and the sources (one transaction).
    """
    sources = np.array(sources, dtype=DIA_SOURCE_DTYPE)
    ccds = sorted({int(c) for c in sources["detector"]} if ccds is None
                  else {int(c) for c in ccds})
    if len(sources) and np.any(sources["visit"] != visit):
        raise ValueError(f"associate_visit: sources of visits "
                         f"{sorted(set(sources['visit'].tolist()) - {visit})} given for visit "
                         f"{visit}")
    if len(sources) == 0:
        if store:
            apdb.store(visit, ccds, np.zeros(0, apdb.object_dtype), sources)
        return AssociationResult(sources, np.zeros(0, apdb.object_dtype), 0, 0)
    centre = unit_vectors(sources["ra"], sources["dec"]).mean(axis=0)
    ra0 = float(np.degrees(np.arctan2(centre[1], centre[0])) % 360.0)
    dec0 = float(np.degrees(np.arctan2(centre[2], np.hypot(centre[0], centre[1]))))
    sep = np.degrees(np.arccos(np.clip(unit_vectors(sources["ra"], sources["dec"])
                                       @ unit_vectors([ra0], [dec0])[0], -1.0, 1.0)))
    known = apdb.objects_in_region(ra0, dec0, float(sep.max()) + 2 * radius_arcsec / 3600.0)
    match = associate(sources["ra"], sources["dec"], known["ra"], known["dec"], radius_arcsec)
    matched = match >= 0
    sources["diaObjectId"][matched] = known["diaObjectId"][match[matched]]
    next_id = apdb.next_object_id()
    n_new = int((~matched).sum())
    sources["diaObjectId"][~matched] = np.arange(next_id, next_id + n_new)
    touched = np.unique(sources["diaObjectId"])
    old = touched[np.isin(touched, known["diaObjectId"])]
    history = apdb.sources_of(old)
    forced = apdb.forced_sources_of(old)
    every = np.concatenate([history, sources])
    order = np.argsort(every["diaObjectId"], kind="stable")
    every = every[order]
    bounds = np.searchsorted(every["diaObjectId"], touched)
    ends = np.append(bounds[1:], len(every))
    objects = np.zeros(len(touched), DIA_OBJECT_DTYPE)
    start = now_mjd_tai()
    for k, (oid, a, b) in enumerate(zip(touched, bounds, ends, strict=True)):
        objects[k] = object_row(int(oid), every[a:b],
                                forced[forced["diaObjectId"] == oid], validity_start=start)
    if store:
        apdb.store(visit, ccds, objects, sources)
    return AssociationResult(sources, objects, n_new, int(matched.sum()))
