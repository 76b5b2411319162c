"""A source of random triangle meshes, for trying pipelines without data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from physicsnemo_curator.core.base import Param, Source
from physicsnemo_curator.domains.mesh.container import Mesh


class RandomMeshSource(Source[Mesh]):
    """Reproducible random meshes: index ``i`` always yields the same mesh.

    Each mesh has ``n_points`` points in the unit cube, ``n_cells`` triangles
    over them, the point fields ``temperature`` (scalar) and ``velocity``
    (3 components), and the cell field ``pressure``.

    Parameters
    ----------
    n_samples : int
        Number of meshes (the source's length).
    n_points : int
        Points per mesh (at least 3).
    n_cells : int
        Triangles per mesh.
    seed : int
        Seed combined with the index, so runs are reproducible.
    """

    name: ClassVar[str] = "Random Meshes"
    description: ClassVar[str] = "Reproducible random triangle meshes with point and cell fields"

    def __init__(self, n_samples: int = 10, n_points: int = 100, n_cells: int = 50, seed: int = 0) -> None:
        if n_samples < 0:
            raise ValueError(f"n_samples must be zero or more, got {n_samples}.")
        if n_points < 3:
            raise ValueError(f"n_points must be at least 3 to form triangles, got {n_points}.")
        if n_cells < 0:
            raise ValueError(f"n_cells must be zero or more, got {n_cells}.")
        self.n_samples = int(n_samples)
        self.n_points = int(n_points)
        self.n_cells = int(n_cells)
        self.seed = int(seed)

    @classmethod
    def params(cls) -> list[Param]:
        return [
            Param("n_samples", int, 10, "Number of meshes."),
            Param("n_points", int, 100, "Points per mesh."),
            Param("n_cells", int, 50, "Triangles per mesh."),
            Param("seed", int, 0, "Random seed, combined with the index."),
        ]

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, index: int) -> Iterator[Mesh]:
        if not 0 <= index < self.n_samples:
            raise IndexError(f"RandomMeshSource has {self.n_samples} meshes; index {index} is out of range.")
        rng = np.random.default_rng([self.seed, index])
        points = rng.random((self.n_points, 3))
        cells = _distinct_triples(rng, self.n_points, self.n_cells)
        yield Mesh(
            points=points,
            cells=cells.astype(np.int64),
            point_data={
                "temperature": rng.normal(300.0, 15.0, self.n_points),
                "velocity": rng.normal(0.0, 1.0, (self.n_points, 3)),
            },
            cell_data={"pressure": rng.normal(101_325.0, 500.0, self.n_cells)},
            cell_type="triangle",
            metadata={"index": index, "source": self.name},
        )


def _distinct_triples(rng: np.random.Generator, n_points: int, n_cells: int) -> np.ndarray:
    """Draw ``n_cells`` triangles with three distinct corners each."""
    first = rng.integers(0, n_points, n_cells)
    second = (first + rng.integers(1, n_points, n_cells)) % n_points
    third = rng.integers(0, n_points - 2, n_cells)
    # Skip over the two points already used, keeping the draw uniform over the rest.
    low, high = np.minimum(first, second), np.maximum(first, second)
    third = third + (third >= low)
    third = third + (third >= high)
    return np.stack([first, second, third], axis=1)
