"""The embedded runner: jobs one after another in this process, each retried up to `retries` times.

No Ray needed. A user-fixable error comes back from `run_job` as a failed record at once; any other exception
is retried, and reported as failed after the last try. Models are not shared between jobs (each job runs its CLI
command, which loads its model), except the CLIP scorer, which clip.py keeps once per process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .execute import attempt_job, attempts_so_far, one_line, run_job
from .jobs import Job
from ..evaluate import EvalOptions

Record = dict[str, Any]


def failed_record(error: str, attempts: int, seconds: float | None = None) -> Record:
    return {"status": "failed", "outputs": {}, "metrics": {}, "error": error, "seconds": seconds,
            "attempts": attempts}


def run_local(
    jobs: list[Job],
    out_dir: Path,
    options: EvalOptions,
    *,
    retries: int,
    on_start: Callable[[Job], None],
    on_finish: Callable[[Job, Record], None],
    job_fn: Callable[[Job, Path, EvalOptions], Record] = run_job,
) -> None:
    for job in jobs:
        on_start(job)
        record: Record | None = None
        for _ in range(retries + 1):
            try:
                record = attempt_job(job_fn, job, out_dir, options)
                break
            except Exception as exc:  # noqa: BLE001 - any job error is reported, never ends the batch
                record = failed_record(one_line(exc), attempts_so_far(out_dir, job.id))
        on_finish(job, record)
