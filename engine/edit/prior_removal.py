"""Gaussian prior removal: forget the masked part's old appearance before an edit (RoMaP).

Score distillation only nudges what is there; a red cup stays reddish when asked to become blue, and a part
whose new shape differs keeps its old silhouette. Before the edit, this resets the masked Gaussians so the
optimization is not anchored to the old part:

- `reset_color`: the degree-0 colour set to `color` (grey by default): the part's old colour is forgotten. With
  `keep_view_dependent` (the default) the higher SH bands stay as they were: on a real capture they hold its
  lighting (highlights, reflections, shading that changes with the view), which a colour prompt does not ask to
  change; without it they are zeroed too, as RoMaP's code zeroes the colour. Measured on the real playbot head
  recolour (romap, 400 steps at 128 px, reference prior, seed 0; held-out views, PSNR mean / worst, share of the
  part's visible Gaussians left less than half-way): bands zeroed 34.3 / 24.1 dB, 1.57% (relearning the lighting
  from nothing at the bands' small rate left the ring views 6-10 dB off); bands kept 40.7 / 32.5 dB, 0.32%;
  bands reduced to their brightness and the grey shaded by each Gaussian's relative luminance 38.4 / 30.8 dB,
  1.91% (dark Gaussians started darker and stayed short of their target); no reset at all 38.6 / 30.3, 1.05%;
  the body and a ground patch: 32.3 / 28.3 -> 36.8 / 31.4 dB and 36.2 / 28.4 -> 41.9 / 33.3 dB; the bundled
  robot's scarf and body recolours 35.4 -> 40.3 and 31.5 -> 35.7 dB;
- `opacity` / `log_scale_shift`: optionally reset the opacity and shrink/grow the scales;
- `regrow`: delete the masked Gaussians and seed `regrow_count` small grey ones at random positions inside the
  deleted part (sampled among its centres, jittered by their own extents), to be grown back by densification.

Only rows with mask weight > `threshold` are touched; every other Gaussian is returned bit-identical, in its
original order. Regrown Gaussians are appended at the end with mask weight 1. `remove_prior_rows` also says
which input row each output row is (-1 for a regrown one), so an edit can tell its caller where rows went.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..scene import GaussianScene, rgb_to_sh0


@dataclass
class PriorRemoval:
    """How an edit resets the masked Gaussians before it starts."""

    enabled: bool | None = None
    """On/off; None means on for the romap method and off for sds/dds (DDS keeps the source on purpose)."""
    reset_color: bool = True
    """Set the masked Gaussians' colour to `color` and zero their view-dependent SH bands."""
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """The neutral colour (RGB in [0, 1]) the masked part starts from."""
    keep_view_dependent: bool = True
    """reset_color leaves the higher SH bands (a capture's view-dependent lighting) as they were; False zeroes
    them (see the module docstring for what each costs on a real capture)."""
    opacity: float | None = None
    """If set, the masked Gaussians' opacity (in (0, 1)) is reset to this value."""
    log_scale_shift: float | None = None
    """If set, added to the masked Gaussians' log-scales (negative shrinks them)."""
    regrow: bool = False
    """Delete the masked Gaussians and seed a few small new ones inside the part instead of resetting them."""
    regrow_count: int = 0
    """How many Gaussians to seed when regrowing (0: a quarter of the deleted ones, at least 1)."""
    regrow_scale: float = 0.5
    """Seeded Gaussians get this fraction of the deleted ones' median scale."""
    regrow_opacity: float = 0.5
    """Opacity of the seeded Gaussians."""

    def active(self, method: str) -> bool:
        return self.enabled if self.enabled is not None else method == "romap"

    def check(self) -> None:
        """Refuse settings that cannot work, naming the field."""
        if len(self.color) != 3 or not all(0.0 <= c <= 1.0 for c in self.color):
            raise ValueError(f"prior removal color must be three values in [0, 1], got {self.color}")
        if self.opacity is not None and not 0.0 < self.opacity < 1.0:
            raise ValueError(f"prior removal opacity must be in (0, 1), got {self.opacity}")
        if self.regrow_count < 0:
            raise ValueError(f"regrow_count must be >= 0, got {self.regrow_count}")
        if not 0.0 < self.regrow_scale:
            raise ValueError(f"regrow_scale must be > 0, got {self.regrow_scale}")
        if not 0.0 < self.regrow_opacity < 1.0:
            raise ValueError(f"regrow_opacity must be in (0, 1), got {self.regrow_opacity}")


def remove_prior(
    scene: GaussianScene,
    mask: Tensor,  # [N] weights in [0, 1]
    options: PriorRemoval,
    *,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[GaussianScene, Tensor]:
    """The scene with the masked Gaussians reset (or replaced), and the matching mask [N']."""
    out, out_mask, _ = remove_prior_rows(scene, mask, options, threshold=threshold, generator=generator)
    return out, out_mask


def remove_prior_rows(
    scene: GaussianScene,
    mask: Tensor,  # [N] weights in [0, 1]
    options: PriorRemoval,
    *,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[GaussianScene, Tensor, Tensor]:
    """`remove_prior`'s scene and mask [N'], and for each of their rows the input row it is ([N'] int64, on the
    scene's device; -1 for a regrown Gaussian): a reset keeps every row in place, a regrow drops the masked
    rows and appends the seeds."""
    options.check()
    selected = mask > threshold
    rows = torch.arange(len(scene), device=scene.device)
    if not bool(selected.any()):
        return scene, mask, rows
    if options.regrow:
        out, out_mask = _regrow(scene, mask, selected, options, generator)
        kept = rows[~selected.to(scene.device)]
        return out, out_mask, torch.cat([kept, kept.new_full((len(out) - len(kept),), -1)])
    params = {name: t.clone() for name, t in scene.items()}
    with torch.no_grad():
        if options.reset_color:
            params["sh0"][selected], params["shN"][selected] = _reset_colour(scene, selected, options)
        if options.opacity is not None:
            params["opacities"][selected] = torch.logit(torch.tensor(options.opacity, dtype=scene.dtype))
        if options.log_scale_shift is not None:
            params["scales"][selected] += options.log_scale_shift
    return GaussianScene(**params), mask.clone(), rows


def _reset_colour(scene: GaussianScene, selected: Tensor, options: PriorRemoval) -> tuple[Tensor, Tensor]:
    """The selected rows' new (sh0 [M, 1, 3], shN [M, K, 3]) after reset_color."""
    color = torch.tensor(options.color, dtype=scene.dtype, device=scene.device)
    sh0, shN = scene.sh0[selected], scene.shN[selected]
    bands = shN.clone() if options.keep_view_dependent else torch.zeros_like(shN)
    return rgb_to_sh0(color).expand_as(sh0).clone(), bands


def _regrow(
    scene: GaussianScene, mask: Tensor, selected: Tensor, options: PriorRemoval, generator: torch.Generator | None
) -> tuple[GaussianScene, Tensor]:
    removed = scene.subset(selected)
    count = options.regrow_count or max(1, len(removed) // 4)
    pick = torch.randint(len(removed), (count,), generator=generator).to(scene.device)
    extent = torch.exp(removed.scales[pick])  # [count, 3]
    jitter = torch.randn((count, 3), generator=generator, dtype=scene.dtype).to(scene.device) * extent
    median_scale = torch.exp(removed.scales).median()
    log_scale = torch.log(median_scale * options.regrow_scale)
    color = torch.tensor(options.color, dtype=scene.dtype, device=scene.device)
    seeded = GaussianScene.create(
        means=removed.means[pick] + jitter,
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=scene.dtype, device=scene.device).repeat(count, 1),
        scales=torch.full((count, 3), float(log_scale), dtype=scene.dtype, device=scene.device),
        opacities=torch.full((count,), float(torch.logit(torch.tensor(options.regrow_opacity))),
                             dtype=scene.dtype, device=scene.device),
        sh0=rgb_to_sh0(color).expand(count, 1, 3).clone(),
        shN=scene.shN.new_zeros((count,) + tuple(scene.shN.shape[1:])),
    )
    kept = scene.subset(~selected)
    new_mask = torch.cat([mask[~selected], torch.ones(count, dtype=mask.dtype, device=mask.device)])
    return GaussianScene.concat([kept, seeded]), new_mask
