"""Time one guidance step (loss + backward to the images) per method; prints JSON.

CPU: the closed-form prior (64x64 renders) and a tiny random SD-shaped pipeline (32x32). With CUDA, also a
Stable-Diffusion-1.5-sized random-weight model in fp16 at 512x512 (time per SDS / DDS / RoMaP step, time to make
one RoMaP anchor, peak GPU memory). Renderer time is not included: bench/edit.py measures whole edit steps.

    python bench/guidance.py [--steps 5] [--batch 1]

On a busy machine set OMP_NUM_THREADS=1: torch's default thread count spin-waits against other processes.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.guidance import ClosedFormPrior, DDSLoss, DiffusersModel, RoMaPLoss, SDSLoss, SLaMPConfig  # noqa: E402
from engine.guidance.closed_form import sd_alphas_cumprod  # noqa: E402


def _tokenizer(length: int):
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.punctuation:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=length)


def random_sd_model(*, full_size: bool, device: torch.device, dtype: torch.dtype) -> DiffusersModel:
    """Random weights in SD 1.5's shapes (full_size) or a tiny stand-in; no files, no downloads."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = _tokenizer(77 if full_size else 16)
    if full_size:
        text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                              num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                              bos_token_id=0, eos_token_id=1, pad_token_id=1)
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)  # SD 1.5 layout
        vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                            sample_size=512, scaling_factor=0.18215)
    else:
        text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                              pad_token_id=1)
        unet = UNet2DConditionModel(sample_size=8, layers_per_block=1, block_out_channels=(32, 64),
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                    attention_head_dim=8)
        vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            block_out_channels=(16, 32), latent_channels=4, norm_num_groups=8, layers_per_block=1)
    return DiffusersModel(
        tokenizer=tokenizer, text_encoder=CLIPTextModel(text).to(device, dtype), unet=unet.to(device, dtype),
        vae=vae.to(device, dtype), alphas_cumprod=sd_alphas_cumprod(), prediction_type="epsilon", device=device,
        dtype=dtype, name="random-sd15" if full_size else "random-tiny",
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_methods(model, resolution: int, batch: int, steps: int) -> dict:
    device = model.device
    g = torch.Generator().manual_seed(0)
    originals = torch.rand(batch, resolution, resolution, 3, generator=g).to(device)
    mask = torch.zeros(batch, resolution, resolution, 1, device=device)
    mask[:, resolution // 4: 3 * resolution // 4, resolution // 4: 3 * resolution // 4] = 1.0
    romap = RoMaPLoss(model, "a red chair", slamp=SLaMPConfig(num_steps=20))
    romap.make_anchors(originals, mask, generator=g)  # warm-up
    _sync(device)
    start = time.perf_counter()
    anchors = romap.make_anchors(originals, mask, generator=g)
    _sync(device)
    result = {"anchor_s_per_view": round((time.perf_counter() - start) / batch, 4)}
    losses = {"sds": SDSLoss(model, "a red chair"), "dds": DDSLoss(model, "a red chair", "a chair"), "romap": romap}
    for name, loss in losses.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for step in range(steps + 1):  # the first step warms up
            image = originals.clone().requires_grad_(True)
            _sync(device)
            start = time.perf_counter()
            out = loss(image, step=step, total_steps=steps + 1, mask2d=mask, originals=originals, anchors=anchors,
                       generator=g)
            out.loss.backward()
            _sync(device)
            times.append(time.perf_counter() - start)
        entry = {"ms_per_step": round(1000 * sum(times[1:]) / steps, 2), "steps_per_s": round(steps / sum(times[1:]), 2)}
        if device.type == "cuda":
            entry["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        result[name] = entry
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method (after one warm-up step)")
    parser.add_argument("--batch", type=int, default=1, help="views per step")
    args = parser.parse_args()
    cpu = torch.device("cpu")
    report = {
        "torch_threads": torch.get_num_threads(),
        "cpu_closed_form_64": time_methods(ClosedFormPrior((0.8, 0.1, 0.1)), 64, args.batch, args.steps),
        "cpu_tiny_random_32": time_methods(random_sd_model(full_size=False, device=cpu, dtype=torch.float32), 32,
                                           args.batch, args.steps),
    }
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        report["device"] = torch.cuda.get_device_name(gpu)
        report["cuda_sd15_random_fp16_512"] = time_methods(
            random_sd_model(full_size=True, device=gpu, dtype=torch.float16), 512, args.batch, args.steps)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
