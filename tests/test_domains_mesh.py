"""Built-in mesh components: container, random source, MeanFilter, PrecisionFilter, MeshSink, the example."""

from __future__ import annotations

import pickle
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from physicsnemo_curator import Pipeline, gather_pipeline, run_pipeline
from physicsnemo_curator.core.config import config_hash
from physicsnemo_curator.core.pipeline_store import PipelineStore
from physicsnemo_curator.domains.mesh import Mesh
from physicsnemo_curator.domains.mesh._tabular import TabularStatsFilter, read_tables, rows_to_table, shard_dir, write_table_atomic
from physicsnemo_curator.domains.mesh.filters.mean import MeanFilter
from physicsnemo_curator.domains.mesh.filters.precision import PrecisionFilter
from physicsnemo_curator.domains.mesh.sinks.mesh_writer import MeshSink, load_npz
from physicsnemo_curator.domains.mesh.sources.random import RandomMeshSource

pq = pytest.importorskip("pyarrow.parquet")

REPO = Path(__file__).resolve().parents[1]


def _numpy_means(mesh: Mesh) -> dict[str, float]:
    """The expected MeanFilter row, computed with plain NumPy."""
    expected = {f"point_data/{k}": float(np.mean(np.asarray(v))) for k, v in mesh.point_data.items()}
    expected.update({f"cell_data/{k}": float(np.mean(np.asarray(v))) for k, v in mesh.cell_data.items()})
    return expected


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _assert_each_shard_has_one_writer(pipeline: Pipeline, shards: list[Path]) -> None:
    """Each shard holds only rows of indices that its own worker ran; every worker that ran wrote its own."""
    with PipelineStore.from_db(pipeline.db_path) as store:
        pid_of_worker = {w["worker_id"]: w["pid"] for w in store.workers()}
        pid_of_index = {m.index: pid_of_worker[m.worker_id] for m in store.metrics().indices}
    shard_pids = set()
    for shard in shards:
        pid = int(shard.stem.rsplit("-", 3)[1])  # <host>-<pid>-<token>-<n>
        assert {pid_of_index[i] for i in pq.read_table(shard).column("index").to_pylist()} == {pid}
        shard_pids.add(pid)
    assert shard_pids == set(pid_of_index.values())


# -- container and source -------------------------------------------------


def test_mesh_components_import_with_numpy_only():
    code = (
        "import sys\n"
        "import physicsnemo_curator.domains.mesh.filters.mean, physicsnemo_curator.domains.mesh.filters.precision\n"
        "import physicsnemo_curator.domains.mesh.sinks.mesh_writer, physicsnemo_curator.domains.mesh.sources.random\n"
        "print(sorted(m for m in ('pyarrow', 'pandas', 'panel', 'holoviews', 'bokeh', 'torch', 'ase') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_mesh_checks_shapes_against_points_and_cells():
    points = np.zeros((4, 3))
    cells = np.array([[0, 1, 2], [1, 2, 3]])
    mesh = Mesh(points, cells, point_data={"t": np.ones(4)}, cell_data={"p": np.ones(2)})
    assert (mesh.n_points, mesh.n_cells, mesh.cell_type) == (4, 2, "triangle")
    assert "point_data/t" in repr(mesh)

    with pytest.raises(ValueError, match=r"point_data\['t'\] has shape \(3,\); its first dimension must be 4"):
        Mesh(points, cells, point_data={"t": np.ones(3)})
    with pytest.raises(ValueError, match=r"cell_data\['p'\].*must be 2 \(the number of cells\)"):
        Mesh(points, cells, cell_data={"p": np.ones(5)})
    with pytest.raises(ValueError, match="points must have shape"):
        Mesh(np.zeros(4))
    with pytest.raises(ValueError, match="Unknown cell_type 'hexagon'"):
        Mesh(points, cells, cell_type="hexagon")
    assert Mesh(points, np.array([[0, 1, 2, 3]]), cell_type="quad").cell_type == "quad"


def test_random_source_is_reproducible_and_checks_its_range():
    source = RandomMeshSource(n_samples=3, n_points=40, n_cells=25, seed=7)
    first = next(iter(source[1]))
    again = next(iter(RandomMeshSource(n_samples=3, n_points=40, n_cells=25, seed=7)[1]))
    other = next(iter(source[2]))

    assert len(source) == 3
    assert (first.n_points, first.n_cells) == (40, 25)
    assert first.metadata["index"] == 1
    np.testing.assert_array_equal(first.points, again.points)
    assert not np.array_equal(first.points, other.points)
    # Every triangle has three distinct corners that exist.
    assert all(len(set(cell)) == 3 for cell in first.cells.tolist())
    assert first.cells.min() >= 0
    assert first.cells.max() < 40
    with pytest.raises(IndexError, match="index 3 is out of range"):
        next(iter(source[3]))
    with pytest.raises(ValueError, match="n_points must be at least 3"):
        RandomMeshSource(n_points=2)


# -- MeanFilter -----------------------------------------------------------


@pytest.mark.parametrize("backend, n_jobs", [("sequential", 1), ("process_pool", 2)])
def test_mean_filter_matches_numpy_means(tmp_path, backend, n_jobs):
    source = RandomMeshSource(n_samples=9, n_points=57, n_cells=31, seed=3)
    output = tmp_path / "stats" / "means.parquet"
    pipeline = Pipeline(source=source, filters=[MeanFilter(output=str(output))], sink=MeshSink(str(tmp_path / "meshes")), db_dir=str(tmp_path))

    results = run_pipeline(pipeline, n_jobs=n_jobs, backend=backend, progress=False)
    merged = gather_pipeline(pipeline)

    assert all(r is not None for r in results)
    assert merged == {MeanFilter.name: [str(output)]}
    rows = _rows(output)
    assert [r["index"] for r in rows] == list(range(9))
    for row in rows:
        mesh = next(iter(source[row["index"]]))
        assert row["n_points"] == 57
        assert row["n_cells"] == 31
        for key, value in _numpy_means(mesh).items():
            assert row[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key

    # Every index reported the shard that contains its row, and each worker wrote its own shards.
    for index in range(9):
        (shard,) = pipeline.filter_artifacts_for_index(index)[MeanFilter.name]
        assert index in [r["index"] for r in _rows(Path(shard))]
    _assert_each_shard_has_one_writer(pipeline, sorted(shard_dir(output).glob("*.parquet")))


def test_mean_filter_accepts_any_object_with_field_mappings(tmp_path):
    pressure = np.arange(12, dtype=np.float32).reshape(4, 3)
    item = SimpleNamespace(
        points=np.zeros((5, 3)),
        point_data={"u": np.array([1.0, 2.0, 3.0, 4.0, 10.0]), "label": np.array(["a"] * 5)},
        cell_data={"p": pressure, "empty": np.zeros((0,))},
    )
    flt = MeanFilter(output=str(tmp_path / "m.parquet"))

    assert list(flt([item])) == [item]
    (path,) = flt.flush()
    (row,) = _rows(Path(path))
    assert row["point_data/u"] == pytest.approx(4.0)
    assert row["cell_data/p"] == pytest.approx(float(pressure.mean()))
    assert row["n_points"] == 5
    assert row["index"] is None
    assert "point_data/label" not in row
    assert "cell_data/empty" not in row


def test_mean_filter_accepts_torch_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    temperature = torch.rand(50, generator=generator, dtype=torch.float32) * 300
    velocity = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    ids = torch.arange(20)
    mesh = Mesh(
        torch.rand(50, 3, generator=generator),
        torch.randint(0, 50, (20, 3), generator=generator),
        point_data={"T": temperature, "v": velocity},
        cell_data={"id": ids},
        metadata={"index": 4},
    )
    flt = MeanFilter(output=str(tmp_path / "m.parquet"))

    list(flt([mesh]))
    (path,) = flt.flush()
    (row,) = _rows(Path(path))
    assert row["index"] == 4
    assert row["point_data/T"] == pytest.approx(float(np.mean(temperature.numpy().astype(np.float64))), rel=1e-9)
    assert row["point_data/v"] == pytest.approx(float(np.mean(velocity.numpy())), rel=1e-12)
    assert row["cell_data/id"] == pytest.approx(9.5)

    cast = PrecisionFilter("float16").cast(mesh)
    assert cast.point_data["v"].dtype == torch.float16
    assert isinstance(cast.point_data["v"], torch.Tensor)
    assert cast.cell_data["id"].dtype == torch.int64


def test_mean_filter_keeps_newest_rerun_row(tmp_path):
    output = tmp_path / "means.parquet"
    old = tmp_path / "old.parquet"
    new = tmp_path / "new.parquet"
    first_run = [{"index": 0, "item": 0, "point_data/u": 1.0, "recorded_at": 1.0}, {"index": 1, "item": 0, "point_data/u": 5.0, "recorded_at": 1.0}]
    write_table_atomic(rows_to_table(first_run), old)
    write_table_atomic(rows_to_table([{"index": 0, "item": 0, "point_data/u": 2.0, "recorded_at": 2.0}]), new)

    assert MeanFilter.merge([str(new), str(old), str(tmp_path / "gone.parquet")], {"output": str(output)}) == [str(output)]
    assert [(r["index"], r["point_data/u"]) for r in _rows(output)] == [(0, 2.0), (1, 5.0)]
    assert MeanFilter.merge([], {"output": str(output)}) == []
    with pytest.raises(ValueError, match="needs the filter's output path"):
        MeanFilter.merge([str(old)], {})


class _SinkFailingOn(MeshSink):
    def __init__(self, output_dir: str, bad: int) -> None:
        super().__init__(output_dir)
        self.bad = bad

    def __call__(self, items, index):
        if index == self.bad:
            raise OSError(f"disk full while writing mesh {index}")
        return super().__call__(items, index)


def test_mean_drops_rows_of_failed_index(tmp_path):
    output = tmp_path / "means.parquet"
    pipeline = Pipeline(
        source=RandomMeshSource(5, 10, 4), filters=[MeanFilter(output=str(output))], sink=_SinkFailingOn(str(tmp_path / "out"), bad=2), db_dir=str(tmp_path)
    )

    run_pipeline(pipeline, on_error="continue", progress=False)
    gather_pipeline(pipeline)

    assert pipeline.failed_indices == [2]
    assert [r["index"] for r in _rows(output)] == [0, 1, 3, 4]


def test_tabular_filter_copies_start_with_fresh_worker_state(tmp_path):
    flt = MeanFilter(output=str(tmp_path / "m.parquet"))
    list(flt(RandomMeshSource(2, 10, 5)[0]))
    first = flt.artifacts()
    clone = pickle.loads(pickle.dumps(flt))

    assert clone.output == flt.output
    assert clone.artifacts() == []
    assert clone.flush() == []
    list(clone(RandomMeshSource(2, 10, 5)[1]))
    assert clone.artifacts() != first  # a copy in another worker never writes this worker's shard
    assert flt.flush() == first
    # After a flush the next rows start a new shard rather than overwrite the flushed one.
    list(flt(RandomMeshSource(2, 10, 5)[1]))
    assert flt.artifacts() != first


def test_tabular_filter_requires_row():
    class NoRow(TabularStatsFilter):
        pass

    with pytest.raises(NotImplementedError, match="NoRow must implement row"):
        list(NoRow(output="x.parquet")([1]))


# -- PrecisionFilter and MeshSink ------------------------------------------


def test_precision_filter_casts_floats_only():
    mesh = next(iter(RandomMeshSource(1, 20, 10)[0]))
    mesh.point_data["flag"] = np.arange(20, dtype=np.int32)
    (cast,) = list(PrecisionFilter(target_dtype="float32")([mesh]))

    assert cast.points.dtype == np.float32
    assert cast.point_data["temperature"].dtype == np.float32
    assert cast.cell_data["pressure"].dtype == np.float32
    assert cast.cells.dtype == np.int64
    assert cast.point_data["flag"].dtype == np.int32
    assert mesh.points.dtype == np.float64
    np.testing.assert_allclose(cast.points, mesh.points, rtol=1e-6)

    other = SimpleNamespace(point_data={"u": np.ones(3)}, cell_data={})
    assert PrecisionFilter("float16").cast(other).point_data["u"].dtype == np.float16
    with pytest.raises(ValueError, match="must be one of float16, float32, float64, got 'int8'"):
        PrecisionFilter("int8")
    with pytest.raises(TypeError, match="needs a Mesh or an object with point_data"):
        PrecisionFilter().cast(42)


def test_mesh_sink_npz_round_trip(tmp_path):
    meshes = [next(iter(RandomMeshSource(2, 15, 6)[i])) for i in range(2)]
    sink = MeshSink(output_dir=str(tmp_path / "out"))

    (single,) = sink(iter(meshes[:1]), 3)
    pair = sink(iter(meshes), 4)

    assert Path(single).name == "mesh_000003.npz"
    assert [Path(p).name for p in pair] == ["mesh_000004_0.npz", "mesh_000004_1.npz"]
    back = load_npz(pair[1])
    np.testing.assert_array_equal(back.points, meshes[1].points)
    np.testing.assert_array_equal(back.cells, meshes[1].cells)
    np.testing.assert_array_equal(back.point_data["velocity"], meshes[1].point_data["velocity"])
    assert back.metadata["index"] == 1
    assert back.cell_type == "triangle"
    with pytest.raises(ValueError, match="format must be one of npz, vtu"):
        MeshSink(str(tmp_path), format="stl")


def test_mesh_sink_writes_vtk_xml_unstructured_grids(tmp_path):
    mesh = next(iter(RandomMeshSource(1, 12, 5)[0]))
    (path,) = MeshSink(output_dir=str(tmp_path), format="vtu")(iter([mesh]), 0)

    piece = ET.parse(path).getroot().find("UnstructuredGrid/Piece")
    assert piece.get("NumberOfPoints") == "12"
    assert piece.get("NumberOfCells") == "5"

    def array(xpath: str) -> np.ndarray:
        element = piece.find(xpath)
        return np.array(element.text.split(), dtype=float).reshape(-1, int(element.get("NumberOfComponents")))

    np.testing.assert_allclose(array("Points/DataArray"), mesh.points)
    np.testing.assert_allclose(array("PointData/DataArray[@Name='velocity']"), mesh.point_data["velocity"])
    np.testing.assert_allclose(array("CellData/DataArray[@Name='pressure']")[:, 0], mesh.cell_data["pressure"])
    np.testing.assert_array_equal(array("Cells/DataArray[@Name='connectivity']")[:, 0], mesh.cells.reshape(-1))
    np.testing.assert_array_equal(array("Cells/DataArray[@Name='offsets']")[:, 0], [3, 6, 9, 12, 15])
    np.testing.assert_array_equal(array("Cells/DataArray[@Name='types']")[:, 0], [5] * 5)


def test_mesh_pipeline_round_trips_through_save_and_load(tmp_path):
    pipeline = (
        RandomMeshSource(n_samples=4, n_points=30, n_cells=10, seed=5)
        .filter(MeanFilter(output=str(tmp_path / "m.parquet")))
        .filter(PrecisionFilter(target_dtype="float16"))
        .write(MeshSink(output_dir=str(tmp_path / "out"), format="vtu"))
    )
    for path in (tmp_path / "p.yaml", tmp_path / "p.json"):
        loaded = Pipeline.load(pipeline.save(path))
        assert loaded.config() == pipeline.config()
        assert config_hash(loaded.config()) == pipeline.config_hash
        assert loaded.sink.format == "vtu"
        assert loaded.filters[1].target_dtype == "float16"
    for component in (pipeline.source, *pipeline.filters, pipeline.sink):
        assert component.name
        assert component.description
        assert [p.name for p in component.params()] == list(component.config())


# -- dashboard panel --------------------------------------------------------


def _mean_artifacts(tmp_path: Path) -> list[str]:
    pipeline = Pipeline(source=RandomMeshSource(5, 20, 8), filters=[MeanFilter(output=str(tmp_path / "m.parquet"))], db_dir=str(tmp_path))
    run_pipeline(pipeline, progress=False)
    return pipeline.all_filter_artifacts()[MeanFilter.name]


def test_mean_dashboard_panel_shows_bars_and_table(tmp_path):
    pn = pytest.importorskip("panel")
    paths = _mean_artifacts(tmp_path)

    for selected in (None, 2):
        view = MeanFilter.dashboard_panel(paths, selected_index=selected)
        assert isinstance(view, pn.viewable.Viewable)
        kinds = [type(part).__name__ for part in view]
        assert kinds == ["HTML", "HoloViews", "DataFrame"]
        bars = view[1].object
        assert type(bars).__name__ == "Bars"
        assert sorted(bars.data["field"]) == ["cell_data/pressure", "point_data/temperature", "point_data/velocity"]
        view.get_root()  # builds the Bokeh models, as a served page would

    mesh = next(iter(RandomMeshSource(5, 20, 8)[2]))
    bars = MeanFilter.dashboard_panel(paths, selected_index=2)[1].object
    shown = dict(zip(bars.data["field"], bars.data["mean"], strict=True))
    for key, value in _numpy_means(mesh).items():
        assert shown[key] == pytest.approx(value)
    assert "Field means of index 2" in MeanFilter.dashboard_panel(paths, selected_index=2)[0].object
    assert "Index 99 has no mean statistics" in MeanFilter.dashboard_panel(paths, selected_index=99)[0].object


def test_mean_dashboard_panel_explains_missing_and_unreadable_artifacts(tmp_path):
    pn = pytest.importorskip("panel")
    broken = tmp_path / "<img src=x onerror=alert(1)>.parquet"
    broken.write_bytes(b"not parquet")

    empty = MeanFilter.dashboard_panel([], selected_index=None)
    unreadable = MeanFilter.dashboard_panel([str(broken), str(tmp_path / "gone.parquet")], selected_index=1)

    for view in (empty, unreadable):
        assert isinstance(view, pn.pane.HTML)
        view.get_root()
    assert "No mean statistics recorded yet" in empty.object
    assert "could not be read" in unreadable.object
    assert "gone.parquet: file not found" in unreadable.object
    assert "&lt;img src=x onerror=alert(1)&gt;.parquet" in unreadable.object
    assert "<img" not in unreadable.object


def test_read_tables_reports_each_unreadable_path(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("nope")
    table, problems = read_tables([str(bad), str(bad)])
    assert table is None
    assert len(problems) == 1
    assert problems[0].startswith(f"{bad}: ")


# -- the example script ----------------------------------------------------


@pytest.mark.slow
def test_basic_mesh_example_runs_unchanged(tmp_path):
    first = subprocess.run([sys.executable, str(REPO / "examples" / "basic_mesh.py")], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    again = subprocess.run([sys.executable, str(REPO / "examples" / "basic_mesh.py")], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr

    out = tmp_path / "output" / "basic_mesh"
    meshes = sorted((out / "meshes").glob("mesh_*.npz"))
    rows = _rows(out / "means.parquet")
    assert len(meshes) == 20
    assert len(rows) == 20
    assert len(list(out.glob("*.db"))) == 1  # resume=True reuses one database
    assert "Pipeline metrics: 20 indices (20 completed, 0 failed)" in first.stdout
    assert "Mean Statistics" in first.stdout
    assert "source" in first.stdout
    assert "20 already done, 0 run now" in again.stdout
    source = RandomMeshSource(n_samples=20, n_points=500, n_cells=200)
    for row in rows[:3]:
        expected = _numpy_means(next(iter(source[row["index"]])))
        assert row["point_data/temperature"] == pytest.approx(expected["point_data/temperature"])


def test_precision_overflow_raises_with_field_name():
    import numpy as np

    from physicsnemo_curator.domains.mesh.container import Mesh
    from physicsnemo_curator.domains.mesh.filters.precision import PrecisionFilter

    mesh = Mesh(
        points=np.zeros((3, 3)),
        cells=np.array([[0, 1, 2]]),
        point_data={},
        cell_data={"pressure": np.array([1.0e5])},
    )
    with pytest.raises(OverflowError, match=r"cell_data\['pressure'\].*float16"):
        list(PrecisionFilter("float16")([mesh]))
    cast = list(PrecisionFilter("float32")([mesh]))[0]
    assert cast.cell_data["pressure"].dtype == np.float32
