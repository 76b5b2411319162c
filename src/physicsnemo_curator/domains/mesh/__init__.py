"""Built-in mesh components: a mesh container, a random source, mean and precision filters, a writer.

Importing this package needs only NumPy; Parquet output needs ``pyarrow``
and the dashboard views need Panel, both imported where they are used.
"""

from __future__ import annotations

from physicsnemo_curator.domains.mesh.container import CELL_TYPES, Mesh

__all__ = ["CELL_TYPES", "Mesh"]
