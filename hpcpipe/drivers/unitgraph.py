"""The graph of a production's units: which unit of which step needs which others.

:func:`plan_stages` groups the selected steps into stages: a step whose units can only be
listed from the outputs of another step of the same run (``listing_needs``, e.g. the patches
of a warp step come from the sky map ``makeSkyMap`` writes) runs in a later stage than that
step, and everything else as late as possible. A run usually has one stage, two when it makes
its sky map (the sky map alone, then the rest). Within a stage there is no barrier at all:
the pool starts each unit when its inputs are done.

:class:`UnitGraph` accumulates the units of the steps, stage by stage, with their parents
(global indices) and, once a stage has run, their states; :meth:`UnitGraph.stage_job` turns
a stage into what :meth:`hpcpipe.comm.pool.Pool.map_graph` takes, with the resume rule:
a unit is skipped when its ``<task>_metadata`` exists and every unit it depends on is skipped
too (a redone input means its outputs are redone), and it is blocked without running when an
input failed in an earlier stage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hpcpipe.drivers.production import (
    DataId,
    ProductionContext,
    ProductionError,
    ProductionStep,
    format_unit,
    unit_identity,
)

__all__ = ["plan_stages", "UnitGraph", "StageJob"]

log = logging.getLogger("hpcpipe.drivers.unitgraph")


def plan_stages(steps: Sequence[ProductionStep]) -> list[list[ProductionStep]]:
    """Group the steps (in production order) into as few stages as their listings allow.

    A step whose units are listed from another step's outputs (``listing_needs``) runs in a
    later stage than that step; every other step goes into the latest stage it can (with the
    steps reading its outputs), so that only what the listings need runs before a barrier:
    with a sky map step, stage 1 is the sky map alone and stage 2 everything else.
    """
    names = {s.name for s in steps}
    level: dict[str, int] = {}
    for step in steps:  # the earliest stage of each step
        level[step.name] = max([0, *(level[n] for n in step.inputs if n in names),
                                *(level[n] + 1 for n in step.listing_needs if n in names)])
    last = max(level.values(), default=0)
    latest: dict[str, int] = {}
    for step in reversed(steps):  # the latest stage that still comes before its readers
        bounds = [last]
        for reader in steps:
            if step.name in reader.listing_needs:
                bounds.append(latest[reader.name] - 1)
            elif step.name in reader.inputs:
                bounds.append(latest[reader.name])
        latest[step.name] = min(bounds)
    stages: list[list[ProductionStep]] = [[] for _ in range(last + 1)]
    for step in steps:
        stages[latest[step.name]].append(step)
    return [s for s in stages if s]


@dataclass
class StageJob:
    """One stage as a pool graph job (local indices) and the units blocked before it runs.

    Attributes
    ----------
    indices : list of int
        Global indices of the units the pool runs (or skips), in job order.
    deps : list of list of int
        Job-local indices each unit waits for.
    skip : list of int
        Job-local indices of units done by an earlier run.
    blocked : dict
        Global index of a unit blocked by an input that failed in an earlier stage, to the
        global index of that input.
    """

    indices: list[int]
    deps: list[list[int]]
    skip: list[int]
    blocked: dict[int, int] = field(default_factory=dict)


class UnitGraph:
    """The units of a run and their dependencies (see the module documentation)."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.data_ids: list[DataId] = []
        self.keys: list[str] = []
        self.parents: list[list[int]] = []
        self.stage: list[int] = []
        self.state: list[str] = []
        self._index: dict[tuple[str, tuple[Any, ...]], int] = {}
        self._unit_keys: dict[str, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self.steps)

    def find(self, step: str, data_id: dict[str, Any]) -> int | None:
        """The global index of a unit of ``step`` (None if it is not in the graph)."""
        keys = self._unit_keys.get(step)
        if keys is None:
            return None
        return self._index.get((step, unit_identity(step, keys, data_id)))

    def add_step(self, step: ProductionStep, units: list[DataId], ctx: ProductionContext,
                 stage: int) -> range:
        """Add a step's units; their inputs must be in the graph already (or not run at all).

        Raises
        ------
        ProductionError
            If a unit depends on a unit of itself or of a later step.
        """
        start = len(self.steps)
        self._unit_keys[step.name] = step.unit_keys
        for data_id in units:
            ident = unit_identity(step.name, step.unit_keys, data_id)
            self._index[(step.name, ident)] = len(self.steps)
            self.steps.append(step.name)
            self.data_ids.append(data_id)
            self.keys.append(format_unit(step.name, step.unit_keys, data_id))
            self.stage.append(stage)
            self.state.append("pending")
        end = len(self.steps)
        for i in range(start, end):
            parents: list[int] = []
            for name, need_id in step.needs(self.data_ids[i], ctx):
                if name == step.name:
                    raise ProductionError(f"unit {self.keys[i]} depends on a unit of its own "
                                          "step")
                if name not in self._unit_keys:
                    continue  # a step not run in this command: its outputs are read as found
                parent = self.find(name, dict(need_id))
                if parent is None:
                    log.debug("%s: input %s %s is not in this run", self.keys[i], name,
                              dict(need_id))
                    continue
                if parent not in parents:
                    parents.append(parent)
            self.parents.append(parents)
        return range(start, end)

    def stage_job(self, stage: int, is_done: Callable[[int], bool], clobber: bool) -> StageJob:
        """The pool job of a stage (see the module documentation for skip and block).

        Parameters
        ----------
        is_done : callable
            ``is_done(global index)``: whether the unit's metadata exists.
        clobber : bool
            Redo every unit (``--clobber-outputs``): skip none.
        """
        members = [i for i in range(len(self.steps)) if self.stage[i] == stage]
        blocked: dict[int, int] = {}
        skipped: set[int] = set()
        for i in members:  # production order is a topological order
            for p in self.parents[i]:
                if p in blocked or (self.stage[p] != stage
                                    and self.state[p] in ("failed", "blocked", "pending")):
                    blocked[i] = blocked.get(p, p)
                    break
            else:
                if not clobber and all(
                        p in skipped or (self.stage[p] != stage and self.state[p] == "skipped")
                        for p in self.parents[i]) and is_done(i):
                    skipped.add(i)
        indices = [i for i in members if i not in blocked]
        local = {g: k for k, g in enumerate(indices)}
        deps = [[local[p] for p in self.parents[g] if p in local] for g in indices]
        skip = [local[g] for g in indices if g in skipped]
        return StageJob(indices, deps, skip, blocked)
