"""Many jobs at once: `python -m engine batch JOBS --out DIR [--ray local|auto|ADDRESS]`, resumable, with metrics.

Read in this order:

- jobs.py        the JOBS file (JSONL / YAML) -> checked `Job`s; a job is parsed by its CLI command's own parser
- execute.py     `run_job`: one job through the CLI command's `run`, staged and renamed into `DIR/<id>/`
- metrics.py     weight-free edit metrics (PSNR inside/outside vs the input, spill, counts, PSNR vs a target)
- clip.py        CLIP score and CLIP direction (`load_clip`: hub id or local folder)
- manifest.py    `DIR/manifest.json`: per-job status, outputs, metrics, errors; what a re-run skips
- local.py       the embedded runner (one job after another in this process)
- ray_runner.py  the Ray runner (one Ray task per job, retried on errors and dead workers)
- progress.py    the batch's progress bar and per-job lines
- summary.py     per-method and per-job tables (CSV + Markdown)
- run.py         `run_batch`, which ties them together
"""
