"""Run one job: its CLI command's own `run(args)` into a private staging folder, then metrics, then one rename.

Every attempt appends a line to `DIR/.staging/<id>/attempts.log` before it starts (`attempt_job`; so attempts
are counted even when a worker dies) and writes into `DIR/.staging/<id>/work-<pid>-<n>/`. Only a
finished attempt is moved to `DIR/<id>/` by a single directory rename: a job's outputs are all there or not at
all, and a crash leaves nothing half-written where a reader looks.

Errors the user can fix (`UserError`, `ValueError`, `OSError`: a bad mask, a missing file, a model that cannot
be loaded) come back as a `failed` record — retrying cannot help. Anything else is raised, so the runner (or
Ray) retries the job.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .jobs import Job, job_namespace, output_options
from ..evaluate import EvalOptions

STAGING = ".staging"
USER_ERRORS = (ValueError, OSError)  # UserError is a plain Exception subclass: added below


def staging_dir(out_dir: Path, job_id: str) -> Path:
    return Path(out_dir) / STAGING / job_id


def attempts_so_far(out_dir: Path, job_id: str) -> int:
    """Attempts started for `job_id` since it was (re)scheduled: lines of its attempts.log."""
    log = staging_dir(out_dir, job_id) / "attempts.log"
    try:
        return len(log.read_text().splitlines())
    except FileNotFoundError:
        return 0


def begin_attempt(out_dir: Path, job_id: str) -> int:
    """Log that an attempt of `job_id` starts (before any work, so a worker that dies still counts); its number."""
    stage = staging_dir(out_dir, job_id)
    stage.mkdir(parents=True, exist_ok=True)
    with open(stage / "attempts.log", "a") as log:
        log.write(f"{os.getpid()} {time.time():.3f}\n")
    return attempts_so_far(out_dir, job_id)


def attempt_job(job_fn, job: Job, out_dir: str | Path, options: EvalOptions) -> dict[str, Any]:
    """What a runner calls for one attempt: log it, then `job_fn(job, out_dir, options)` (normally `run_job`)."""
    begin_attempt(Path(out_dir), job.id)
    return job_fn(job, Path(out_dir), options)


def reset_staging(out_dir: Path, job_id: str) -> None:
    """Forget earlier attempts of a job about to be (re)scheduled."""
    shutil.rmtree(staging_dir(out_dir, job_id), ignore_errors=True)


def one_line(exc: BaseException, *, user: bool = False) -> str:
    """The error on one line; a user-fixable one as its message alone (like the CLI's `error:` line)."""
    text = " ".join(str(exc).split())
    if user and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_job(job: Job, out_dir: str | Path, options: EvalOptions | None = None) -> dict[str, Any]:
    """Run `job` and return its record: {"status", "outputs", "metrics", "error", "seconds", "attempts"}.

    Runners call it through `attempt_job`, which counts the attempt first."""
    from engine.cli.common import UserError

    options = options or EvalOptions()
    out_dir = Path(out_dir)
    stage = staging_dir(out_dir, job.id)
    attempt = max(attempts_so_far(out_dir, job.id), 1)
    work = stage / f"work-{os.getpid()}-{attempt}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    try:
        target = job.evaluation.get("target")
        if target and not Path(target).is_file():
            raise UserError(f"{target}: target scene (ground truth for PSNR) does not exist")
        args = job_namespace(job, output_options(job, work))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = args.func(args)
        (work / "log.txt").write_text(printed.getvalue())
        if code:
            raise UserError(f"the {job.kind} command exited with status {code}")
        metrics = job_metrics(job, args, work, options, printed.getvalue())
    except (UserError, *USER_ERRORS) as exc:
        shutil.rmtree(work, ignore_errors=True)
        return {"status": "failed", "outputs": {}, "metrics": {}, "error": one_line(exc, user=True),
                "seconds": round(time.perf_counter() - start, 3), "attempts": attempt}
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    final = out_dir / job.id
    shutil.rmtree(final, ignore_errors=True)  # outputs of an earlier, unfinished or failed, run of this job
    os.replace(work, final)
    shutil.rmtree(stage, ignore_errors=True)
    outputs = {name: str(final / Path(path).name) for name, path in _outputs(job, work).items()}
    return {"status": "done", "outputs": outputs, "metrics": metrics, "error": None,
            "seconds": round(time.perf_counter() - start, 3), "attempts": attempt}


def _outputs(job: Job, work: Path) -> dict[str, str]:
    """Output role -> file written in `work`."""
    files = output_options(job, work)
    if job.kind == "edit":
        return {"scene": files["out"], "mask": files["mask_out"]}
    if job.kind == "generate":
        return {"scene": files["out"]}
    return {"mask": files["out"]}


def job_metrics(job: Job, args, work: Path, options: EvalOptions, printed: str) -> dict[str, Any]:
    """The metrics of a finished job, read back from the files it wrote."""
    if job.kind == "edit":
        return edit_job_metrics(job, args, options)
    if job.kind == "generate":
        from engine.io import load

        return {"gaussians_out": len(load(args.out))}
    import json

    import numpy as np

    weights = np.load(args.out)
    summary = json.loads(printed.strip().splitlines()[-1]) if printed.strip() else {}
    cut = summary.get("threshold", 0.5) if args.threshold is None else args.threshold  # calibrated: 0.5
    return {"gaussians_in": int(weights.shape[0]), "selected": int((weights > cut).sum()), "threshold": cut}


def reference_target(model: str | None) -> str | None:
    """The scene of a `reference:SCENE` model (the known ideal of the edit), else None."""
    from .jobs import REFERENCE_PREFIX

    if model and model.lower().startswith(REFERENCE_PREFIX):
        return model[len(REFERENCE_PREFIX):].strip()
    return None


def edit_job_metrics(job: Job, args, options: EvalOptions) -> dict[str, Any]:
    """`edit_metrics` on the job's input and output files (+ CLIP when `options.clip`, if it loads)."""
    import numpy as np
    import torch

    from engine.cli.edit import config_from_args, read_mask
    from engine.edit import as_mask
    from engine.io import load

    from ..evaluate import edit_metrics

    from engine.cli.common import resolve_up

    device = "cuda" if torch.cuda.is_available() else "cpu"  # GPU jobs render their evaluation views there too
    original = load(args.scene)
    config = config_from_args(args)
    config.up = resolve_up(getattr(args, "up", "auto"), args.scene, original)  # the up the edit itself used
    original = original.to(device)
    mask = as_mask(read_mask(args.mask), len(original))
    edited = load(args.out).to(device)
    edited_mask = torch.as_tensor(np.load(args.mask_out)).float()
    target_path = job.evaluation.get("target") or reference_target(args.model)
    target = load(target_path).to(device) if target_path else None
    clip, clip_error = None, None
    if options.clip:
        from engine.guidance.base import ModelUnavailableError

        from ..evaluate.clip import cached_clip

        try:
            clip = cached_clip(options.clip)
        except ModelUnavailableError as exc:
            clip_error = str(exc).splitlines()[0]
    metrics, _ = edit_metrics(original, mask, edited, edited_mask, config, options, target=target,
                              clip=clip, prompt=args.prompt, source_prompt=args.source_prompt)
    if clip_error:
        metrics["clip_error"] = clip_error
    return metrics
