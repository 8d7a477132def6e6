"""Select by text: time of one selection and what attention's coarse resolution costs; prints JSON.

1. "timing": `select_by_text` on the default scene (the toy robot) with random-weight pipelines, --views views x
   --timesteps UNet calls (batches of --batch views), split into render / attention (encode + UNet) / lift.
   Models: "tiny" (tests' pipeline, 16 px native), "tiny_sd_shape" (8x VAE, 512 px native, tiny channels) and,
   with --sd15, a UNet with SD 1.5's channel counts (320/640/1280/1280, 8 heads; random weights, fp16 on CUDA).
2. "oracle": the same pipeline with the attention replaced by the scene's ground-truth part masks average-pooled
   by --pools (1 = exact masks; SD 1.5's 32x32 attention on a 512 px view is a pool of 16), IoU per part of the
   lifted weights cut at 0.5 over the Gaussians seen. This is the best attention could do at that resolution.

    python bench/text_select.py [--views 8] [--size 256] [--timesteps 0.3,0.5] [--pools 1,4,8,16] [--sd15]
Set OMP_NUM_THREADS=1 on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sd15_unet_pipeline(root: Path) -> Path:
    """The tiny pipeline with its UNet replaced by one of SD 1.5's size (random weights, 77-token text)."""
    from diffusers import UNet2DConditionModel

    from tests.guidance.tiny_models import save_tiny_pipeline

    path = save_tiny_pipeline(root / "sd15", unet_sample_size=64, vae_levels=4)
    unet = UNet2DConditionModel(
        sample_size=64, cross_attention_dim=32, attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    )
    unet.save_pretrained(path / "unet")
    return path


def timing(scene, spec: str, args) -> dict:
    from engine.guidance import load_guidance
    from engine.masks import attention as A

    model = load_guidance(spec)
    cfg = A.TextMaskConfig(num_views=args.views, size=args.size, timesteps=args.timesteps, batch_size=args.batch)
    parts: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(*a, **k)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            parts[name] = parts.get(name, 0.0) + time.perf_counter() - t0
            return out
        return wrapper

    originals = {n: getattr(A, n) for n in ("render_views", "attention_maps", "galp")}
    for n, fn in originals.items():
        setattr(A, n, timed(n, fn))
    try:
        A.select_by_text(scene, model, "head", prompt="a robot head", config=cfg)  # warm-up
        parts.clear()
        t0 = time.perf_counter()
        result = A.select_by_text(scene, model, "head", prompt="a robot head", config=cfg)
        total = time.perf_counter() - t0
    finally:
        for n, fn in originals.items():
            setattr(A, n, fn)
    calls = -(-args.views // args.batch) * len(args.timesteps)
    return {"model_native_px": model.image_size, "device": str(model.device), "seconds": round(total, 3),
            "render_s": round(parts["render_views"], 3), "attention_s": round(parts["attention_maps"], 3),
            "lift_s": round(parts["galp"], 3), "unet_calls": calls,
            "per_view_timestep_s": round(parts["attention_maps"] / (args.views * len(args.timesteps)), 4),
            "selected": int((result.weights > 0.5).sum())}


def oracle(scene, ids, names, args) -> dict:
    from engine.masks.attention import TextMaskConfig, select_by_text
    from engine.masks.compositing import compositing_weights
    from engine.masks.evaluation import ground_truth_masks, iou
    from engine.masks.lift_vote import VISIBILITY_EPS

    cfg = TextMaskConfig(num_views=args.views, size=args.size, elevations=(-15.0, 20.0, 50.0))
    out = {}
    for pool in args.pools:
        row = {}
        for part, name in enumerate(names):
            def source(images, cameras):
                truth = ground_truth_masks(compositing_weights(scene, cameras), ids, len(names))[..., part]
                return torch.nn.functional.avg_pool2d(truth[:, None], pool)[:, 0] if pool > 1 else truth

            result = select_by_text(scene, None, name, config=cfg, map_source=source)
            seen = compositing_weights(scene, result.views.cameras).totals().sum(0) > VISIBILITY_EPS
            row[name] = round(iou(result.weights[seen] > 0.5, (ids == part)[seen]), 3)
        out[f"pool_{pool}"] = row
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--timesteps", default="0.3,0.5")
    p.add_argument("--pools", default="1,4,8,16")
    p.add_argument("--sd15", action="store_true", help="also time a UNet of SD 1.5's size (use a GPU)")
    p.add_argument("--no-oracle", action="store_true")
    args = p.parse_args(argv)
    args.timesteps = tuple(float(v) for v in args.timesteps.split(","))
    args.pools = [int(v) for v in args.pools.split(",")]

    from assets.default_scene import load_default_scene
    from tests.guidance.tiny_models import save_tiny_pipeline

    scene, ids, names = load_default_scene()
    ids = torch.as_tensor(ids)
    report = {"scene": "assets/default_scene.ply", "gaussians": len(scene), "views": args.views, "size": args.size,
              "timesteps": list(args.timesteps), "timing": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        specs = {"tiny": save_tiny_pipeline(root / "tiny"),
                 "tiny_sd_shape": save_tiny_pipeline(root / "sd_shape", unet_sample_size=64, vae_levels=4)}
        if args.sd15:
            specs["sd15_unet"] = sd15_unet_pipeline(root)
        for name, path in specs.items():
            report["timing"][name] = timing(scene, str(path), args)
    if not args.no_oracle:
        report["oracle_iou"] = oracle(scene, ids, names, args)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
