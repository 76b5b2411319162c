"""The ``sequential`` backend: every index in the calling process, in order."""

from __future__ import annotations

from physicsnemo_curator.core.execute import IndexRunner
from physicsnemo_curator.run._job import Job


class SequentialBackend:
    """Runs the job in the current process; the process registers as the only worker."""

    name = "sequential"

    def run(self, job: Job) -> None:
        runner = IndexRunner(job.pipeline, job.context).open(register=True)
        try:
            for chunk in job.chunks(1):
                for index in chunk.indices:
                    paths, _, error = runner.run_index(index, replace=index in job.replace)
                    job.deliver(index, paths, None, error)
            runner.flush_filters()
        finally:
            runner.close()
