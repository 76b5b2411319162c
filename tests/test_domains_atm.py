"""Built-in atomistic components on real structures shipped with ASE."""

from __future__ import annotations

import itertools
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ase")
pq = pytest.importorskip("pyarrow.parquet")

import ase  # noqa: E402
import ase.collections  # noqa: E402
import ase.db  # noqa: E402
import ase.io  # noqa: E402
from ase.build import bulk, molecule  # noqa: E402

from physicsnemo_curator import Pipeline, gather_pipeline, run_pipeline  # noqa: E402
from physicsnemo_curator.core.config import config_hash  # noqa: E402
from physicsnemo_curator.core.pipeline_store import PipelineStore  # noqa: E402
from physicsnemo_curator.domains.atm import (  # noqa: E402
    ASECollectionSource,
    ASEDatabaseSource,
    AtomicStatsFilter,
    StructureFolderSource,
    StructureReadError,
    StructureSink,
    SupercellRDFFilter,
)
from physicsnemo_curator.domains.atm.filters.rdf import radial_distribution, supercell_repetitions  # noqa: E402
from physicsnemo_curator.domains.atm.filters.stats import structure_stats  # noqa: E402
from physicsnemo_curator.domains.mesh._tabular import shard_dir  # noqa: E402

# Standard atomic weights (IUPAC), typed in here rather than taken from ASE.
MASS = {"H": 1.008, "C": 12.011, "O": 15.999, "Si": 28.0855, "Cu": 63.546}
AMU_PER_A3 = 1.66053906660  # g/cm^3


def _only(rows: list[dict], name: str) -> dict:
    (row,) = [r for r in rows if r["name"] == name]
    return row


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


# -- sources ----------------------------------------------------------------


def test_collection_source_has_255_structures():
    source = ASECollectionSource()
    assert len(source) == 162 + 22 + 71
    names = {name for _, name in source.entries}
    assert {"H2O", "Water_dimer", "Si"} <= names

    picked = ASECollectionSource(names=["g2/H2O", "dcdft/Si"], repeat=2, rattle=0.05)
    assert len(picked) == 4
    (water,) = picked[0]
    (copy,) = picked[2]
    assert water.info["psnc_index"] == 0
    assert water.info["psnc_name"] == "g2/H2O"
    assert copy.info["psnc_name"] == "g2/H2O#1"
    assert water.get_chemical_formula() == copy.get_chemical_formula() == "H2O"
    np.testing.assert_array_equal(water.positions, ase.collections.g2["H2O"].positions)
    shift = np.linalg.norm(copy.positions - water.positions, axis=1)
    assert 0 < shift.max() < 0.5
    np.testing.assert_array_equal(next(iter(picked[2])).positions, copy.positions)  # reproducible

    with pytest.raises(ValueError, match=r"ASE collection 'g2' has no structure 'Unobtainium'"):
        len(ASECollectionSource(names=["g2/Unobtainium"]))
    with pytest.raises(ValueError, match=r"Unknown ASE collection\(s\) \['qm9'\]"):
        ASECollectionSource(collections=["qm9"])
    with pytest.raises(IndexError, match="index 4 is out of range"):
        next(iter(picked[4]))


def test_collection_source_subsets_and_interleaves():
    plain = ASECollectionSource(collections=["s22", "dcdft"])
    mixed = ASECollectionSource(collections=["s22", "dcdft"], interleave=True)
    few = ASECollectionSource(collections=["s22", "dcdft"], interleave=True, subset=10)

    assert [c for c, _ in plain.entries] == ["s22"] * 22 + ["dcdft"] * 71
    assert sorted(mixed.entries) == sorted(plain.entries)
    assert [n for c, n in mixed.entries if c == "s22"] == ase.collections.s22.names  # each keeps its order
    first_s22 = [k for k, (c, _) in enumerate(mixed.entries) if c == "s22"]
    assert max(b - a for a, b in itertools.pairwise(first_s22)) <= 5  # about every 93/22 indices
    assert len(few) == 10
    assert set(few.entries) <= set(mixed.entries)
    assert {c for c, _ in few.entries} == {"s22", "dcdft"}
    named = ASECollectionSource(names=["g2/H2O", "dcdft/Si", "g2/CH4"], interleave=True)
    assert named.entries == [("g2", "H2O"), ("dcdft", "Si"), ("g2", "CH4")]  # the order given
    with pytest.raises(ValueError, match="subset must be 1 or more"):
        ASECollectionSource(subset=0)


def test_database_source_reads_rows_in_id_order(tmp_path):
    path = tmp_path / "structures.db"
    with ase.db.connect(path) as db:
        db.write(molecule("H2O"), name="water")
        db.write(bulk("Cu", "fcc", a=3.61))
        db.write(molecule("CH4"), name="methane")
    source = ASEDatabaseSource(str(path))
    heavy = ASEDatabaseSource(str(path), selection="natoms<5")

    assert len(source) == 3
    labels = [next(iter(source[i])).info["psnc_name"] for i in range(3)]
    assert labels == ["water", "structures.db#2", "methane"]
    assert next(iter(source[1])).get_chemical_formula() == "Cu"
    assert len(heavy) == 2
    clone = pickle.loads(pickle.dumps(source))
    assert next(iter(clone[2])).get_chemical_formula() == "CH4"
    with pytest.raises(FileNotFoundError, match=r"ASE database not found: .*missing\.db"):
        len(ASEDatabaseSource(str(tmp_path / "missing.db")))
    assert not (tmp_path / "missing.db").exists()


def _structure_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "structures"
    folder.mkdir()
    ase.io.write(folder / "a_water.xyz", ase.collections.g2["H2O"])
    ase.io.write(folder / "b_silicon.cif", ase.collections.dcdft["Si"])
    (folder / "c_broken.extxyz").write_text("3\nProperties=species:S:1:pos:R:3\nO 0.0 0.0\nthis is not a structure\n")
    ase.io.write(folder / "d_copper.extxyz", [bulk("Cu", "fcc", a=3.61), bulk("Cu", "fcc", a=3.70)])
    ase.io.write(folder / "POSCAR", bulk("Si", "diamond", a=5.43), format="vasp")
    (folder / "notes.txt").write_text("not picked up")
    return folder


def test_folder_source_reads_every_structure_file(tmp_path):
    source = StructureFolderSource(str(_structure_folder(tmp_path)))

    assert [p.name for p in source.files] == ["POSCAR", "a_water.xyz", "b_silicon.cif", "c_broken.extxyz", "d_copper.extxyz"]
    (poscar,) = source[0]
    assert poscar.get_chemical_formula() == "Si2"
    assert poscar.pbc.all()
    copper = list(source[4])
    assert [a.info["psnc_name"] for a in copper] == ["d_copper.extxyz@0", "d_copper.extxyz@1"]
    with pytest.raises(StructureReadError, match=r"ASE cannot read .*c_broken\.extxyz"):
        list(source[3])
    with pytest.raises(FileNotFoundError, match="Structure folder not found"):
        len(StructureFolderSource(str(tmp_path / "nowhere")))
    assert len(StructureFolderSource(str(tmp_path / "structures"), pattern="*.cif")) == 1


def test_corrupt_file_fails_only_its_index(tmp_path):
    folder = _structure_folder(tmp_path)
    output = tmp_path / "stats.parquet"
    pipeline = Pipeline(
        source=StructureFolderSource(str(folder)),
        filters=[AtomicStatsFilter(output=str(output))],
        sink=StructureSink(str(tmp_path / "out"), format="extxyz"),
        db_dir=str(tmp_path / "db"),
    )

    results = run_pipeline(pipeline, n_jobs=2, backend="process_pool", on_error="continue", progress=False)
    gather_pipeline(pipeline)

    assert pipeline.failed_indices == [3]
    assert pipeline.completed_indices == [0, 1, 2, 4]
    assert results[3] is None
    assert all(results[i] for i in (0, 1, 2, 4))
    with PipelineStore.from_db(pipeline.db_path) as store:
        error = store.error(3)
    assert error["type"] == "StructureReadError"
    assert "c_broken.extxyz" in error["message"]
    rows = pq.read_table(output).to_pylist()
    assert [(r["index"], r["item"]) for r in rows] == [(0, 0), (1, 0), (2, 0), (4, 0), (4, 1)]
    assert _only(rows, "a_water.xyz")["formula"] == "H2O"
    with pytest.raises(StructureReadError, match=r"c_broken\.extxyz"):
        pipeline[3]


# -- statistics -----------------------------------------------------------


def test_stats_of_water_match_an_independent_calculation():
    water = ase.collections.g2["H2O"]
    positions = np.array(water.positions)
    oxygen, h1, h2 = positions  # the g2 geometry lists O first
    masses = np.array([MASS["O"], MASS["H"], MASS["H"]])
    centre = masses @ positions / masses.sum()
    gyration = math.sqrt(masses @ ((positions - centre) ** 2).sum(axis=1) / masses.sum())
    oh = np.linalg.norm(oxygen - h1)

    stats = structure_stats(water)

    assert oh == pytest.approx(0.97, abs=0.01)
    assert np.linalg.norm(oxygen - h2) == pytest.approx(oh)
    assert stats["n_atoms"] == 3
    assert stats["formula"] == "H2O"
    assert json.loads(stats["species"]) == {"H": 2, "O": 1}
    assert stats["n_species"] == 2
    assert stats["min_distance"] == pytest.approx(oh, abs=1e-9)
    assert stats["mass"] == pytest.approx(masses.sum(), abs=0.01)
    assert stats["mean_coordination"] == pytest.approx(4 / 3)  # O bonds to two H, each H to the O
    assert stats["radius_of_gyration"] == pytest.approx(gyration, rel=1e-3)
    assert stats["periodic"] is False
    assert math.isnan(stats["cell_volume"])
    assert math.isnan(stats["density"])


def test_stats_of_crystals_match_their_lattice_geometry():
    silicon = ase.collections.dcdft["Si"]
    a = silicon.cell.lengths()[0]
    copper = ase.collections.dcdft["Cu"]

    si = structure_stats(silicon)
    cu = structure_stats(copper)

    assert np.allclose(silicon.cell.angles(), 90)
    assert len(silicon) == 8
    assert si["cell_volume"] == pytest.approx(a**3)
    assert si["density"] == pytest.approx(8 * MASS["Si"] / a**3 * AMU_PER_A3, rel=1e-3)
    assert si["min_distance"] == pytest.approx(a * math.sqrt(3) / 4, rel=1e-6)  # diamond bond
    assert si["mean_coordination"] == pytest.approx(4)
    assert cu["mean_coordination"] == pytest.approx(12)  # fcc
    volume_per_atom = abs(np.linalg.det(copper.cell.array)) / len(copper)
    cubic_a = (4 * volume_per_atom) ** (1 / 3)
    assert cu["min_distance"] == pytest.approx(cubic_a / math.sqrt(2), rel=1e-4)
    assert 8.5 < cu["density"] < 9.2  # copper is about 8.9 g/cm^3


def test_single_atom_has_no_distance_and_no_neighbours():
    stats = structure_stats(ase.Atoms("Ar", positions=[[0, 0, 0]]))
    assert math.isnan(stats["min_distance"])
    assert stats["mean_coordination"] == 0
    assert stats["radius_of_gyration"] == 0
    assert stats["bbox_volume"] == 0


# -- supercells and RDFs ------------------------------------------------------


def test_supercell_reaches_target_size():
    cell = np.diag([2.0, 4.0, 8.0])
    assert supercell_repetitions(cell, 2, 16) == (4, 2, 1)  # 8 x 8 x 8 Angstrom: as cubic as it gets
    large = supercell_repetitions(cell, 2, 64)
    heights = np.array([2.0, 4.0, 8.0]) * large
    assert np.prod(large) * 2 >= 64
    assert heights.max() / heights.min() <= 2
    assert supercell_repetitions(cell, 100, 64) == (1, 1, 1)


def test_rdf_of_copper_peaks_at_the_nearest_neighbour_distance():
    flt = SupercellRDFFilter(target_atoms=200, r_max=5.0, n_bins=200)
    copper = bulk("Cu", "fcc", a=3.61)
    (out,) = flt([copper])

    assert len(out) >= 200
    assert out.info["supercell"].prod() == len(out)
    assert out.info["rdf_kind"] == "g(r)"
    assert out.info["rdf_first_peak"] == pytest.approx(3.61 / math.sqrt(2), abs=0.03)
    r, g = out.info["rdf_r"], out.info["rdf"]
    assert g[r < 2.3].sum() == 0
    # Integrating the first peak gives the 12 neighbours of fcc.
    density = len(out) / out.cell.volume
    shells = 4 / 3 * math.pi * (np.r_[r + 0.0125] ** 3 - np.r_[r - 0.0125] ** 3)
    assert (g * density * shells)[r < 3.0].sum() == pytest.approx(12, abs=0.01)

    (water,) = SupercellRDFFilter(keep_supercell=False)([molecule("H2O")])
    assert len(water) == 3
    assert water.info["rdf_kind"] == "n(r)"
    r, n = radial_distribution(molecule("H2O"), 2.0, 20)
    assert n[r < 0.9].sum() == 0
    assert n.sum() > 0


# -- sink ---------------------------------------------------------------------


def test_structure_sink_writes_extxyz_that_reads_back(tmp_path):
    (cu,) = SupercellRDFFilter(target_atoms=32)([bulk("Cu", "fcc", a=3.61)])
    cu.info.update(psnc_index=7, psnc_name="Cu")
    sink = StructureSink(str(tmp_path / "out"), format="extxyz")

    (path,) = sink(iter([cu, molecule("H2O")]), 7)

    assert Path(path).name == "structure_000007.extxyz"
    back = ase.io.read(path, index=":")
    assert [a.get_chemical_formula() for a in back] == [f"Cu{len(cu)}", "H2O"]
    assert len(cu) >= 32
    np.testing.assert_allclose(back[0].positions, cu.positions, atol=1e-6)
    np.testing.assert_allclose(back[0].info["rdf"], cu.info["rdf"], rtol=1e-6)
    assert back[0].info["psnc_name"] == "Cu"
    assert back[0].pbc.all()
    assert sink([], 8) == []
    with pytest.raises(ValueError, match="format must be one of auto, extxyz, zarr"):
        StructureSink(str(tmp_path), format="hdf5")


def test_structure_sink_writes_zarr_when_installed(tmp_path):
    zarr = pytest.importorskip("zarr")
    (cu,) = SupercellRDFFilter(target_atoms=8)([bulk("Cu", "fcc", a=3.61)])
    sink = StructureSink(str(tmp_path), format="auto")

    (path,) = sink(iter([cu]), 0)

    assert path.endswith("structure_000000.zarr")
    group = zarr.open_group(path, mode="r")
    np.testing.assert_allclose(np.asarray(group["0"]["positions"]), cu.positions)
    np.testing.assert_array_equal(np.asarray(group["0"]["numbers"]), cu.numbers)
    np.testing.assert_allclose(np.asarray(group["0"]["info_rdf"]), cu.info["rdf"])
    assert group["0"].attrs["rdf_kind"] == "g(r)"


# -- pipelines ----------------------------------------------------------------


def _atm_pipeline(tmp_path: Path, names: list[str]) -> Pipeline:
    return Pipeline(
        source=ASECollectionSource(names=names),
        filters=[AtomicStatsFilter(output=str(tmp_path / "stats.parquet")), SupercellRDFFilter(target_atoms=64, r_max=4.0, n_bins=40)],
        sink=StructureSink(str(tmp_path / "out"), format="extxyz"),
        db_dir=str(tmp_path / "db"),
    )


def test_atomistic_pipeline_round_trips_through_save_and_load(tmp_path):
    pipeline = _atm_pipeline(tmp_path, ["g2/H2O", "dcdft/Cu"])
    for path in (tmp_path / "p.yaml", tmp_path / "p.json"):
        loaded = Pipeline.load(pipeline.save(path))
        assert loaded.config() == pipeline.config()
        assert config_hash(loaded.config()) == pipeline.config_hash
        assert loaded.source.names == ["g2/H2O", "dcdft/Cu"]
    for source in (StructureFolderSource(str(tmp_path), pattern="*.cif"), ASEDatabaseSource(str(tmp_path / "x.db"), selection="natoms<5")):
        assert type(source)(**source.config()).config() == source.config()
    for component in (pipeline.source, *pipeline.filters, pipeline.sink):
        assert component.name
        assert component.description
        assert [p.name for p in component.params()] == list(component.config())


def test_parallel_workers_write_their_own_shards(tmp_path):
    names = ["g2/H2O", "g2/CH4", "g2/NH3", "s22/Water_dimer", "dcdft/Si", "dcdft/Cu", "dcdft/Al", "g2/CO2"]
    pipeline = _atm_pipeline(tmp_path, names)

    run_pipeline(pipeline, n_jobs=2, backend="process_pool", progress=False)
    (merged,) = gather_pipeline(pipeline)[AtomicStatsFilter.name]

    rows = pq.read_table(merged).to_pylist()
    assert [r["name"] for r in rows] == names
    for row, full in zip(rows, names, strict=True):
        collection, name = full.split("/")
        assert row["n_atoms"] == len(getattr(ase.collections, collection)[name])
    shards = sorted(shard_dir(tmp_path / "stats.parquet").glob("*.parquet"))
    _assert_each_shard_has_one_writer(pipeline, shards)
    assert sum(pq.read_table(p).num_rows for p in shards) == len(names)
    for index in range(len(names)):
        (shard,) = pipeline.filter_artifacts_for_index(index)[AtomicStatsFilter.name]
        assert index in pq.read_table(shard).column("index").to_pylist()


# -- dashboard panel ------------------------------------------------------------


def _stats_artifacts(tmp_path: Path) -> list[str]:
    pipeline = _atm_pipeline(tmp_path, ["g2/H2O", "g2/CH4", "dcdft/Cu"])
    run_pipeline(pipeline, progress=False)
    return pipeline.all_filter_artifacts()[AtomicStatsFilter.name]


def test_stats_dashboard_panel_plots_and_highlights_the_selected_index(tmp_path):
    pn = pytest.importorskip("panel")
    from bokeh.models import ColumnDataSource, CustomJS, GlyphRenderer, Select

    paths = _stats_artifacts(tmp_path)
    plain = AtomicStatsFilter.dashboard_panel(paths)
    chosen = AtomicStatsFilter.dashboard_panel(paths, selected_index=2)

    for view in (plain, chosen):
        assert isinstance(view, pn.viewable.Viewable)
        view.get_root()
    assert "index 2: dcdft/Cu (Cu4, 4 atoms)" in chosen[0].object
    layout = chosen[1].object
    x_menu, y_menu = sorted(layout.select({"type": Select}), key=lambda menu: menu.title)
    assert (x_menu.title, x_menu.value, y_menu.title, y_menu.value) == ("x", "n_atoms", "y", "min_distance")
    assert {"mass", "density", "mean_coordination", "radius_of_gyration"} <= set(x_menu.options)
    assert all(isinstance(cb, CustomJS) for menu in (x_menu, y_menu) for cb in menu.js_property_callbacks["change:value"])
    highlighted, everything = sorted((r.data_source for r in layout.select({"type": GlyphRenderer})), key=lambda source: len(source.data["_x"]))
    assert isinstance(highlighted, ColumnDataSource)
    assert list(everything.data["name"]) == ["g2/H2O", "g2/CH4", "dcdft/Cu"]
    assert list(highlighted.data["index"]) == [2]
    assert list(highlighted.data["_x"]) == [4]
    assert len(list(plain[1].object.select({"type": GlyphRenderer}))) == 1


@pytest.mark.browser
def test_stats_dashboard_panel_switches_axes_in_a_static_page(tmp_path):
    pytest.importorskip("panel")
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed")
    from bokeh.resources import INLINE

    page_file = tmp_path / "stats.html"
    AtomicStatsFilter.dashboard_panel(_stats_artifacts(tmp_path), selected_index=0).save(str(page_file), resources=INLINE, embed=True)
    read_axes = "() => Bokeh.documents.flatMap(d => [...d._all_models.values()]).filter(m => m.axis_label !== undefined).map(m => m.axis_label)"
    read_x = "() => Bokeh.documents.flatMap(d => [...d._all_models.values()]).filter(m => m.data && m.data._x).map(m => Array.from(m.data._x))"

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:", "blob:")) else route.abort())
            page.goto(page_file.as_uri())
            page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0")
            page.locator("select").nth(0).wait_for()
            assert page.evaluate(read_axes) == ["n_atoms", "min_distance"]

            page.locator("select").nth(0).select_option("mass")
            page.wait_for_function("() => Bokeh.documents.flatMap(d => [...d._all_models.values()]).some(m => m.axis_label === 'mass')")

            assert page.evaluate(read_axes) == ["mass", "min_distance"]
            highlighted, everything = sorted(page.evaluate(read_x), key=len)
            assert everything == pytest.approx([18.015, 16.043, 4 * 63.546], abs=0.01)
            assert highlighted == pytest.approx([18.015], abs=0.01)
            page.screenshot(path=str(tmp_path / "stats-panel.png"))
            assert errors == []
        finally:
            browser.close()


def test_stats_dashboard_panel_explains_missing_and_unreadable_artifacts(tmp_path):
    pn = pytest.importorskip("panel")
    bad = tmp_path / "shard.parquet"
    bad.write_bytes(b"PAR1 broken")

    none = AtomicStatsFilter.dashboard_panel([])
    unreadable = AtomicStatsFilter.dashboard_panel([str(bad)], selected_index=0)

    for view in (none, unreadable):
        assert isinstance(view, pn.pane.HTML)
        view.get_root()
    assert "No atomic statistics recorded yet" in none.object
    assert "could not be read" in unreadable.object
    assert "shard.parquet" in unreadable.object
