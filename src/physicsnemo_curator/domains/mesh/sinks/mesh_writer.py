"""Write meshes to disk, one file per mesh, as NumPy ``.npz`` or VTK ``.vtu``."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar
from xml.sax.saxutils import quoteattr

import numpy as np

from physicsnemo_curator.core.base import Param, Sink
from physicsnemo_curator.domains.mesh._arrays import to_numpy
from physicsnemo_curator.domains.mesh.container import CELL_TYPES, Mesh

FORMATS = ("npz", "vtu")

_VTK_TYPES = {
    "float32": "Float32",
    "float64": "Float64",
    "int8": "Int8",
    "int16": "Int16",
    "int32": "Int32",
    "int64": "Int64",
    "uint8": "UInt8",
    "uint16": "UInt16",
    "uint32": "UInt32",
    "uint64": "UInt64",
}


class MeshSink(Sink[Mesh]):
    """Write each mesh of an index to ``output_dir/mesh_<index>.<format>``.

    An index that yields several meshes gets ``mesh_<index>_<k>.<format>``.
    NPZ files hold ``points``, ``cells``, ``cell_type``, ``point_data/<name>``,
    ``cell_data/<name>`` and ``metadata`` (JSON) and are read back by
    :func:`load_npz`. VTU files are VTK XML unstructured grids (ASCII) that
    ParaView, VTK and meshio open.

    Parameters
    ----------
    output_dir : str
        Folder for the files; created when missing.
    format : str
        ``"npz"`` (default) or ``"vtu"``.
    """

    name: ClassVar[str] = "Mesh Writer"
    description: ClassVar[str] = "Write one NPZ or VTU file per mesh"

    def __init__(self, output_dir: str | os.PathLike[str], format: str = "npz") -> None:  # noqa: A002 - the user-facing name
        format = str(format).lower().lstrip(".")
        if format not in FORMATS:
            raise ValueError(f"MeshSink format must be one of {', '.join(FORMATS)}, got {format!r}.")
        self.output_dir = str(output_dir)
        self.format = format

    @classmethod
    def params(cls) -> list[Param]:
        return [
            Param("output_dir", str, description="Folder the mesh files are written to."),
            Param("format", str, "npz", "File format: npz or vtu."),
        ]

    def __call__(self, items: Iterable[Mesh], index: int) -> list[str]:
        folder = Path(self.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        meshes = list(items)
        paths = []
        for position, mesh in enumerate(meshes):
            stem = f"mesh_{index:06d}" if len(meshes) == 1 else f"mesh_{index:06d}_{position}"
            path = folder / f"{stem}.{self.format}"
            if self.format == "npz":
                write_npz(mesh, path)
            else:
                write_vtu(mesh, path)
            paths.append(str(path))
        return paths


def write_npz(mesh: Mesh, path: str | os.PathLike[str]) -> None:
    """Write ``mesh`` to an uncompressed ``.npz`` file at ``path``."""
    mesh = _as_mesh(mesh)
    arrays: dict[str, Any] = {
        "points": to_numpy(mesh.points),
        "cells": to_numpy(mesh.cells),
        "cell_type": np.array(mesh.cell_type),
        "metadata": np.array(json.dumps(mesh.metadata, default=str)),
    }
    for prefix, fields in (("point_data", mesh.point_data), ("cell_data", mesh.cell_data)):
        for key, value in fields.items():
            arrays[f"{prefix}/{key}"] = to_numpy(value)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load_npz(path: str | os.PathLike[str]) -> Mesh:
    """Read a mesh written by :func:`write_npz`."""
    with np.load(path, allow_pickle=False) as data:
        point_data = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("point_data/")}
        cell_data = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("cell_data/")}
        return Mesh(
            points=data["points"],
            cells=data["cells"],
            point_data=point_data,
            cell_data=cell_data,
            cell_type=str(data["cell_type"]),
            metadata=json.loads(str(data["metadata"])),
        )


def write_vtu(mesh: Mesh, path: str | os.PathLike[str]) -> None:
    """Write ``mesh`` as an ASCII VTK XML unstructured grid (``.vtu``)."""
    mesh = _as_mesh(mesh).to_numpy()
    points = mesh.points
    if points.shape[1] < 3:  # VTK points are always 3-D
        points = np.hstack([points, np.zeros((points.shape[0], 3 - points.shape[1]), dtype=points.dtype)])
    cells = mesh.cells.astype(np.int64)
    nodes, vtk_type = CELL_TYPES[mesh.cell_type]
    offsets = np.arange(1, mesh.n_cells + 1, dtype=np.int64) * nodes
    types = np.full(mesh.n_cells, vtk_type, dtype=np.uint8)

    out = io.StringIO()
    out.write('<?xml version="1.0"?>\n<VTKFile type="UnstructuredGrid" version="1.0" byte_order="LittleEndian" header_type="UInt64">\n')
    out.write(f'<UnstructuredGrid>\n<Piece NumberOfPoints="{mesh.n_points}" NumberOfCells="{mesh.n_cells}">\n')
    for tag, fields in (("PointData", mesh.point_data), ("CellData", mesh.cell_data)):
        out.write(f"<{tag}>\n")
        for key, value in fields.items():
            _data_array(out, np.asarray(value), name=str(key))
        out.write(f"</{tag}>\n")
    out.write("<Points>\n")
    _data_array(out, points, name="Points")
    out.write("</Points>\n<Cells>\n")
    _data_array(out, cells.reshape(-1), name="connectivity")
    _data_array(out, offsets, name="offsets")
    _data_array(out, types, name="types")
    out.write("</Cells>\n</Piece>\n</UnstructuredGrid>\n</VTKFile>\n")
    Path(path).write_text(out.getvalue())


def _data_array(out: io.StringIO, array: np.ndarray, name: str) -> None:
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    vtk_type = _VTK_TYPES.get(array.dtype.name)
    if vtk_type is None:
        raise TypeError(f"Cannot write field {name!r} of dtype {array.dtype} to VTU; cast it to a numeric type first.")
    components = int(np.prod(array.shape[1:])) if array.ndim > 1 else 1
    out.write(f'<DataArray type={quoteattr(vtk_type)} Name={quoteattr(name)} NumberOfComponents="{components}" format="ascii">\n')
    if array.dtype.kind == "f":
        fmt = "%.9g" if array.dtype == np.float32 else "%.17g"
    else:
        fmt = "%d"
    if array.size:
        np.savetxt(out, array.reshape(-1, components), fmt=fmt)
    out.write("</DataArray>\n")


def _as_mesh(item: Any) -> Mesh:
    if not isinstance(item, Mesh):
        raise TypeError(f"MeshSink writes physicsnemo_curator.domains.mesh.Mesh objects, got {type(item).__name__}.")
    return item
