import pytest
import torch

from engine.scene import GaussianScene, SceneError, random_scene, rgb_to_sh0, sh0_to_rgb, sh_degree_from_coeffs


def test_random_scene_shapes_and_degree():
    s = random_scene(50, sh_degree=3)
    assert len(s) == 50 and s.sh_degree == 3
    assert s.shN.shape == (50, 15, 3) and s.sh.shape == (50, 16, 3)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("means", torch.zeros(10, 2), "means must have shape"),
        ("quats", torch.zeros(10, 3), "quats must have shape"),
        ("opacities", torch.zeros(10, 1), "opacities must have shape"),
        ("sh0", torch.zeros(10, 3), "sh0 must have shape"),
        ("shN", torch.zeros(10, 5, 3), "SH coefficients"),
        ("means", torch.zeros(10, 3, dtype=torch.int64), "floating-point"),
        ("scales", torch.zeros(10, 3, dtype=torch.float64), "share one dtype"),
    ],
)
def test_validation_names_the_problem(field, value, match):
    params = random_scene(10).params()
    params[field] = value
    with pytest.raises(SceneError, match=match):
        GaussianScene(**params)


def test_nan_is_refused_with_index():
    params = random_scene(10).params()
    params["means"] = params["means"].clone()
    params["means"][7, 1] = float("nan")
    with pytest.raises(SceneError, match="first at index 7"):
        GaussianScene(**params)


def test_subset_remove_concat_roundtrip():
    s = random_scene(20, sh_degree=1, seed=3)
    keep = torch.zeros(20, dtype=torch.bool)
    keep[::3] = True
    a, b = s.subset(keep), s.remove(keep)
    assert len(a) + len(b) == 20
    joined = GaussianScene.concat([a, b])
    order = torch.cat([keep.nonzero().flatten(), (~keep).nonzero().flatten()])
    for name, value in joined.items():
        assert torch.equal(value, getattr(s, name)[order]), name


def test_concat_raises_sh_degree_with_zero_padding():
    a, b = random_scene(4, sh_degree=0), random_scene(5, sh_degree=2, seed=1)
    c = GaussianScene.concat([a, b])
    assert c.sh_degree == 2 and len(c) == 9
    assert torch.count_nonzero(c.shN[:4]) == 0
    assert torch.equal(c.shN[4:], b.shN)


def test_subset_rejects_bad_selection():
    s = random_scene(5)
    with pytest.raises(SceneError, match="out of range"):
        s.subset([0, 9])
    with pytest.raises(SceneError, match="boolean selection"):
        s.subset(torch.ones(4, dtype=torch.bool))


def test_operations_do_not_touch_the_input():
    s = random_scene(8)
    before = s.clone()
    s.replace(means=s.means + 1)
    s.remove([0, 1])
    for name, value in s.items():
        assert torch.equal(value, getattr(before, name))
    c = s.clone()
    c.means.add_(1.0)  # a clone shares no storage
    assert torch.equal(s.means, before.means)


def test_bounding_box_and_quantile():
    s = random_scene(1000, extent=2.0)
    lo, hi = s.bounding_box()
    assert torch.all(lo >= -2.0) and torch.all(hi <= 2.0) and torch.all(hi - lo > 3.5)
    qlo, qhi = s.bounding_box(quantile=0.1)
    assert torch.all(qlo > lo) and torch.all(qhi < hi)
    with pytest.raises(SceneError, match="empty"):
        s.subset(torch.zeros(1000, dtype=torch.bool)).bounding_box()


def test_activations_and_colour_conversions():
    s = random_scene(6)
    assert torch.allclose(s.activated_quats().norm(dim=-1), torch.ones(6))
    assert torch.all(s.activated_opacities() > 0) and torch.all(s.activated_opacities() < 1)
    rgb = torch.rand(6, 3)
    assert torch.allclose(sh0_to_rgb(rgb_to_sh0(rgb)), rgb, atol=1e-6)
    assert sh_degree_from_coeffs(16) == 3
    with pytest.raises(SceneError):
        sh_degree_from_coeffs(5)


def test_with_sh_degree_and_device_dtype_moves():
    s = random_scene(3, sh_degree=3)
    assert s.with_sh_degree(1).shN.shape == (3, 3, 3)
    d = s.to(dtype=torch.float64)
    assert d.dtype == torch.float64 and d.sh_degree == 3
