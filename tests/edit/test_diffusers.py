"""`run_edit` end to end with a real (tiny, random) diffusers pipeline, saved and loaded through the real loader
offline: every method runs with densification and RoMaP's anchors, the VAE receives the model's native 512 px
images whatever the render size, the losses stay finite, and the unmasked Gaussians come back bit-identical."""

from __future__ import annotations

import math

import pytest
import torch

from engine.edit import EditConfig, run_edit
from engine.guidance import load_guidance
from engine.optimize import DensifyConfig
from tests.edit.scenes import params_equal, two_part_scene
from tests.guidance.tiny_models import save_tiny_pipeline


@pytest.fixture(scope="module")
def tiny512(tmp_path_factory):
    """SD 1.5's shape with tiny channels (8x VAE, UNet sample size 64: 512 px native)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    folder = save_tiny_pipeline(tmp_path_factory.mktemp("tiny512") / "m", unet_sample_size=64, vae_levels=4)
    model = load_guidance(str(folder), device="cpu")
    yield model
    mp.undo()


@pytest.mark.parametrize("method", ["sds", "dds", pytest.param("romap", marks=pytest.mark.slow)])  # romap: ~29 s
def test_edit_with_a_diffusers_model(tiny512, monkeypatch, method):
    scene, part_ids, _ = two_part_scene(60)
    mask = (part_ids == 0).float()
    shapes: list[tuple[int, ...]] = []
    encode = tiny512.vae.encode

    def spy(x, *args, **kwargs):
        shapes.append(tuple(x.shape))
        return encode(x, *args, **kwargs)

    monkeypatch.setattr(tiny512.vae, "encode", spy)
    seen: list[dict] = []
    config = EditConfig(prompt="a red head", source_prompt="a blue head", method=method, steps=6, resolution=32,
                        preview_every=0, edit="shape", anchor_views=2, anchor_refresh=3,
                        densify=DensifyConfig(start_step=2, interval=2, grad_threshold=0.0, grow_fraction=0.2))
    result = run_edit(scene, mask, config, tiny512, on_event=lambda e: seen.append(e.losses))
    assert shapes and all(s[-2:] == (512, 512) for s in shapes), shapes
    assert len(seen) == 6 and all(math.isfinite(v) for losses in seen for v in losses.values())
    assert params_equal(scene.subset(mask <= 0.5), result.scene.subset(result.mask <= 0.5))
    assert result.num_split + result.num_cloned > 0
    key = "grad_distill" if method == "romap" else "grad_image"
    assert all(losses[key] > 0 for losses in seen)
