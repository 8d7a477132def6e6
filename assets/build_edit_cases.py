"""Ground-truth edits of the bundled robot: for each case the scene, the mask, the edited target and a prompt.

    python -m assets.build_edit_cases [--out-dir DIR] [--case NAME ...]

writes, per case, DIR/NAME/{target.ply, mask.npy, case.json} (the input scene is assets/default_scene.ply).
Tests and bench/edit_quality.py build the cases in memory with `edit_cases()`; `reference:DIR/NAME/target.ply`
is then the model spec of a prior whose ideal edit is that target.

The cases (deterministic; the only randomness is the hat's surface samples, seeded):
- recolour_scarf: the red scarf becomes blue, same geometry (its baked shading kept);
- recolour_body: the blue body becomes green, same geometry;
- reshape_antenna: the antenna's ball twice the size (centres pushed out from the ball's centre, scales x2);
- add_hat: a purple cone hat on the head; the mask is the head plus a box of empty space above it (the region
  volume), so the edit must create Gaussians where there were none;
- remove_antenna: the antenna (rod and ball) deleted.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

HAT_COLOUR = (0.55, 0.22, 0.75)
HAT_HEIGHT = 0.16
HAT_RADIUS = 0.11
HAT_SPACING = 0.009
KEY_LIGHT = np.array([0.45, 0.35, 0.82]) / np.linalg.norm([0.45, 0.35, 0.82])
SH_C0 = 0.28209479177387814


@dataclass
class EditCase:
    """One ground-truth edit: run the edit on (scene, mask[, boxes]) with `prompt`; the ideal is `target`."""

    name: str
    kind: str  # "recolour" | "reshape" | "add" | "remove"
    prompt: str
    source_prompt: str
    scene: object  # GaussianScene (the input)
    mask: torch.Tensor  # [N] float weights
    target: object  # GaussianScene (the ideal result)
    boxes: tuple = field(default_factory=tuple)  # engine.edit.Box volumes added to the region
    changed: torch.Tensor | None = None  # [N_target] bool: target rows that belong to the edited part

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "prompt": self.prompt, "source_prompt": self.source_prompt,
                "masked": int((self.mask > 0.5).sum()), "boxes": [[list(b.lo), list(b.hi)] for b in self.boxes],
                "target_gaussians": len(self.target)}


def _cone_hat(base_z: float, centre_xy, scale_like: torch.Tensor, sh_rest: int, seed: int):
    """Flat Gaussians on the lateral surface of a cone standing on z = base_z (apex up), shaded like the robot."""
    from engine.scene import GaussianScene

    rng = np.random.default_rng(seed)
    slant = math.hypot(HAT_RADIUS, HAT_HEIGHT)
    area = math.pi * HAT_RADIUS * slant
    count = int(area / HAT_SPACING**2)
    # area-uniform on the lateral surface: distance from the apex along the slant ~ sqrt(U)
    s = np.sqrt(rng.random(count))  # 0 at the apex, 1 at the rim
    phi = rng.random(count) * 2 * math.pi
    radius = HAT_RADIUS * s
    points = np.stack([centre_xy[0] + radius * np.cos(phi), centre_xy[1] + radius * np.sin(phi),
                       base_z + HAT_HEIGHT * (1.0 - s)], axis=1)
    normal = np.stack([HAT_HEIGHT * np.cos(phi), HAT_HEIGHT * np.sin(phi), np.full(count, HAT_RADIUS)], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    nx, ny, nz = normal.T  # shortest rotation +z -> normal, (w, x, y, z)
    quats = np.stack([1.0 + nz, -ny, nx, np.zeros_like(nz)], axis=1)
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    tangent = 0.9 * HAT_SPACING
    scales = np.log(np.tile([tangent, tangent, 0.22 * tangent], (count, 1)))
    shade = 0.80 + 0.26 * np.clip(normal @ KEY_LIGHT, 0.0, 1.0)
    rgb = np.clip(np.asarray(HAT_COLOUR)[None] * shade[:, None], 0.0, 1.0)
    f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    return GaussianScene.create(
        means=f32(points), quats=f32(quats), scales=f32(scales), opacities=torch.full((count,), math.log(0.98 / 0.02)),
        sh0=f32((rgb - 0.5) / SH_C0)[:, None, :], shN=torch.zeros(count, sh_rest, 3, dtype=scale_like.dtype),
    )


def _cropped(scene, ids: torch.Tensor, part_index: int, crop: float | None, above: float = 0.0):
    """(scene, ids) cut down to the Gaussians within `crop` x the part's radius of its centre (raised by `above`
    so a hat's space is kept), or unchanged when crop is None: small scenes for fast tests."""
    if crop is None:
        return scene, ids
    means = scene.means[ids == part_index]
    centre = means.mean(0) + torch.tensor([0.0, 0.0, above])
    reach = float((means - means.mean(0)).norm(dim=-1).max()) + above
    keep = (scene.means - centre).norm(dim=-1) <= crop * reach
    return scene.subset(keep), ids[keep]


def edit_cases(names: tuple[str, ...] | None = None, seed: int = 0, crop: float | None = None) -> list[EditCase]:
    """The ground-truth cases (all, or those named), built from the bundled default scene. With `crop`, each
    case's scene is cut down to its part's neighbourhood (see `_cropped`) — the same edit on fewer Gaussians."""
    from assets.default_scene import load_default_scene
    from engine.edit.region import Box
    from engine.guidance.reference import recolour_part
    from engine.scene import GaussianScene

    full, part_ids, part_names = load_default_scene()
    full_ids = torch.as_tensor(part_ids).long()
    cases: list[EditCase] = []
    want = lambda c: names is None or c in names  # noqa: E731

    def around(part: str, above: float = 0.0):
        scene, ids = _cropped(full, full_ids, part_names.index(part), crop, above)
        return scene, ids == part_names.index(part)

    if want("recolour_scarf"):
        scene, sel = around("scarf")
        cases.append(EditCase("recolour_scarf", "recolour", "a toy robot with a blue scarf", "a toy robot with a red scarf",
                              scene, sel.float(), recolour_part(scene, sel, (0.15, 0.32, 0.88)), changed=sel))
    if want("recolour_body"):
        scene, sel = around("body")
        cases.append(EditCase("recolour_body", "recolour", "a toy robot with a green body", "a toy robot with a blue body",
                              scene, sel.float(), recolour_part(scene, sel, (0.20, 0.72, 0.28)), changed=sel))
    if want("reshape_antenna"):
        scene, sel = around("antenna")
        z = scene.means[:, 2]
        top = float(z[sel].max())
        ball_radius = 0.035 / 1.08  # the builder's ball radius after scaling the robot to 1 unit tall
        ball = sel & (z > top - 2.0 * ball_radius - 0.004)
        centre = torch.tensor([float(scene.means[ball, 0].mean()), float(scene.means[ball, 1].mean()),
                               top - ball_radius])
        means = scene.means.clone()
        means[ball] = centre + 2.0 * (scene.means[ball] - centre)
        scales = scene.scales.clone()
        scales[ball] += math.log(2.0)
        cases.append(EditCase("reshape_antenna", "reshape", "a toy robot with a big ball on its antenna",
                              "a toy robot with a small ball on its antenna", scene, sel.float(),
                              scene.replace(means=means, scales=scales), changed=ball))
    if want("add_hat"):
        scene, sel = around("head", above=HAT_HEIGHT)
        head = scene.means[sel]
        top = float(head[:, 2].max())
        cx, cy = float(head[:, 0].mean()), float(head[:, 1].mean())
        hat = _cone_hat(top - 0.01, (cx, cy), scene.scales, scene.shN.shape[1], seed)
        target = GaussianScene.concat([scene, hat])
        box = Box((cx - HAT_RADIUS - 0.03, cy - HAT_RADIUS - 0.03, top - 0.02),
                  (cx + HAT_RADIUS + 0.03, cy + HAT_RADIUS + 0.03, top + HAT_HEIGHT + 0.04))
        changed = torch.cat([torch.zeros(len(scene), dtype=torch.bool), torch.ones(len(hat), dtype=torch.bool)])
        cases.append(EditCase("add_hat", "add", "a toy robot wearing a purple cone hat", "a toy robot",
                              scene, sel.float(), target, boxes=(box,), changed=changed))
    if want("remove_antenna"):
        scene, sel = around("antenna")
        cases.append(EditCase("remove_antenna", "remove", "a toy robot without an antenna",
                              "a toy robot with an antenna", scene, sel.float(), scene.subset(~sel),
                              changed=torch.zeros(len(scene) - int(sel.sum()), dtype=torch.bool)))
    return cases


def write_edit_cases(out_dir: Path, names: tuple[str, ...] | None = None) -> list[Path]:
    """Write each case's target.ply, mask.npy and case.json under out_dir/NAME/; returns the case folders."""
    from engine.io import save

    folders = []
    for case in edit_cases(names):
        folder = Path(out_dir) / case.name
        folder.mkdir(parents=True, exist_ok=True)
        save(case.target, folder / "target.ply")
        np.save(folder / "mask.npy", case.mask.numpy())
        (folder / "case.json").write_text(json.dumps(case.describe(), indent=2) + "\n")
        folders.append(folder)
    return folders


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path("edit_cases"))
    parser.add_argument("--case", action="append", help="only this case (repeatable)")
    args = parser.parse_args(argv)
    for folder in write_edit_cases(args.out_dir, tuple(args.case) if args.case else None):
        print(folder)


if __name__ == "__main__":
    main()
