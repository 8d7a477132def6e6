"""One progress bar for a batch (jobs done / running / failed, ETA) plus one line per finished job, on stderr."""

from __future__ import annotations

import sys
from typing import Any

from .jobs import Job

# Metrics worth a glance on a job's line, in this order, when present.
LINE_METRICS = ("psnr_inside", "psnr_outside", "spill_vs_input", "psnr_target", "clip", "clip_direction",
                "gaussians_out", "selected")


class BatchProgress:
    """tqdm bar over the jobs to run; `start(job)` / `finish(job, record)` keep its counts."""

    def __init__(self, total: int, *, skipped: int = 0, quiet: bool = False, runner: str = "in-process") -> None:
        from tqdm import tqdm

        self.quiet = quiet
        self.running: set[str] = set()
        self.done = self.failed = 0
        self.bar = tqdm(total=total, desc=f"batch ({runner})", unit="job", disable=quiet, file=sys.stderr,
                        dynamic_ncols=True)
        if skipped and not quiet:
            self.bar.write(f"skipping {skipped} job(s) finished earlier", file=sys.stderr)
        self._refresh()

    def _refresh(self) -> None:
        self.bar.set_postfix(done=self.done, running=len(self.running), failed=self.failed)

    def start(self, job: Job) -> None:
        self.running.add(job.id)
        self._refresh()

    def finish(self, job: Job, record: dict[str, Any]) -> None:
        self.running.discard(job.id)
        if record["status"] == "done":
            self.done += 1
        else:
            self.failed += 1
        self._refresh()
        self.bar.update(1)
        if not self.quiet:
            self.bar.write(job_line(job, record), file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def job_line(job: Job, record: dict[str, Any]) -> str:
    """`done  scarf-sds  12.3s  psnr_inside=21.4 ...` or `failed  bad-mask  error: ...`."""
    seconds = record.get("seconds")
    took = f"{seconds:.1f}s" if isinstance(seconds, (int, float)) else "-"
    tries = record.get("attempts") or 0
    tried = f" (attempts {tries})" if tries > 1 else ""
    if record["status"] != "done":
        return f"failed  {job.id}  {took}{tried}  error: {record.get('error')}"
    metrics = record.get("metrics") or {}
    shown = " ".join(f"{k}={metrics[k]:.4g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}"
                     for k in LINE_METRICS if metrics.get(k) is not None)
    return f"done    {job.id}  {took}{tried}  {shown}".rstrip()
