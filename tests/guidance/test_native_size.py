"""Renders of any size reach the VAE at the model's native size, the mask with them, gradients flowing back."""

from __future__ import annotations

import pytest
import torch

from engine.guidance import DDSLoss, RoMaPLoss, SDSLoss, SLaMPConfig, load_guidance
from engine.guidance.native_size import model_input_size, native_image_size, resize_images, to_model_size

from .tiny_models import save_tiny_pipeline


class VAESpy:
    """Records the [B, 3, H, W] batches the model's VAE encodes."""

    def __init__(self, model, monkeypatch):
        self.shapes: list[tuple[int, ...]] = []
        encode = model.vae.encode

        def spy(x, *args, **kwargs):
            self.shapes.append(tuple(x.shape))
            return encode(x, *args, **kwargs)

        monkeypatch.setattr(model.vae, "encode", spy)


@pytest.fixture(scope="module")
def tiny16(tiny_pipeline_dir):
    return load_guidance(tiny_pipeline_dir, device="cpu")


@pytest.fixture(scope="module")
def tiny512(tmp_path_factory):
    """SD 1.5's shape with tiny channels: 8x VAE, UNet sample size 64, so 512 px native."""
    return load_guidance(save_tiny_pipeline(tmp_path_factory.mktemp("tiny512") / "m", unet_sample_size=64,
                                            vae_levels=4), device="cpu")


def test_native_size_comes_from_the_unet_and_vae_configs(tiny16, tiny512, red_prior):
    assert native_image_size(tiny16) == 16 and tiny16.image_size == 8 * 2
    assert native_image_size(tiny512) == 512 and tiny512.latent_scale == 8
    assert native_image_size(red_prior) is None  # closed-form: no VAE, any size
    assert model_input_size(red_prior, 40, 24) == (40, 24)
    assert model_input_size(tiny512, 64, 64) == (512, 512)
    assert model_input_size(tiny512, 256, 128) == (512, 256)  # longer side native, aspect kept
    assert model_input_size(tiny512, 100, 30) == (512, 152)  # shorter side rounded to a multiple of 8


def test_resize_is_the_identity_at_the_same_size_and_differentiable_otherwise():
    x = torch.rand(2, 8, 8, 3, requires_grad=True)
    assert resize_images(x, (8, 8)) is x
    y = resize_images(x, (16, 16))
    assert y.shape == (2, 16, 16, 3)
    y.sum().backward()
    torch.testing.assert_close(x.grad.sum(), torch.tensor(2 * 16 * 16 * 3.0))  # bilinear weights sum to 1
    images, mask = to_model_size(None, x)  # no model size: untouched
    assert images is x and mask is None


@pytest.mark.parametrize("method", ["sds", "dds", "romap"])
@pytest.mark.parametrize("size", [8, 24])
def test_every_loss_encodes_at_the_native_size(tiny16, monkeypatch, method, size):
    spy = VAESpy(tiny16, monkeypatch)
    masks = []
    import engine.guidance.dds as dds
    import engine.guidance.sds as sds

    latent_mask_like = sds.latent_mask_like
    for module in (sds, dds):
        monkeypatch.setattr(module, "latent_mask_like", lambda m, z: masks.append(tuple(m.shape)) or latent_mask_like(m, z))
    g = torch.Generator().manual_seed(0)
    originals = torch.rand(2, size, size, 3, generator=g)
    mask = torch.zeros(2, size, size, 1)
    mask[:, : size // 2] = 1.0
    loss = {"sds": SDSLoss(tiny16, "a red chair"), "dds": DDSLoss(tiny16, "a red chair", "a chair"),
            "romap": RoMaPLoss(tiny16, "a red chair", slamp=SLaMPConfig(num_steps=2))}[method]
    image = (originals * 0.9).requires_grad_(True)
    out = loss(image, step=0, total_steps=1, mask2d=mask, originals=originals, generator=g)
    out.loss.backward()
    assert spy.shapes and all(s[-2:] == (16, 16) for s in spy.shapes), spy.shapes
    assert masks and all(m == (2, 16, 16, 1) for m in masks), masks
    assert torch.isfinite(out.loss) and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_romap_anchors_are_made_at_the_native_size_and_returned_at_the_render_size(tiny16, monkeypatch):
    spy = VAESpy(tiny16, monkeypatch)
    originals = torch.rand(1, 24, 24, 3)
    anchors = RoMaPLoss(tiny16, "a red chair", slamp=SLaMPConfig(num_steps=2)).make_anchors(originals, None)
    assert spy.shapes == [(1, 3, 16, 16)] and anchors.shape == originals.shape
    assert 0.0 <= float(anchors.min()) and float(anchors.max()) <= 1.0


def test_sd15_shaped_model_sees_512_whatever_the_render_size(tiny512, monkeypatch):
    spy = VAESpy(tiny512, monkeypatch)
    image = torch.rand(1, 64, 64, 3, requires_grad=True)
    mask = torch.ones(1, 64, 64, 1)
    SDSLoss(tiny512, "a red chair")(image, step=0, total_steps=1, mask2d=mask).loss.backward()
    assert spy.shapes == [(1, 3, 512, 512)]
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_closed_form_prior_keeps_its_native_size(red_prior):
    calls = []
    encode = red_prior.encode_images
    red_prior.encode_images = lambda x: calls.append(tuple(x.shape)) or encode(x)
    image = torch.rand(1, 12, 20, 3, requires_grad=True)
    SDSLoss(red_prior, "red")(image, step=0, total_steps=1).loss.backward()
    assert calls == [(1, 12, 20, 3)] and image.grad.abs().sum() > 0
