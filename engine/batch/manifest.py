"""`DIR/manifest.json`: what happened to every job, rewritten atomically after each change so a batch resumes.

    {"version": 1, "jobs_file": "...", "updated": "2026-...Z",
     "jobs": {"scarf-sds": {"status": "done", "job": {...}, "fingerprint": "...", "outputs": {"scene": "..."},
                            "metrics": {...}, "error": null, "seconds": 12.3, "attempts": 1}}}

Statuses: `pending` (not started), `running`, `done`, `failed`. On a re-run only `done` jobs whose definition
is unchanged (same fingerprint) and whose outputs still exist are skipped; everything else runs again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .jobs import Job

VERSION = 1
STATUSES = ("pending", "running", "done", "failed")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON next to `path` and rename it into place: readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Manifest:
    """The job records of one output folder; `save()` after every change."""

    def __init__(self, folder: Path, jobs_file: str = "") -> None:
        self.path = Path(folder) / "manifest.json"
        self.jobs_file = jobs_file
        self.records: dict[str, dict[str, Any]] = {}

    @classmethod
    def load(cls, folder: Path, jobs_file: str = "") -> "Manifest":
        """The folder's manifest, or an empty one; ValueError if the file exists but cannot be read."""
        manifest = cls(folder, jobs_file)
        if manifest.path.exists():
            try:
                data = json.loads(manifest.path.read_text(encoding="utf-8"))
                records = data["jobs"]
                if not isinstance(records, dict):
                    raise TypeError("'jobs' is not an object")
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{manifest.path}: not a batch manifest ({exc}); move it away or use another "
                                 "--out folder") from None
            manifest.records = {str(k): dict(v) for k, v in records.items()}
        return manifest

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": VERSION, "jobs_file": self.jobs_file,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "jobs": self.records}
        write_json_atomic(self.path, data)

    def is_finished(self, job: Job) -> bool:
        """True when `job` is done with the same definition and its outputs are all still on disk."""
        record = self.records.get(job.id)
        if not record or record.get("status") != "done" or record.get("fingerprint") != job.fingerprint():
            return False
        return all(Path(p).exists() for p in (record.get("outputs") or {}).values())

    def plan(self, jobs: list[Job]) -> tuple[list[Job], list[Job]]:
        """(to run, to skip). Jobs to run are marked pending (their old outputs/metrics cleared)."""
        todo, skip = [], []
        for job in jobs:
            if self.is_finished(job):
                skip.append(job)
                continue
            todo.append(job)
            self.records[job.id] = self.fresh(job)
        return todo, skip

    @staticmethod
    def fresh(job: Job) -> dict[str, Any]:
        return {"status": "pending", "job": job.describe(), "fingerprint": job.fingerprint(), "outputs": {},
                "metrics": {}, "error": None, "seconds": None, "attempts": 0}

    def update(self, job_id: str, **fields: Any) -> None:
        status = fields.get("status")
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown job status {status!r}")
        self.records.setdefault(job_id, {}).update(fields)
        self.save()

    def counts(self, ids: list[str] | None = None) -> dict[str, int]:
        """How many of `ids` (default: all) are in each status."""
        ids = list(self.records) if ids is None else ids
        out = dict.fromkeys(STATUSES, 0)
        for job_id in ids:
            out[self.records.get(job_id, {}).get("status", "pending")] += 1
        return out
