"""Repositories: a storage root, its mapper and its parents; chains of repositories.

On disk a repository is a directory tree (see :mod:`hpcpipe.butler.storage`) holding

``_mapper``
    one line: the registered name of the camera or mapper (``mycam``), or ``_camera.yaml``;
``_camera.yaml``
    the camera description, for repositories created from a camera file
    (``hpcpipe butler create REPO --camera mycam.yaml``, or ``hpcpipe simulate``);
``repositoryCfg.yaml``
    ``mapper`` and ``parents``: the repositories this one reads through, each as a path
    relative to this one (local repositories) or a URL;
``registry.sqlite3``
    the registry, in repositories that raw or calibration files were ingested into;
the datasets, at the paths the mapper's templates give.

An output repository names its input repositories as parents. Reads search the *chain*: the
repository itself, then each parent's chain in order (depth first, each repository once), so
that a dataset of the child shadows the parent's dataset of the same data id. Writes go only
to the first repository of the chain.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import yaml

from hpcpipe.butler.errors import MissingMapperError, RepositoryError
from hpcpipe.butler.mapper import Mapper, load_mapper, mapper_from_description, mapper_names
from hpcpipe.butler.registry import REGISTRY_FILE, Registry
from hpcpipe.butler.storage import Storage, storage_for

__all__ = ["Repository", "MAPPER_FILE", "CAMERA_FILE", "REPOSITORY_CFG", "resolve_chain"]

MAPPER_FILE = "_mapper"
#: The camera description stored in a repository (``_mapper`` then holds this name).
CAMERA_FILE = "_camera.yaml"
REPOSITORY_CFG = "repositoryCfg.yaml"
#: Depth beyond which a chain is assumed to loop.
MAX_CHAIN_DEPTH = 64


def _canonical_mapper(name: str) -> str:
    return mapper_names().get(name, name)


class Repository:
    """One repository: where it is, which mapper lays it out and which parents it reads.

    Use :meth:`open` or :meth:`create` rather than the constructor.
    """

    def __init__(self, storage: Storage, mapper_name: str, parent_refs: Sequence[str]) -> None:
        self.storage = storage
        #: What ``_mapper`` says: a registered name, or :data:`CAMERA_FILE`.
        self.mapper_ref = mapper_name
        self.parent_refs = list(parent_refs)
        self._description: str | None = None
        self.mapper_name = mapper_name
        if mapper_name == CAMERA_FILE:
            text = self.description()
            try:
                data = yaml.safe_load(text or "")
            except yaml.YAMLError:
                data = None
            name = data.get("name") if isinstance(data, dict) else None
            # the camera's name (for productions and chains); the file is checked when the
            # mapper is built
            self.mapper_name = str(name) if name else CAMERA_FILE

    def description(self) -> str | None:
        """The stored camera description (None for a repository naming a registered one)."""
        if self.mapper_ref != CAMERA_FILE:
            return None
        if self._description is None:
            if not self.storage.exists(CAMERA_FILE):
                raise RepositoryError(f"{self.uri}: its {MAPPER_FILE} names {CAMERA_FILE}, which "
                                      "is missing")
            self._description = self.storage.read_text(CAMERA_FILE)
        return self._description

    @property
    def uri(self) -> str:
        """The repository's URL."""
        return self.storage.uri

    def __repr__(self) -> str:
        return f"Repository({self.uri!r}, mapper={self.mapper_name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Repository) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    # --- opening and creating ----------------------------------------------------------------
    @staticmethod
    def _read_cfg(storage: Storage) -> dict[str, Any]:
        if not storage.exists(REPOSITORY_CFG):
            return {}
        data = yaml.safe_load(storage.read_text(REPOSITORY_CFG)) or {}
        if not isinstance(data, dict):
            raise RepositoryError(f"{storage.url(REPOSITORY_CFG)}: not a YAML mapping")
        parents = data.get("parents") or []
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise RepositoryError(f"{storage.url(REPOSITORY_CFG)}: 'parents' must be a list "
                                  "of paths or URLs")
        return data

    @classmethod
    def open(cls, location: str | os.PathLike[str] | Storage) -> Repository:
        """Open an existing repository.

        Raises
        ------
        MissingMapperError
            If there is no repository there: no directory, or neither a ``_mapper`` file nor
            parents to take the mapper from.
        """
        storage = storage_for(location)
        if not storage.exists():
            raise MissingMapperError(
                f"no repository at {storage.uri}: the directory does not exist (create one "
                f"with `hpcpipe butler create REPO --mapper NAME`)"
            )
        cfg = cls._read_cfg(storage)
        parents = list(cfg.get("parents") or [])
        if storage.exists(MAPPER_FILE):
            name = storage.read_text(MAPPER_FILE).strip()
        else:
            name = str(cfg.get("mapper") or "")
        if not name and parents:  # Gen2 did the same: inherit the first parent's mapper
            name = cls.open(storage.sibling(parents[0])).mapper_name
        if not name:
            raise MissingMapperError(
                f"{storage.uri} is not a repository: it has no {MAPPER_FILE} file naming its "
                f"mapper (write one holding a registered camera or mapper name, one of "
                f"{', '.join(sorted(mapper_names()))}, or create the repository with "
                f"`hpcpipe butler create REPO --camera NAME|mycam.yaml`)"
            )
        return cls(storage, name, parents)

    @classmethod
    def create(cls, location: str | os.PathLike[str] | Storage, mapper: str,
               parents: Sequence[Repository] = (), description: str | None = None
               ) -> Repository:
        """Create a repository (or check that an existing one agrees).

        Parameters
        ----------
        location : str, os.PathLike or Storage
            Where (a path or URL).
        mapper : str
            The registered name of its camera or mapper (checked by loading it); ignored
            when ``description`` is given.
        parents : sequence of Repository
            The repositories it reads through, searched in this order.
        description : str, optional
            A camera description (the YAML text of a camera file), checked and stored as
            ``_camera.yaml``.

        Raises
        ------
        RepositoryError
            If a repository exists there with another mapper or other parents.
        CameraError
            (a ButlerError) If the description has an error.
        """
        storage = storage_for(location)
        if description is not None:
            mapper = str(mapper_from_description(description, storage.url(CAMERA_FILE)).name)
        else:
            load_mapper(mapper)  # fail early on a bad name
        refs = [storage.reference_to(p.storage) for p in parents]
        if storage.exists(MAPPER_FILE) or storage.exists(REPOSITORY_CFG):
            existing = cls.open(storage)
            if _canonical_mapper(existing.mapper_name) != _canonical_mapper(mapper):
                raise RepositoryError(
                    f"{storage.uri} exists with mapper {existing.mapper_name!r}, not {mapper!r}")
            if parents and [p.uri for p in existing.parents()] != [p.uri for p in parents]:
                raise RepositoryError(
                    f"{storage.uri} exists with parents "
                    f"{[p.uri for p in existing.parents()]}, not {[p.uri for p in parents]}")
            return existing
        ref = mapper
        if description is not None:
            storage.write_text(CAMERA_FILE, description)
            ref = CAMERA_FILE
        storage.write_text(REPOSITORY_CFG, yaml.safe_dump(
            {"mapper": ref, "parents": refs}, sort_keys=False))
        storage.write_text(MAPPER_FILE, ref + "\n")
        return cls(storage, ref, refs)

    # --- relations ----------------------------------------------------------------------------
    def parents(self) -> list[Repository]:
        """The parent repositories, in search order."""
        return [Repository.open(self.storage.sibling(ref)) for ref in self.parent_refs]

    def mapper(self) -> Mapper:
        """A new instance of the repository's mapper (from its stored camera description,
        or by its registered name)."""
        description = self.description()
        if description is not None:
            return mapper_from_description(description, self.storage.url(CAMERA_FILE))
        return load_mapper(self.mapper_ref)

    def registry(self, mapper: Mapper) -> Registry:
        """The repository's registry (which need not exist yet)."""
        columns = {k: mapper.keys[k].type for k in mapper.exposure_keys}
        return Registry(self.storage.local_path(REGISTRY_FILE), columns, mapper.exposure_unique)


def resolve_chain(repository: Repository) -> list[Repository]:
    """The repositories a read searches, in order: ``repository`` then its parents' chains.

    Raises
    ------
    RepositoryError
        If the chain loops or mixes mappers.
    """
    chain: list[Repository] = []
    seen: set[str] = set()

    def visit(repo: Repository, path: tuple[str, ...]) -> None:
        if repo.uri in path:
            raise RepositoryError(
                f"repository chain loops: {' -> '.join((*path, repo.uri))}")
        if len(path) > MAX_CHAIN_DEPTH:
            raise RepositoryError(f"repository chain deeper than {MAX_CHAIN_DEPTH} at {repo.uri}")
        if repo.uri in seen:
            return
        seen.add(repo.uri)
        chain.append(repo)
        for parent in repo.parents():
            visit(parent, (*path, repo.uri))

    visit(repository, ())
    names = {_canonical_mapper(r.mapper_name) for r in chain}
    if len(names) > 1:
        listing = ", ".join(f"{r.uri} ({r.mapper_name})" for r in chain)
        raise RepositoryError(f"a repository chain must use one mapper; found {listing}")
    return chain
