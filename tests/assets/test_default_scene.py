"""The bundled default scene: reproducible, up to date with its builder, well-formed, with sensible parts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from assets import build_default_scene as builder
from assets.default_scene import PART_IDS_PATH, SCENE_PATH, load_default_scene, load_default_scene_info

RAW_KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN")


@pytest.fixture(scope="module")
def bundled():
    return load_default_scene()


@pytest.fixture(scope="module")
def fresh():
    """A full build with the default settings (the one the committed files must equal)."""
    return builder.build_default_scene()


def test_builder_is_deterministic():
    a = builder.build_default_scene(seed=3, spacing=0.015)
    b = builder.build_default_scene(seed=3, spacing=0.015)
    for key in RAW_KEYS + ("part_ids",):
        assert np.array_equal(a[key], b[key]), key
    c = builder.build_default_scene(seed=4, spacing=0.015)
    assert len(a["means"]) != len(c["means"]) or not np.array_equal(a["means"], c["means"])  # the seed matters


def test_committed_files_match_the_builder(bundled, fresh):
    """The committed asset is what the builder makes today. Compared statistically, not bit for bit: a
    different numpy/BLAS may round an SDF differently and so pick other samples of the same surfaces."""
    scene, part_ids, names = bundled
    assert names == list(builder.PART_NAMES)
    assert len(scene) == pytest.approx(len(fresh["means"]), rel=0.02)
    fresh_ids = fresh["part_ids"]
    for i, name in enumerate(names):
        ours, theirs = part_ids == i, fresh_ids == i
        assert ours.sum() == pytest.approx(theirs.sum(), rel=0.05), name
        for key in ("means", "sh0"):
            a = getattr(scene, key).numpy()[ours].reshape(ours.sum(), -1)
            b = fresh[key][theirs].reshape(theirs.sum(), -1)
            assert np.allclose(a.mean(axis=0), b.mean(axis=0), atol=0.01), f"{name} {key}: rebuild the asset"
            assert np.allclose(a.min(axis=0), b.min(axis=0), atol=0.01), f"{name} {key}: rebuild the asset"
            assert np.allclose(a.max(axis=0), b.max(axis=0), atol=0.01), f"{name} {key}: rebuild the asset"
        assert np.allclose(np.median(scene.scales.numpy()[ours], axis=0),
                           np.median(fresh["scales"][theirs], axis=0), atol=0.05), name


def test_files_and_metadata(bundled):
    scene, part_ids, names = bundled
    info = load_default_scene_info()
    assert info["up"] == [0.0, 0.0, 1.0]
    assert info["count"] == len(scene)
    assert sum(info["counts"].values()) == len(scene)
    assert part_ids.dtype == np.int32 and part_ids.shape == (len(scene),)
    assert np.load(PART_IDS_PATH).shape == (len(scene),)
    assert SCENE_PATH.stat().st_size < 10 * 2**20
    assert scene.sh_degree == 1 and scene.dtype == torch.float32


def test_counts_and_part_coverage(bundled):
    scene, part_ids, names = bundled
    assert 20_000 <= len(scene) <= 60_000
    counts = np.bincount(part_ids, minlength=len(names))
    assert len(counts) == len(names)
    assert counts.min() >= 100, dict(zip(names, counts.tolist()))


def test_values_are_finite_and_sane(bundled):
    scene, _, _ = bundled
    for name, value in scene.items():
        assert torch.isfinite(value).all(), name
    assert torch.allclose(scene.quats.norm(dim=1), torch.ones(len(scene)), atol=1e-5)
    opacity = scene.activated_opacities()
    assert opacity.min() > 0.9
    scales = scene.activated_scales()
    assert scales.max() < 0.02  # no Gaussian larger than 2% of the height
    sorted_scales = scales.sort(dim=1).values
    assert (sorted_scales[:, 0] < 0.5 * sorted_scales[:, 2]).all()  # flat discs along the surface
    rgb = scene.base_colors()
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    # the view-dependent sheen is faint: |degree-1 contribution| <= C1 * |coeffs| stays small
    assert (builder.SH_C1 * scene.shN.abs().sum(dim=1)).max() < 0.25


def test_placement_up_is_z(bundled):
    scene, _, _ = bundled
    lo, hi = (t.numpy() for t in scene.bounding_box())
    assert lo[2] == pytest.approx(0.0, abs=1e-6)
    assert hi[2] - lo[2] == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(0.5 * (lo[:2] + hi[:2]), 0.0, atol=1e-5)
    assert (hi - lo)[:2].max() < 0.8  # a standing figure: taller than wide


def test_parts_sit_where_their_names_say(bundled):
    scene, part_ids, names = bundled
    means = scene.means.numpy()
    centroid = {n: means[part_ids == i].mean(axis=0) for i, n in enumerate(names)}
    z = {n: c[2] for n, c in centroid.items()}
    assert z["legs"] < z["body"] < z["scarf"] < z["head"] < z["antenna"]
    assert means[part_ids == names.index("antenna")][:, 2].max() == pytest.approx(1.0, abs=1e-5)
    assert means[part_ids == names.index("legs")][:, 2].min() == pytest.approx(0.0, abs=1e-5)
    eyes = means[part_ids == names.index("eyes")]
    assert eyes[:, 0].min() > centroid["head"][0]  # on the front (+x) of the head
    assert (eyes[:, 1] > 0).any() and (eyes[:, 1] < 0).any()  # two of them
    body_half_width = np.abs(means[part_ids == names.index("body")][:, 1]).max()
    arms = means[part_ids == names.index("arms")]
    assert np.median(np.abs(arms[:, 1])) > body_half_width  # beside the body


def test_parts_are_compact_and_barely_overlap(bundled):
    scene, part_ids, names = bundled
    means = scene.means.numpy()
    _, neighbours = cKDTree(means).query(means, k=2)
    for i, name in enumerate(names):
        own = means[part_ids == i]
        extent = own.max(axis=0) - own.min(axis=0)
        assert extent[2] < 0.42, name  # every part is a slice of the height (the tallest: the body)
        mixed = (part_ids[neighbours[part_ids == i, 1]] != i).mean()
        assert mixed < 0.15, f"{name}: {mixed:.2f} of its Gaussians have another part as nearest neighbour"


def test_every_part_shows_from_some_side(bundled):
    from engine.camera import orbit_cameras
    from engine.render import render

    scene, part_ids, names = bundled
    cams = orbit_cameras(torch.tensor([0.0, 0.0, 0.5]), 2.6, [0, 90, 180, 270], [15, 15, 15, 15],
                         width=96, height=96, fov_y_deg=30)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(part_ids).long(), len(names)).float()
    with torch.no_grad():
        out = render(scene, cams, colors=onehot)
    coverage = (out.rgb.numpy() > 0.5).sum(axis=(0, 1, 2))
    assert (coverage > 20).all(), dict(zip(names, coverage.tolist()))


def test_skin_is_closed_from_every_side(bundled):
    """Close views from four sides: the layer of Gaussians facing the camera alone is opaque inside its
    silhouette (holes there would let inner surfaces show through as specks)."""
    from scipy.ndimage import binary_erosion

    from engine.camera import orbit_cameras
    from engine.render import render
    from engine.render.projection import quat_to_rotmat

    scene, _, _ = bundled
    cams = orbit_cameras(torch.tensor([0.0, 0.0, 0.6]), 0.9, [0, 90, 180, 270], [15, 15, 15, 15],
                         width=96, height=96, fov_y_deg=30)
    normals = quat_to_rotmat(scene.quats)[:, :, 2]  # the discs' thin axis
    for c in range(len(cams)):
        facing = ((cams.centers[c] - scene.means) * normals).sum(dim=1) > 0
        with torch.no_grad():
            alpha = render(scene.subset(facing), cams[c]).alpha[0, ..., 0].numpy()
        inside = binary_erosion(alpha > 0.5, iterations=2)
        assert inside.sum() > 3000
        see_through = (alpha[inside] < 0.97).mean()
        assert see_through < 0.01, f"view {c}: {see_through:.3f} of the silhouette is see-through"
