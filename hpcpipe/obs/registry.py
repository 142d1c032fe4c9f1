"""Cameras by name: every camera registers itself as an entry point.

A camera is a camera file (:mod:`hpcpipe.obs.camera`) registered under its name in the entry
point group ``hpcpipe.cameras``, each entry naming the path of the file (a ``str`` or
:class:`pathlib.Path` attribute, or a function returning one). hpcpipe registers its own,
``simcam``, ``generic`` and ``mosaic4`` (:mod:`hpcpipe.obs.cameras`), in its setup.py as any
other package does::

    [project.entry-points."hpcpipe.cameras"]
    mycam = "mypackage.camera:CAMERA_FILE"

The butler asks :data:`PROVIDER` (:func:`hpcpipe.butler.mapper.load_mapper`) for a mapper by
name or from a repository's stored description (``_camera.yaml``); only camera files are read,
no class is ever imported by a name found in a repository, and no camera's name is written in
the butler or the drivers.
"""

from __future__ import annotations

import functools
from importlib import metadata
from pathlib import Path
from typing import Any

from hpcpipe.obs.camera import CAMERA_DIR, Camera, CameraError, load_camera, parse_camera
from hpcpipe.obs.mapper import CameraMapper

__all__ = ["CAMERA_DIR", "ENTRY_POINT_GROUP", "camera_files", "find_camera", "PROVIDER",
           "CameraProvider"]

#: The entry point group of camera files (hpcpipe's own and other packages').
ENTRY_POINT_GROUP = "hpcpipe.cameras"
#: The distribution whose cameras come first (a plug-in cannot take the name of one of them).
OWN_DISTRIBUTION = "hpcpipe"


def _distribution(entry: Any) -> str:
    dist = getattr(entry, "dist", None)
    return str(getattr(dist, "name", "") or "").lower()


def camera_files() -> dict[str, Path]:
    """Registered camera names and their files (hpcpipe's own first).

    hpcpipe's own camera files are those of its ``hpcpipe.cameras`` entry points; when its
    metadata declares none (a source tree on ``PYTHONPATH`` whose metadata is not installed,
    or was installed before the entry points existed), the files of :data:`CAMERA_DIR`.
    """
    try:
        entries = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # noqa: BLE001 - broken metadata must not break the butler
        entries = []
    own = [e for e in entries if _distribution(e) == OWN_DISTRIBUTION]
    found: dict[str, Path] = {}
    if not own:
        found = {p.stem: p for p in sorted(CAMERA_DIR.glob("*.yaml"))}
    for entry in own + [e for e in entries if e not in own]:
        if entry.name in found:
            continue
        try:
            target = entry.load()
            found[entry.name] = Path(target() if callable(target) else target)
        except Exception:  # noqa: BLE001 - a broken plug-in is reported when asked for
            continue
    return found


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime: float) -> Camera:
    return load_camera(path)


def find_camera(name: str) -> Camera | None:
    """The registered camera called ``name``, or None.

    Raises
    ------
    CameraError
        If its file has an error.
    """
    path = camera_files().get(name)
    if path is None:
        return None
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise CameraError(str(path), "", 0, f"cannot read the camera file ({exc})") from None
    camera = _load(str(path), mtime)
    if camera.name != name:
        raise CameraError(str(path), "name", 0, f"registered as {name!r} but names itself "
                          f"{camera.name!r}")
    return camera


class CameraProvider:
    """What the butler uses to turn camera names and stored descriptions into mappers."""

    def names(self) -> dict[str, str]:
        """Registered camera names and their files."""
        return {name: str(path) for name, path in camera_files().items()}

    def mapper(self, name: str) -> CameraMapper | None:
        """The mapper of the registered camera ``name`` (None if there is none)."""
        camera = find_camera(name)
        return None if camera is None else CameraMapper(camera)

    def from_description(self, text: str, source: str) -> CameraMapper:
        """The mapper of a stored camera description (checked like a camera file)."""
        return CameraMapper(parse_camera(text, source))


#: The provider the butler asks (see :data:`hpcpipe.butler.mapper.CAMERA_PROVIDER`).
PROVIDER = CameraProvider()
