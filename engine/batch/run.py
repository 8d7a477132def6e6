"""`run_batch`: read the jobs, plan against the manifest, run what is left (in-process or on Ray), write tables.

The manifest is saved before the first job (every job to run marked pending) and after each start and finish,
so an interrupted batch — Ctrl-C, a lost driver, a dead node — resumes with the same command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .execute import reset_staging, run_job
from .jobs import Job, read_jobs
from .manifest import Manifest
from ..evaluate import EvalOptions
from .progress import BatchProgress
from .ray_runner import RayOptions


@dataclass
class BatchReport:
    """What a batch did: counts over the JOBS file's jobs, and where the tables are."""

    ran: int
    skipped: int
    done: int
    failed: int
    tables: dict[str, Path]
    manifest: Path

    @property
    def ok(self) -> bool:
        return self.failed == 0


def run_batch(
    jobs_file: str | Path,
    out_dir: str | Path,
    *,
    options: EvalOptions | None = None,
    retries: int = 1,
    ray: RayOptions | None = None,
    quiet: bool = False,
    job_fn: Callable[[Job, Path, EvalOptions], dict[str, Any]] = run_job,
) -> BatchReport:
    """Run every unfinished job of `jobs_file` into `out_dir`; `ray=None` runs them in this process."""
    options = options or EvalOptions()
    options.check()
    if not 0 <= retries <= 100:
        raise ValueError(f"--retries must be in [0, 100], got {retries}")
    if ray is not None:
        ray.check()
    jobs = read_jobs(jobs_file)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: --out must be a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(out_dir, str(Path(jobs_file).resolve()))
    todo, skip = manifest.plan(jobs)
    if options.clip and any(job.kind == "edit" for job in todo):  # fail before any work if CLIP cannot load
        from ..evaluate.clip import cached_clip, check_clip

        if ray is None:
            cached_clip(options.clip)  # loaded once here, reused by every job of this process
        else:
            check_clip(options.clip)  # the workers load it; here only its config and tokenizer are checked
    ray_module = None
    if ray is not None and todo:
        from .ray_runner import connect

        ray_module, started = connect(ray)  # a cluster that cannot be reached fails here, before any work
        if not started:
            ray_module = None  # a caller's Ray session: theirs to shut down
    try:
        return _run(jobs, todo, skip, manifest, out_dir, options, retries, ray, quiet, job_fn)
    finally:
        if ray_module is not None:
            ray_module.shutdown()


def _run(jobs, todo, skip, manifest, out_dir, options, retries, ray, quiet, job_fn) -> BatchReport:
    for job in todo:
        reset_staging(out_dir, job.id)
    manifest.save()

    progress = BatchProgress(len(todo), skipped=len(skip), quiet=quiet,
                             runner="in-process" if ray is None else f"ray {ray.address}")

    def on_start(job: Job) -> None:
        manifest.update(job.id, status="running")
        progress.start(job)

    def on_finish(job: Job, record: dict[str, Any]) -> None:
        manifest.update(job.id, **record)
        progress.finish(job, record)

    try:
        if not todo:
            pass  # everything finished earlier: no runner (and no Ray cluster) needed
        elif ray is None:
            from .local import run_local

            run_local(todo, out_dir, options, retries=retries, on_start=on_start, on_finish=on_finish,
                      job_fn=job_fn)
        else:
            from .ray_runner import run_ray

            run_ray(todo, out_dir, options, ray, retries=retries, on_start=on_start, on_finish=on_finish,
                    job_fn=job_fn)
    finally:
        progress.close()
        from .summary import write_tables

        tables = write_tables(out_dir, jobs, manifest.records)
    counts = manifest.counts([job.id for job in jobs])
    return BatchReport(ran=len(todo), skipped=len(skip), done=counts["done"], failed=counts["failed"],
                       tables=tables, manifest=manifest.path)
