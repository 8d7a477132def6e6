"""NFSD against hand-derived expectations on a two-prompt Gaussian prior: both branches of delta_D."""

from __future__ import annotations

import torch

from engine.guidance.nfsd import NFSDLoss
from engine.guidance.sds import SDSLoss, add_noise, sds_weight

from .two_prompt_prior import TwoPromptPrior

PRIOR = TwoPromptPrior(target=(0.8, 0.1, 0.1), means={"ugly": (0.2, 0.2, 0.3)})


def _inputs(t: int):
    g = torch.Generator().manual_seed(t)
    return torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, torch.tensor([t, t]), torch.randn(2, 3, 8, 8, generator=g)


def test_above_t200_with_the_empty_negative_prompt_nfsd_is_exactly_sds_guidance_term():
    """delta_D = eps("") - eps("") = 0, so NFSD = w s delta_C = SDS(y, s) - SDS("", s=1): the noise cancels."""
    z, t, noise = _inputs(600)
    nfsd = NFSDLoss(PRIOR, "red", guidance_scale=7.5, negative_prompt="").gradient(z, t, noise)
    sds = SDSLoss(PRIOR, "red", guidance_scale=7.5)
    guidance_term = sds.gradient(z, t, noise) - SDSLoss(PRIOR, "red", guidance_scale=1.0).gradient(
        z, t, noise, cond=PRIOR.condition(""))
    assert float(guidance_term.abs().max()) > 0.01
    assert torch.allclose(nfsd, guidance_term, atol=1e-5)


def test_both_branches_match_the_papers_formula():
    for t_value, small in ((120, True), (600, False)):
        z, t, noise = _inputs(t_value)
        z_t = add_noise(z, noise, PRIOR.alphas_cumprod[t])
        eps_u, eps_c, eps_neg = (PRIOR.epsilon(z_t, t, p) for p in ("", "red", "ugly"))
        delta_d = eps_u if small else eps_u - eps_neg
        expected = sds_weight(PRIOR.alphas_cumprod, t).reshape(-1, 1, 1, 1) * (delta_d + 7.5 * (eps_c - eps_u))
        got = NFSDLoss(PRIOR, "red", negative_prompt="ugly").gradient(z, t, noise)
        assert torch.allclose(got, expected, atol=1e-5), t_value


def test_below_t200_nfsd_is_sds_without_subtracting_the_noise():
    z, t, noise = _inputs(100)
    sds = SDSLoss(PRIOR, "red", guidance_scale=7.5).gradient(z, t, noise)
    w = sds_weight(PRIOR.alphas_cumprod, t).reshape(-1, 1, 1, 1)
    assert torch.allclose(NFSDLoss(PRIOR, "red").gradient(z, t, noise), sds + w * noise, atol=1e-5)
