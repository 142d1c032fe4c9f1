"""``hpcpipe camera``: check a camera file and what raw files would become, list cameras.

::

    hpcpipe camera check mycam.yaml raw*.fits   # or a registered name: generic, mosaic4
    hpcpipe camera list

``check`` reads nothing but headers and writes nothing: for each file it prints the dataset
type and data id of every detector (with its HDU), or the reason ingest would refuse the
file. Exit status: 0 if every file would be ingested, 1 if some would be refused, 2 for a
camera file with an error (its file, key and line are named).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpcpipe.obs.camera import Camera

__all__ = ["add_camera_command", "cmd_camera_check", "cmd_camera_list", "resolve_camera"]


def resolve_camera(text: str) -> Camera:
    """A camera from a file path or a registered name.

    Raises
    ------
    CameraError
        For a camera file with an error, or a name that is neither a file nor registered.
    """
    # imported here for start-up cost: the parser is built without astropy
    from hpcpipe.obs.camera import CameraError, load_camera
    from hpcpipe.obs.registry import camera_files, find_camera

    path = Path(text)
    if path.is_file() or text.endswith((".yaml", ".yml")) or "/" in text:
        return load_camera(path)
    camera = find_camera(text)
    if camera is None:
        raise CameraError(text, "", 0, "no such camera file, nor a registered camera "
                          f"({', '.join(sorted(camera_files()))})")
    return camera


def cmd_camera_check(args: argparse.Namespace) -> int:
    """Print what each file would become; 0 all fine, 1 some refused, 2 bad camera file."""
    # imported here for start-up cost (astropy): `hpcpipe --help` does not need them
    from hpcpipe.butler.errors import ButlerError, format_data_id
    from hpcpipe.errors import FileFormatError
    from hpcpipe.obs.camera import CameraError
    from hpcpipe.obs.raw import scan_raw

    try:
        camera = resolve_camera(args.camera)
    except CameraError as exc:
        print(f"hpcpipe camera check: {exc}", file=sys.stderr)
        return 2
    print(f"camera {camera.name} ({camera.layout}, {len(camera.detectors)} detectors) from "
          f"{camera.source}: ok")
    refused = 0
    for name in args.files:
        try:
            units = scan_raw(camera, Path(name))
        except (ButlerError, FileFormatError, ValueError, OSError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            print(f"{name}: refused: {reason}")
            refused += 1
            continue
        for unit in units:
            hdu: Any = unit.record.extra.get("hdu")
            where = "" if hdu is None else (
                f" (HDUs {', '.join(str(h) for h in hdu)})" if isinstance(hdu, list)
                else f" (HDU {hdu})")
            validity = (f" valid {unit.record.valid_start}..{unit.record.valid_end}"
                        if unit.record.valid_start else "")
            print(f"{name}{where}: {unit.record.dataset_type} "
                  f"{format_data_id(unit.record.data_id)}{validity}")
    if args.files:
        print(f"{len(args.files) - refused} files would be ingested, {refused} refused")
    return 1 if refused else 0


def cmd_camera_list(args: argparse.Namespace) -> int:
    """Print the registered cameras and their files."""
    from hpcpipe.obs.registry import camera_files  # start-up cost, as above

    for name, path in sorted(camera_files().items()):
        print(f"{name}: {path}")
    return 0


def add_camera_command(subparsers: Any) -> None:
    """Add ``camera check`` and ``camera list`` to a parser's sub-commands."""
    camera = subparsers.add_parser("camera", help="check a camera file and raw files against "
                                   "it; list the registered cameras")
    actions = camera.add_subparsers(dest="camera_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="tell what each raw file would become at ingest "
                               "(nothing is written)")
    check.add_argument("camera", help="a camera file (mycam.yaml) or a registered camera name")
    check.add_argument("files", nargs="*", help="raw (or calibration) FITS files")
    check.set_defaults(handler=cmd_camera_check)
    listing = actions.add_parser("list", help="list the registered cameras")
    listing.set_defaults(handler=cmd_camera_list)
