"""Turning a scene: positions, orientations and view-dependent colour all follow the rotation."""

from __future__ import annotations

import pytest
import torch

from engine.sh import eval_sh
from engine.rotate import matrix_to_quat, quat_multiply, rotate_scene, turn_scene
from engine.scene import random_scene
from engine.up import rotation_between


def quat_to_matrix(q):
    w, x, y, z = torch.nn.functional.normalize(q.double(), dim=-1).unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


@pytest.mark.parametrize("up", [(0.0, -1.0, 0.0), (0.0, 0.0, -1.0), (0.3, -0.5, 0.8)])
def test_matrix_to_quat_round_trips(up):
    r = rotation_between((0, 0, 1), up)
    torch.testing.assert_close(quat_to_matrix(matrix_to_quat(r)), r)


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_rotated_scene_is_the_same_scene_seen_turned(degree):
    scene = random_scene(50, seed=1, sh_degree=degree).to(dtype=torch.float64)
    r = rotation_between((0, 0, 1), (0.2, -0.9, 0.3))
    turned = rotate_scene(scene, r)
    torch.testing.assert_close(turned.means, scene.means @ r.T)
    # each Gaussian's frame is turned: R_new = R @ R_old
    torch.testing.assert_close(quat_to_matrix(turned.quats), r @ quat_to_matrix(scene.quats))
    torch.testing.assert_close(turned.sh0, scene.sh0) and torch.testing.assert_close(turned.scales, scene.scales)
    dirs = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=-1)
    if degree:
        # colour seen along d after the turn == colour seen along R^T d before
        torch.testing.assert_close(eval_sh(degree, turned.sh, dirs), eval_sh(degree, scene.sh, dirs @ r))


def test_turn_scene_and_back_is_the_identity():
    scene = random_scene(20, seed=2, sh_degree=2).to(dtype=torch.float64)
    back = turn_scene(turn_scene(scene, (0, 0, 1), (0, -1, 0)), (0, -1, 0), (0, 0, 1))
    for name in ("means", "scales", "opacities", "sh0", "shN"):
        torch.testing.assert_close(getattr(back, name), getattr(scene, name))
    q, p = torch.nn.functional.normalize(back.quats, dim=-1), torch.nn.functional.normalize(scene.quats, dim=-1)
    torch.testing.assert_close(q * torch.sign((q * p).sum(-1, keepdim=True)), p)  # q and -q are one rotation
    assert quat_multiply(torch.tensor([1.0, 0, 0, 0]), torch.tensor([0.0, 1, 0, 0])).tolist() == [0, 1, 0, 0]
