"""A job function for the Ray tests whose worker process dies (os._exit) on chosen attempts, else runs the job.

Kept free of heavy imports so a worker can unpickle it and die fast.
"""

from __future__ import annotations

import os


def maybe_die(job, out_dir, options):
    """`dies-once`: the first attempt kills its worker; `dies-always`: every attempt does; others run normally."""
    from engine.batch.execute import attempts_so_far, run_job

    if job.id == "dies-always" or (job.id == "dies-once" and attempts_so_far(out_dir, job.id) == 1):
        os._exit(1)
    return run_job(job, out_dir, options)
