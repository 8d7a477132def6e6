"""part_cover draws the whole scene's part-indicator picture bit for bit from the rows in front of the part."""

from __future__ import annotations

import pytest
import torch

from engine.camera import orbit_cameras
from engine.render.cpu import render_cpu
from engine.render.part_cover import part_cover
from render_scenes import random_view_scene


@pytest.mark.parametrize("dtype, size", [(torch.float32, (48, 48)), (torch.float64, (40, 27))])
def test_part_cover_is_the_whole_scenes_indicator_render(dtype, size):
    # a cube of side 8 of Gaussians, the part those within 1.2 of the centre: occluders in front of it,
    # among it and behind it; the last camera looks away from it (nothing of the part drawn)
    scene = random_view_scene(3000, seed=3, sh_degree=1, dtype=dtype, scale_range=(0.02, 0.1))
    scene = scene.replace(means=scene.means * 4.0)
    part = scene.means.norm(dim=-1) < 1.2
    cams = orbit_cameras(torch.zeros(3), 5.0, [0.0, 70.0, 160.0, 250.0], [10.0, 40.0, 25.0, -15.0], width=size[0], height=size[1])
    away = cams[0:1].viewmats.clone()
    away[:, :3, :] = -away[:, :3, :]  # the camera turned around (flip x, y and z axes)
    cams = type(cams)(torch.cat([cams.viewmats, away]), torch.cat([cams.Ks, cams.Ks[:1]]), *size).to(dtype=dtype)
    got = part_cover(scene, part, cams)
    want = render_cpu(scene, cams, sh_degree=1, colors=part.to(dtype)[:, None]).rgb[..., 0]
    assert torch.equal(got, want)
    assert (want[:-1].flatten(1).amax(1) > 0.5).all() and (want[-1] == 0).all()
    alone = render_cpu(scene.subset(part), cams, sh_degree=1, colors=torch.ones(int(part.sum()), 1, dtype=dtype))
    assert (want[:-1].flatten(1).sum(1) < 0.9 * alone.rgb[:-1, ..., 0].flatten(1).sum(1)).all()  # occluded
