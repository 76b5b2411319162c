"""A basic mesh pipeline: random meshes, per-field means, float32, one NPZ file per mesh.

Run it from any folder; it writes under ``./output/basic_mesh/``::

    python examples/basic_mesh.py

Running it again resumes: every mesh is already done, so nothing runs.
"""

from pathlib import Path

from physicsnemo_curator import Pipeline
from physicsnemo_curator.domains.mesh.filters.mean import MeanFilter
from physicsnemo_curator.domains.mesh.filters.precision import PrecisionFilter
from physicsnemo_curator.domains.mesh.sinks.mesh_writer import MeshSink
from physicsnemo_curator.domains.mesh.sources.random import RandomMeshSource
from physicsnemo_curator.run import gather_pipeline, run_pipeline

OUT = Path("output/basic_mesh")

if __name__ == "__main__":
    # Step 1: build the pipeline. resume=True keeps one database per
    # configuration in db_dir, so a second run skips finished meshes.
    pipeline = Pipeline(
        source=RandomMeshSource(n_samples=20, n_points=500, n_cells=200),
        filters=[
            MeanFilter(output=str(OUT / "means.parquet")),
            PrecisionFilter(target_dtype="float32"),
        ],
        sink=MeshSink(output_dir=str(OUT / "meshes")),
        resume=True,
        db_dir=OUT,
    )
    print(f"Source: {pipeline.source.name}, {len(pipeline)} meshes")
    print(f"Filters: {[f.name for f in pipeline.filters]}; sink: {pipeline.sink.name}")

    # Step 2: run it on two worker processes, with a progress bar.
    done_before = len(pipeline.completed_indices)
    results = run_pipeline(pipeline, n_jobs=2, backend="process_pool", use_tui=True)
    print(f"\nProcessed {len(results)} meshes: {done_before} already done, {len(results) - done_before} run now")
    print(f"Index 0 wrote: {results[0]}")
    print(f"Database: {pipeline.db_path}")

    # Step 3: merge the statistics each worker wrote into one Parquet file.
    for filter_name, paths in gather_pipeline(pipeline).items():
        print(f"{filter_name}: {', '.join(paths)}")

    # Step 4: where did the time and memory go?
    pipeline.metrics.to_console()

    # Step 5: explore the run in the dashboard (needs the 'dashboard' extra):
    #   from physicsnemo_curator.dashboard import launch
    #   launch(str(pipeline.db_path), port=5006)
    print(f"\nDashboard: psnc dashboard {pipeline.db_path}")
