"""Built-in atomistic components, built on ASE (install with ``pip install "physicsnemo-curator[atm]"``).

- Sources: :class:`ASECollectionSource` (the g2, s22 and dcdft collections
  shipped inside ASE), :class:`ASEDatabaseSource` (an ASE database file) and
  :class:`StructureFolderSource` (a folder of extxyz, cif, xyz, POSCAR, ...).
- Filters: :class:`AtomicStatsFilter` (per-structure statistics to Parquet)
  and :class:`SupercellRDFFilter` (supercells and radial distribution functions).
- Sink: :class:`StructureSink` (extxyz, or Zarr when ``zarr`` is installed).
"""

from __future__ import annotations

try:
    import ase  # noqa: F401 - fail here, with the extra to install, rather than deep inside a component
except ImportError as exc:
    raise ImportError('The atomistic components need ASE: pip install "physicsnemo-curator[atm]"') from exc

from physicsnemo_curator.domains.atm.filters.rdf import SupercellRDFFilter
from physicsnemo_curator.domains.atm.filters.stats import AtomicStatsFilter
from physicsnemo_curator.domains.atm.sinks.structure_writer import StructureSink
from physicsnemo_curator.domains.atm.sources.structures import (
    ASECollectionSource,
    ASEDatabaseSource,
    StructureFolderSource,
    StructureReadError,
)

__all__ = [
    "ASECollectionSource",
    "ASEDatabaseSource",
    "AtomicStatsFilter",
    "StructureFolderSource",
    "StructureReadError",
    "StructureSink",
    "SupercellRDFFilter",
]
