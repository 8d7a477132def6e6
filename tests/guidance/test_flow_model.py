"""SD3-class models: the family read from the config, the tiny SD3-layout pipeline through the real loader
offline, the flow schedule against diffusers' scheduler, and the epsilon view of a velocity model (a DDIM step
in it is the flow's Euler step)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from engine.guidance import DiffusersModel, ModelUnavailableError, load_guidance
from engine.guidance.availability import probe
from engine.guidance.flow_model import FlowModel, equivalent_alphas_cumprod, flow_noised, flow_sigmas
from engine.guidance.loading import DIFFUSION_FAMILY, FLOW_FAMILY, missing_subfolders, model_family
from engine.guidance.sds import add_noise

from .tiny_models import save_tiny_pipeline


def test_family_comes_from_the_components_not_the_name(tmp_path):
    sd3 = {"transformer": ["diffusers", "SD3Transformer2DModel"],
           "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}
    assert model_family(sd3) == FLOW_FAMILY
    assert model_family({**sd3, "_class_name": "StableDiffusionPipeline"}) == FLOW_FAMILY
    sd = {"unet": ["diffusers", "UNet2DConditionModel"], "scheduler": ["diffusers", "PNDMScheduler"],
          "_class_name": "StableDiffusion3Pipeline"}
    assert model_family(sd) == DIFFUSION_FAMILY
    with pytest.raises(ValueError, match="DDPMScheduler scheduler is not supported"):
        model_family({"transformer": ["diffusers", "PixArtTransformer2DModel"],
                       "scheduler": ["diffusers", "DDPMScheduler"]})
    with pytest.raises(ValueError, match="FluxTransformer2DModel rectified-flow model is not supported"):
        model_family({**sd3, "transformer": ["diffusers", "FluxTransformer2DModel"]})
    # a local folder without model_index.json: its subfolders and scheduler config say it
    (tmp_path / "transformer").mkdir()
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "FlowMatchEulerDiscreteScheduler"}))
    assert model_family(None, tmp_path) == FLOW_FAMILY
    assert "text_encoder_2" in missing_subfolders(tmp_path) and "unet" not in missing_subfolders(tmp_path)


def test_tiny_sd3_pipeline_loads_offline_whatever_its_folder_is_called(tiny_flow_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    misleading = tmp_path / "stable-diffusion-v1-5"
    shutil.copytree(tiny_flow_dir, misleading)
    model = load_guidance(str(misleading), device="cpu")
    assert isinstance(model, FlowModel) and missing_subfolders(misleading) == []
    assert probe(str(misleading)).state == "available"  # the app's Model panel asks the same layout check
    assert (model.latent_channels, model.latent_scale, model.image_size, model.dtype) == (16, 2, 16, torch.float32)
    assert model.shift_factor == pytest.approx(0.0609) and model.scaling_factor == pytest.approx(1.5305)
    assert not model.text.has_t5
    cond = model.condition("a red chair")
    assert cond.embeddings.shape == (1, 32, 64) and cond.pooled.shape == (1, 64)
    assert cond.embeddings[0, 16:].abs().max() == 0  # no T5: its 16 tokens are zeros, as the SD3 pipeline feeds
    assert not torch.equal(model.condition("a blue chair").pooled, cond.pooled)
    sd = save_tiny_pipeline(tmp_path / "sd3-medium")
    assert isinstance(load_guidance(str(sd), device="cpu"), DiffusersModel)
    shutil.rmtree(misleading / "transformer")
    with pytest.raises(ModelUnavailableError, match="transformer/"):
        load_guidance(str(misleading), device="cpu")
    assert probe(str(misleading)).state == "unavailable"


def test_schedule_is_the_flow_match_schedulers_table():
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    sigmas = flow_sigmas(1000, 3.0)
    # the scheduler lists u = 1, ..., 1/T (descending, T entries); index i is u = i / T
    torch.testing.assert_close(sigmas[1:], scheduler.sigmas.flip(0)[:999].float(), rtol=1e-5, atol=1e-6)
    assert sigmas[0] == 0 and bool((sigmas.diff() > 0).all())
    # x_s / sqrt((1-s)^2 + s^2) is the variance-preserving latent with the equivalent abar
    z, eps = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    t = torch.tensor([10, 500, 990])
    s, abar = sigmas[t], equivalent_alphas_cumprod(sigmas)[t]
    scale = ((1 - s) ** 2 + s**2).sqrt().reshape(-1, 1, 1, 1)
    torch.testing.assert_close(flow_noised(z, eps, s) / scale, add_noise(z, eps, abar))


def test_guidance_is_applied_to_the_velocity(tiny_flow_model):
    model = tiny_flow_model
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([300, 800])
    cond, empty = model.condition("a red chair"), model.condition("")
    v_cond = model.predict_velocity(x, t, cond, guidance_scale=1.0)
    v_uncond = model.predict_velocity(x, t, empty, guidance_scale=1.0)
    guided = model.predict_velocity(x, t, cond, guidance_scale=5.0)
    torch.testing.assert_close(guided, v_uncond + 5.0 * (v_cond - v_uncond), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(v_cond, v_uncond)


def test_a_ddim_step_on_the_epsilon_view_is_the_flow_euler_step(tiny_flow_model):
    """predict_noise converts the VP latent to x_s and the velocity to epsilon; a DDIM step from t to t' with it
    lands (rescaled) exactly where Euler's x_s' = x_s + (s' - s) v_hat does."""
    model = tiny_flow_model
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(1, 16, 8, 8, generator=g), torch.randn(1, 16, 8, 8, generator=g)
    t, t_next = torch.tensor([700]), torch.tensor([400])
    cond = model.condition("a red chair")
    s, s_next = model.sigmas[t], model.sigmas[t_next]
    a, a_next = model.alphas_cumprod[t], model.alphas_cumprod[t_next]
    x = flow_noised(x0, eps, s)
    euler = x + (s_next - s) * model.predict_velocity(x, t, cond, guidance_scale=4.0)
    z = add_noise(x0, eps, a)
    eps_hat = model.predict_noise(z, t, cond, guidance_scale=4.0)
    x0_hat = (z - (1 - a).sqrt() * eps_hat) / a.sqrt()
    ddim = a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps_hat
    torch.testing.assert_close(ddim * ((1 - s_next) ** 2 + s_next**2).sqrt(), euler, rtol=1e-4, atol=1e-4)


def test_an_optional_t5_encoder_is_loaded_and_fills_its_tokens(tmp_path, monkeypatch):
    from .tiny_models import save_tiny_flow_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_guidance(str(save_tiny_flow_pipeline(tmp_path / "with-t5", t5=True)), device="cpu")
    assert model.text.has_t5
    red, blue = model.condition("a red chair"), model.condition("a blue chair")
    assert red.embeddings.shape == (1, 32, 64)  # 16 CLIP tokens (features 32 + 32, padded to 64), 16 T5 tokens
    assert red.embeddings[0, 16:].abs().max() > 0 and not torch.equal(red.embeddings[0, 16:], blue.embeddings[0, 16:])
    out = model.predict_noise(torch.randn(1, 16, 8, 8), torch.tensor([500]), red, guidance_scale=7.5)
    assert out.shape == (1, 16, 8, 8) and torch.isfinite(out).all()


def test_a_hub_id_in_the_offline_cache_is_read_as_a_flow_model(tiny_flow_dir, tmp_path, monkeypatch):
    """The hub path: model_index.json and the parts come from the Hugging Face cache, offline."""
    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-sd3"
    revision = "0" * 40
    shutil.copytree(tiny_flow_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    model = load_guidance("someone/tiny-sd3", device="cpu")
    assert isinstance(model, FlowModel) and model.name == "someone/tiny-sd3"
