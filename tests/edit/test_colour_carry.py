"""The learned colour change reaches the part's poorly observed Gaussians, in proportion to how little they got."""

import torch

from engine.edit.colour_carry import ColourExposure, carry_colour, confidence
from engine.guidance.reference import recolour_part
from engine.scene import rgb_to_sh0, sh0_to_rgb
from tests.edit.scenes import blob

BLUE = (0.1, 0.3, 0.9)


def _part():
    """An orange shell with dark "panel line" Gaussians; the ideal recolour keeps each one's shading."""
    part = blob(300, (0.0, 0.0, 0.0), 0.3, (0.9, 0.5, 0.2), seed=3, sh_degree=1)
    g = torch.Generator().manual_seed(1)
    rgb = sh0_to_rgb(part.sh0[:, 0]) * (0.7 + 0.6 * torch.rand(300, 1, generator=g))
    lines = torch.zeros(300, dtype=torch.bool)
    lines[::10] = True
    rgb[lines] = torch.tensor([0.15, 0.12, 0.1])
    part = part.replace(sh0=rgb_to_sh0(rgb.clamp(0, 1))[:, None])
    ideal = recolour_part(part, torch.ones(300, dtype=torch.bool), BLUE)
    return part, ideal, lines


def test_poorly_observed_rows_take_the_change_their_neighbours_imply_and_shading_is_kept():
    part, ideal, lines = _part()
    g = torch.Generator().manual_seed(2)
    seldom = lines | (torch.rand(300, generator=g) < 0.1)  # the lines and a few others got little gradient
    learned = torch.where(seldom[:, None, None], part.sh0 + 0.1 * (ideal.sh0 - part.sh0), ideal.sh0)
    exposure = torch.where(seldom, torch.tensor(0.02), torch.tensor(1.0)).double()
    sh0, shN = carry_colour(part.means, part.sh0, learned, part.shN, part.shN.clone(), confidence(exposure))
    error = lambda s: (sh0_to_rgb(s[seldom, 0]) - sh0_to_rgb(ideal.sh0[seldom, 0])).abs().max(dim=-1).values  # noqa: E731
    assert float(error(learned).mean()) > 0.3
    # the ideal clamps its shading to [0.4, 1.4] and its colours to [0, 1], which one affine map only approximates
    assert float(error(sh0).mean()) < 0.1, float(error(sh0).mean())
    assert float(error(sh0)[lines[seldom]].max()) < 0.16  # dark lines become dark blue, not the surface's blue
    assert torch.equal(sh0[~seldom], learned[~seldom])  # a well observed row keeps what it learned
    assert torch.allclose(shN, part.shN, atol=1e-6)  # no view-dependent change anywhere: none carried


def test_exposure_sums_the_colour_gradient_and_confidence_is_relative_to_the_median():
    exposure = ColourExposure(4, "cpu")
    for _ in range(3):
        exposure.add(torch.tensor([[[3.0, 4.0, 0.0]], [[0.0, 0.0, 1.0]], [[0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0]]]))
    exposure.add(None)
    assert exposure.total.tolist() == [15.0, 3.0, 0.0, 3.0]
    conf = confidence(exposure.total)  # median of the exposed rows 3: full confidence from 1.5 up
    assert conf.tolist() == [1.0, 1.0, 0.0, 1.0]
    assert torch.equal(confidence(torch.zeros(3, dtype=torch.float64)), torch.zeros(3, dtype=torch.float64))
