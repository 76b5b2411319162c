"""Per-structure statistics of atomic structures, accumulated to Parquet."""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.neighborlist import natural_cutoffs, neighbor_list

from physicsnemo_curator.core.base import Param
from physicsnemo_curator.domains.mesh._tabular import TabularStatsFilter, message_panel, read_tables

AMU_PER_A3_IN_G_PER_CM3 = 1.66053906660
"""One atomic mass unit per cubic Angstrom, in g/cm^3."""

NUMERIC_COLUMNS = (
    "n_atoms",
    "n_species",
    "mass",
    "cell_volume",
    "density",
    "bbox_volume",
    "min_distance",
    "mean_coordination",
    "radius_of_gyration",
)
"""The columns offered as scatter-plot axes, in menu order."""

_MIN_DISTANCE_CUTOFFS = (3.0, 6.0, 12.0, 24.0)


class AtomicStatsFilter(TabularStatsFilter[Atoms]):
    """Record statistics of every structure; pass the structure on unchanged.

    Columns (one row per structure, lengths in Angstrom, masses in amu):

    - ``index``, ``item``, ``name`` (from the source), ``formula`` (Hill order),
      ``n_atoms``, ``n_species``, ``species`` (JSON ``{"H": 2, "O": 1}``),
      ``mass``, ``periodic`` (periodic in all three directions);
    - ``cell_volume`` and ``density`` (g/cm^3), for periodic structures
      only (NaN otherwise); ``bbox_volume``, the volume of the axis-aligned
      box around the atoms;
    - ``min_distance``, the shortest interatomic distance (periodic images
      included; NaN for a lone atom);
    - ``mean_coordination``, the mean number of neighbours closer than the
      sum of ASE's covalent radii times ``coordination_scale``;
    - ``radius_of_gyration``, mass weighted; ``recorded_at``.

    Workers write shards; ``gather_pipeline`` merges them into ``output``.

    Parameters
    ----------
    output : str
        Path of the merged Parquet file.
    coordination_scale : float
        Factor on the covalent radii that defines a bond for the coordination number.
    """

    name: ClassVar[str] = "Atomic Statistics"
    description: ClassVar[str] = "Composition, volume, density, distances, coordination and radius of gyration per structure"

    def __init__(self, output: str, coordination_scale: float = 1.2) -> None:
        super().__init__(output)
        if coordination_scale <= 0:
            raise ValueError(f"coordination_scale must be positive, got {coordination_scale}.")
        self.coordination_scale = float(coordination_scale)

    @classmethod
    def params(cls) -> list[Param]:
        return [
            Param("output", str, description="Parquet file the merged per-structure statistics are written to."),
            Param("coordination_scale", float, 1.2, "Factor on covalent radii that defines a bond."),
        ]

    def row(self, item: Atoms) -> dict[str, Any]:
        return structure_stats(item, self.coordination_scale)

    @classmethod
    def dashboard_layout_hints(cls) -> dict[str, Any]:
        return {"min_height": 520, "sizing_mode": "stretch_width"}

    @classmethod
    def dashboard_panel(cls, artifact_paths: Sequence[str], selected_index: int | None = None) -> Any:
        """Scatter plot of two statistics over all structures, with the selected index highlighted.

        Two menus choose the x and y columns. The switch runs in the browser
        (a Bokeh ``CustomJS`` callback), so the view needs no server round
        trip and stays interactive when saved as a static page. Returns a
        Panel message when there is nothing readable to show.
        """
        import panel as pn

        if not artifact_paths:
            return message_panel("No atomic statistics recorded yet.", "AtomicStatsFilter writes its Parquet rows as structures complete.")
        table, problems = read_tables(artifact_paths)
        if table is None or table.num_rows == 0:
            return message_panel("The atomic statistics could not be read.", "\n".join(problems) or "The Parquet files hold no rows.")
        frame = table.to_pandas()
        axes = [c for c in NUMERIC_COLUMNS if c in frame.columns and frame[c].notna().any()]
        if len(axes) < 2:
            return message_panel("The atomic statistics have too few numeric columns to plot.", f"Columns: {', '.join(map(str, frame.columns))}")
        x = "n_atoms" if "n_atoms" in axes else axes[0]
        y = "min_distance" if "min_distance" in axes else axes[1]
        selected = frame["index"] == selected_index if selected_index is not None and "index" in frame.columns else None

        if selected is None:
            caption = f"{len(frame)} structures"
        elif not selected.any():
            caption = f"{len(frame)} structures; index {selected_index} has no statistics"
        else:
            first = frame[selected].iloc[0]
            caption = f"{len(frame)} structures; index {selected_index}: {first.get('name', '')} ({first.get('formula', '')}, {int(first['n_atoms'])} atoms)"
        parts: list[Any] = [
            pn.pane.HTML(f"<h3 style='margin: 0'>Atomic statistics</h3><div>{html.escape(caption)}</div>", sizing_mode="stretch_width"),
            pn.pane.Bokeh(_scatter(frame, axes, x, y, selected, selected_index), sizing_mode="stretch_width"),
        ]
        if problems:
            parts.append(message_panel(f"{len(problems)} artifact file(s) could not be read.", "\n".join(problems)))
        return pn.Column(*parts, sizing_mode="stretch_width", name="Atomic Statistics")


# The menus copy the chosen column into the plotted one, in every source of the plot.
_SWITCH_AXIS = """
const column = cb_obj.value;
for (const source of sources) {
    source.data = Object.assign({}, source.data, {[target]: source.data[column]});
}
axis.axis_label = column;
"""


def _scatter(frame: Any, axes: list[str], x: str, y: str, selected: Any, selected_index: int | None) -> Any:
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, CustomJS, HoverTool, Select
    from bokeh.plotting import figure

    labels = [c for c in ("index", "name", "formula") if c in frame.columns]

    def source_of(rows: Any) -> Any:
        data = {c: rows[c].to_numpy() for c in [*labels, *axes]}
        data["_x"] = rows[x].to_numpy()
        data["_y"] = rows[y].to_numpy()
        return ColumnDataSource(data)

    sources = [source_of(frame)]
    plot = figure(height=380, sizing_mode="stretch_width", x_axis_label=x, y_axis_label=y, tools="pan,wheel_zoom,box_zoom,reset,save")
    plot.scatter("_x", "_y", source=sources[0], size=7, color="#76b900", alpha=0.6, legend_label="structures")
    if selected is not None and selected.any():
        sources.append(source_of(frame[selected]))
        plot.scatter("_x", "_y", source=sources[1], size=16, marker="diamond", color="#d62728", line_color="black", legend_label=f"index {selected_index}")
    plot.legend.location = "top_left"
    plot.add_tools(HoverTool(tooltips=[*((c, f"@{{{c}}}") for c in labels), ("x", "@_x"), ("y", "@_y")]))

    menus = []
    for name, value, target, axis in (("x", x, "_x", plot.xaxis[0]), ("y", y, "_y", plot.yaxis[0])):
        menu = Select(title=name, value=value, options=list(axes), width=180)
        menu.js_on_change("value", CustomJS(args={"sources": sources, "target": target, "axis": axis}, code=_SWITCH_AXIS))
        menus.append(menu)
    return column(row(*menus), plot, sizing_mode="stretch_width")


def structure_stats(atoms: Atoms, coordination_scale: float = 1.2) -> dict[str, Any]:
    """Return the statistics of one structure (see :class:`AtomicStatsFilter` for the columns)."""
    n_atoms = len(atoms)
    symbols = atoms.get_chemical_symbols()
    masses = atoms.get_masses()
    mass = float(masses.sum())
    periodic = bool(atoms.pbc.all()) and atoms.cell.rank == 3
    positions = atoms.positions
    extent = positions.max(axis=0) - positions.min(axis=0) if n_atoms else np.zeros(3)
    cell_volume = float(atoms.cell.volume) if periodic else math.nan
    return {
        "name": str(atoms.info.get("psnc_name") or atoms.get_chemical_formula()),
        "formula": atoms.get_chemical_formula(),
        "n_atoms": n_atoms,
        "n_species": len(set(symbols)),
        "species": json.dumps(dict(sorted(Counter(symbols).items()))),
        "mass": mass,
        "periodic": periodic,
        "cell_volume": cell_volume,
        "density": mass / cell_volume * AMU_PER_A3_IN_G_PER_CM3 if periodic and cell_volume > 0 else math.nan,
        "bbox_volume": float(np.prod(extent)),
        "min_distance": min_distance(atoms),
        "mean_coordination": mean_coordination(atoms, coordination_scale),
        "radius_of_gyration": radius_of_gyration(atoms),
    }


def min_distance(atoms: Atoms) -> float:
    """Return the shortest distance between two atoms (periodic images included), or NaN."""
    n_atoms = len(atoms)
    if n_atoms == 0:
        return math.nan
    if not atoms.pbc.any():
        if n_atoms < 2:
            return math.nan
        if n_atoms <= 2000:
            diff = atoms.positions[:, None, :] - atoms.positions[None, :, :]
            distances = np.sqrt((diff**2).sum(axis=-1))
            return float(distances[np.triu_indices(n_atoms, k=1)].min())
    for cutoff in _MIN_DISTANCE_CUTOFFS:
        distances = neighbor_list("d", atoms, cutoff)
        if distances.size:
            return float(distances.min())
    return math.nan


def mean_coordination(atoms: Atoms, scale: float = 1.2) -> float:
    """Return the mean number of bonded neighbours per atom (covalent radii times ``scale``)."""
    n_atoms = len(atoms)
    if n_atoms == 0:
        return math.nan
    first = neighbor_list("i", atoms, natural_cutoffs(atoms, mult=scale))
    return float(first.size / n_atoms)


def radius_of_gyration(atoms: Atoms) -> float:
    """Return the mass-weighted radius of gyration of the atoms as positioned (no unwrapping)."""
    if len(atoms) == 0:
        return math.nan
    masses = atoms.get_masses()
    centre = masses @ atoms.positions / masses.sum()
    squared = ((atoms.positions - centre) ** 2).sum(axis=1)
    return float(math.sqrt(masses @ squared / masses.sum()))
