"""Point-to-point messages between the master and the workers.

Messages are pickled with protocol 5 and their NumPy buffers sent out of band, as raw MPI
buffers (``mpi4py.util.pkl5``): a 64 MB array moves at buffer speed (about 3 GB/s here,
against 0.3 GB/s pickled in band), and no message hits MPI's 2 GiB count limit.

Waiting for a message neither burns a core nor adds a fixed latency: the receiver polls
(``Iprobe``) in a tight loop for a short while, so that a quick answer is taken at once,
then sleeps between polls for a time that doubles up to :data:`MAX_SLEEP` seconds, and up to
:data:`IDLE_SLEEP` once it has waited :data:`IDLE_AFTER` seconds. A rank waiting for a long
unit therefore uses almost no CPU (tens of idle ranks oversubscribed on a few cores stay
asleep), and one waiting for a short one no sleep.

Only a few fixed tags are used (MPI only promises tags up to 32767): see :class:`Tag`.
"""

from __future__ import annotations

import enum
import time
from typing import Any

__all__ = ["Tag", "Transport", "MAX_SLEEP", "SPIN_SECONDS", "IDLE_AFTER", "IDLE_SLEEP"]

#: How long a receiver polls without sleeping before it backs off (seconds).
SPIN_SECONDS = 2e-4
#: The longest sleep between two polls while waiting (seconds).
MAX_SLEEP = 2e-3
#: After waiting this long (seconds), a receiver backs off further ...
IDLE_AFTER = 1.0
#: ... to sleeps of up to this (seconds): an idle rank polls 50 times a second, not 500.
IDLE_SLEEP = 2e-2


class Tag(enum.IntEnum):
    """The message tags of the pool."""

    CONTROL = 11  #: master to worker: start a job, store shared state, stop
    WORK = 12  #: master to worker: units of the current job
    RESULT = 13  #: worker to master: results of units (or that the worker leaves)
    HEARTBEAT = 14  #: worker to master: still alive while it runs units (empty)


class Transport:
    """Pickled messages with out-of-band NumPy buffers over an MPI communicator."""

    def __init__(self, comm: Any) -> None:
        # start-up cost: importing mpi4py.MPI initialises MPI; only where MPI is used
        from mpi4py import MPI
        from mpi4py.util import pkl5

        self._mpi = MPI
        self.base = comm
        self.comm = pkl5.Intracomm(comm)
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    def send(self, obj: Any, dest: int, tag: Tag) -> None:
        """Send ``obj`` to rank ``dest`` (blocking until the buffers may be reused)."""
        self.comm.send(obj, dest=dest, tag=int(tag))

    def wait(self, source: int | None = None, tag: Tag | None = None) -> tuple[int, int]:
        """Block until a message is available; return its ``(source, tag)``.

        Polls without sleeping for :data:`SPIN_SECONDS`, then with sleeps that double up to
        :data:`MAX_SLEEP`.
        """
        found = self.poll(source, tag, None)
        assert found is not None
        return found

    def poll(self, source: int | None = None, tag: Tag | None = None,
             until: float | None = None) -> tuple[int, int] | None:
        """As :meth:`wait`, but give up at ``until`` (a ``time.monotonic()`` time): None."""
        mpi = self._mpi
        src = mpi.ANY_SOURCE if source is None else source
        tg = mpi.ANY_TAG if tag is None else int(tag)
        status = mpi.Status()
        iprobe = self.base.Iprobe
        if iprobe(src, tg, status):
            return status.Get_source(), status.Get_tag()
        start = time.perf_counter()
        while time.perf_counter() - start < SPIN_SECONDS:
            if iprobe(src, tg, status):
                return status.Get_source(), status.Get_tag()
        delay, cap = 2e-5, MAX_SLEEP
        idle_at = time.monotonic() + IDLE_AFTER
        while not iprobe(src, tg, status):
            now = time.monotonic()
            if until is not None and now >= until:
                return None
            if now >= idle_at:
                cap = IDLE_SLEEP
            pause = min(delay, until - now) if until is not None else delay
            time.sleep(pause)
            delay = min(2.0 * delay, cap)
        return status.Get_source(), status.Get_tag()

    def send_heartbeat(self) -> None:
        """Tell rank 0 this rank is alive (an empty message; safe from a second thread)."""
        self.base.Send([b"", self._mpi.BYTE], dest=0, tag=int(Tag.HEARTBEAT))

    def drain_heartbeats(self, source: int) -> int:
        """Receive the heartbeats ``source`` has sent so far; return how many."""
        mpi, status, count = self._mpi, self._mpi.Status(), 0
        buffer = bytearray(1)
        while self.base.Iprobe(source, int(Tag.HEARTBEAT), status):
            self.base.Recv([buffer, mpi.BYTE], source=source, tag=int(Tag.HEARTBEAT))
            count += 1
        return count

    def recv(self, source: int | None = None, tag: Tag | None = None) -> tuple[Any, int, int]:
        """Wait for and receive a message; return ``(obj, source, tag)``."""
        src, tg = self.wait(source, tag)
        return self.comm.recv(source=src, tag=tg), src, tg
