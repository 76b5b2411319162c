"""The mesh container used by the built-in mesh components."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from physicsnemo_curator.domains.mesh._arrays import shape_of, to_numpy

CELL_TYPES: dict[str, tuple[int, int]] = {
    "vertex": (1, 1),
    "line": (2, 3),
    "triangle": (3, 5),
    "quad": (4, 9),
    "tetra": (4, 10),
    "pyramid": (5, 14),
    "wedge": (6, 13),
    "hexahedron": (8, 12),
}
"""Cell type name -> (nodes per cell, VTK cell type id)."""

_DEFAULT_CELL_TYPE = {1: "vertex", 2: "line", 3: "triangle", 4: "tetra", 5: "pyramid", 6: "wedge", 8: "hexahedron"}


class Mesh:
    """Points, cells and the fields defined on them.

    Arrays may be NumPy arrays or torch tensors; they are kept as given (a
    CUDA tensor stays on the GPU) and converted only where a component needs
    NumPy, e.g. for writing.

    Parameters
    ----------
    points : array of shape (n_points, n_dims)
        Point coordinates.
    cells : integer array of shape (n_cells, nodes_per_cell), optional
        Point indices of each cell; all cells have the same type.
    point_data, cell_data : mapping of str to array, optional
        Fields whose first dimension is ``n_points`` (``n_cells``).
    cell_type : str, optional
        One of :data:`CELL_TYPES`; inferred from the nodes per cell when absent
        (4 nodes means ``tetra``; pass ``"quad"`` for quadrilaterals).
    metadata : mapping, optional
        Free-form information; sources put the pipeline index under ``"index"``.

    Raises
    ------
    ValueError
        If an array's shape does not fit the points or cells.
    """

    def __init__(
        self,
        points: Any,
        cells: Any = None,
        point_data: Mapping[str, Any] | None = None,
        cell_data: Mapping[str, Any] | None = None,
        cell_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if cells is None:
            cells = np.empty((0, 3), dtype=np.int64)
        self.points = points
        self.cells = cells
        self.point_data: dict[str, Any] = dict(point_data or {})
        self.cell_data: dict[str, Any] = dict(cell_data or {})
        self.metadata: dict[str, Any] = dict(metadata or {})

        point_shape = shape_of(points)
        cell_shape = shape_of(cells)
        if len(point_shape) != 2:
            raise ValueError(f"Mesh points must have shape (n_points, n_dims), got {point_shape}.")
        if len(cell_shape) != 2:
            raise ValueError(f"Mesh cells must have shape (n_cells, nodes_per_cell), got {cell_shape}.")
        for kind, fields, expected in (("point_data", self.point_data, point_shape[0]), ("cell_data", self.cell_data, cell_shape[0])):
            for key, value in fields.items():
                shape = shape_of(value)
                if not shape or shape[0] != expected:
                    raise ValueError(
                        f"Mesh {kind}[{key!r}] has shape {shape}; its first dimension must be {expected} "
                        f"(the number of {'points' if kind == 'point_data' else 'cells'})."
                    )

        nodes = cell_shape[1]
        if cell_type is None:
            cell_type = _DEFAULT_CELL_TYPE.get(nodes)
            if cell_type is None and cell_shape[0]:
                raise ValueError(f"Cannot infer the cell type of cells with {nodes} nodes; pass cell_type= (one of {sorted(CELL_TYPES)}).")
        elif cell_type not in CELL_TYPES:
            raise ValueError(f"Unknown cell_type {cell_type!r}; use one of {sorted(CELL_TYPES)}.")
        elif CELL_TYPES[cell_type][0] != nodes and cell_shape[0]:
            raise ValueError(f"cell_type {cell_type!r} has {CELL_TYPES[cell_type][0]} nodes per cell but the cells have {nodes}.")
        self.cell_type = cell_type or "triangle"

    @property
    def n_points(self) -> int:
        return shape_of(self.points)[0]

    @property
    def n_cells(self) -> int:
        return shape_of(self.cells)[0]

    @property
    def n_dims(self) -> int:
        return shape_of(self.points)[1]

    def replace(self, **changes: Any) -> Mesh:
        """Return a new mesh with some attributes replaced (arrays are shared, not copied)."""
        values = {
            "points": self.points,
            "cells": self.cells,
            "point_data": self.point_data,
            "cell_data": self.cell_data,
            "cell_type": self.cell_type,
            "metadata": self.metadata,
        }
        values.update(changes)
        return Mesh(**values)

    def to_numpy(self) -> Mesh:
        """Return a copy whose arrays are all NumPy arrays."""
        return self.replace(
            points=to_numpy(self.points),
            cells=to_numpy(self.cells),
            point_data={k: to_numpy(v) for k, v in self.point_data.items()},
            cell_data={k: to_numpy(v) for k, v in self.cell_data.items()},
        )

    def __repr__(self) -> str:
        fields = ", ".join([*(f"point_data/{k}" for k in self.point_data), *(f"cell_data/{k}" for k in self.cell_data)])
        return f"Mesh(n_points={self.n_points}, n_cells={self.n_cells}, cell_type={self.cell_type!r}, fields=[{fields}])"
