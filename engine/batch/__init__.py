"""Many jobs at once: `python -m engine batch JOBS --out DIR [--ray local|auto|ADDRESS]`, resumable, with metrics.

Read in this order:

- jobs.py        the JOBS file (JSONL / YAML) -> checked `Job`s; a job is parsed by its CLI command's own parser
- execute.py     `run_job`: one job through the CLI command's `run`, staged and renamed into `DIR/<id>/`
- manifest.py    `DIR/manifest.json`: per-job status, outputs, metrics, errors; what a re-run skips
- local.py       the embedded runner (one job after another in this process)
- ray_runner.py  the Ray runner (one Ray task per job, retried on errors and dead workers)
- progress.py    the batch's progress bar and per-job lines
- summary.py     per-method and per-job tables (CSV + Markdown)
- run.py         `run_batch`, which ties them together

A finished edit job is measured by engine.evaluate (`edit_metrics`, CLIP), like `python -m engine evaluate`.
"""
