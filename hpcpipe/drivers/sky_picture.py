"""A colour picture of a tract's coadds, with its objects marked: the demo's ``coadd.png``.

The patches of one tract that have coadds are put together (their inner regions) in each
band, made into a colour composite with the asinh stretch of Lupton et al. (2004)
(:func:`astropy.visualization.make_lupton_rgb`: the reddest band in red, the bluest in blue,
their mean or the middle band in green) and drawn on the tract's WCS (WCSAxes: RA and Dec
axes, a coordinate grid). The patches' inner boxes are outlined and labelled; an inset shows
where they lie in the tract (its outline and patch grid). The primary objects of each patch's
reference catalog (``deepCoadd_ref``) are marked by type (circle: point source, square:
extended, from :func:`extendedness` of the reference band's PSF and Kron fluxes) and coloured
by the bands they were detected in (the ``merge_peak_<band>`` flags of ``deepCoadd_deblend``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcpipe.io.atomic import atomic_path

if TYPE_CHECKING:
    from hpcpipe.butler import Butler

__all__ = ["extendedness", "TractMosaic", "tract_mosaic", "write_tract_picture", "zoom_box",
           "BAND_ORDER", "EXTENDEDNESS_FLUX_RATIO"]

log = logging.getLogger("hpcpipe.drivers.sky_picture")

#: Bands from blue to red (others sort after them, by name).
BAND_ORDER = ("u", "g", "r", "i", "z", "y")
#: meas_base's ClassificationExtendedness ``fluxRatio``: extended when the PSF flux is below
#: this fraction of the model (here Kron) flux.
EXTENDEDNESS_FLUX_RATIO = 0.925
#: Marker colours of objects detected in one band only (the others: white in every band,
#: yellow in some).
_BAND_COLOURS = {"u": "#b388ff", "g": "#40c4ff", "r": "#ff9100", "i": "#ff1744",
                 "z": "#d50000", "y": "#8d6e63"}


def extendedness(psf_flux: np.ndarray, model_flux: np.ndarray,
                 flux_ratio: float = EXTENDEDNESS_FLUX_RATIO) -> np.ndarray:
    """meas_base's extendedness: 1 where ``psf_flux < flux_ratio * model_flux``, else 0.

    NaN where either flux is not finite or the model flux is not positive (no class).
    """
    psf = np.asarray(psf_flux, float)
    model = np.asarray(model_flux, float)
    ok = np.isfinite(psf) & np.isfinite(model) & (model > 0)
    out = np.full(psf.shape, np.nan)
    out[ok] = (psf[ok] < flux_ratio * model[ok]).astype(float)
    return out


def _band_key(band: str) -> tuple[int, str]:
    return (BAND_ORDER.index(band) if band in BAND_ORDER else len(BAND_ORDER), band)


@dataclass
class TractMosaic:
    """The inner regions of a tract's patches put together, per band.

    Attributes
    ----------
    tract : TractInfo
        The tract (its ``wcs`` is the mosaic's, in tract pixels).
    bbox : tuple of int
        ``(x0, y0, x1, y1)``: the mosaic's tract-pixel box (``x1``, ``y1`` excluded).
    images : dict
        Per band, the mosaic's pixels (nJy; 0 where no coadd covers).
    noise : dict
        Per band, the median noise of a pixel (nJy).
    patches : list of PatchInfo
        The patches with a coadd in at least one band.
    objects : dict
        Per primary object of the patches' reference catalogs: ``x``, ``y`` (tract pixels),
        ``extendedness`` (0, 1 or NaN) and ``bands`` (tuple of the bands it was detected in).
    """

    tract: Any
    bbox: tuple[int, int, int, int]
    images: dict[str, np.ndarray]
    noise: dict[str, float]
    patches: list[Any]
    objects: dict[str, Any] = field(default_factory=dict)


def tract_mosaic(butler: Butler, tract_id: int | None = None) -> TractMosaic | None:
    """The coadds (``deepCoadd_calexp``) and primary objects of a tract's patches.

    Parameters
    ----------
    butler : Butler
        The output repository of a production.
    tract_id : int, optional
        The tract (default: the one with the most patches with a coadd).

    Returns
    -------
    TractMosaic or None
        None if no patch has a coadd.
    """
    if not butler.datasetExists("skyMap"):
        return None
    sky_map = butler.get("skyMap")
    bands = sorted(butler.queryMetadata("raw", "filter"), key=_band_key)
    best: tuple[Any, list[Any]] | None = None
    for tract in sky_map:
        if tract_id is not None and tract.tract_id != tract_id:
            continue
        patches = [p for p in tract if any(
            butler.datasetExists("deepCoadd_calexp", tract=tract.tract_id,
                                 patch="{},{}".format(*p.index), filter=b) for b in bands)]
        if patches and (best is None or len(patches) > len(best[1])):
            best = (tract, patches)
    if best is None:
        return None
    tract, patches = best
    x0 = min(p.inner_bbox.x0 for p in patches)
    y0 = min(p.inner_bbox.y0 for p in patches)
    x1 = max(p.inner_bbox.x0 + p.inner_bbox.width for p in patches)
    y1 = max(p.inner_bbox.y0 + p.inner_bbox.height for p in patches)
    images: dict[str, np.ndarray] = {}
    variances: dict[str, list[np.ndarray]] = {}
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ext: list[np.ndarray] = []
    detected: list[tuple[str, ...]] = []
    for patch in patches:
        key = {"tract": tract.tract_id, "patch": "{},{}".format(*patch.index)}
        inner = patch.inner_bbox
        for band in bands:
            if not butler.datasetExists("deepCoadd_calexp", filter=band, **key):
                continue
            coadd = butler.get("deepCoadd_calexp", filter=band, **key)
            cx0, cy0 = coadd.xy0
            ix1, iy1 = inner.x0 + inner.width, inner.y0 + inner.height
            sl = (slice(inner.y0 - cy0, iy1 - cy0), slice(inner.x0 - cx0, ix1 - cx0))
            pixels = coadd.image.array[sl]
            variance = coadd.variance.array[sl]
            good = np.isfinite(pixels) & np.isfinite(variance) & (variance > 0)
            target = images.setdefault(band, np.zeros((y1 - y0, x1 - x0)))
            target[inner.y0 - y0:iy1 - y0, inner.x0 - x0:ix1 - x0] = np.where(
                good, pixels, 0.0)
            variances.setdefault(band, []).append(variance[good])
        if not butler.datasetExists("deepCoadd_ref", **key):
            continue
        ref = butler.get("deepCoadd_ref", **key)
        primary = np.asarray(ref["detect_isPrimary"], bool)
        xs.append(np.asarray(ref["base_SdssCentroid_x"])[primary])
        ys.append(np.asarray(ref["base_SdssCentroid_y"])[primary])
        ext.append(extendedness(np.asarray(ref["base_PsfFlux_instFlux"])[primary],
                                np.asarray(ref["ext_photometryKron_KronFlux_instFlux"])[primary]))
        flags = {}
        if butler.datasetExists("deepCoadd_deblend", **key):
            deblend = butler.get("deepCoadd_deblend", **key)
            rows = {int(i): n for n, i in enumerate(deblend["id"])}
            index = np.array([rows.get(int(i), -1) for i in np.asarray(ref["id"])[primary]],
                             dtype=np.int64)
            for band in bands:
                name = f"merge_peak_{band}"
                if name in deblend.schema.names:
                    column = np.asarray(deblend[name], bool)
                    flags[band] = np.where(index >= 0, column[np.maximum(index, 0)], False)
        detected.extend(tuple(b for b in bands if b in flags and flags[b][n])
                        for n in range(int(primary.sum())))
    noise = {band: float(np.sqrt(np.median(np.concatenate(v)))) if v else float("nan")
             for band, v in variances.items()}
    objects = {
        "x": np.concatenate(xs) if xs else np.zeros(0),
        "y": np.concatenate(ys) if ys else np.zeros(0),
        "extendedness": np.concatenate(ext) if ext else np.zeros(0),
        "bands": detected,
    }
    return TractMosaic(tract, (x0, y0, x1, y1), images, noise, patches, objects)


def _rgb(mosaic: TractMosaic, box: tuple[int, int, int, int], binning: int
         ) -> tuple[np.ndarray, list[str]]:
    """The colour composite (uint8) of the mosaic's tract-pixel ``box`` (``x0, y0, x1, y1``,
    ends excluded), binned ``binning`` x ``binning``, and the bands used for red, green and
    blue."""
    from astropy.visualization import make_lupton_rgb  # only here: start-up cost

    bands = sorted(mosaic.images, key=_band_key)
    mx0, my0 = mosaic.bbox[0], mosaic.bbox[1]
    bx0, by0, bx1, by1 = box
    h = (by1 - by0) // binning * binning
    w = (bx1 - bx0) // binning * binning

    def binned(band: str) -> np.ndarray:
        image = mosaic.images[band][by0 - my0:by0 - my0 + h, bx0 - mx0:bx0 - mx0 + w]
        return image.reshape(h // binning, binning, w // binning, binning).mean(axis=(1, 3))

    if len(bands) == 1:
        red = green = blue = binned(bands[0])
        used = bands * 3
    elif len(bands) == 2:
        blue, red = binned(bands[0]), binned(bands[1])
        green = 0.5 * (red + blue)
        used = [bands[1], f"{bands[0]}+{bands[1]}", bands[0]]
    else:
        middle = bands[len(bands) // 2]
        blue, green, red = binned(bands[0]), binned(middle), binned(bands[-1])
        used = [bands[-1], middle, bands[0]]
    # the noise of a binned pixel sets the stretch: faint objects show, the sky stays dark
    noise = np.nanmax(list(mosaic.noise.values())) / binning
    with np.errstate(invalid="ignore", divide="ignore"):
        rgb = make_lupton_rgb(red, green, blue, minimum=0.5 * noise, stretch=8 * noise, Q=4)
    return rgb, used


def _wcs_axes(ax: Any) -> None:
    ra, dec = ax.coords[0], ax.coords[1]
    ra.set_axislabel("right ascension (ICRS)")
    dec.set_axislabel("declination (ICRS)")
    ra.set_major_formatter("hh:mm:ss")
    dec.set_major_formatter("dd:mm:ss")
    ra.set_ticks(number=4)
    ax.coords.grid(color="white", alpha=0.25, linestyle=":", linewidth=0.6)


def _show(ax: Any, mosaic: TractMosaic, box: tuple[int, int, int, int], binning: int
          ) -> list[str]:
    rgb, used = _rgb(mosaic, box, binning)
    x0, y0 = box[0], box[1]
    ax.imshow(rgb, origin="lower", interpolation="nearest",
              extent=(x0 - 0.5, x0 + rgb.shape[1] * binning - 0.5,
                      y0 - 0.5, y0 + rgb.shape[0] * binning - 0.5))
    ax.set_xlim(x0 - 0.5, box[2] - 0.5)
    ax.set_ylim(y0 - 0.5, box[3] - 0.5)
    _wcs_axes(ax)
    return used


def zoom_box(mosaic: TractMosaic, size: int = 500) -> tuple[int, int, int, int]:
    """A ``size``-pixel square of the mosaic around the pixel with the most objects within
    ``size / 2`` (tract pixels ``x0, y0, x1, y1``, ends excluded)."""
    x0, y0, x1, y1 = mosaic.bbox
    size = min(size, x1 - x0, y1 - y0)
    xs, ys = mosaic.objects["x"], mosaic.objects["y"]
    if len(xs) == 0:
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    else:
        step = max(size // 4, 1)
        grid = [(gx, gy) for gx in range(x0 + size // 2, x1 - size // 2 + 1, step)
                for gy in range(y0 + size // 2, y1 - size // 2 + 1, step)]
        counts = [np.count_nonzero((np.abs(xs - gx) < size / 2) & (np.abs(ys - gy) < size / 2))
                  for gx, gy in grid]
        cx, cy = grid[int(np.argmax(counts))]
    bx0 = int(min(max(cx - size // 2, x0), x1 - size))
    by0 = int(min(max(cy - size // 2, y0), y1 - size))
    return bx0, by0, bx0 + size, by0 + size


def _object_colours(detected: list[tuple[str, ...]], bands: list[str]) -> list[str]:
    out = []
    for bands_of in detected:
        if len(bands_of) == len(bands) or not bands_of:
            out.append("#ffffff")
        elif len(bands_of) == 1:
            out.append(_BAND_COLOURS.get(bands_of[0], "#ffff00"))
        else:
            out.append("#ffff00")
    return out


def write_tract_picture(mosaic: TractMosaic, path: str | Path, title: str | None = None,
                        max_pixels: int = 900, zoom: int = 500) -> Path:
    """Draw :func:`tract_mosaic`'s result as a PNG (atomically).

    Left, the whole mosaic (binned so that its larger side has at most ``max_pixels``
    pixels) with the patches outlined and an inset of the tract; right, a ``zoom``-pixel
    square at full resolution (:func:`zoom_box`, outlined on the left) with the objects
    marked by type and detection bands.
    """
    import matplotlib  # only here: start-up cost

    matplotlib.use("Agg")
    # start-up cost: matplotlib, only when a picture is drawn
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    path = Path(path)
    x0, y0, x1, y1 = mosaic.bbox
    tract = mosaic.tract
    binning = max(1, math.ceil(max(x1 - x0, y1 - y0) / max_pixels))
    fig = plt.figure(figsize=(13.5, 7.4), dpi=100)
    whole = fig.add_axes((0.09, 0.2, 0.40, 0.7), projection=tract.wcs)
    used = _show(whole, mosaic, mosaic.bbox, binning)
    for patch in mosaic.patches:
        b = patch.inner_bbox
        whole.add_patch(Rectangle((b.x0 - 0.5, b.y0 - 0.5), b.width, b.height, fill=False,
                                  edgecolor="#ffffff", linewidth=0.8, linestyle="--",
                                  alpha=0.7))
        whole.text(b.x0 + 25, b.y0 + b.height - 30, "patch {},{}".format(*patch.index),
                   color="white", fontsize=8, va="top", alpha=0.9)
    box = zoom_box(mosaic, zoom)
    whole.add_patch(Rectangle((box[0] - 0.5, box[1] - 0.5), box[2] - box[0], box[3] - box[1],
                              fill=False, edgecolor="#ffff00", linewidth=1.2))
    whole.set_title(f"tract {tract.tract_id}: {len(mosaic.patches)} patches "
                    f"(R={used[0]}, G={used[1]}, B={used[2]}; asinh stretch)", fontsize=10)
    # where the patches are in the tract
    inset = fig.add_axes((0.01, 0.015, 0.08, 0.13))
    tb = tract.bbox
    inset.add_patch(Rectangle((tb.x0, tb.y0), tb.width, tb.height, fill=False,
                              edgecolor="black", linewidth=1.2))
    nx, ny = tract.num_patches
    pw, ph = tract.patch_inner_dimensions
    for i in range(1, nx):
        inset.axvline(tb.x0 + i * pw, color="#999999", linewidth=0.4)
    for j in range(1, ny):
        inset.axhline(tb.y0 + j * ph, color="#999999", linewidth=0.4)
    for patch in mosaic.patches:
        b = patch.inner_bbox
        inset.add_patch(Rectangle((b.x0, b.y0), b.width, b.height, color="#1f77b4", alpha=0.6))
    inset.set_xlim(tb.x0, tb.x0 + tb.width)
    inset.set_ylim(tb.y0, tb.y0 + tb.height)
    inset.set_aspect("equal")
    inset.set_xticks([])
    inset.set_yticks([])
    inset.set_title(f"tract {tract.tract_id}\n{nx}x{ny} patches", fontsize=7)

    # the zoom, with the objects
    near = fig.add_axes((0.56, 0.2, 0.42, 0.7), projection=tract.wcs)
    _show(near, mosaic, box, 1)
    for patch in mosaic.patches:
        b = patch.inner_bbox
        near.add_patch(Rectangle((b.x0 - 0.5, b.y0 - 0.5), b.width, b.height, fill=False,
                                 edgecolor="#ffffff", linewidth=0.8, linestyle="--",
                                 alpha=0.6))
    objects = mosaic.objects
    bands = sorted(mosaic.images, key=_band_key)
    inside = ((objects["x"] >= box[0]) & (objects["x"] < box[2]) & (objects["y"] >= box[1])
              & (objects["y"] < box[3]))
    colours = np.array(_object_colours(objects["bands"], bands), dtype=object)
    ext = objects["extendedness"]
    for marker, selection, size in (("o", ext == 0, 70), ("s", ext == 1, 110),
                                    ("D", ~np.isfinite(ext), 40)):
        chosen = selection & inside
        if np.any(chosen):
            near.scatter(objects["x"][chosen], objects["y"][chosen], s=size, marker=marker,
                         facecolors="none", edgecolors=list(colours[chosen]), linewidths=0.9)
    near.set_title(f"{box[2] - box[0]} x {box[3] - box[1]} pixels at full resolution: "
                   f"{int(inside.sum())} of the {len(objects['x'])} objects", fontsize=10)
    # the legend: types, then the detection bands (counts over the whole mosaic)
    handles = []
    for marker, label, selection in (("o", "point source", ext == 0),
                                     ("s", "extended", ext == 1),
                                     ("D", "no Kron flux (no class)", ~np.isfinite(ext))):
        if np.any(selection):
            handles.append(Line2D([], [], marker=marker, linestyle="", markerfacecolor="none",
                                  markeredgecolor="#333333",
                                  label=f"{label} ({int(selection.sum())})"))
    counts: dict[str, tuple[int, str]] = {}
    for bands_of, colour in zip(objects["bands"], colours):
        name = ("every band" if len(bands_of) == len(bands) and len(bands) > 1
                else "+".join(bands_of) if bands_of else "no merged peak")
        counts[name] = (counts.get(name, (0, ""))[0] + 1, colour)
    for name, (count, colour) in sorted(counts.items()):
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor=colour,
                              markeredgecolor="#333333", label=f"detected in {name} ({count})"
                              if name != "no merged peak" else f"{name} ({count})"))
    fig.legend(handles=handles, loc="lower center", ncols=4, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.01), title="objects (shape: extendedness of the "
               "reference band; colour: bands detected in)", title_fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
