"""Small scenes and measurements shared by the edit, densify and worker tests."""

from __future__ import annotations

import math

import torch

from engine.camera import Cameras
from engine.render import render
from engine.scene import GaussianScene, rgb_to_sh0


def blob(num: int, center, radius: float, color, seed: int, sh_degree: int = 1) -> GaussianScene:
    """`num` Gaussians on a sphere shell of one colour: a closed, opaque "part"."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(num, 3, generator=g), dim=-1)
    means = torch.tensor(center, dtype=torch.float32) + directions * radius
    k = (sh_degree + 1) ** 2 - 1
    return GaussianScene.create(
        means=means,
        quats=torch.randn(num, 4, generator=g),
        scales=torch.full((num, 3), math.log(radius * 0.25)),
        opacities=torch.full((num,), 2.0),
        sh0=rgb_to_sh0(torch.tensor(color, dtype=torch.float32)).expand(num, 1, 3).clone(),
        shN=torch.randn(num, k, 3, generator=g) * 0.02,
    )


def two_part_scene(per_part: int = 150) -> tuple[GaussianScene, torch.Tensor, list[str]]:
    """(scene, part_ids [N], names) like assets.default_scene.load_default_scene: a blue head on a green body."""
    head = blob(per_part, (0.0, 0.0, 0.25), 0.2, (0.1, 0.3, 0.9), seed=0)
    body = blob(per_part, (0.0, 0.0, -0.25), 0.2, (0.2, 0.8, 0.2), seed=1)
    part_ids = torch.cat([torch.zeros(per_part, dtype=torch.long), torch.ones(per_part, dtype=torch.long)])
    return GaussianScene.concat([head, body]), part_ids, ["head", "body"]


def masked_colour_error(scene: GaussianScene, mask: torch.Tensor, target, cameras: Cameras) -> float:
    """Mean |render - target| over the projected mask (weighted by it) in the given views."""
    with torch.no_grad():
        rgb = render(scene, cameras, background=(1.0, 1.0, 1.0)).rgb
        mask2d = render(scene, cameras, colors=mask.float()[:, None]).rgb.clamp(0, 1)
    err = (rgb - torch.tensor(target)).abs().mean(dim=-1, keepdim=True)
    return float((err * mask2d).sum() / mask2d.sum())


def params_equal(a: GaussianScene, b: GaussianScene) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for (_, x), (_, y) in zip(a.items(), b.items()))


def default_scene_part(part: str = "antenna", reach_factor: float = 2.0):
    """(scene, mask) from the bundled default scene: the named part masked, cut down to the Gaussians within
    `reach_factor` x the part's radius of its centre (the part plus its surroundings), so a CPU test stays fast."""
    from assets.default_scene import load_default_scene

    scene, part_ids, names = load_default_scene()
    mask = (torch.as_tensor(part_ids).long() == names.index(part)).float()
    means = scene.means[mask > 0]
    centre = means.mean(0)
    reach = (means - centre).norm(dim=-1).quantile(0.98)
    keep = (scene.means - centre).norm(dim=-1) < reach * reach_factor
    return scene.subset(keep), mask[keep]
