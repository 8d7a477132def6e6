import numpy as np
import torch

from engine.camera import orbit_cameras
from engine.masks.compositing import compositing_weights
from engine.render import render


def _cams(width=24, height=20):
    return orbit_cameras(torch.zeros(3), 2.5, [0.0, 130.0], 25.0, width=width, height=height)


def test_sparse_render_matches_the_reference_renderer(small_scene):
    cams = _cams()
    feats = torch.rand(len(small_scene), 4, generator=torch.Generator().manual_seed(0))
    expected = render(small_scene, cams, colors=feats, backend="reference")
    vw = compositing_weights(small_scene, cams)
    torch.testing.assert_close(vw.render(feats), expected.rgb, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(vw.alpha(), expected.alpha[..., 0], atol=1e-5, rtol=1e-4)


def test_splat_is_the_gradient_of_a_masked_render(small_scene):
    """The brief's gradient trick: d sum(mask * render(colors)) / d colors = per-Gaussian weight in the mask."""
    cams = _cams()
    mask = (torch.rand(len(cams), cams.height, cams.width, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    colors = torch.ones(len(cams), len(small_scene), 1, requires_grad=True)
    out = render(small_scene, cams, colors=colors, backend="reference")
    (out.rgb[..., 0] * mask).sum().backward()
    vw = compositing_weights(small_scene, cams)
    torch.testing.assert_close(vw.splat(mask)[..., 0], colors.grad[..., 0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(vw.totals(), vw.splat(torch.ones_like(mask))[..., 0], atol=1e-5, rtol=1e-5)


def test_sparse_render_is_differentiable_and_per_view(small_scene):
    cams = _cams()
    vw = compositing_weights(small_scene, cams)
    feats = torch.zeros(len(cams), len(small_scene), 2, requires_grad=True)
    img = vw.render(feats)
    assert img.shape == (2, cams.height, cams.width, 2)
    img[1].sum().backward()
    assert feats.grad[0].abs().sum() == 0  # view 1's image does not depend on view 0's features
    torch.testing.assert_close(feats.grad[1, :, 0], vw.totals()[1])


def test_hidden_gaussian_gets_no_weight():
    from engine.scene import GaussianScene

    # Two opaque walls at z = 0 and 0.01 seen from above hide a small Gaussian at z = -0.5 (transmittance <= 1e-4
    # behind them, so compositing stops or leaves it a negligible weight).
    scene = GaussianScene.create(
        means=torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.01], [0.0, 0.0, -0.5]]),
        quats=torch.tensor([[1.0, 0, 0, 0]] * 3),
        scales=torch.log(torch.tensor([[1.0, 1.0, 0.01], [1.0, 1.0, 0.01], [0.05] * 3])),
        opacities=torch.tensor([8.0, 8.0, 8.0]),
        sh0=torch.zeros(3, 3),
    )
    cams = orbit_cameras(torch.zeros(3), 3.0, [0.0], 89.9, width=16, height=16)
    totals = compositing_weights(scene, cams).totals()[0]
    assert totals[1] > 10 and totals[2] < 1e-3
    below = orbit_cameras(torch.zeros(3), 3.0, [0.0], -89.9, width=16, height=16)
    assert compositing_weights(scene, below).totals()[0, 2] > 0.5  # seen from below it is in front


def test_sparse_matrices_match_scipy_and_keep_rows_sorted(small_scene):
    """The counting-sort construction gives the matrix scipy builds from the same entries, with sorted column
    indices in every row of both the matrix and its transpose."""
    import scipy.sparse

    vw = compositing_weights(small_scene, _cams())
    rows = torch.unique(vw.view * (vw.height * vw.width) + vw.pixel, return_inverse=True)[1]
    pairs = torch.unique(vw.view * vw.num_gaussians + vw.gauss, return_inverse=True)[1]
    expected = scipy.sparse.coo_matrix((vw.weight.numpy(), (rows.numpy(), pairs.numpy()))).toarray()
    np.testing.assert_array_equal(vw._matrix.to_dense().numpy(), expected)
    np.testing.assert_array_equal(vw._matrix_t.to_dense().numpy(), expected.T)
    for matrix in (vw._matrix, vw._matrix_t):
        ptr, idx = matrix.crow_indices().numpy(), matrix.col_indices().numpy()
        assert all((np.diff(idx[a:b]) > 0).all() for a, b in zip(ptr[:-1], ptr[1:]))


def test_regions_give_the_full_weights_at_their_pixels_only(small_scene):
    """A region (a window of wanted pixels) culls what cannot reach it, yet its pixels keep the weights of the
    whole image: the same (view, pixel, Gaussian) entries, the same values."""
    cams = _cams()
    regions = torch.zeros(len(cams), cams.height, cams.width, dtype=torch.bool)
    regions[0, 5:11, 3:9] = True
    regions[0, 15, 20] = True  # a second blob: the box spans both, only these pixels are wanted
    full = compositing_weights(small_scene, cams)
    part = compositing_weights(small_scene, cams, regions=regions)

    def entries(vw, wanted):
        flat = vw.view * (cams.height * cams.width) + vw.pixel
        keep = wanted.reshape(-1)[flat]
        key = (flat[keep] * vw.num_gaussians + vw.gauss[keep])
        order = torch.argsort(key)
        return key[order], vw.weight[keep][order]

    key_full, w_full = entries(full, regions)
    key_part, w_part = entries(part, torch.ones_like(regions))
    assert len(key_full) > 0 and len(key_part) == part.nnz  # nothing outside the region
    assert torch.equal(key_full, key_part)
    torch.testing.assert_close(w_part, w_full, atol=1e-6, rtol=1e-5)
    assert part.totals()[1].sum() == 0  # the second view wanted nothing


def test_per_view_entries_hand_each_view_its_entries_with_each_gaussians_consecutive(small_scene):
    """lift_scope sums a view's entries per Gaussian by runs: a Gaussian's entries must be one run."""
    from engine.masks.compositing import compositing_entries, per_view_entries

    cams = _cams()
    view, pixel, gauss, weight = compositing_entries(small_scene, cams)
    parts = per_view_entries(small_scene, cams, lambda c, p, g, w: (c, p, g, w))
    assert [p[0] for p in parts] == list(range(len(cams)))
    for c, p, g, w in parts:
        here = view == c
        assert torch.equal(p, pixel[here]) and torch.equal(g, gauss[here]) and torch.equal(w, weight[here])
        runs = torch.unique_consecutive(g)
        assert len(runs) == len(torch.unique(g)) > 1  # no Gaussian comes back after another one
