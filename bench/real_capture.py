"""Real-capture ground-truth edits for bench/edit_quality.py: the shared playbot (a real capture, -y up).

Cases (each with its target built here, in code):

- `playbot_head_blue`, `playbot_body_green`, `playbot_ground_red`: recolours of the head+hands (the 13,318
  Gaussians with y < -0.62), the body and legs (-0.62 <= y < -0.2, within 0.6 of the robot's axis) and a patch of
  ground in front of the robot. Target: engine.guidance.reference.recolour_part, the part's degree-0 colour set
  to the flat colour times each Gaussian's luminance relative to the part's mean (its baked shading kept), higher
  SH bands unchanged: the same ideal the app's `closed-form:<colour>` demo distils toward.
- `playbot_head_bigger`: a shape case; the head's Gaussians scaled 1.3x about their centroid (centres and sizes).

Metrics (`real_metrics`) on held-out views: the bench's 12-view ring around the up axis plus three views from
well below (-55 deg, -80 deg) and one from the top, at each evaluation size: PSNR against the target inside the
part per view (mean and worst), spill, the Gaussian count change, whether the geometry is bit-identical, and the
share of the part's visible Gaussians whose colour moved less than half-way to the target's.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from engine.camera import Cameras, orbit_cameras
from engine.evaluate import held_out_cameras
from engine.evaluate.metrics import psnr, spill_vs_target
from engine.evaluate.views import render_views, seen
from engine.render import render
from engine.scene import sh0_to_rgb

PLAYBOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "playbot-lod2" / "meta.json"
UP = (0.0, -1.0, 0.0)
NAMES = ("playbot_head_blue", "playbot_body_green", "playbot_ground_red", "playbot_head_bigger")
EXTRA_VIEWS = ((60.0, -55.0), (240.0, -55.0), (150.0, -80.0), (330.0, 80.0))  # (azimuth, elevation) degrees


def real_cases(names=None) -> list:
    """The playbot cases (all, or those in `names`); [] when the shared data is absent."""
    from assets.build_edit_cases import EditCase
    from engine.guidance.reference import recolour_part
    from engine.io import load

    wanted = [n for n in NAMES if names is None or n in names]
    if not wanted or not PLAYBOT.exists():
        return []
    scene = load(PLAYBOT)
    y, xz = scene.means[:, 1], scene.means[:, [0, 2]]
    axis = xz[y < -0.62].median(dim=0).values
    head = y < -0.62
    body = (y >= -0.62) & (y < -0.2) & ((xz - axis).norm(dim=-1) < 0.6)
    ground = (y >= -0.2) & (xz[:, 0] > axis[0] + 0.35) & (xz[:, 0] < axis[0] + 0.75) & \
        ((xz[:, 1] - axis[1]).abs() < 0.2)
    recolours = {"playbot_head_blue": (head, (0.1, 0.3, 0.9), "a toy robot with a blue head"),
                 "playbot_body_green": (body, (0.2, 0.75, 0.25), "a toy robot with a green body"),
                 "playbot_ground_red": (ground, (0.85, 0.15, 0.1), "a toy robot next to a red patch of ground")}
    cases = []
    for name in wanted:
        if name in recolours:
            part, colour, prompt = recolours[name]
            target = recolour_part(scene, part, colour)
            cases.append(EditCase(name, "recolour", prompt, "a toy robot", scene, part.float(), target, changed=part))
        else:
            cases.append(EditCase(name, "reshape", "a toy robot with a big head", "a toy robot", scene, head.float(),
                                  _scaled(scene, head, 1.3), changed=head))
    for case in cases:
        case.up = UP
    return cases


def _scaled(scene, part: torch.Tensor, factor: float):
    """`scene` with the `part` rows scaled by `factor` about their centroid (centres and sizes)."""
    means, scales = scene.means.clone(), scene.scales.clone()
    centre = means[part].mean(dim=0)
    means[part] = centre + factor * (means[part] - centre)
    scales[part] += math.log(factor)
    return scene.replace(means=means, scales=scales)


def eval_cameras(center: torch.Tensor, distance: float, resolution: int, up=UP) -> Cameras:
    """The ring of engine.evaluate.views plus EXTRA_VIEWS (from well below, and from the top)."""
    extra = [orbit_cameras(center, distance, torch.tensor([az], dtype=torch.float64),
                           torch.tensor([el], dtype=torch.float64), width=resolution, height=resolution, up=up)
             for az, el in EXTRA_VIEWS]
    return Cameras.concat([held_out_cameras(center, distance, resolution=resolution, up=up), *extra])


def visibility(scene, rows: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """[R] how many pixels' worth of blending weight each of `rows` ([R] long) gets in `cameras` (autograd)."""
    colors = torch.zeros(len(scene), 1, dtype=scene.dtype, requires_grad=True)
    render(scene.detach(), cameras, colors=colors).rgb.sum().backward()
    return colors.grad[rows, 0]


def real_metrics(case, result, cameras: Cameras) -> dict:
    """The module docstring's metrics of `result` (an EditResult) against `case.target` on `cameras`."""
    got, want = render_views(result.scene, cameras), render_views(case.target, cameras)
    selected = case.mask > 0.5
    part = seen(case.scene, selected, cameras) | seen(case.target, case.changed, cameras)
    per_view = [psnr(got[v], want[v], part[v][..., None]) for v in range(len(cameras))]
    per_view = [p for p in per_view if p is not None]
    same_rows = len(result.scene) == len(case.scene)
    geometry = same_rows and all(torch.equal(getattr(result.scene, n), getattr(case.scene, n))
                                 for n in ("means", "scales", "quats", "opacities"))
    out = {"psnr_mean": round(sum(per_view) / len(per_view), 3), "psnr_worst": round(min(per_view), 3),
           "psnr_views": [round(p, 1) for p in per_view],
           "psnr_inside": round(psnr(got, want, part[..., None]), 3),
           "spill_pct": round(100 * spill_vs_target(got, want, part), 3),
           "gaussians_change": len(result.scene) - len(case.scene), "geometry_identical": geometry}
    if case.kind == "recolour" and same_rows:
        rows = selected.nonzero().flatten()
        seen_rows = rows[visibility(case.scene, rows, cameras) > 0.1]
        old, new, ideal = (sh0_to_rgb(s.sh0.detach()[seen_rows, 0]) for s in (case.scene, result.scene, case.target))
        gap = ideal - old
        meaningful = gap.norm(dim=-1) > 0.02
        progress = ((new - old) * gap).sum(-1) / gap.pow(2).sum(-1).clamp_min(1e-12)
        out["left_half_pct"] = round(100 * float((progress[meaningful] < 0.5).float().mean()), 3)
    return out
