"""Model specs, the unavailable-model message, and tiny random pipelines through the real loader (offline)."""

import json

import pytest
import torch

from engine.guidance import (
    DEFAULT_MODEL,
    MODEL_ENV_VAR,
    ClosedFormPrior,
    DDSLoss,
    DiffusersModel,
    ModelSpecError,
    ModelUnavailableError,
    RoMaPLoss,
    SDSLoss,
    SLaMPConfig,
    load_guidance,
    parse_model_spec,
)
from engine.guidance.closed_form import sd_alphas_cumprod

from .tiny_models import LATENT_SCALE


# --- specs -----------------------------------------------------------------------------------------------
def test_closed_form_specs():
    assert parse_model_spec("closed-form:#d02020").colour == pytest.approx((0xD0 / 255, 0x20 / 255, 0x20 / 255))
    assert parse_model_spec("closed-form:red").colour == (1.0, 0.0, 0.0)
    assert parse_model_spec(" closed-form:00ff00 ").colour == (0.0, 1.0, 0.0)
    assert str(parse_model_spec("closed-form:#f00")) == "closed-form:#ff0000"
    for bad in ("closed-form:", "closed-form", "closed-form:notacolour", "closed-formred"):
        with pytest.raises(ModelSpecError):
            parse_model_spec(bad)


def test_hub_ids_directories_and_malformed_specs(tmp_path, monkeypatch):
    assert parse_model_spec("stable-diffusion-v1-5/stable-diffusion-v1-5").kind == "hub"
    assert parse_model_spec(str(tmp_path)) == parse_model_spec(tmp_path)
    assert parse_model_spec(tmp_path).kind == "local"
    (tmp_path / "file.bin").write_bytes(b"x")
    for bad in ("", "   ", "a b/c", "./no/such/dir", "/no/such/dir", str(tmp_path / "file.bin"), "a/b/c"):
        with pytest.raises(ModelSpecError):
            parse_model_spec(bad)
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    assert parse_model_spec(None).location == DEFAULT_MODEL
    monkeypatch.setenv(MODEL_ENV_VAR, "closed-form:blue")
    assert parse_model_spec(None).colour == (0.0, 0.0, 1.0)


def test_closed_form_spec_loads_the_prior_without_weights():
    model = load_guidance("closed-form:#d02020", device="cpu")
    assert isinstance(model, ClosedFormPrior) and model.name == "closed-form:#d02020"
    torch.testing.assert_close(model.target, torch.tensor([0xD0, 0x20, 0x20]) / 255.0)


# --- unavailable models ----------------------------------------------------------------------------------
def test_missing_hub_model_says_what_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache: nothing to find offline
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    with pytest.raises(ModelUnavailableError) as info:
        load_guidance("nobody-here/no-such-model", device="cpu")
    message = str(info.value)
    assert "hf download nobody-here/no-such-model" in message
    assert "unet/" in message and "--model" in message and MODEL_ENV_VAR in message
    assert isinstance(info.value, OSError)


def test_incomplete_local_directory_names_the_missing_parts(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "vae").mkdir()
    with pytest.raises(ModelUnavailableError, match=r"missing subfolder\(s\) tokenizer/, text_encoder/, scheduler/"):
        load_guidance(tmp_path, device="cpu")


def test_corrupt_local_model_is_unavailable_not_a_crash(tiny_pipeline_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline_dir, broken)
    (broken / "unet" / "config.json").write_text("{not json")
    with pytest.raises(ModelUnavailableError, match="cannot load"):
        load_guidance(broken, device="cpu")


# --- tiny random pipelines through the real loader ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tiny_pipeline_dir):
    return load_guidance(tiny_pipeline_dir, device="cpu")


@pytest.fixture(scope="module")
def tiny_vpred_model(tiny_vpred_dir):
    return load_guidance(tiny_vpred_dir, device="cpu")


def test_tiny_pipeline_loads_with_its_schedule(tiny_model, tiny_pipeline_dir):
    assert isinstance(tiny_model, DiffusersModel)
    assert tiny_model.dtype == torch.float32 and tiny_model.prediction_type == "epsilon"
    assert tiny_model.latent_scale == LATENT_SCALE and tiny_model.latent_channels == 4
    torch.testing.assert_close(tiny_model.alphas_cumprod, sd_alphas_cumprod())
    assert json.loads((tiny_pipeline_dir / "model_index.json").read_text())["unet"][1] == "UNet2DConditionModel"


def test_text_embeddings_are_cached_and_prompt_dependent(tiny_model):
    """The text encoder runs once per new prompt: repeated prompts (and conditions) come from the cache."""
    batches = []  # prompts per text-encoder call
    hook = tiny_model.text_encoder.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    try:
        first = tiny_model.text_embeddings(["a cached chair", "a cached red chair", "a cached chair"])
        assert batches == [2]  # one call, the repeated prompt encoded once
        assert first.shape[0] == 3 and torch.equal(first[0], first[2]) and not torch.equal(first[0], first[1])
        again = tiny_model.text_embeddings(["a cached red chair"])
        cond = tiny_model.condition("a cached chair")
        assert batches == [2]  # nothing new: no encoder call
        assert torch.equal(again[0], first[1]) and torch.equal(cond.embeddings[0], first[0])
        tiny_model.text_embeddings(["a cached chair", "a new cached chair"])
        assert batches == [2, 1]  # only the new prompt is encoded
    finally:
        hook.remove()


def test_fp16_weight_variant_is_preferred_and_falls_back(tiny_pipeline_dir, tmp_path):
    """In fp16 the loader takes the `fp16` variant files where the folder (or hub repo) has them, else the
    plain files; in fp32 always the plain files."""
    import shutil

    from .tiny_models import tiny_parts

    plain = load_guidance(tiny_pipeline_dir, device="cpu", dtype=torch.float16)  # no variant files: fallback
    with_variant = tmp_path / "with-fp16"
    shutil.copytree(tiny_pipeline_dir, with_variant)
    other = tiny_parts(seed=7)  # different weights, so we can tell which files were read
    for name in ("text_encoder", "unet", "vae"):
        other[name].to(torch.float16).save_pretrained(with_variant / name, variant="fp16")
    fp16 = load_guidance(with_variant, device="cpu", dtype=torch.float16)
    fp32 = load_guidance(with_variant, device="cpu", dtype=torch.float32)
    reference = load_guidance(tiny_pipeline_dir, device="cpu")
    for name in ("text_encoder", "unet", "vae"):
        want_variant = next(getattr(other[name], "parameters")()).to(torch.float16)
        want_plain = next(getattr(reference, name).parameters())
        assert next(getattr(fp16, name).parameters()).dtype == torch.float16
        assert torch.equal(next(getattr(fp16, name).parameters()), want_variant), name
        assert torch.equal(next(getattr(fp32, name).parameters()), want_plain), name
        assert torch.equal(next(getattr(plain, name).parameters()), want_plain.to(torch.float16)), name


def test_missing_hub_model_in_fp16_still_says_what_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelUnavailableError, match="hf download nobody-here/no-such-model"):
        load_guidance("nobody-here/no-such-model", device="cpu", dtype=torch.float16)


def test_predict_noise_applies_classifier_free_guidance(tiny_model):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([10, 900])
    cond, uncond = tiny_model.condition("a red chair"), tiny_model.condition("")
    with torch.no_grad():
        eps_c = tiny_model.predict_noise(z, t, cond, guidance_scale=1.0)
        eps_u = tiny_model.predict_noise(z, t, uncond, guidance_scale=1.0)
        eps_g = tiny_model.predict_noise(z, t, cond, guidance_scale=7.5)
    torch.testing.assert_close(eps_g, eps_u + 7.5 * (eps_c - eps_u), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(eps_c, eps_u)


def test_v_prediction_is_converted_to_epsilon(tiny_vpred_model):
    model = tiny_vpred_model
    assert model.prediction_type == "v_prediction"
    z = torch.randn(1, 4, 8, 8)
    t = torch.tensor([500])
    cond = model.condition("a chair")
    with torch.no_grad():
        v = model.unet(z, t, encoder_hidden_states=cond.embeddings).sample
        eps = model.predict_noise(z, t, cond, guidance_scale=1.0)
    a = model.alphas_cumprod[500]
    torch.testing.assert_close(eps, a.sqrt() * v + (1 - a).sqrt() * z)


def test_images_round_trip_through_latents(tiny_model):
    images = torch.rand(2, 16, 16, 3)
    latents = tiny_model.encode_images(images)
    assert latents.shape == (2, 4, 8, 8) and latents.dtype == torch.float32
    decoded = tiny_model.decode_latents(latents)
    assert decoded.shape == images.shape and 0 <= float(decoded.min()) and float(decoded.max()) <= 1
    odd = torch.rand(1, 15, 16, 3, requires_grad=True)  # resized to the native 16x16 before the VAE
    SDSLoss(tiny_model, "red")(odd, step=0, total_steps=1).loss.backward()
    assert torch.isfinite(odd.grad).all() and odd.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["sds", "dds", "romap"])
def test_every_method_runs_end_to_end_with_finite_gradients(tiny_model, tiny_vpred_model, method):
    models = [tiny_model, tiny_vpred_model]
    mask = torch.zeros(2, 16, 16, 1)
    mask[:, 4:12, 4:12] = 1.0
    originals = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    for model in models:
        losses = {
            "sds": SDSLoss(model, "a red chair"),
            "dds": DDSLoss(model, "a red chair", "a chair"),
            "romap": RoMaPLoss(model, "a red chair", slamp=SLaMPConfig(num_steps=3)),
        }
        image = originals.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([image], lr=0.01)
        g = torch.Generator().manual_seed(0)
        for step in range(2):
            optimizer.zero_grad()
            out = losses[method](image, step=step, total_steps=2, mask2d=mask, originals=originals, generator=g)
            out.loss.backward()
            assert torch.isfinite(out.loss) and torch.isfinite(image.grad).all()
            assert image.grad.abs().sum() > 0
            optimizer.step()


def test_dds_with_equal_prompts_is_zero_on_a_real_unet(tiny_model):
    originals = torch.rand(2, 16, 16, 3)
    image = originals.clone().requires_grad_(True)
    out = DDSLoss(tiny_model, "a chair", "a chair")(image, step=0, total_steps=1, originals=originals)
    out.loss.backward()
    assert image.grad.abs().max() == 0


def test_loads_on_several_threads_at_once_all_succeed(tiny_pipeline_dir):
    """Two sessions loading models at once (or a cancelled job's load still running when the next starts): the
    libraries build modules on the "meta" device by patching torch for the whole process, so unguarded
    concurrent loads fail with "Unsupported device type 'meta'". Each load here must give a working model."""
    import threading

    results, errors = [], []

    def load():
        try:
            results.append(load_guidance(str(tiny_pipeline_dir), device="cpu"))
        except Exception as exc:  # collected: the assertion below names it
            errors.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(results) == 4
    for model in results:
        assert all(p.device.type == "cpu" for p in model.unet.parameters())
