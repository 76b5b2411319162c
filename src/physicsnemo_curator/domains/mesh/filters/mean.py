"""Per-field spatial means of meshes, accumulated to Parquet."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any, ClassVar

from physicsnemo_curator.core.base import Param
from physicsnemo_curator.domains.mesh._arrays import field_mean
from physicsnemo_curator.domains.mesh._tabular import TabularStatsFilter, holoviews_bokeh, message_panel, read_tables

FIELD_PREFIXES = ("point_data/", "cell_data/")


class MeanFilter(TabularStatsFilter[Any]):
    """Record the mean of every point and cell field of each mesh; pass the mesh on unchanged.

    Works on :class:`~physicsnemo_curator.domains.mesh.Mesh` and on any
    object with ``point_data`` and ``cell_data`` mappings (a pyvista mesh,
    for example). Fields may be NumPy arrays or torch tensors; the mean runs
    over all entries (all components of a vector field) in float64.

    One row per mesh with the columns ``index``, ``item``, ``n_points``,
    ``n_cells``, ``point_data/<name>``, ``cell_data/<name>`` and
    ``recorded_at``. Workers write shards (see :mod:`._tabular`);
    ``gather_pipeline`` merges them into ``output``.

    Parameters
    ----------
    output : str
        Path of the merged Parquet file.

    Examples
    --------
    >>> pipeline = RandomMeshSource(4, 100, 50).filter(MeanFilter(output="out/means.parquet"))  # doctest: +SKIP
    """

    name: ClassVar[str] = "Mean Statistics"
    description: ClassVar[str] = "Spatial mean of every point and cell field, saved to Parquet"

    @classmethod
    def params(cls) -> list[Param]:
        return [Param("output", str, description="Parquet file the merged per-mesh means are written to.")]

    def row(self, item: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"n_points": _count(item, "n_points", "points"), "n_cells": _count(item, "n_cells", "cells")}
        for prefix, attribute in (("point_data/", "point_data"), ("cell_data/", "cell_data")):
            fields = getattr(item, attribute, None)
            if fields is None:
                continue
            if not hasattr(fields, "keys"):
                raise TypeError(f"MeanFilter needs {attribute} to be a mapping of field name to array, got {type(fields).__name__}.")
            for key in list(fields.keys()):
                mean = field_mean(fields[key])
                if mean is not None:
                    row[f"{prefix}{key}"] = mean
        return row

    @classmethod
    def dashboard_layout_hints(cls) -> dict[str, Any]:
        return {"min_height": 460, "sizing_mode": "stretch_width"}

    @classmethod
    def dashboard_panel(cls, artifact_paths: Sequence[str], selected_index: int | None = None) -> Any:
        """Bar chart of the selected index's field means, above a per-field overview table.

        With no index selected the bars show the average over all meshes.
        Returns a Panel message when there is nothing readable to show.
        """
        import pandas as pd
        import panel as pn

        if not artifact_paths:
            return message_panel("No mean statistics recorded yet.", "MeanFilter writes its Parquet rows as indices complete.")
        table, problems = read_tables(artifact_paths)
        if table is None or table.num_rows == 0:
            return message_panel("The mean statistics could not be read.", "\n".join(problems) or "The Parquet files hold no rows.")
        hv = holoviews_bokeh()
        frame = table.to_pandas()
        fields = [c for c in frame.columns if c.startswith(FIELD_PREFIXES)]
        if not fields:
            return message_panel("The mean statistics have no field columns.", f"Columns: {', '.join(map(str, frame.columns))}")

        if selected_index is None:
            values = frame[fields].mean()
            title = f"Mean of field means over {len(frame)} meshes"
        else:
            rows = frame[frame["index"] == selected_index] if "index" in frame.columns else frame.iloc[0:0]
            if rows.empty:
                values = None
                title = f"Index {selected_index} has no mean statistics"
            else:
                values = rows[fields].mean()
                title = f"Field means of index {selected_index}" + (f" ({len(rows)} meshes)" if len(rows) > 1 else "")

        overview = pd.DataFrame(
            {
                "field": fields,
                "mean over meshes": [frame[f].mean() for f in fields],
                "min": [frame[f].min() for f in fields],
                "max": [frame[f].max() for f in fields],
                "meshes": [int(frame[f].notna().sum()) for f in fields],
            }
        )
        parts: list[Any] = [pn.pane.HTML(f"<h3 style='margin: 0'>{html.escape(title)}</h3>", sizing_mode="stretch_width")]
        if values is not None:
            data = pd.DataFrame({"field": fields, "mean": values.astype(float).to_numpy()})
            bars = hv.Bars(data, kdims=["field"], vdims=["mean"]).opts(
                color="#76b900", responsive=True, height=320, xrotation=30, tools=["hover"], title="", backend="bokeh"
            )
            parts.append(pn.pane.HoloViews(bars, backend="bokeh", sizing_mode="stretch_width", height=340))
        if problems:
            parts.append(message_panel(f"{len(problems)} artifact file(s) could not be read.", "\n".join(problems)))
        parts.append(pn.pane.DataFrame(overview, index=False, escape=True, sizing_mode="stretch_width"))
        return pn.Column(*parts, sizing_mode="stretch_width", name="Mean Statistics")


def _count(item: Any, attribute: str, array_attribute: str) -> int | None:
    value = getattr(item, attribute, None)
    if isinstance(value, (int, float)):
        return int(value)
    array = getattr(item, array_attribute, None)
    shape = getattr(array, "shape", None)
    return int(shape[0]) if shape else None
