"""The quality figure of a run, in the spirit of LSST's ``analysis_drp`` plots.

From a production's single-frame outputs (``calexp``, ``srcMatch``: every calibrated CCD's
sources matched to the reference catalog, with the reference positions and fluxes) this
module computes, over the whole focal plane and every visit:

- the astrometric residuals: each matched source's position through its calexp's WCS minus
  its reference position, ``(dRA cos Dec, dDec)`` in milliarcseconds;
- the photometric residuals: the source's calibrated magnitude (its calexp's ``PhotoCalib``)
  minus the reference magnitude (AB, from the reference flux in nJy);
- the PSF size: the FWHM (arcsec) of each calexp's PSF model on a grid of each CCD;
- the depth of each visit: the median over its CCDs of the 5-sigma point-source magnitude
  (:func:`hpcpipe.pipe.quality.depth_5sigma`).

:func:`collect_run_quality` gathers them (:class:`RunQuality`); :func:`write_quality_figure`
draws six panels: the astrometric residuals as arrows and the photometric ones as colours
across the focal plane, the PSF FWHM across it, both residuals against the reference
magnitude with their running median and robust scatter, and the depth per visit (with the
coadds' depth per band when given).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.image.calib import AB_NANOJANSKY_ZERO_POINT
from hpcpipe.io.atomic import atomic_path
from hpcpipe.pipe.quality import depth_5sigma, robust_scatter

if TYPE_CHECKING:
    from hpcpipe.butler import Butler

__all__ = ["RunQuality", "match_residuals", "psf_fwhm_grid", "collect_run_quality",
           "write_quality_figure", "BRIGHT_SNR"]

#: The signal to noise above which sources count as bright for the summary scatters.
BRIGHT_SNR = 100.0
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

FocalPlane = Callable[[int], tuple[float, float]]


def match_residuals(wcs: Any, photo_calib: Any, matches: Any) -> dict[str, np.ndarray]:
    """Astrometric and photometric residuals of one calexp's reference matches.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        The calexp's WCS (0-based pixels).
    photo_calib : PhotoCalib
        The calexp's photometric calibration.
    matches : Catalog
        Its ``srcMatch`` (``src_x``, ``src_y`` pixels, ``ref_ra``, ``ref_dec`` degrees,
        ``src_instFlux``, ``src_instFluxErr`` counts, ``ref_flux`` nJy).

    Returns
    -------
    dict
        ``x``, ``y`` (pixels), ``d_ra_mas`` (RA offset times cos Dec), ``d_dec_mas``,
        ``ref_mag`` (AB), ``d_mag`` (calibrated minus reference magnitude) and ``snr``.
    """
    x = np.asarray(matches["src_x"], float)
    y = np.asarray(matches["src_y"], float)
    ra, dec = wcs.all_pix2world(x, y, 0)
    ref_ra = np.asarray(matches["ref_ra"], float)
    ref_dec = np.asarray(matches["ref_dec"], float)
    d_ra = (np.asarray(ra) - ref_ra + 180.0) % 360.0 - 180.0
    flux = np.asarray(matches["src_instFlux"], float)
    ref_flux = np.asarray(matches["ref_flux"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_mag = AB_NANOJANSKY_ZERO_POINT - 2.5 * np.log10(ref_flux)
        mag = photo_calib.instflux_to_magnitude(flux)
        snr = flux / np.asarray(matches["src_instFluxErr"], float)
    return {
        "x": x, "y": y,
        "d_ra_mas": d_ra * np.cos(np.radians(ref_dec)) * 3.6e6,
        "d_dec_mas": (np.asarray(dec) - ref_dec) * 3.6e6,
        "ref_mag": ref_mag, "d_mag": np.asarray(mag, float) - ref_mag, "snr": snr,
    }


def psf_fwhm_grid(psf: Any, width: int, height: int, pixel_scale_arcsec: float,
                  n: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PSF model's FWHM (arcsec) at the centres of an ``n`` x ``n`` grid of a CCD.

    Returns ``x``, ``y`` (pixels) and ``fwhm``; the FWHM is ``2 sqrt(2 ln 2)`` times the
    model's Gaussian-equivalent width (``psf.sigma_at``).
    """
    xs = (np.arange(n) + 0.5) * width / n - 0.5
    ys = (np.arange(n) + 0.5) * height / n - 0.5
    gx, gy = np.meshgrid(xs, ys)
    fwhm = np.array([_FWHM_PER_SIGMA * psf.sigma_at(float(a), float(b)) * pixel_scale_arcsec
                     for a, b in zip(gx.ravel(), gy.ravel())])
    return gx.ravel(), gy.ravel(), fwhm


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass
class RunQuality:
    """What the quality figure plots (see the module documentation).

    Attributes
    ----------
    matches : dict of numpy.ndarray
        Per matched source of every calexp: ``visit``, ``ccd``, ``band``, focal-plane
        ``fp_x``, ``fp_y`` (pixels) and the columns of :func:`match_residuals`.
    psf : dict of numpy.ndarray
        Per grid point of every calexp: ``visit``, ``ccd``, ``band``, ``fp_x``, ``fp_y``,
        ``fwhm`` (arcsec).
    visits : list of dict
        Per visit: ``visit``, ``band``, ``depth`` (median 5-sigma depth of its CCDs),
        ``fwhm`` (median PSF FWHM, arcsec), ``ccds``.
    ccds : dict
        Per CCD: its focal-plane box ``(x0, y0, width, height)`` in pixels.
    coadd_depth : dict
        Per band, the coadd's 5-sigma depth (optional; drawn as a line).
    """

    matches: dict[str, np.ndarray]
    psf: dict[str, np.ndarray]
    visits: list[dict[str, Any]]
    ccds: dict[int, tuple[float, float, int, int]]
    coadd_depth: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The figure's headline numbers: ``n_matches``, ``n_bright`` (S/N >
        :data:`BRIGHT_SNR`), ``astrom_median_mas`` and ``astrom_p68_mas`` (the median and
        the 68th percentile of the bright sources' offset lengths), ``photom_scatter``
        (robust scatter of the bright sources' magnitude residuals), ``photom_median``,
        ``fwhm_median``, ``fwhm_min``, ``fwhm_max`` (arcsec) and ``depth`` per visit."""
        m = self.matches
        n = len(m.get("snr", ()))
        bright = (m["snr"] > BRIGHT_SNR) & np.isfinite(m["d_mag"]) if n else np.zeros(0, bool)
        offsets = np.hypot(m["d_ra_mas"][bright], m["d_dec_mas"][bright]) if n else np.zeros(0)
        fwhm = self.psf.get("fwhm", np.zeros(0))
        return {
            "n_matches": n, "n_bright": int(bright.sum()),
            "astrom_p68_mas": float(np.percentile(offsets, 68)) if offsets.size
            else float("nan"),
            "astrom_median_mas": float(np.median(offsets)) if offsets.size else float("nan"),
            "photom_scatter": robust_scatter(m["d_mag"][bright]) if n else float("nan"),
            "photom_median": float(np.median(m["d_mag"][bright])) if bright.any()
            else float("nan"),
            "fwhm_median": float(np.median(fwhm)) if fwhm.size else float("nan"),
            "fwhm_min": float(fwhm.min()) if fwhm.size else float("nan"),
            "fwhm_max": float(fwhm.max()) if fwhm.size else float("nan"),
            "depth": {v["visit"]: v["depth"] for v in self.visits},
        }


def collect_run_quality(butler: Butler, focal_plane: FocalPlane | None = None, grid: int = 6,
                        coadd_depth: Mapping[str, float] | None = None) -> RunQuality:
    """Gather :class:`RunQuality` from every calexp of a production's output repository.

    Parameters
    ----------
    butler : Butler
        The output repository.
    focal_plane : callable, optional
        ``ccd -> (x0, y0)``: the focal-plane position (pixels) of a CCD's pixel (0, 0);
        without it the CCDs are laid side by side in the order of their ids.
    grid : int
        The PSF FWHM is evaluated on a ``grid`` x ``grid`` grid of each CCD.
    coadd_depth : mapping, optional
        The coadds' 5-sigma depth per band, to draw beside the visits'.
    """
    from astropy.wcs.utils import proj_plane_pixel_scales  # only here: start-up cost

    matches, psf = [], []
    per_visit: dict[int, dict[str, Any]] = {}
    ccds: dict[int, tuple[float, float, int, int]] = {}
    for ref in sorted(butler.subset("raw"), key=lambda r: (r.dataId["visit"], r.dataId["ccd"])):
        d = ref.dataId
        visit, ccd, band = int(d["visit"]), int(d["ccd"]), str(d["filter"])
        if not butler.datasetExists("calexp", visit=visit, ccd=ccd):
            continue
        calexp = butler.get("calexp", visit=visit, ccd=ccd)
        width, height = calexp.width, calexp.height
        if focal_plane is not None:
            fx0, fy0 = focal_plane(ccd)
        else:
            fx0, fy0 = ccd * (width + 100.0), 0.0
        ccds[ccd] = (float(fx0), float(fy0), width, height)
        if butler.datasetExists("srcMatch", visit=visit, ccd=ccd):
            res = match_residuals(calexp.wcs, calexp.photo_calib,
                                  butler.get("srcMatch", visit=visit, ccd=ccd))
            count = len(res["x"])
            res.update(visit=np.full(count, visit), ccd=np.full(count, ccd),
                       band=np.full(count, band), fp_x=res["x"] + fx0, fp_y=res["y"] + fy0)
            matches.append(res)
        scale = float(np.mean(proj_plane_pixel_scales(calexp.wcs))) * 3600.0
        gx, gy, fwhm = psf_fwhm_grid(calexp.psf, width, height, scale, grid)
        psf.append({"visit": np.full(fwhm.size, visit), "ccd": np.full(fwhm.size, ccd),
                    "band": np.full(fwhm.size, band), "fp_x": gx + fx0, "fp_y": gy + fy0,
                    "fwhm": fwhm})
        noise = float(np.sqrt(np.nanmedian(calexp.variance.array)))
        sigma = calexp.psf.sigma_at(width / 2, height / 2)
        entry = per_visit.setdefault(visit, {"visit": visit, "band": band, "depths": [],
                                             "fwhms": []})
        entry["depths"].append(depth_5sigma(sigma, noise, calexp.photo_calib.zero_point))
        entry["fwhms"].append(_FWHM_PER_SIGMA * sigma * scale)
    visits = [{"visit": v["visit"], "band": v["band"], "depth": float(np.median(v["depths"])),
               "fwhm": float(np.median(v["fwhms"])), "ccds": len(v["depths"])}
              for v in per_visit.values()]
    return RunQuality(_stack(matches), _stack(psf), visits, ccds, dict(coadd_depth or {}))


def _running_median(x: np.ndarray, y: np.ndarray, bins: int = 8
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres, medians and robust scatters of ``y`` in ``bins`` bins of ``x`` with equal
    counts (bins with fewer than 5 points are left out)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 10:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    centres, medians, scatters = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (x >= lo) & (x <= hi)
        if sel.sum() >= 5:
            centres.append(np.median(x[sel]))
            medians.append(np.median(y[sel]))
            scatters.append(robust_scatter(y[sel]))
    return np.array(centres), np.array(medians), np.array(scatters)


_BAND_COLOURS = {"u": "#7e57c2", "g": "#1e88e5", "r": "#e53935", "i": "#8e0000",
                 "z": "#4e342e", "y": "#212121"}


def write_quality_figure(quality: RunQuality, path: str | Path, title: str = "run quality"
                         ) -> Path:
    """Draw :class:`RunQuality` as a six-panel PNG (atomically); see the module docs."""
    import matplotlib  # only here: start-up cost

    matplotlib.use("Agg")
    # start-up cost: matplotlib, only when a picture is drawn
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    path = Path(path)
    s = quality.summary()
    m, p = quality.matches, quality.psf
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.6), dpi=90)
    (a_map, p_map, f_map), (a_mag, p_mag, depth_ax) = axes

    def outline(ax: Any) -> None:
        for ccd, (x0, y0, w, h) in quality.ccds.items():
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, edgecolor="#777777",
                                   linewidth=0.8))
            ax.text(x0 + 15, y0 + h - 15, f"ccd {ccd}", fontsize=7, color="#555555", va="top")
        xs = [x0 for x0, _, _, _ in quality.ccds.values()]
        ys = [y0 for _, y0, _, _ in quality.ccds.values()]
        xe = [x0 + w for x0, _, w, _ in quality.ccds.values()]
        ye = [y0 + h for _, y0, _, h in quality.ccds.values()]
        if xs:
            pad = 0.04 * max(max(xe) - min(xs), max(ye) - min(ys))
            ax.set_xlim(min(xs) - pad, max(xe) + pad)
            ax.set_ylim(min(ys) - pad, max(ye) + pad)
        ax.set_aspect("equal")
        ax.set_xlabel("focal plane x (pixels)")
        ax.set_ylabel("focal plane y (pixels)")

    n = s["n_matches"]
    bright = (m["snr"] > BRIGHT_SNR) if n else np.zeros(0, bool)
    # 1. astrometric residuals across the focal plane (bright sources, every visit)
    if bright.any():
        length = np.hypot(m["d_ra_mas"][bright], m["d_dec_mas"][bright])
        top = max(float(np.percentile(length, 95)), 1.0)
        quiver = a_map.quiver(m["fp_x"][bright], m["fp_y"][bright], m["d_ra_mas"][bright],
                              m["d_dec_mas"][bright], length, cmap="viridis", clim=(0, top),
                              angles="xy", scale_units="xy", scale=top / 120.0, width=0.003)
        fig.colorbar(quiver, ax=a_map, label="offset (mas)", shrink=0.8)
        a_map.text(0.01, 0.01, f"an arrow of 120 pixels: {top:.0f} mas", fontsize=7,
                   transform=a_map.transAxes, color="#555555")
    outline(a_map)
    a_map.set_title(f"astrometry vs reference catalog: median {s['astrom_median_mas']:.1f} mas,"
                    f" 68% within {s['astrom_p68_mas']:.1f} mas\n({s['n_bright']} sources S/N > "
                    f"{BRIGHT_SNR:.0f}, every visit)", fontsize=10)
    # 2. photometric residuals across the focal plane
    if bright.any():
        dm = m["d_mag"][bright]
        lim = max(3 * s["photom_scatter"], 0.005) if np.isfinite(s["photom_scatter"]) else 0.05
        sc = p_map.scatter(m["fp_x"][bright], m["fp_y"][bright], c=dm - np.median(dm), s=12,
                           cmap="RdBu_r", vmin=-lim, vmax=lim, edgecolors="none")
        fig.colorbar(sc, ax=p_map, label="magnitude residual - median (mag)", shrink=0.8)
    outline(p_map)
    p_map.set_title(f"photometry vs reference catalog: scatter {1000 * s['photom_scatter']:.1f}"
                    f" mmag,\nmedian {1000 * s['photom_median']:.1f} mmag (S/N > "
                    f"{BRIGHT_SNR:.0f})", fontsize=10)
    # 3. PSF FWHM across the focal plane (mean over the visits at each grid point)
    if p:
        keys = np.round(p["fp_x"], 1) + 1j * np.round(p["fp_y"], 1)
        unique, inverse = np.unique(keys, return_inverse=True)
        mean = np.bincount(inverse, p["fwhm"]) / np.bincount(inverse)
        cell = max(w for _, _, w, _ in quality.ccds.values()) / math.sqrt(
            max(len(unique) / max(len(quality.ccds), 1), 1))
        sc = f_map.scatter(unique.real, unique.imag, c=mean, marker="s",
                           s=(cell * 72 / 1300) ** 2 * 1.6, cmap="magma", edgecolors="none")
        fig.colorbar(sc, ax=f_map, label="PSF FWHM (arcsec)", shrink=0.8)
    outline(f_map)
    f_map.set_title(f"PSF FWHM over the field: median {s['fwhm_median']:.3f}\" "
                    f"({s['fwhm_min']:.3f}-{s['fwhm_max']:.3f}\")\nmean over the visits",
                    fontsize=10)
    # 4. and 5. residuals against the reference magnitude
    if n:
        good = np.isfinite(m["ref_mag"])
        offset = np.hypot(m["d_ra_mas"], m["d_dec_mas"])
        a_mag.scatter(m["ref_mag"][good], offset[good], s=5, alpha=0.4, color="#455a64",
                      edgecolors="none")
        c, med, _ = _running_median(m["ref_mag"][good], offset[good])
        a_mag.plot(c, med, color="#d81b60", linewidth=2, label="running median")
        a_mag.set_yscale("log")
        a_mag.legend(fontsize=8)
        for band in sorted(set(m["band"])):
            sel = good & (m["band"] == band)
            p_mag.scatter(m["ref_mag"][sel], 1000 * m["d_mag"][sel], s=5, alpha=0.4,
                          color=_BAND_COLOURS.get(band, "#455a64"), edgecolors="none",
                          label=band)
        c, med, sig = _running_median(m["ref_mag"][good], 1000 * m["d_mag"][good])
        p_mag.plot(c, med, color="black", linewidth=2, label="running median")
        p_mag.fill_between(c, med - sig, med + sig, color="black", alpha=0.15,
                           label="robust scatter")
        spread = 1000 * s["photom_scatter"] if np.isfinite(s["photom_scatter"]) else 20.0
        lim = max(8 * spread, 20.0)  # outliers beyond are left out of the view
        p_mag.set_ylim(-lim, lim)
        p_mag.legend(fontsize=8, ncols=2)
    a_mag.set_xlabel("reference magnitude (AB)")
    a_mag.set_ylabel("offset from the reference (mas)")
    a_mag.set_title(f"astrometric offset vs magnitude: median {s['astrom_median_mas']:.1f} mas"
                    f" (bright)\n{n} matches in all", fontsize=10)
    p_mag.axhline(0, color="#999999", linewidth=0.8)
    p_mag.set_xlabel("reference magnitude (AB)")
    p_mag.set_ylabel("calibrated - reference magnitude (mmag)")
    p_mag.set_title("photometric residual vs magnitude", fontsize=10)
    # 6. depth per visit
    visits = sorted(quality.visits, key=lambda v: (v["band"], v["visit"]))
    for i, v in enumerate(visits):
        depth_ax.plot(i, v["depth"], marker="o", markersize=9, linestyle="",
                      color=_BAND_COLOURS.get(v["band"], "#455a64"))
        depth_ax.text(i, v["depth"] - 0.06, f"{v['depth']:.2f}\n{v['fwhm']:.2f}\"",
                      ha="center", va="top", fontsize=7)
    for band, value in quality.coadd_depth.items():
        if np.isfinite(value):
            depth_ax.axhline(value, color=_BAND_COLOURS.get(band, "#455a64"), linestyle="--",
                             linewidth=1.2, label=f"coadd {band}: {value:.2f}")
    depth_ax.set_xticks(range(len(visits)),
                        [f"{v['visit']}\n{v['band']}" for v in visits], fontsize=8)
    values = [v["depth"] for v in visits] + [d for d in quality.coadd_depth.values()
                                             if np.isfinite(d)]
    if values:
        depth_ax.set_ylim(min(values) - 0.5, max(values) + 0.3)
        depth_ax.set_xlim(-0.6, len(visits) - 0.4)
        depth_ax.grid(axis="y", alpha=0.3)
    if quality.coadd_depth:
        depth_ax.legend(fontsize=8, loc="lower right")
    depth_ax.set_xlabel("visit and band")
    depth_ax.set_ylabel("5-sigma point-source depth (AB mag)")
    depth_ax.set_title("depth per visit (median of its CCDs; labels: depth, PSF FWHM)", fontsize=10)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return path
