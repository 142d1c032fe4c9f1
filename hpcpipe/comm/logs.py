"""Log records that say which rank and host wrote them, and one log file per rank.

Lines from the ranks of an MPI job arrive interleaved in one batch log; each record carries
``rank`` and ``host`` (:data:`LOG_FORMAT` shows them as ``rank@host``). The rank is read from
the launcher's environment (Open MPI, MPICH/Hydra, PMIx, SLURM's ``srun``) so that logging is
set up before MPI starts, and set again from the MPI world once it has (:func:`set_log_rank`).

:func:`log_to_rank_file` sends a rank's records to a file of its own (``rank-00012.log``
under a directory: the report's ``logs/``), for large jobs where thousands of ranks writing
into one batch log would bury the master's status lines.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hpcpipe.comm.records import HOSTNAME

__all__ = ["LOG_FORMAT", "launch_rank", "install_record_fields", "set_log_rank",
           "log_to_rank_file", "rank_log_path"]

#: The command line's log format: time, ``rank@host``, logger, level, message.
LOG_FORMAT = "%(asctime)s %(rank)s@%(host)s %(name)s %(levelname)s: %(message)s"

_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")
_fields = {"rank": 0, "host": HOSTNAME.split(".")[0]}
_installed = False


def launch_rank(environ: dict[str, str] | None = None) -> int:
    """This process's rank as its launcher announced it (0 when not launched by one)."""
    env = os.environ if environ is None else environ
    for name in _RANK_VARIABLES:
        value = env.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def install_record_fields() -> None:
    """Give every log record ``rank`` and ``host`` attributes (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    _fields["rank"] = launch_rank()
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.rank = _fields["rank"]
        record.host = _fields["host"]
        return record

    logging.setLogRecordFactory(factory)


def set_log_rank(rank: int) -> None:
    """The rank the records carry from now on (the MPI world's, once it is known)."""
    install_record_fields()
    _fields["rank"] = int(rank)


def rank_log_path(directory: str | os.PathLike[str], rank: int) -> Path:
    """The log file of ``rank`` under ``directory``."""
    return Path(directory) / f"rank-{rank:05d}.log"


def log_to_rank_file(directory: str | os.PathLike[str], rank: int,
                     level: int | None = None) -> Path:
    """Send this rank's log records to its own file instead of the shared stream.

    The root logger's stream handlers are replaced by a file handler on
    :func:`rank_log_path` (same format); returns the path.
    """
    install_record_fields()
    path = rank_log_path(directory, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    for old in list(root.handlers):
        if isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    if level is not None:
        root.setLevel(level)
    return path
