"""Timing for benchmarks on a shared, noisy machine: interleaved pairs, medians and spreads.

A best-of-N time of ours followed by a best-of-N time of the peer compares two different
moments of the machine: another job starting between the two moves the ratio by tens of
percent. :func:`interleaved` runs the two alternately (ours, peer, then peer, ours, ...: the
order alternates so that a drift in the load falls on both), takes the ratio of each pair
(two runs seconds apart see nearly the same machine), and reports the median ratio with the
spread of the ratios (their 25th and 75th percentiles) and the median times. A benchmark
prints the load average before and after (:func:`load_line`): a ratio measured while the load
changed says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Paired", "interleaved", "load_line", "format_paired"]


@dataclass(frozen=True)
class Paired:
    """The result of :func:`interleaved`.

    Attributes
    ----------
    ours, peer : float
        Median times, seconds.
    ratio : float
        Median of the per-pair ratios ``ours / peer``.
    low, high : float
        25th and 75th percentiles of the per-pair ratios (equal for one pair).
    pairs : int
        Number of pairs.
    """

    ours: float
    peer: float
    ratio: float
    low: float
    high: float
    pairs: int


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(ours: Callable[[], object], peer: Callable[[], object], pairs: int = 7, *,
                warmup: bool = True) -> Paired:
    """Time ``ours`` and ``peer`` alternately, ``pairs`` times each.

    Parameters
    ----------
    ours, peer : callable
        The two jobs (no arguments).
    pairs : int
        Pairs of runs (at least 1; 5 or more for the spread to mean something).
    warmup : bool
        Run each once first, untimed (imports, page faults of first use, caches).
    """
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, not {pairs}")
    if warmup:
        ours()
        peer()
    t_ours, t_peer = [], []
    for k in range(pairs):
        if k % 2 == 0:
            t_ours.append(_timed(ours))
            t_peer.append(_timed(peer))
        else:
            t_peer.append(_timed(peer))
            t_ours.append(_timed(ours))
    ratios = np.asarray(t_ours) / np.asarray(t_peer)
    low, median, high = np.percentile(ratios, [25.0, 50.0, 75.0])
    return Paired(float(np.median(t_ours)), float(np.median(t_peer)), float(median),
                  float(low), float(high), pairs)


def format_paired(result: Paired) -> str:
    """``"0.87 [0.84-0.91]"``: the median ratio and its interquartile range."""
    return f"{result.ratio:.2f} [{result.low:.2f}-{result.high:.2f}]"


def load_line(when: str) -> str:
    """``"load average before: 1.02 0.87 0.55 (2 cores)"``."""
    one, five, fifteen = os.getloadavg()
    return (f"load average {when}: {one:.2f} {five:.2f} {fifteen:.2f} "
            f"({os.cpu_count()} cores)")
