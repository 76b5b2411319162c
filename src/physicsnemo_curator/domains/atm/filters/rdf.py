"""Supercells of periodic structures and radial distribution functions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import ClassVar

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

from physicsnemo_curator.core.base import Filter, Param


class SupercellRDFFilter(Filter[Atoms]):
    """Expand periodic structures to a supercell and attach their radial distribution function.

    A periodic structure is repeated along its lattice vectors until it has
    at least ``target_atoms`` atoms, each step growing the direction whose
    supercell is thinnest, so the result is as close to isotropic as the
    lattice allows. Its RDF :math:`g(r)` is computed from a neighbour list up
    to ``r_max``. A molecule (not periodic) is kept as it is and gets its
    neighbour number density :math:`n(r)` (per atom, per cubic Angstrom)
    instead, since :math:`g(r)` needs a bulk density.

    Results go to ``atoms.info``: ``supercell`` (repetitions along a, b, c),
    ``rdf_r`` (bin centres, Angstrom), ``rdf``, ``rdf_kind`` (``"g(r)"`` or
    ``"n(r)"``) and ``rdf_first_peak`` (the ``r`` of the first peak, see
    :func:`first_peak`).

    Parameters
    ----------
    target_atoms : int
        Minimum number of atoms of a supercell.
    r_max : float
        Largest distance of the RDF, in Angstrom.
    n_bins : int
        Number of RDF bins.
    keep_supercell : bool
        Yield the supercell (default) or the original structure with the RDF attached.
    """

    name: ClassVar[str] = "Supercell + RDF"
    description: ClassVar[str] = "Repeat periodic cells to a target size and compute radial distribution functions"

    def __init__(self, target_atoms: int = 500, r_max: float = 6.0, n_bins: int = 120, keep_supercell: bool = True) -> None:
        if target_atoms < 1:
            raise ValueError(f"target_atoms must be at least 1, got {target_atoms}.")
        if r_max <= 0 or n_bins < 1:
            raise ValueError(f"r_max must be positive and n_bins at least 1, got r_max={r_max}, n_bins={n_bins}.")
        self.target_atoms = int(target_atoms)
        self.r_max = float(r_max)
        self.n_bins = int(n_bins)
        self.keep_supercell = bool(keep_supercell)

    @classmethod
    def params(cls) -> list[Param]:
        return [
            Param("target_atoms", int, 500, "Minimum atoms of a supercell."),
            Param("r_max", float, 6.0, "Largest RDF distance (Angstrom)."),
            Param("n_bins", int, 120, "Number of RDF bins."),
            Param("keep_supercell", bool, True, "Yield the supercell rather than the original structure."),
        ]

    def __call__(self, items: Iterable[Atoms]) -> Iterator[Atoms]:
        for atoms in items:
            yield self.process(atoms)

    def process(self, atoms: Atoms) -> Atoms:
        """Return the supercell (or a copy of ``atoms``) with the RDF in ``info``."""
        periodic = bool(atoms.pbc.all()) and atoms.cell.rank == 3
        repetitions = supercell_repetitions(atoms.cell.array, len(atoms), self.target_atoms) if periodic else (1, 1, 1)
        work = atoms.repeat(repetitions) if repetitions != (1, 1, 1) else atoms.copy()
        r, values = radial_distribution(work, self.r_max, self.n_bins)
        out = work if self.keep_supercell else atoms.copy()
        out.info["supercell"] = np.array(repetitions)
        out.info["rdf_r"] = r
        out.info["rdf"] = values
        out.info["rdf_kind"] = "g(r)" if periodic else "n(r)"
        out.info["rdf_first_peak"] = first_peak(r, values)
        return out


def supercell_repetitions(cell: np.ndarray, n_atoms: int, target_atoms: int) -> tuple[int, int, int]:
    """Return repetitions ``(na, nb, nc)`` giving at least ``target_atoms`` atoms, growing the thinnest direction first."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(float(np.linalg.det(cell)))
    if n_atoms == 0 or volume == 0:
        return (1, 1, 1)
    # Height of the cell along each lattice vector: volume over the area of the opposite face.
    heights = np.array([volume / np.linalg.norm(np.cross(cell[(j + 1) % 3], cell[(j + 2) % 3])) for j in range(3)])
    repetitions = np.ones(3, dtype=int)
    while n_atoms * int(repetitions.prod()) < target_atoms:
        repetitions[int(np.argmin(heights * repetitions))] += 1
    return (int(repetitions[0]), int(repetitions[1]), int(repetitions[2]))


def first_peak(r: np.ndarray, values: np.ndarray, fraction: float = 0.25) -> float:
    """Return the ``r`` of the first local maximum at least ``fraction`` of the highest value, or NaN."""
    if not values.size or values.max() <= 0:
        return math.nan
    threshold = fraction * values.max()
    padded = np.concatenate([[-np.inf], values, [-np.inf]])
    peaks = np.flatnonzero((values >= threshold) & (values >= padded[:-2]) & (values >= padded[2:]))
    return float(r[peaks[0]])


def radial_distribution(atoms: Atoms, r_max: float, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Return bin centres and g(r) (periodic structures) or n(r) (others) up to ``r_max``."""
    edges = np.linspace(0.0, r_max, n_bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    n_atoms = len(atoms)
    if n_atoms == 0:
        return centres, np.zeros(n_bins)
    distances = neighbor_list("d", atoms, r_max)  # every pair twice, once from each atom
    counts, _ = np.histogram(distances, bins=edges)
    shells = 4.0 / 3.0 * math.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    density_at_r = counts / n_atoms / shells
    if bool(atoms.pbc.all()) and atoms.cell.rank == 3:
        return centres, density_at_r / (n_atoms / atoms.cell.volume)
    return centres, density_at_r
