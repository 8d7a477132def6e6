"""`python -m engine batch JOBS --out DIR [--ray local|auto|ADDRESS]`: many edit/generate/mask jobs, resumable.

The work is in engine/batch/ (see its __init__ for the map); this module only maps options onto `run_batch`.
Exit codes: 0 when every job is done, 1 when any job failed (the others still ran), 2 for a bad JOBS file or
option (before any job runs).
"""

from __future__ import annotations

import argparse

HELP = "run many edit / generate / mask jobs from a JOBS file (in this process or on Ray), resumable"
DESCRIPTION = (
    "Run the jobs of JOBS (JSON Lines: one object a line, or a YAML list) into DIR. Each job has \"id\" (its "
    "output folder DIR/<id>/) and \"job\" (edit, generate or mask); its other keys are that command's long "
    "options with dashes as underscores (plus the positional \"scene\"), e.g. {\"id\": \"scarf-sds\", \"job\": "
    "\"edit\", \"scene\": \"robot.ply\", \"mask\": \"scarf.npy\", \"prompt\": \"a blue scarf\", \"method\": \"sds\", "
    "\"model\": \"closed-form:#2040d0\", \"steps\": 200, \"resolution\": 64, \"seed\": 0}. Relative paths are "
    "resolved against JOBS's folder. An edit job may add \"target\": a ground-truth edited scene, for PSNR. "
    "DIR/manifest.json records each job's status, outputs, metrics, error and seconds; running the same command "
    "again skips finished jobs and redoes failed or unfinished ones. Edit jobs are evaluated on a fixed ring of "
    "views around the part (PSNR inside/outside the part vs the input, spill, Gaussian counts; CLIP score and "
    "CLIP direction with --clip). DIR/summary.csv and summary.md hold one row per method; results.csv one per job."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("batch", help=HELP, description=DESCRIPTION)
    p.add_argument("jobs", metavar="JOBS", help="jobs file: .jsonl (one JSON object a line) or .yaml/.yml")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; holds manifest.json)")
    p.add_argument("--ray", default=None, metavar="local|auto|ADDRESS",
                   help="run the jobs as Ray tasks: local starts a cluster on this machine, auto joins the running "
                        "one, or give its address (default: no Ray, one job after another in this process)")
    p.add_argument("--gpus-per-job", type=float, default=0.0, metavar="G",
                   help="GPUs each job asks Ray for; fractions share a GPU (default 0)")
    p.add_argument("--cpus-per-job", type=float, default=1.0, metavar="C", help="CPUs each job asks Ray for "
                                                                                "(default 1)")
    p.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                   help="CPUs of the --ray local cluster (default: every core)")
    p.add_argument("--retries", type=int, default=1, metavar="K",
                   help="retry a job that crashes (or whose worker dies) up to K times (default 1); errors in "
                        "the job's input are reported at once")
    p.add_argument("--clip", default=None, metavar="MODEL",
                   help="CLIP model for the CLIP metrics: hub id (openai/clip-vit-large-patch14, what the papers "
                        "use) or a local folder (default: CLIP metrics not computed)")
    p.add_argument("--eval-views", type=int, default=8, metavar="N", help="evaluation views per edit (default 8)")
    p.add_argument("--eval-resolution", type=int, default=224, metavar="PX",
                   help="evaluation render size (default 224, CLIP's input size)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-job lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from engine.batch.jobs import JobsFileError
    from engine.evaluate import EvalOptions
    from engine.batch.ray_runner import RayOptions
    from engine.batch.run import run_batch

    from .common import UserError

    options = EvalOptions(views=args.eval_views, resolution=args.eval_resolution, clip=args.clip)
    ray = None
    if args.ray is not None:
        ray = RayOptions(address=args.ray, cpus_per_job=args.cpus_per_job, gpus_per_job=args.gpus_per_job,
                         num_cpus=args.ray_cpus)
    elif args.gpus_per_job or args.cpus_per_job != 1.0 or args.ray_cpus is not None:
        raise UserError("--gpus-per-job, --cpus-per-job and --ray-cpus need --ray")
    try:
        report = run_batch(args.jobs, args.out, options=options, retries=args.retries, ray=ray, quiet=args.quiet)
    except JobsFileError as exc:
        raise UserError(str(exc)) from None
    if not args.quiet:
        print(f"{report.done} done, {report.failed} failed, {report.skipped} skipped (finished earlier); "
              f"manifest {report.manifest}; summary {report.tables['summary_md']}")
        if report.failed:
            print(f"{report.failed} job(s) failed: see the 'error' of each in the manifest", file=sys.stderr)
    return 0 if report.ok else 1
