"""Shared fixtures of the mask tests: the toy figure of 5 parts and its views, computed once per session."""

import pytest
import torch

from engine.masks.compositing import compositing_weights
from engine.masks.evaluation import ground_truth_masks, orbit_views, toy_parts_scene


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """The mask code is sparse gathers and scatters: one thread (tests/conftest.py) for every mask test."""
    yield


@pytest.fixture(scope="session")
def toy():
    """(scene, part_ids, names) of a 2000-Gaussian figure."""
    return toy_parts_scene(2000, seed=0)


@pytest.fixture(scope="session")
def toy_views(toy):
    """(cameras, view weights, ground-truth masks [C, H, W, 5]) of 24 orbit views at 48x48."""
    scene, ids, names = toy
    cams = orbit_views(scene, 24, width=48, height=48)
    vw = compositing_weights(scene, cams)
    return cams, vw, ground_truth_masks(vw, ids, len(names))


@pytest.fixture
def small_scene():
    """A few hundred random Gaussians in front of the origin (for exact comparisons with the renderer)."""
    from engine.scene import random_scene

    return random_scene(300, extent=0.5, scale_range=(0.03, 0.1), seed=3)


@pytest.fixture(scope="session")
def shell():
    """An opaque two-layer spherical shell (radius 0.5) around 60 Gaussians no view can see.
    Returns (scene, is_inner [N] bool)."""
    num_shell, num_inner, seed = 800, 60, 0
    import math

    from engine.masks.evaluation import _quat_z_to
    from engine.scene import GaussianScene

    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(num_shell, 3, generator=g), dim=-1)
    shell = u * 0.5
    shell[num_shell // 2:] *= 0.94
    inner = torch.randn(num_inner, 3, generator=g).clamp(-2, 2) * 0.1
    spacing = math.sqrt(math.pi / num_shell)
    scales = torch.cat([
        torch.tensor([[2 * spacing, 2 * spacing, 0.1 * spacing]]).expand(num_shell, 3),
        torch.full((num_inner, 3), 0.03),
    ])
    quats = torch.cat([_quat_z_to(u), torch.tensor([[1.0, 0, 0, 0]]).expand(num_inner, 4)])
    n = num_shell + num_inner
    scene = GaussianScene.create(
        means=torch.cat([shell, inner]), quats=quats, scales=scales.log(), opacities=torch.full((n,), 6.0),
        sh0=torch.zeros(n, 3),
    )
    return scene, torch.arange(n) >= num_shell


TINY_SAM = dict(
    encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,), image_size=64,
    patch_size=16, prompt_embed_dim=32, window_size=2, decoder_depth=1, decoder_mlp_dim=64, decoder_num_heads=2,
    iou_head_hidden_dim=32, mask_in_chans=4,
)


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory):
    """(checkpoint path, SamConfig) of a tiny random-weight SAM built from segment-anything's modules."""
    from engine.masks.sam import SamConfig, build_sam

    config = SamConfig(**TINY_SAM)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(build_sam(config).state_dict(), path)
    return path, config


class ColourSegmenter:
    """A stand-in for SAM that is right by construction: the connected region of pixels whose colour is close
    to the colour under the prompt point (for scenes whose parts have distinct flat colours)."""

    def __init__(self, tolerance: float = 60.0):
        self.tolerance = tolerance
        self.calls = 0

    def segment(self, image, *, points=None, labels=None, box=None, multimask=True):
        import numpy as np
        from scipy import ndimage

        from engine.masks.sam import SamMask

        self.calls += 1
        x, y = (int(v) for v in np.asarray(points, dtype=np.float64)[0])
        seed_colour = image[y, x].astype(np.float64)
        close = np.linalg.norm(image.astype(np.float64) - seed_colour, axis=-1) < self.tolerance
        labels_img, _ = ndimage.label(close)
        return SamMask(labels_img == labels_img[y, x], 1.0)
