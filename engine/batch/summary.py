"""The batch's tables: one row per method (the papers' comparison) and one row per job, as CSV and Markdown.

    DIR/summary.csv, DIR/summary.md   per group: jobs, done, failed, mean seconds, mean of every numeric metric
    DIR/results.csv                   per job: id, job, method, status, seconds, error, every metric

A group is the edit method (`sds`, `nfsd`, `dreamcatalyst`, ... every name of engine/guidance/methods.py), with
`+<schedule>` when the job names a timestep schedule (`sds+dreamtime`: a schedule changes what a method does, so
it gets its own row); generate and mask jobs are grouped as `generate:<method>[+<schedule>]` and `mask:<method>`.
Means are over done jobs with that metric; an empty cell means no job had it.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from .jobs import Job

# Defaults of the commands' --method, so a job without one is grouped like the CLI would run it.
DEFAULT_METHODS = {"edit": "sds", "generate": "sds", "mask": "galp"}
SKIP_METRICS = ("eval_views", "eval_resolution")


def group_of(job: Job) -> str:
    method = str(job.options.get("method") or DEFAULT_METHODS[job.kind])
    if job.options.get("schedule"):
        method += f"+{job.options['schedule']}"
    return method if job.kind == "edit" else f"{job.kind}:{method}"


def _numeric_keys(records: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for record in records:
        for key, value in (record.get("metrics") or {}).items():
            if key in SKIP_METRICS or key in keys:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                keys.append(key)
    return keys


def summary_rows(jobs: list[Job], records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per group, in first-seen order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        groups.setdefault(group_of(job), []).append(records.get(job.id, {}))
    keys = _numeric_keys([r for rs in groups.values() for r in rs])
    rows = []
    for group, rs in groups.items():
        done = [r for r in rs if r.get("status") == "done"]
        row: dict[str, Any] = {"method": group, "jobs": len(rs), "done": len(done),
                               "failed": sum(r.get("status") == "failed" for r in rs),
                               "seconds": _mean([r.get("seconds") for r in done])}
        for key in keys:
            row[key] = _mean([(r.get("metrics") or {}).get(key) for r in done])
        rows.append(row)
    return rows


def result_rows(jobs: list[Job], records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    recs = [records.get(job.id, {}) for job in jobs]
    keys = _numeric_keys(recs)
    rows = []
    for job, record in zip(jobs, recs):
        metrics = record.get("metrics") or {}
        rows.append({"id": job.id, "job": job.kind, "method": group_of(job), "status": record.get("status"),
                     "seconds": record.get("seconds"), "error": record.get("error") or "",
                     **{k: metrics.get(k) for k in keys}})
    return rows


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return round(sum(nums) / len(nums), 4) if nums else None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def to_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(row[k]) for k in head) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_tables(folder: Path, jobs: list[Job], records: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Write summary.csv, summary.md and results.csv into `folder`; returns their paths."""
    folder = Path(folder)
    summary = summary_rows(jobs, records)
    paths = {"summary_csv": folder / "summary.csv", "summary_md": folder / "summary.md",
             "results_csv": folder / "results.csv"}
    _write(paths["summary_csv"], to_csv(summary))
    _write(paths["summary_md"], to_markdown(summary))
    _write(paths["results_csv"], to_csv(result_rows(jobs, records)))
    return paths
