"""`run_edit` with the tiny SD3-layout pipeline (loaded through the real loader offline): every edit method of
engine/guidance/methods.py runs masked, the losses stay finite, the VAE sees the model's native size, the masked
part moves and the unmasked Gaussians come back bit-identical."""

from __future__ import annotations

import math

import pytest

from engine.edit import METHODS, EditConfig, run_edit
from tests.edit.scenes import params_equal, two_part_scene


@pytest.mark.parametrize("method", METHODS)
def test_edit_with_a_flow_model_leaves_the_unmasked_gaussians_alone(tiny_flow_model, monkeypatch, method):
    scene, part_ids, _ = two_part_scene(40)
    mask = (part_ids == 0).float()
    shapes: list[tuple[int, ...]] = []
    encode = tiny_flow_model.vae.encode

    def spy(x, *args, **kwargs):
        shapes.append(tuple(x.shape))
        return encode(x, *args, **kwargs)

    monkeypatch.setattr(tiny_flow_model.vae, "encode", spy)
    seen: list[dict] = []
    config = EditConfig(prompt="a red head", source_prompt="a blue head", method=method, steps=2, resolution=32,
                        preview_every=0, anchor_views=1, anchor_refresh=2)
    result = run_edit(scene, mask, config, tiny_flow_model, on_event=lambda e: seen.append(e.losses))
    assert shapes and all(s[-2:] == (16, 16) for s in shapes), shapes
    assert len(seen) == 2 and all(math.isfinite(v) for losses in seen for v in losses.values())
    assert params_equal(scene.subset(mask <= 0.5), result.scene.subset(result.mask <= 0.5))
    assert not params_equal(scene.subset(mask > 0.5), result.scene.subset(result.mask > 0.5))
