"""A data release production declared as an ordered list of steps.

A :class:`ProductionStep` names a command-line task and the units it runs over: its unit keys
(``("visit", "ccd")``, ``("visit", "tract", "patch")``, ``("tract", "patch", "filter")``,
``("tract", "patch")``, ``()`` for a task run once), how to list its units, and which units
of earlier steps each of its units needs. A :class:`Production` is the ordered list; the
driver (:mod:`hpcpipe.drivers.drp`) expands it into a graph of units and runs the graph on
the pool, each unit as soon as its inputs are done. A production is registered per camera
(mapper name) with :func:`register_production` or the ``hpcpipe.productions`` entry point
group, so ``hpcpipe drp REPO`` finds it (a camera described by a file with none of its own
gets the ``standard`` one: :func:`production_for_mapper`)::

    production = Production("mycam", [
        ProductionStep("processCcd", ProcessCcdTask, ("visit", "ccd")),
        ProductionStep("makeSkyMap", MakeSkyMapTask, ()),
        ProductionStep("makeCoaddTempExp", MakeCoaddTempExpTask, ("visit", "tract", "patch"),
                       inputs=("processCcd", "makeSkyMap"), list_units=warp_units,
                       listing_needs=("makeSkyMap",)),
        ProductionStep("assembleCoadd", AssembleCoaddTask, ("tract", "patch", "filter"),
                       inputs=("makeCoaddTempExp",), list_units=coadd_units),
    ])
    register_production(production)

Unit data ids carry more keys than their unit keys when those are constant over the unit
(a visit's ``filter``, a warp's ``filter``): units are identified by their unit keys and
matched to their inputs on every key they share (:meth:`ProductionContext.matching`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpcpipe.errors import HpcpipeError

if TYPE_CHECKING:
    from hpcpipe.butler import Butler
    from hpcpipe.butler.mapper import Mapper
    from hpcpipe.task.cmdline import CmdLineTask

__all__ = ["ProductionError", "ProductionStep", "Production", "ProductionContext",
           "register_production", "find_production", "registered_productions",
           "units_from_inputs", "one_unit", "unit_identity", "format_unit",
           "BUILTIN_PRODUCTIONS", "ENTRY_POINT_GROUP", "STANDARD_PRODUCTION",
           "production_for_mapper"]

DataId = dict[str, Any]
UnitLister = Callable[["ProductionContext"], Iterable[Mapping[str, Any]]]
UpstreamFinder = Callable[[Mapping[str, Any], "ProductionContext"],
                          Iterable[tuple[str, Mapping[str, Any]]]]


class ProductionError(HpcpipeError, ValueError):
    """A production that cannot run: a bad declaration, an unknown step, missing inputs."""


def unit_identity(step: str, unit_keys: Sequence[str], data_id: Mapping[str, Any]
                  ) -> tuple[Any, ...]:
    """The values of a unit's keys, which identify it among the units of its step."""
    try:
        return tuple(data_id[k] for k in unit_keys)
    except KeyError as exc:
        raise ProductionError(f"step {step}: unit {dict(data_id)} has no {exc.args[0]!r}, one "
                              f"of its unit keys {tuple(unit_keys)}") from None


def format_unit(step: str, unit_keys: Sequence[str], data_id: Mapping[str, Any]) -> str:
    """``step key=value ...`` over the unit keys: a unit's printable id."""
    return " ".join([step, *(f"{k}={data_id[k]}" for k in unit_keys)])


def units_from_inputs(keys: Sequence[str]) -> UnitLister:
    """A unit lister: the distinct values of ``keys`` among the selected input data ids.

    Each unit keeps, besides ``keys``, every key whose value is the same for all the inputs
    of the unit (a visit's filter and date, say).
    """
    keys = tuple(keys)

    def list_units(ctx: ProductionContext) -> list[DataId]:
        groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
        for data_id in ctx.inputs:
            if not all(k in data_id for k in keys):
                missing = [k for k in keys if k not in data_id]
                raise ProductionError(f"input {dict(data_id)} has no {missing[0]!r}: give the "
                                      f"step a list_units for keys {keys}")
            groups.setdefault(tuple(data_id[k] for k in keys), []).append(data_id)
        units = []
        for members in groups.values():
            first = members[0]
            units.append({k: v for k, v in first.items()
                          if all(m.get(k) == v for m in members[1:])})
        return units

    return list_units


def one_unit(ctx: ProductionContext) -> list[DataId]:
    """A unit lister for a task run once per output repository (unit keys ``()``)."""
    return [{}]


@dataclass(frozen=True)
class ProductionStep:
    """One step of a production: a command-line task over its units.

    Parameters
    ----------
    name : str
        The task's ``_DefaultName``: the step's name on the command line (``--steps``,
        ``-c name.field=value``) and in ``<name>_config`` and ``<name>_metadata``.
    task_class : type of CmdLineTask
        The task; every unit runs ``task.run_data_ref(data_ref)``.
    unit_keys : tuple of str
        The keys identifying one unit (``("visit", "ccd")``...; ``()`` for a single unit).
    inputs : tuple of str
        The earlier steps this one reads from. Without ``upstream``, a unit depends on every
        unit of these steps that agrees with it on the keys both have.
    list_units : callable, optional
        ``list_units(ctx)`` gives the step's units (data ids holding at least the unit keys)
        from ``ctx`` (:class:`ProductionContext`: the butler, the selected inputs, the sky
        map, the units of earlier steps). By default the distinct unit keys of the selected
        inputs (:func:`units_from_inputs`), or one unit when ``unit_keys`` is empty.
    upstream : callable, optional
        ``upstream(unit, ctx)`` gives the ``(step name, data id)`` of the units this unit
        needs, replacing the default matching over ``inputs``.
    listing_needs : tuple of str
        Steps whose outputs ``list_units`` reads (the sky map of ``makeSkyMap``): when they
        run in the same command, this step's units are listed once they are done.
    """

    name: str
    task_class: type[CmdLineTask]
    unit_keys: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    list_units: UnitLister | None = None
    upstream: UpstreamFinder | None = None
    listing_needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit_keys", tuple(self.unit_keys))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "listing_needs", tuple(self.listing_needs))
        default = getattr(self.task_class, "_DefaultName", None)
        if default and default != self.name:
            raise ProductionError(f"step {self.name}: its task {self.task_class.__name__} is "
                                  f"named {default!r}; name the step after it")

    def units(self, ctx: ProductionContext) -> list[DataId]:
        """This step's units (data ids), without duplicates, in the order listed."""
        lister = self.list_units
        if lister is None:
            lister = units_from_inputs(self.unit_keys) if self.unit_keys else one_unit
        out: list[DataId] = []
        seen: set[tuple[Any, ...]] = set()
        for data_id in lister(ctx):
            data_id = ctx.normalize(data_id)
            ident = unit_identity(self.name, self.unit_keys, data_id)
            if ident not in seen:
                seen.add(ident)
                out.append(data_id)
        return out

    def needs(self, unit: Mapping[str, Any], ctx: ProductionContext
              ) -> list[tuple[str, Mapping[str, Any]]]:
        """The ``(step, data id)`` of the units ``unit`` depends on."""
        if self.upstream is not None:
            return list(self.upstream(unit, ctx))
        return [(name, found) for name in self.inputs for found in ctx.matching(name, unit)]


@dataclass
class Production:
    """A named, ordered list of steps (see the module documentation).

    Parameters
    ----------
    name : str
        The production's name; registered productions use the mapper's name (``mycam``).
    steps : sequence of ProductionStep
        In an order where every step comes after the steps it reads from.
    sky_map_dataset : str
        The dataset :attr:`ProductionContext.sky_map` reads.
    """

    name: str
    steps: list[ProductionStep]
    sky_map_dataset: str = "skyMap"
    doc: str = ""

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise ProductionError(f"production {self.name}: step {step.name} twice")
            for other in (*step.inputs, *step.listing_needs):
                if other not in seen:
                    raise ProductionError(
                        f"production {self.name}: step {step.name} reads {other!r}, which is "
                        "not an earlier step")
            seen.add(step.name)

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    def step(self, name: str) -> ProductionStep:
        for step in self.steps:
            if step.name == name:
                return step
        raise ProductionError(f"production {self.name} has no step {name!r} (its steps: "
                              f"{', '.join(self.step_names)})")

    def select(self, names: Iterable[str] | None) -> list[ProductionStep]:
        """The steps named (all if None), in production order.

        Raises
        ------
        ProductionError
            For a name that is not a step.
        """
        if names is None:
            return list(self.steps)
        wanted = list(names)
        for name in wanted:
            self.step(name)
        return [s for s in self.steps if s.name in wanted]


@dataclass
class ProductionContext:
    """What unit listers and upstream finders see.

    Attributes
    ----------
    butler : Butler
        The butler of the run (inputs read, outputs written).
    inputs : list of dict
        The selected input data ids: one registry row per raw exposure that ``--id`` selects.
    selection : list of dict
        The ``--id`` data ids as given; :meth:`selected` filters units with them.
    units : dict
        The units of every step listed so far, by step name.
    sky_map_dataset : str
        The dataset :attr:`sky_map` reads.
    """

    butler: Butler
    inputs: list[DataId]
    selection: list[DataId] = field(default_factory=lambda: [{}])
    units: dict[str, list[DataId]] = field(default_factory=dict)
    unit_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sky_map_dataset: str = "skyMap"
    _sky_map: Any = None
    _indexes: dict[tuple[str, tuple[str, ...]], dict[tuple[Any, ...], list[DataId]]] = field(
        default_factory=dict)

    @property
    def sky_map(self) -> Any:
        """The sky map in the repository (read once).

        Raises
        ------
        ProductionError
            If there is none: run the step that makes it first.
        """
        if self._sky_map is None:
            if not self.butler.datasetExists(self.sky_map_dataset):
                raise ProductionError(f"no {self.sky_map_dataset} in the repository: run the "
                                      "step that makes it (makeSkyMap) first or in this run")
            self._sky_map = self.butler.get(self.sky_map_dataset)
        return self._sky_map

    def normalize(self, data_id: Mapping[str, Any]) -> DataId:
        """A data id with the mapper's value types (``patch=(1, 2)`` becomes ``"1,2"``)."""
        return dict(self.butler.mapper.validate(dict(data_id)))

    def selected(self, data_id: Mapping[str, Any]) -> bool:
        """Whether a unit agrees with one of the ``--id`` data ids on the keys it has."""
        return any(all(data_id[k] == v for k, v in sel.items() if k in data_id)
                   for sel in self.selection)

    def add_units(self, step: str, unit_keys: Sequence[str], units: list[DataId]) -> None:
        """Record the units of a step (what :meth:`matching` searches)."""
        self.units[step] = units
        self.unit_keys[step] = tuple(unit_keys)
        for key in [k for k in self._indexes if k[0] == step]:
            del self._indexes[key]

    def matching(self, step: str, data_id: Mapping[str, Any]) -> list[DataId]:
        """The units of ``step`` that agree with ``data_id`` on every key both have.

        An empty list if ``step`` has no units in this run (it was not selected).
        """
        units = self.units.get(step)
        if not units:
            return []
        by_keys: dict[frozenset[str], list[DataId]] = collections.defaultdict(list)
        for unit in units:  # usually a single group: a step's units have the same keys
            by_keys[frozenset(unit)].append(unit)
        out: list[DataId] = []
        for keys in by_keys:
            shared = tuple(sorted(keys & set(data_id)))
            index = self._indexes.get((step, shared))
            if index is None:
                index = collections.defaultdict(list)
                for unit in units:
                    if all(k in unit for k in shared):
                        index[tuple(unit[k] for k in shared)].append(unit)
                self._indexes[(step, shared)] = index
            out.extend(u for u in index.get(tuple(data_id[k] for k in shared), ())
                       if frozenset(u) == keys)
        return out


_PRODUCTIONS: dict[str, Callable[[], Production] | Production] = {}

#: hpcpipe's own productions, imported when first asked for, by name: ``package.module:
#: attribute`` of a Production or a function returning one. They are also in setup.py's
#: entry points (group :data:`ENTRY_POINT_GROUP`, as other packages register theirs); this
#: table serves a source tree whose metadata is not installed.
BUILTIN_PRODUCTIONS: dict[str, str] = {
    "standard": "hpcpipe.drivers.standard_production:production",
}
#: The production ``hpcpipe drp`` runs on a repository whose camera (described by a file)
#: has none registered under its own name: LSST's Gen2 data release production.
STANDARD_PRODUCTION = "standard"
#: The entry point group of productions (name: the mapper's name).
ENTRY_POINT_GROUP = "hpcpipe.productions"


def register_production(production: Production | Callable[[], Production],
                        name: str | None = None) -> None:
    """Register a production (or a function making it) under its camera's mapper name.

    ``hpcpipe drp REPO`` runs the production registered under the name of ``REPO``'s mapper.
    """
    key = name or getattr(production, "name", None)
    if not key:
        raise ProductionError("register_production needs a name for a production factory")
    _PRODUCTIONS[key] = production


def _entry_points() -> dict[str, Any]:
    # start-up cost: entry points are read only when a name is asked for
    from importlib import metadata

    try:
        return {e.name: e for e in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # noqa: BLE001 - broken metadata must not break the driver
        return {}


def registered_productions() -> list[str]:
    """The names of the registered productions (in this process, built in, entry points)."""
    return sorted(set(_PRODUCTIONS) | set(BUILTIN_PRODUCTIONS) | set(_entry_points()))


def _import(path: str) -> Any:
    # start-up cost: the task framework, only when a step names its task by import path
    from hpcpipe.task.discovery import TaskNotFoundError, import_object

    try:
        return import_object(path)
    except (TaskNotFoundError, ImportError, AttributeError) as exc:
        raise ProductionError(f"cannot import production {path!r}: {exc}") from None


def find_production(name: str) -> Production:
    """A production by name (registered, built in, or an entry point of
    :data:`ENTRY_POINT_GROUP`) or by import path (``package.module:attribute``).

    Raises
    ------
    ProductionError
        If there is none by that name.
    """
    found: Any = _PRODUCTIONS.get(name)
    if found is None and name in BUILTIN_PRODUCTIONS:
        try:
            found = _import(BUILTIN_PRODUCTIONS[name])
        except ProductionError:
            found = None  # not written yet: reported as not registered below
    if found is None and name in _entry_points():
        found = _entry_points()[name].load()
    if found is None and ":" in name:
        found = _import(name)
    if found is None:
        known = ", ".join(registered_productions()) or "none"
        raise ProductionError(f"no production registered for {name!r} (registered: {known}; "
                              "or give --production package.module:attribute)")
    production = found if isinstance(found, Production) or not callable(found) else found()
    if not isinstance(production, Production):
        raise ProductionError(f"{name!r} is not a Production")
    return production


def production_for_mapper(mapper: Mapper) -> Production:
    """The production ``hpcpipe drp`` runs on a repository of ``mapper``.

    The production registered under the mapper's name; for a camera described by a file
    without one of its own, :data:`STANDARD_PRODUCTION` (every such camera has the same
    dataset types).

    Raises
    ------
    ProductionError
        If there is none.
    """
    name = mapper.name or mapper.full_name
    if name not in registered_productions() and getattr(mapper, "camera", None) is not None:
        name = STANDARD_PRODUCTION
    return find_production(name)
