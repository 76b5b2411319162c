"""Write atomic structures: extxyz files, or Zarr groups when the ``zarr`` package is installed."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import ase.io
import numpy as np
from ase import Atoms

from physicsnemo_curator.core.base import Param, Sink

FORMATS = ("auto", "extxyz", "zarr")


def zarr_available() -> bool:
    return importlib.util.find_spec("zarr") is not None


class StructureSink(Sink[Atoms]):
    """Write the structures of each index to ``output_dir/structure_<index>.<ext>``.

    ``extxyz`` keeps positions, cell, periodicity and every ``atoms.info``
    entry (RDFs included) in one multi-frame file per index, readable with
    ``ase.io.read(path, index=":")``. ``zarr`` writes one group per index with
    a sub-group per structure holding ``positions``, ``numbers``, ``cell``,
    ``pbc`` and the ``info`` arrays, with scalar ``info`` entries as
    attributes. ``auto`` picks Zarr when the ``zarr`` package is importable,
    else extxyz.

    Parameters
    ----------
    output_dir : str
        Folder for the files; created when missing.
    format : str
        ``"auto"`` (default), ``"extxyz"`` or ``"zarr"``.
    """

    name: ClassVar[str] = "Structure Writer"
    description: ClassVar[str] = "Write structures as extxyz (or Zarr when installed)"

    def __init__(self, output_dir: str | os.PathLike[str], format: str = "auto") -> None:  # noqa: A002 - the user-facing name
        format = str(format).lower()
        if format not in FORMATS:
            raise ValueError(f"StructureSink format must be one of {', '.join(FORMATS)}, got {format!r}.")
        if format == "zarr" and not zarr_available():
            raise ImportError('StructureSink(format="zarr") needs the zarr package: pip install zarr')
        self.output_dir = str(output_dir)
        self.format = format

    @classmethod
    def params(cls) -> list[Param]:
        return [
            Param("output_dir", str, description="Folder the structure files are written to."),
            Param("format", str, "auto", "auto (Zarr when installed, else extxyz), extxyz or zarr."),
        ]

    @property
    def resolved_format(self) -> str:
        if self.format == "auto":
            return "zarr" if zarr_available() else "extxyz"
        return self.format

    def __call__(self, items: Iterable[Atoms], index: int) -> list[str]:
        structures = list(items)
        if not structures:
            return []
        folder = Path(self.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if self.resolved_format == "zarr":
            path = folder / f"structure_{index:06d}.zarr"
            write_zarr(structures, path)
        else:
            path = folder / f"structure_{index:06d}.extxyz"
            ase.io.write(path, structures, format="extxyz")
        return [str(path)]


def write_zarr(structures: list[Atoms], path: Path) -> None:
    """Write ``structures`` as one Zarr group with a sub-group per structure."""
    import zarr

    root = zarr.open_group(str(path), mode="w")
    root.attrs["n_structures"] = len(structures)
    for position, atoms in enumerate(structures):
        group = root.create_group(str(position))
        arrays: dict[str, Any] = {
            "positions": atoms.positions,
            "numbers": atoms.numbers,
            "cell": atoms.cell.array,
            "pbc": atoms.pbc,
        }
        attrs: dict[str, Any] = {"formula": atoms.get_chemical_formula()}
        for key, value in atoms.info.items():
            if isinstance(value, np.ndarray) and value.ndim:
                arrays[f"info/{key}"] = value
            elif isinstance(value, np.generic):
                attrs[key] = value.item()
            elif isinstance(value, (str, int, float, bool)) or value is None:
                attrs[key] = value
            else:
                attrs[key] = str(value)
        for name, data in arrays.items():
            _create_array(group, name.replace("/", "_"), np.asarray(data))
        group.attrs.update(attrs)


def _create_array(group: Any, name: str, data: np.ndarray) -> None:
    # zarr 3 has create_array(name, data=...); zarr 2 has create_dataset(name, data=...).
    if hasattr(group, "create_array"):
        try:
            group.create_array(name, data=data)
            return
        except TypeError:
            pass
    group.create_dataset(name, data=data, shape=data.shape, dtype=data.dtype)
