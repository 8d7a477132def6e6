import pytest
import torch

from engine.guidance import ClosedFormPrior, SLaMPConfig, part_edit_images
from engine.guidance.slamp import blur_mask, ddim_timesteps

RED = torch.tensor([0.8, 0.1, 0.1])


def _views():
    g = torch.Generator().manual_seed(0)
    originals = torch.rand(2, 16, 16, 3, generator=g)
    mask = torch.zeros(2, 16, 16, 1)
    mask[:, 4:12, 4:12] = 1.0
    return originals, mask


@pytest.mark.parametrize("data_std", [0.05, 0.5])
def test_fully_mixed_schedule_keeps_the_outside_and_edits_the_inside(data_std):
    prior = ClosedFormPrior(tuple(RED.tolist()), data_std=data_std)
    originals, mask = _views()
    config = SLaMPConfig(num_steps=20, t_start=0.8, t_stop=0.0, mask_blur=0.0)
    edited = part_edit_images(prior, originals, mask, "a red patch", config=config,
                              generator=torch.Generator().manual_seed(0))
    inside = mask[..., 0] > 0
    torch.testing.assert_close(edited[~inside], originals[~inside], atol=1e-5, rtol=0)
    before = (originals[inside] - RED).abs().mean()
    after = (edited[inside] - RED).abs().mean()
    assert after < 0.5 * before


def test_unmixed_tail_trades_context_fidelity_for_seam_blending():
    """The later mixing stops (larger t_stop), the more the context may drift; the inside is edited either way."""
    prior = ClosedFormPrior(tuple(RED.tolist()), data_std=0.5)
    originals, mask = _views()
    inside = mask[..., 0] > 0
    drift, error = [], []
    for t_stop in (0.0, 0.05, 0.3):
        edited = part_edit_images(prior, originals, mask, "red", config=SLaMPConfig(t_stop=t_stop, mask_blur=1.0),
                                  generator=torch.Generator().manual_seed(0))
        drift.append(float((edited[~inside] - originals[~inside]).abs().mean()))
        error.append(float((edited[inside] - RED).abs().mean()))
    assert drift[0] < 0.02 < drift[1] < drift[2]
    assert max(error) < 0.8 * float((originals[inside] - RED).abs().mean())


def test_same_seed_same_edit():
    prior = ClosedFormPrior(tuple(RED.tolist()), data_std=0.3)
    originals, mask = _views()
    run = lambda: part_edit_images(prior, originals, mask, "red", generator=torch.Generator().manual_seed(5))
    assert torch.equal(run(), run())


def test_blur_keeps_full_and_empty_masks_and_softens_edges():
    full, empty = torch.ones(1, 1, 6, 6), torch.zeros(1, 1, 6, 6)
    torch.testing.assert_close(blur_mask(full, 1.5), full)
    torch.testing.assert_close(blur_mask(empty, 1.5), empty)
    edge = torch.zeros(1, 1, 6, 6)
    edge[..., :3] = 1.0
    soft = blur_mask(edge, 1.0)
    assert 0 < float(soft[0, 0, 3, 3]) < 0.5 < float(soft[0, 0, 3, 2]) < 1


def test_schedule_is_decreasing_and_validated():
    steps = ddim_timesteps(SLaMPConfig(num_steps=10, t_start=0.5), 1000)
    assert steps[0] == 500 and steps[-1] == 0 and steps == sorted(steps, reverse=True) and len(set(steps)) == 10
    with pytest.raises(ValueError):
        SLaMPConfig(t_stop=0.9, t_start=0.5)
    with pytest.raises(ValueError):
        SLaMPConfig(num_steps=0)
