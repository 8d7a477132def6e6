"""The reference prior: `reference:SCENE` loads SCENE as the ideal, its per-view targets are SCENE's renders over
the background it is told (drawn by the render function it is handed: guidance/ never imports the renderer),
and `recolour_part` changes the selected colours only."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.camera import orbit_cameras
from engine.guidance import load_guidance, parse_model_spec
from engine.guidance.base import ModelSpecError
from engine.io import save
from engine.guidance.reference import ReferencePrior, recolour_part
from engine.render import render
from engine.render.images import rgb_renderer
from tests.edit.scenes import params_equal, two_part_scene


@pytest.fixture(scope="module")
def scene_and_head():
    scene, part_ids, _ = two_part_scene(60)
    return scene, part_ids == 0


def _cams():
    return orbit_cameras(torch.zeros(3), 2.0, torch.tensor([0.0, 90.0]), torch.tensor([10.0, 10.0]),
                         width=24, height=24, fov_y_deg=45)


def test_reference_spec_loads_the_scene_and_targets_its_renders(tmp_path, scene_and_head):
    scene, _ = scene_and_head
    path = tmp_path / "edited.ply"
    save(scene, path)
    spec = parse_model_spec(f"reference:{path}")
    assert spec.kind == "reference" and spec.is_closed_form and str(spec) == f"reference:{path.resolve()}"
    loaded = load_guidance(f"reference:{path}")
    assert isinstance(loaded, ReferencePrior)
    cams = _cams()
    with pytest.raises(RuntimeError, match="no render function"):  # the loader cannot draw: it sits in guidance/
        loaded.set_views(cams)
    model = loaded.with_renderer(rgb_renderer())
    assert loaded.render_fn is None and model.with_renderer(None) is model  # the caller's prior is not changed
    model.set_background((0.2, 0.4, 0.6))
    model.set_views(cams)
    want = render(scene, cams, background=(0.2, 0.4, 0.6)).rgb
    assert torch.allclose(model.target_images(cams), want, atol=1e-6)
    cond = model.condition("anything")
    assert torch.allclose(cond.mean, want.permute(0, 3, 1, 2) * 2 - 1, atol=1e-6)


def test_reference_spec_errors_name_the_problem(tmp_path):
    with pytest.raises(ModelSpecError, match="existing scene file"):
        parse_model_spec(f"reference:{tmp_path / 'missing.ply'}")
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(ModelSpecError, match="cannot read the reference scene"):
        load_guidance(f"reference:{bad}")


def test_recolour_part_changes_only_the_selected_colours(scene_and_head):
    scene, head = scene_and_head
    out = recolour_part(scene, head, (0.9, 0.1, 0.1))
    assert params_equal(out.subset(~head), scene.subset(~head))
    for name in ("means", "quats", "scales", "opacities", "shN"):
        assert torch.equal(getattr(out, name), getattr(scene, name))
    assert torch.allclose(out.base_colors()[head].mean(0), torch.tensor([0.9, 0.1, 0.1]), atol=0.05)


def test_guidance_never_imports_the_renderer():
    """Losses take images, not scenes: loading every guidance module (the reference prior and ISM included)
    leaves engine.render unimported."""
    code = ("import sys, engine.guidance, engine.guidance.reference, engine.guidance.ism, engine.guidance.loading; "
            "print(sorted(m for m in sys.modules if m.startswith('engine.render')))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == "[]"
