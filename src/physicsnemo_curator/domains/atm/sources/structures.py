"""Sources of atomic structures: ASE's bundled collections, an ASE database, a folder of files.

Every structure a source yields carries its pipeline index and a readable
name in ``atoms.info`` (``psnc_index``, ``psnc_name``), which filters use to
label their rows and sinks keep in the files they write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import ase.collections
import ase.db
import ase.io
import numpy as np
from ase import Atoms

from physicsnemo_curator.core.base import Param, Source
from physicsnemo_curator.core.errors import CuratorError

COLLECTIONS = ("g2", "s22", "dcdft")
"""The structure collections that ship inside the ``ase`` package (162 + 22 + 71 = 255 structures)."""

STRUCTURE_SUFFIXES = (".extxyz", ".xyz", ".cif", ".vasp", ".poscar", ".pdb", ".traj", ".xsf", ".gen", ".res")
"""File suffixes :class:`StructureFolderSource` picks up by default (plus files named POSCAR* or CONTCAR*)."""

_VASP_NAMES = ("POSCAR", "CONTCAR")


class StructureReadError(CuratorError, ValueError):
    """ASE could not read a structure; the message names the file or record."""


def _tag(atoms: Atoms, index: int, name: str, **extra: Any) -> Atoms:
    atoms.info["psnc_index"] = index
    atoms.info["psnc_name"] = name
    atoms.info.update(extra)
    return atoms


class ASECollectionSource(Source[Atoms]):
    """The molecules and crystals bundled with ASE: g2, s22 and dcdft.

    Index ``i`` is structure ``i % n`` of the selected ``n`` structures, copy
    ``i // n``. Copies after the first (``repeat > 1``) have every atom
    displaced by a reproducible Gaussian of width ``rattle`` (Angstrom), as a
    thermal-noise augmentation would, so repeated structures are distinct.

    Parameters
    ----------
    collections : sequence of str
        Collections to take, in order, from ``("g2", "s22", "dcdft")``.
    names : sequence of str, optional
        Pick only these structures, as ``"collection/name"`` (e.g.
        ``"g2/H2O"``, ``"dcdft/Si"``); overrides ``collections``.
    subset : int, optional
        Keep only this many structures, spread evenly over the selection.
    interleave : bool
        Spread each collection evenly over the indices instead of one
        collection after the other (``names`` keep the order given). Molecules are cheap and crystals costly,
        so this keeps parallel workers equally busy and progress steady.
    repeat : int
        Copies of the selection (the source has ``repeat * n`` indices).
    rattle : float
        Standard deviation of the displacement of copies after the first.
    seed : int
        Seed of the displacements.
    """

    name: ClassVar[str] = "ASE Collections"
    description: ClassVar[str] = "Molecules and crystals bundled with ASE (g2, s22, dcdft)"

    def __init__(
        self,
        collections: Sequence[str] = COLLECTIONS,
        names: Sequence[str] | None = None,
        subset: int | None = None,
        interleave: bool = False,
        repeat: int = 1,
        rattle: float = 0.0,
        seed: int = 0,
    ) -> None:
        collections = [collections] if isinstance(collections, str) else list(collections)
        unknown = [c for c in collections if c not in COLLECTIONS]
        if unknown:
            raise ValueError(f"Unknown ASE collection(s) {unknown}; choose from {list(COLLECTIONS)}.")
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be 1 or more, got {subset}.")
        if repeat < 1:
            raise ValueError(f"repeat must be 1 or more, got {repeat}.")
        if rattle < 0:
            raise ValueError(f"rattle is a standard deviation in Angstrom and cannot be negative, got {rattle}.")
        self.collections = collections
        self.names = None if names is None else [str(n).strip() for n in names]
        self.subset = None if subset is None else int(subset)
        self.interleave = bool(interleave)
        self.repeat = int(repeat)
        self.rattle = float(rattle)
        self.seed = int(seed)
        self._entries: list[tuple[str, str]] | None = None

    @classmethod
    def params(cls) -> list[Param]:
        return [
            Param("collections", list, list(COLLECTIONS), "ASE collections to read: g2, s22, dcdft."),
            Param("names", list, None, "Only these structures, as 'collection/name'."),
            Param("subset", int, None, "Keep this many structures, spread over the selection."),
            Param("interleave", bool, False, "Spread each collection over the indices."),
            Param("repeat", int, 1, "Copies of the selection."),
            Param("rattle", float, 0.0, "Displacement (Angstrom) of the copies after the first."),
            Param("seed", int, 0, "Seed of the displacements."),
        ]

    @property
    def entries(self) -> list[tuple[str, str]]:
        """The selected ``(collection, name)`` pairs, in index order."""
        if self._entries is None:
            if self.names is None:
                groups = [[(c, n) for n in getattr(ase.collections, c).names] for c in self.collections]
                entries = _interleaved(groups) if self.interleave else [e for group in groups for e in group]
            else:
                entries = [_parse_name(full) for full in self.names]
            if self.subset is not None and self.subset < len(entries):
                step = len(entries) / self.subset
                entries = [entries[int(k * step)] for k in range(self.subset)]
            self._entries = entries
        return self._entries

    def __len__(self) -> int:
        return len(self.entries) * self.repeat

    def __getitem__(self, index: int) -> Iterator[Atoms]:
        n = len(self.entries)
        if not 0 <= index < n * self.repeat:
            raise IndexError(f"ASECollectionSource has {n * self.repeat} structures; index {index} is out of range.")
        copy, position = divmod(index, n)
        collection, name = self.entries[position]
        atoms = getattr(ase.collections, collection)[name]
        label = f"{collection}/{name}"
        if copy:
            label += f"#{copy}"
            if self.rattle:
                rng = np.random.default_rng([self.seed, index])
                atoms.positions = atoms.positions + rng.normal(0.0, self.rattle, atoms.positions.shape)
        yield _tag(atoms, index, label, psnc_source=collection)


def _parse_name(full: str) -> tuple[str, str]:
    collection, sep, name = full.partition("/")
    if not sep or collection not in COLLECTIONS:
        raise ValueError(f"Structure {full!r} is not of the form 'collection/name' with a collection in {list(COLLECTIONS)}.")
    if not getattr(ase.collections, collection).has(name):
        raise ValueError(f"ASE collection {collection!r} has no structure {name!r}.")
    return collection, name


def _interleaved(groups: list[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """Merge the groups so that each is spread evenly over the result, keeping each group's order."""
    keyed = [((k + 0.5) / len(group), g, k) for g, group in enumerate(groups) for k in range(len(group))]
    return [groups[g][k] for _, g, k in sorted(keyed)]


class ASEDatabaseSource(Source[Atoms]):
    """The rows of an ASE database file (``.db`` SQLite, ``.json``), ordered by row id.

    Parameters
    ----------
    path : str
        The database file; it must exist.
    selection : str, optional
        An ASE selection string (e.g. ``"natoms<20,pbc=TTT"``).
    """

    name: ClassVar[str] = "ASE Database"
    description: ClassVar[str] = "Structures stored in an ASE database file"

    def __init__(self, path: str | os.PathLike[str], selection: str | None = None) -> None:
        self.path = str(path)
        self.selection = selection
        self._ids: list[int] | None = None
        self._db: Any = None

    @classmethod
    def params(cls) -> list[Param]:
        return [
            Param("path", str, description="ASE database file (.db or .json)."),
            Param("selection", str, None, "ASE selection string, e.g. 'natoms<20'."),
        ]

    def _connect(self) -> Any:
        if self._db is None:
            if not Path(self.path).is_file():
                raise FileNotFoundError(f"ASE database not found: {self.path}")
            self._db = ase.db.connect(self.path)
        return self._db

    @property
    def ids(self) -> list[int]:
        if self._ids is None:
            db = self._connect()
            self._ids = sorted(row.id for row in db.select(self.selection, include_data=False))
        return self._ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Iterator[Atoms]:
        ids = self.ids
        if not 0 <= index < len(ids):
            raise IndexError(f"ASEDatabaseSource has {len(ids)} rows; index {index} is out of range.")
        row_id = ids[index]
        try:
            row = self._connect().get(id=row_id)
            atoms = row.toatoms()
        except Exception as exc:
            raise StructureReadError(f"Cannot read row id={row_id} of ASE database {self.path}: {type(exc).__name__}: {exc}") from exc
        label = str(row.get("name") or f"{Path(self.path).name}#{row_id}")
        yield _tag(atoms, index, label, psnc_source=self.path, psnc_row_id=row_id)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_db"] = None  # connections stay in the process that opened them
        return state


class StructureFolderSource(Source[Atoms]):
    """The structure files of a folder, one index per file, sorted by path.

    A file with several frames (a trajectory, a multi-frame extxyz) yields
    each of them. A file ASE cannot read fails its index with a
    :class:`StructureReadError` that names the file; with
    ``on_error="continue"`` the other files still run.

    Parameters
    ----------
    directory : str
        The folder to read.
    pattern : str, optional
        Glob pattern of the files to read (e.g. ``"*.cif"``). By default every
        file with a suffix in :data:`STRUCTURE_SUFFIXES` and every file named
        ``POSCAR*`` or ``CONTCAR*``.
    format : str, optional
        ASE format name, when it cannot be guessed from the file names.
    recursive : bool
        Also read sub-folders.
    """

    name: ClassVar[str] = "Structure Files"
    description: ClassVar[str] = "Structure files ASE can read (extxyz, cif, xyz, POSCAR, ...)"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        pattern: str | None = None,
        format: str | None = None,  # noqa: A002 - ASE's own name for it
        recursive: bool = False,
    ) -> None:
        self.directory = str(directory)
        self.pattern = pattern
        self.format = format
        self.recursive = bool(recursive)
        self._files: list[Path] | None = None

    @classmethod
    def params(cls) -> list[Param]:
        return [
            Param("directory", str, description="Folder of structure files."),
            Param("pattern", str, None, "Glob pattern of the files to read; default: known structure suffixes."),
            Param("format", str, None, "ASE format name, when the file names do not tell."),
            Param("recursive", bool, False, "Also read sub-folders."),
        ]

    @property
    def files(self) -> list[Path]:
        if self._files is None:
            folder = Path(self.directory)
            if not folder.is_dir():
                raise FileNotFoundError(f"Structure folder not found: {folder}")
            candidates = folder.rglob(self.pattern or "*") if self.recursive else folder.glob(self.pattern or "*")
            files = [p for p in candidates if p.is_file() and not p.name.startswith(".")]
            if self.pattern is None:
                files = [p for p in files if p.suffix.lower() in STRUCTURE_SUFFIXES or p.name.startswith(_VASP_NAMES)]
            self._files = sorted(files)
        return self._files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Iterator[Atoms]:
        files = self.files
        if not 0 <= index < len(files):
            raise IndexError(f"StructureFolderSource has {len(files)} files; index {index} is out of range.")
        path = files[index]
        try:
            frames = ase.io.read(path, index=":", format=self.format)
        except Exception as exc:
            raise StructureReadError(f"ASE cannot read {path}: {type(exc).__name__}: {exc}") from exc
        if isinstance(frames, Atoms):
            frames = [frames]
        if not frames:
            raise StructureReadError(f"ASE found no structure in {path}.")
        for frame, atoms in enumerate(frames):
            name = path.name if len(frames) == 1 else f"{path.name}@{frame}"
            yield _tag(atoms, index, name, psnc_source=str(path))
