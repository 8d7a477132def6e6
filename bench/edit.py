"""Time whole edit steps (render + guidance + backward + masked Adam step) per method; prints JSON.

CPU: the closed-form prior at 64x64 and a tiny random SD-shaped pipeline (tests/guidance/tiny_models.py, saved
and loaded through the real `load_guidance` offline) at 32x32, on the default scene when it is built (else the
two-part test scene), one part masked. With CUDA, also a Stable-Diffusion-1.5-sized random-weight model in fp16
at 512x512 on a random scene of --gaussians Gaussians (10% masked): ms per step and peak GPU memory (the goals:
<= 60 ms per SDS step on an H100 and <= 12 GB peak for 1M Gaussians).

    python bench/edit.py [--steps 10] [--warmup 2] [--gaussians 1000000] [--skip-cpu]

Each method's entry also splits the steady-state step into render / encode / unet / backward / optimizer / other
(ms per step; "encode" is the VAE forward, its backward is in "backward"; "other" is views, region masks,
timestep draws, bookkeeping), measured by timing wrappers around engine.edit.loop's render, the model's
encode_images / predict_noise, Tensor.backward and the optimizer step (with CUDA syncs on a GPU).

Steady-state figures: the first `--warmup` steps (JIT compiles, RoMaP's first anchors) are excluded and reported
as `first_steps_s`; densification does not start within a short run. On a busy machine set OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.edit import EditConfig, run_edit  # noqa: E402

METHODS = ("sds", "dds", "romap")


def bench_scene():
    """(scene, mask, name): the default scene's first part when available, else the two-part test scene."""
    try:
        from assets.default_scene import load_default_scene

        scene, part_ids, names = load_default_scene()
        part_ids = torch.as_tensor(part_ids)
        index = list(names).index("head") if "head" in names else 0
        return scene, (part_ids == index).float(), f"default scene, part {names[index]!r}"
    except (ImportError, FileNotFoundError, OSError):
        from tests.edit.scenes import two_part_scene

        scene, part_ids, names = two_part_scene(150)
        return scene, (part_ids == 0).float(), "two-part test scene (300 Gaussians)"


class PhaseTimer:
    """Wraps callables so that their wall time (synced on CUDA) adds up per phase, for steps after `warmup`."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.totals, self.active = device, {}, False

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            if not self.active:
                return fn(*args, **kwargs)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self.totals[phase] = self.totals.get(phase, 0.0) + time.perf_counter() - t0
        return timed


def time_edit(scene, mask, model, method: str, *, resolution: int, steps: int, warmup: int,
              anchor_views: int = 4, batch_size: int = 1) -> dict:
    config = EditConfig(prompt="a red part", source_prompt="a blue part", method=method, steps=warmup + steps,
                        resolution=resolution, batch_size=batch_size, preview_every=0, anchor_views=anchor_views,
                        anchor_refresh=10_000)
    marks: dict[int, float] = {}
    device = getattr(model, "device", torch.device("cpu"))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)

    timer = PhaseTimer(device)

    def on_event(event) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        marks[event.step] = time.perf_counter()
        timer.active = event.step >= warmup

    import engine.edit.loop as edit_module
    from engine.edit.view_pool import ViewPool  # every render of a step goes through the pass's view pool

    saved = {"render": ViewPool.render, "step": edit_module.gate_and_step, "backward": torch.Tensor.backward,
             "encode": getattr(model, "encode_images"), "unet": getattr(model, "predict_noise")}
    ViewPool.render = timer.wrap("render", saved["render"])
    edit_module.gate_and_step = timer.wrap("optimizer", saved["step"])
    torch.Tensor.backward = timer.wrap("backward", saved["backward"])
    model.encode_images = timer.wrap("encode", saved["encode"])
    model.predict_noise = timer.wrap("unet", saved["unet"])
    try:
        start = time.perf_counter()
        run_edit(scene, mask, config, model, on_event=on_event)
    finally:
        ViewPool.render, edit_module.gate_and_step = saved["render"], saved["step"]
        torch.Tensor.backward = saved["backward"]
        del model.encode_images, model.predict_noise
    timed = marks[warmup + steps] - marks[warmup]
    split = {k: round(1000 * v / steps, 2) for k, v in sorted(timer.totals.items())}
    split["other"] = round(1000 * timed / steps - sum(split.values()), 2)
    entry = {
        "ms_per_step": round(1000 * timed / steps, 2),
        "steps_per_s": round(steps / timed, 3),
        "first_steps_s": round(marks[warmup] - start, 3),
        "split_ms": split,
    }
    if device.type == "cuda":
        entry["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return entry


def tiny_diffusers_model():
    from engine.guidance import load_guidance
    from tests.guidance.tiny_models import save_tiny_pipeline

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(tempfile.mkdtemp(prefix="tiny-sd-"))
    save_tiny_pipeline(folder)
    return load_guidance(str(folder), device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--gaussians", type=int, default=1_000_000, help="CUDA: Gaussians in the random scene")
    parser.add_argument("--skip-cpu", action="store_true", help="only the CUDA figures")
    args = parser.parse_args()

    from engine.guidance import ClosedFormPrior

    report: dict = {"torch_threads": torch.get_num_threads()}
    if not args.skip_cpu:
        scene, mask, name = bench_scene()
        report["cpu_scene"] = {"name": name, "gaussians": len(scene), "masked": int((mask > 0.5).sum())}
        prior = ClosedFormPrior((0.85, 0.1, 0.1))
        report["cpu_closed_form_64"] = {
            m: time_edit(scene, mask, prior, m, resolution=64, steps=args.steps, warmup=args.warmup) for m in METHODS
        }
        tiny = tiny_diffusers_model()
        report["cpu_tiny_random_32"] = {
            m: time_edit(scene, mask, tiny, m, resolution=32, steps=args.steps, warmup=args.warmup) for m in METHODS
        }
    if torch.cuda.is_available():
        from bench.guidance import random_sd_model
        from engine.scene import random_scene

        gpu = torch.device("cuda")
        report["device"] = torch.cuda.get_device_name(gpu)
        scene = random_scene(args.gaussians, sh_degree=3, seed=0, scale_range=(0.002, 0.01)).to(gpu)
        g = torch.Generator().manual_seed(0)
        mask = (torch.rand(args.gaussians, generator=g) < 0.1).float()
        mask[scene.means[:, 0].cpu() > 0.0] = 0.0  # a spatially coherent "part": half of a 10% sample
        model = random_sd_model(full_size=True, device=gpu, dtype=torch.float16)
        report["cuda_scene"] = {"gaussians": len(scene), "masked": int((mask > 0.5).sum()), "sh_degree": 3}
        report["cuda_sd15_random_fp16_512"] = {
            m: time_edit(scene, mask.to(gpu), model, m, resolution=512, steps=args.steps, warmup=args.warmup)
            for m in METHODS
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
