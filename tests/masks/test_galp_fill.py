"""3D-GALP's fill: weakly seen Gaussians from their neighbours, the support prior, the colour kernel, interiors."""

import torch

from engine.masks.evaluation import orbit_views
from engine.masks.galp import GalpConfig, galp
from engine.masks.galp_fill import _colour_kernel, _fill_unseen, _fill_weak, _supported
from engine.masks.views_io import MaskViews


def test_interior_gaussians_follow_the_enclosing_surface(shell):
    scene, inner = shell
    cams = orbit_views(scene, 8, width=32, height=32)
    result = galp(scene, MaskViews(cams, torch.ones(8, 32, 32)), config=GalpConfig(steps=10))
    assert (result.visibility[inner] < 1e-3).all()
    assert result.weights[0, inner].min() > 0.8  # voting gives them 0 (see test_lift_vote)
    assert result.weights[0, ~inner].mean() > 0.9
    assert (result.uncertainty[inner] == 1).all()
    without = galp(scene, MaskViews(cams, torch.ones(8, 32, 32)), config=GalpConfig(steps=0, fill_unseen=False))
    assert (without.weights[0, inner] == 0).all()


def test_weakly_seen_gaussians_take_their_confident_neighbours_label():
    """A chain 0-1-2-3-4: 0 and 4 are certain (1 and 0), 1-3 barely seen with wrong labels. The weak ones near
    a certain neighbour follow it; the certain ones keep their labels."""
    labels = torch.tensor([[1.0], [0.0], [0.9], [0.9], [0.0]])
    certainty = torch.tensor([[0.9], [0.001], [0.001], [0.001], [0.9]])
    neighbours = torch.tensor([[1, 1], [0, 2], [1, 3], [2, 4], [3, 3]])
    out = _fill_weak(labels, certainty, neighbours, smoothing=0.3, iters=12, prior=0.01)
    assert out[0] > 0.95 and out[4] < 0.05
    assert out[1] > 0.5 and out[3] < 0.5  # each takes the side of its certain neighbour


def test_the_fill_prior_keeps_a_weak_vote_only_near_its_part():
    """Confident part Gaussians around x=0 (label 1), confident others around x=1 (label 0), and two clusters
    of weakly seen Gaussians that all vote 0.9 for the part, each cluster its own neighbourhood: one beside the
    part (the inside of the scarf, seen through it) keeps its vote; one beside the others (head Gaussians
    glimpsed through the eye) gets 0. With the old prior ("not the part" everywhere) both got 0."""
    g = torch.Generator().manual_seed(0)
    part = torch.randn(40, 3, generator=g) * 0.05
    other = torch.randn(40, 3, generator=g) * 0.05 + torch.tensor([1.0, 0, 0])
    inside = torch.randn(12, 3, generator=g) * 0.02 + torch.tensor([0.0, 0.4, 0])
    glimpsed = torch.randn(12, 3, generator=g) * 0.02 + torch.tensor([1.0, 0.4, 0])
    means = torch.cat([part, other, inside, glimpsed])
    labels = torch.cat([torch.ones(40), torch.zeros(40), torch.full((24,), 0.9)])[:, None]
    certainty = torch.cat([torch.full((80,), 0.9), torch.full((24,), 0.005)])[:, None]
    target = _supported(labels, labels, certainty, means, k=8)
    torch.testing.assert_close(target[80:92, 0], torch.full((12,), 0.9))
    torch.testing.assert_close(target[92:, 0], torch.zeros(12))
    torch.testing.assert_close(target[:80], labels[:80])  # confident ones: their own label
    neighbours = torch.cdist(means, means).topk(9, largest=False).indices[:, 1:]
    out = _fill_weak(labels, certainty, neighbours, smoothing=0.3, iters=12, prior=0.01, target=target)
    old = _fill_weak(labels, certainty, neighbours, smoothing=0.3, iters=12, prior=0.01)
    assert (out[80:92] > 0.5).all() and (out[92:] < 0.5).all()
    assert (old[80:] < 0.5).all()


def test_fill_unseen_takes_the_nearest_seen_labels():
    means = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [5.0, 0, 0], [5.1, 0, 0], [0.05, 0.02, 0], [5.05, 0.01, 0]])
    labels = torch.tensor([[1.0], [1.0], [0.0], [0.0], [0.5], [0.5]])
    seen = torch.tensor([True, True, True, True, False, False])
    out = _fill_unseen(labels.clone(), seen, means, k=2)
    torch.testing.assert_close(out[4:], torch.tensor([[1.0], [0.0]]))
    torch.testing.assert_close(out[:4], labels[:4])


def _two_colour_border(colour_follows_part: bool):
    """A grid plane: the part (label 1) is x < 0, confidently labelled; red where it is the part and grey
    elsewhere, or colours at random. Returns (scene, neighbours, labels, certainty, means)."""
    from engine.masks.ops import knn_graph
    from engine.scene import GaussianScene, rgb_to_sh0

    xs, ys = torch.meshgrid(torch.linspace(-1, 1, 40), torch.linspace(-1, 1, 40), indexing="ij")
    means = torch.stack([xs.flatten(), ys.flatten(), torch.zeros(1600)], dim=1)
    labels = (means[:, :1] < 0).float()
    red, grey = torch.tensor([0.7, 0.1, 0.1]), torch.tensor([0.6, 0.6, 0.6])
    if colour_follows_part:
        colours = torch.where(labels > 0.5, red, grey)
    else:
        colours = torch.rand(1600, 3, generator=torch.Generator().manual_seed(0))
    n = len(means)
    scene = GaussianScene.create(means=means, quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                                 scales=torch.full((n, 3), -4.0), opacities=torch.zeros(n), sh0=rgb_to_sh0(colours))
    return scene, knn_graph(means, 8), labels, torch.full((n, 1), 0.9), means


def test_the_colour_kernel_is_learned_from_the_confident_borders():
    """Where the part is red and the rest grey, a neighbour of the other colour counts little; where colours
    are random, every neighbour counts alike (the fill stays spatial)."""
    scene, neighbours, labels, certainty, _ = _two_colour_border(True)
    everyone = torch.arange(len(labels))[:, None]
    affinity = _colour_kernel(scene, neighbours, labels, certainty)(everyone, neighbours)[..., 0]  # [N, K]
    across = (labels[:, 0, None] != labels[neighbours, 0])
    assert affinity[across].max() < 0.2 and affinity[~across].min() > 0.9
    scene, neighbours, labels, certainty, _ = _two_colour_border(False)
    affinity = _colour_kernel(scene, neighbours, labels, certainty)(everyone, neighbours)[..., 0]
    assert affinity.min() > 0.5


def test_an_unseen_gaussian_takes_the_label_of_the_surface_that_looks_like_it():
    """On the red/grey border plane, an unseen grey Gaussian just on the red side: by distance alone it is
    the part; weighted by the learned colour kernel it is not."""
    scene, neighbours, labels, certainty, means = _two_colour_border(True)
    kernel = _colour_kernel(scene, neighbours, labels, certainty)
    kernel.rgb = torch.cat([kernel.rgb, torch.tensor([[0.6, 0.6, 0.6]])])  # the unseen one is grey...
    means = torch.cat([means, torch.tensor([[-0.03, 0.0, 0.01]])])  # ...and nearer the red (x < 0) Gaussians
    all_labels = torch.cat([labels, torch.zeros(1, 1)])
    seen = torch.cat([torch.ones(len(labels), dtype=torch.bool), torch.zeros(1, dtype=torch.bool)])
    spatial = _fill_unseen(all_labels.clone(), seen, means, k=8)
    coloured = _fill_unseen(all_labels.clone(), seen, means, k=8, kernel=kernel)
    assert spatial[-1] > 0.5 > coloured[-1], (spatial[-1], coloured[-1])


def test_a_weak_gaussian_follows_its_neighbours_of_its_own_colour():
    """A weakly seen grey Gaussian at a junction: of its 8 neighbour slots 6 hold confident red Gaussians
    labelled 1 (the scarf), 2 confident grey ones labelled 0 (the head). The spatial fill makes it scarf;
    weighted by an affinity that discounts the other colour it takes the label of the ones that look like it."""
    neighbours = torch.tensor([[1, 2, 3, 4, 1, 2, 5, 6]] + [[0] * 8] * 8)
    labels = torch.tensor([0.5, 1, 1, 1, 1, 0, 0, 0, 0])[:, None]
    certainty = torch.tensor([0.005] + [0.9] * 8)[:, None]
    affinity = torch.tensor([[0.05] * 6 + [1.0] * 2] + [[1.0] * 8] * 8)
    spatial = _fill_weak(labels, certainty, neighbours, smoothing=0.3, iters=4, prior=0.01)
    coloured = _fill_weak(labels, certainty, neighbours, smoothing=0.3, iters=4, prior=0.01, affinity=affinity)
    assert spatial[0] > 0.5 > coloured[0]


def test_fill_unseen_from_a_source_ignores_the_weakly_seen():
    """An interior Gaussian between a confident part surface (x=0) and weakly seen Gaussians with a wrong label
    right beside it: from every seen Gaussian it takes the wrong label, from the confident ones the right one."""
    means = torch.tensor([[0.0, 0, 0], [0.0, 0.1, 0], [0.5, 0, 0], [0.5, 0.1, 0], [0.4, 0.05, 0]])
    labels = torch.tensor([[1.0], [1.0], [0.0], [0.0], [0.5]])
    seen = torch.tensor([True, True, True, True, False])
    confident = torch.tensor([True, True, False, False, False])
    assert _fill_unseen(labels.clone(), seen, means, k=2)[4] < 0.5
    assert _fill_unseen(labels.clone(), seen, means, k=2, source=confident)[4] == 1.0
