"""The SDS variants on the rectified-flow family (the tiny SD3-layout pipeline, loaded offline by the real loader):
their epsilon differences carry SDS's weight for that family (`sds.distil_weight`), so the papers' identities
still hold there: ESD at lambda = 1 is RFDS, NFSD above t = 200 with an empty negative prompt is RFDS's guidance
term, CSD is (s - 1) times the velocity's classifier direction. And the per-family defaults reach the loss."""

from __future__ import annotations

import torch

from engine.edit import EditConfig, build_loss
from engine.guidance.csd import CSDLoss
from engine.guidance.esd import ESDLoss
from engine.guidance.nfsd import NFSDLoss
from engine.guidance.sds import SDSLoss, add_noise, distil_weight


def _inputs(seed: int, t: list[int]):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 16, 8, 8, generator=g), torch.tensor(t), torch.randn(2, 16, 8, 8, generator=g)


def test_distil_weight_turns_an_epsilon_difference_into_the_velocity_difference(tiny_flow_model):
    """(eps_a - eps_b) / (1 - s) = v_a - v_b at one x_s (eps = x_s + (1 - s) v): checked on the transformer."""
    model = tiny_flow_model
    z, t, noise = _inputs(0, [450, 950])
    x_vp = add_noise(z, noise, model.alphas_cumprod[t])
    a, b = model.condition("a red chair"), model.condition("")
    eps_diff = (model.predict_noise(x_vp, t, a, guidance_scale=1.0)
                - model.predict_noise(x_vp, t, b, guidance_scale=1.0))
    x_s = (1 - model.sigmas[t]).reshape(-1, 1, 1, 1) * z + model.sigmas[t].reshape(-1, 1, 1, 1) * noise
    v_diff = (model.predict_velocity(x_s, t, a, guidance_scale=1.0)
              - model.predict_velocity(x_s, t, b, guidance_scale=1.0))
    torch.testing.assert_close(distil_weight(model, t).reshape(-1, 1, 1, 1) * eps_diff, v_diff, rtol=1e-3, atol=1e-4)
    assert v_diff.abs().mean() > 1e-3


def test_esd_at_lambda_one_is_rfds_on_the_flow_family(tiny_flow_model):
    z, t, noise = _inputs(1, [400, 900])
    esd = ESDLoss(tiny_flow_model, "a red chair", guidance_scale=30.0, view_weight=1.0)
    mean, var = esd.observe(z)
    rfds = SDSLoss(tiny_flow_model, "a red chair", guidance_scale=30.0).gradient(z, t, noise)
    torch.testing.assert_close(esd.gradient(z, t, noise, mean, var), rfds, rtol=1e-3, atol=1e-3)


def test_nfsd_and_csd_are_rfds_guidance_term_on_the_flow_family(tiny_flow_model):
    """Above t = 200 with an empty negative prompt, delta_D = 0: NFSD = RFDS(y, s) - RFDS("", s=1), the noise
    cancelling; CSD at s = 2 is the same direction divided by s."""
    model = tiny_flow_model
    z, t, noise = _inputs(2, [600, 800])
    guidance_term = (SDSLoss(model, "a red chair", guidance_scale=7.5).gradient(z, t, noise)
                     - SDSLoss(model, "x", guidance_scale=1.0).gradient(z, t, noise, cond=model.condition("")))
    nfsd = NFSDLoss(model, "a red chair", guidance_scale=7.5, negative_prompt="").gradient(z, t, noise)
    torch.testing.assert_close(nfsd, guidance_term, rtol=1e-3, atol=1e-3)
    csd = CSDLoss(model, "a red chair", guidance_scale=2.0).gradient(z, t, noise)
    torch.testing.assert_close(csd * 7.5, guidance_term, rtol=1e-3, atol=1e-3)
    assert guidance_term.abs().mean() > 1e-3


def test_the_loss_gets_the_flow_familys_defaults_and_an_explicit_value_wins(tiny_flow_model, red_prior):
    """On the flow model: RoMaP's t in [0.3, 0.98] without annealing; on the SD-family prior: 0.02-0.98 annealed
    to 0.5; dreamcatalyst keeps its released linear 0.9 -> 0.2 on both; a user's values win on both."""
    def first_last(config, model):
        timesteps = build_loss(config, model).timesteps
        return timesteps.bounds(0, 100, 1000), timesteps.bounds(99, 100, 1000)

    sds = EditConfig(prompt="a red chair", method="sds", steps=100)
    assert first_last(sds, tiny_flow_model) == ((300, 980), (300, 980))
    assert first_last(sds, red_prior) == ((20, 980), (20, 500))
    assert build_loss(sds, tiny_flow_model).guidance_scale == 100.0
    catalyst = EditConfig(prompt="a red chair", source_prompt="a chair", method="dreamcatalyst", steps=100)
    (first, _), (last, _) = first_last(catalyst, tiny_flow_model)
    assert first_last(catalyst, red_prior) == ((first, first), (last, last))
    assert 895 <= first <= 900 and 200 <= last <= 205  # linear from 0.9 T to 0.2 T, taken at each step's middle
    mine = EditConfig(prompt="a red chair", method="sds", steps=100, t_min=0.1, t_max=0.6, guidance_scale=12.0)
    assert first_last(mine, tiny_flow_model) == ((100, 600), (100, 600))
    assert build_loss(mine, tiny_flow_model).guidance_scale == 12.0
    mine.t_max_end = 0.4
    assert first_last(mine, tiny_flow_model) == ((100, 600), (100, 400))
