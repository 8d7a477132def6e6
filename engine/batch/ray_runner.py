"""The Ray runner: each job is one Ray task, retried by Ray when it raises or when its worker process dies.

Why tasks and not a pool of model-holding actors: Ray retries a task on both failures (`max_retries` with
`retry_exceptions=True`) and reschedules it anywhere resources free up, so a crashed worker or lost node costs
one job's attempt and nothing else; each task asks exactly its `num_cpus` / `num_gpus` (fractional GPUs let
several small jobs share a card). The price is that a job loads its model itself, as the CLI command does: a
few seconds for SD 1.5 in fp16 from the local cache against minutes of optimisation per edit. Ray reuses worker
processes between tasks, so the CLIP scorer (cached per process in clip.py) is loaded once per worker.

Workers run `run_job` (or the `job_fn` given, e.g. by tests) on the shared filesystem: input paths and the
output folder must be visible from every node (one machine, or NFS / a mounted bucket on a cluster).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .execute import attempt_job, attempts_so_far, run_job
from .jobs import Job
from .local import Record, failed_record
from ..evaluate import EvalOptions

POLL_S = 0.5


@dataclass(frozen=True)
class RayOptions:
    """Where and how the jobs run on Ray (`--ray`, `--cpus-per-job`, `--gpus-per-job`, `--ray-cpus`)."""

    address: str = "local"
    """`local`: start a Ray cluster on this machine; `auto`: join the running one; else a cluster address
    (`ray://host:10001` or `host:6379`)."""
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    num_cpus: int | None = None
    """Size of a `local` cluster (default: every core)."""

    def check(self) -> None:
        if not self.address:
            raise ValueError("--ray needs local, auto or a cluster address")
        if self.cpus_per_job <= 0 or self.gpus_per_job < 0:
            raise ValueError("--cpus-per-job must be > 0 and --gpus-per-job >= 0")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError(f"--ray-cpus must be at least 1, got {self.num_cpus}")


def _project_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def connect(options: RayOptions):
    """Start or join the cluster; returns (ray module, started_here). A Ray already initialised in this process
    (by a caller, or a test) is used as it is and left running."""
    try:
        import ray
    except ImportError:
        raise OSError("--ray needs Ray: pip install ray  (or run without --ray: jobs then run in this process)") \
            from None
    if ray.is_initialized():
        return ray, False
    if options.address == "local":
        path = os.pathsep.join(p for p in (_project_root(), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(address="local", num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    else:
        try:
            ray.init(address=options.address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            hint = ""
            if any("Authentication" in type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e):
                hint = (" (the cluster uses token authentication: set RAY_AUTH_MODE=token and give its token in "
                        "RAY_AUTH_TOKEN or ~/.ray/auth_token; `ray get-auth-token` on the head prints it)")
            raise OSError(f"cannot join the Ray cluster at {options.address!r}: {' '.join(str(exc).split())}{hint}") \
                from None
    return ray, True


def _check_resources(ray, options: RayOptions) -> None:
    """A job that asks for more than a local cluster has would wait forever: refuse it instead."""
    have = ray.cluster_resources()
    for name, want in (("CPU", options.cpus_per_job), ("GPU", options.gpus_per_job)):
        if want > float(have.get(name, 0.0)):
            if options.address == "local":
                raise ValueError(f"each job asks for {want:g} {name}(s) but this machine's Ray cluster has "
                                 f"{float(have.get(name, 0.0)):g}; lower --{name.lower()}s-per-job")



def _error_of(ray, exc: Exception, job: Job, out_dir: Path) -> str:
    attempts = attempts_so_far(out_dir, job.id)
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            text = " ".join(str(cause).split())
            return f"{type(cause).__name__}: {text}" if text else type(cause).__name__
        return " ".join(str(exc).split()).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ray.exceptions.WorkerCrashedError):
        return f"the worker process died while running the job ({attempts} attempt(s))"
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return f"Ray stopped the job for lack of memory ({attempts} attempt(s))"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def run_ray(
    jobs: list[Job],
    out_dir: Path,
    options: EvalOptions,
    ray_options: RayOptions,
    *,
    retries: int,
    on_start: Callable[[Job], None],
    on_finish: Callable[[Job, Record], None],
    job_fn: Callable[[Job, Path, EvalOptions], Record] = run_job,
) -> None:
    ray_options.check()
    ray, started_here = connect(ray_options)
    try:
        _check_resources(ray, ray_options)
        remote = ray.remote(attempt_job).options(
            num_cpus=ray_options.cpus_per_job, num_gpus=ray_options.gpus_per_job, max_retries=retries,
            retry_exceptions=True,
        )
        pending: dict[Any, Job] = {remote.remote(job_fn, job, str(out_dir), options): job for job in jobs}
        started: set[str] = set()
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_S)
                for job in pending.values():
                    if job.id not in started and attempts_so_far(out_dir, job.id) > 0:
                        started.add(job.id)
                        on_start(job)
                for ref in ready:
                    job = pending.pop(ref)
                    try:
                        record = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        record = failed_record(_error_of(ray, exc, job, out_dir), attempts_so_far(out_dir, job.id))
                    if job.id not in started:
                        started.add(job.id)
                        on_start(job)
                    on_finish(job, record)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()
