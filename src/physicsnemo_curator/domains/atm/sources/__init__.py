"""Sources of atomic structures read with ASE."""

from __future__ import annotations

from physicsnemo_curator.domains.atm.sources.structures import (
    ASECollectionSource,
    ASEDatabaseSource,
    StructureFolderSource,
    StructureReadError,
)

__all__ = ["ASECollectionSource", "ASEDatabaseSource", "StructureFolderSource", "StructureReadError"]
