"""Time text-to-3D generation on the CPU and record the Gaussian count over the run; prints JSON.

- closed-form reference prior (engine/guidance/reference.py): generation from a sphere toward a known two-blob
  object, SDS and ISM, whole runs with densification: steps/s, Gaussian count every few steps, and the image
  error to the reference's views before and after (the proof that the run does something);
- the tiny random SD-shaped pipeline (tests/guidance/tiny_models.py, built in memory): steps/s per method.

    python bench/generate.py [--steps 300] [--resolution 64] [--num-gaussians 1000] [--tiny-steps 10]

On a busy machine set OMP_NUM_THREADS=1: torch's default thread count spin-waits against other processes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.generate import GenerateConfig, initial_scene, object_orbit, run_generate  # noqa: E402
from engine.guidance.reference import ReferencePrior  # noqa: E402
from engine.render import render  # noqa: E402
from engine.render.images import rgb_renderer  # noqa: E402
from tests.generate.scenes import two_blob_reference  # noqa: E402


def timed_run(config: GenerateConfig, model, *, every: int) -> dict:
    """One generation run: steps/s (after the first step, which compiles kernels) and the count timeline."""
    timeline: list[list[float]] = []
    stamps: list[float] = []

    def on_event(event) -> None:
        stamps.append(time.perf_counter())
        if event.step == 1 or event.step % every == 0 or event.step == event.total:
            timeline.append([event.step, event.num_gaussians, round(event.elapsed_s, 3), event.resolution])

    start = time.perf_counter()
    scene = run_generate(config, model, on_event=on_event)
    total = time.perf_counter() - start
    steady = (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1) if len(stamps) > 1 else total
    return {
        "steps": config.steps,
        "wall_s": round(total, 3),
        "steps_per_s": round(1.0 / steady, 2),
        "final_gaussians": len(scene),
        "gaussians_over_time": timeline,  # [step, count, elapsed_s, resolution]
        "_scene": scene,
    }


def reference_runs(args) -> dict:
    prior = ReferencePrior(two_blob_reference(), render_fn=rgb_renderer())
    out = {}
    for method in ("sds", "ism"):
        config = GenerateConfig(
            prompt="two blobs", method=method, steps=args.steps, resolution=args.resolution,
            num_gaussians=args.num_gaussians, preview_every=0, t_max_end=0.98,  # = t_max: no annealing
        )
        config.densify.start_step, config.densify.interval = args.steps // 10, args.steps // 10
        start = initial_scene(config)
        views = object_orbit(start, config).ring(6, resolution=args.resolution, offset_deg=10.0)
        target = prior.target_images(views)

        def error(scene) -> float:
            with torch.no_grad():
                return float((render(scene, views, background=(1.0, 1.0, 1.0)).rgb - target).abs().mean())

        result = timed_run(config, prior, every=max(args.steps // 10, 1))
        scene = result.pop("_scene")
        result["image_error_before"] = round(error(start), 5)
        result["image_error_after"] = round(error(scene), 5)
        out[method] = result
    return out


def tiny_runs(args) -> dict:
    from engine.guidance import DiffusersModel
    from engine.guidance.closed_form import sd_alphas_cumprod
    from tests.guidance.tiny_models import tiny_parts

    parts = tiny_parts()
    model = DiffusersModel(
        tokenizer=parts["tokenizer"], text_encoder=parts["text_encoder"], unet=parts["unet"], vae=parts["vae"],
        alphas_cumprod=sd_alphas_cumprod(), prediction_type="epsilon", device=torch.device("cpu"),
        dtype=torch.float32, name="tiny-random",
    )
    out = {}
    for method in ("sds", "ism"):
        config = GenerateConfig(prompt="a red apple", method=method, steps=args.tiny_steps, resolution=32,
                                num_gaussians=args.num_gaussians, preview_every=0)
        result = timed_run(config, model, every=max(args.tiny_steps // 5, 1))
        result.pop("_scene")
        out[method] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="steps of each closed-form reference run")
    parser.add_argument("--resolution", type=int, default=64, help="render size of the closed-form runs")
    parser.add_argument("--num-gaussians", type=int, default=1000, help="Gaussians in the starting sphere")
    parser.add_argument("--tiny-steps", type=int, default=10, help="steps of each tiny-model run (0: skip)")
    args = parser.parse_args()
    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": torch.get_num_threads(),
        "cpu_closed_form_reference": reference_runs(args),
    }
    if args.tiny_steps > 0:
        report["cpu_tiny_random_32"] = tiny_runs(args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
