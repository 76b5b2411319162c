"""The ``sequential`` backend: every index in the calling process, in order."""

from __future__ import annotations

from physicsnemo_curator.core.execute import IndexRunner
from physicsnemo_curator.run._job import Job


class SequentialBackend:
    """Runs the job in the current process; the process registers as the only worker."""

    name = "sequential"

    def run(self, job: Job) -> None:
        job.check_options(self.name, ("start_method", "timeout", "client") if job.n_jobs == 1 else ())
        runner = IndexRunner(job.pipeline, job.context).open(register=True)
        try:
            for chunk in job.chunks(1):
                results = []
                for index in chunk.indices:
                    paths, _, error = runner.run_index(index, replace=index in job.replace)
                    if error is not None:
                        unwritten = runner.commit()
                        job.deliver(index, paths, None, unwritten.get(index, error))
                    else:
                        results.append((index, paths))
                unwritten = runner.commit()
                for index, paths in results:
                    job.deliver(index, None if index in unwritten else paths, None, unwritten.get(index))
            runner.flush_filters()
        finally:
            runner.close()
