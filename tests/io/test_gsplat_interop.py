"""Cross-check our readers against an independent writer: gsplat's exporter (.ply, .splat, compressed .ply).

gsplat's exporter.py is plain torch/numpy, so it is loaded from its file without importing the gsplat package
(whose __init__ would try to build CUDA kernels on a machine without a GPU).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from engine.io import detect_format, load
from engine.scene import SH_C0, random_scene


def _load_exporter():
    spec = importlib.util.find_spec("gsplat")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "exporter.py"
    if not path.exists():
        return None
    module_spec = importlib.util.spec_from_file_location("gsplat_exporter_standalone", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


exporter = _load_exporter()
pytestmark = pytest.mark.skipif(exporter is None, reason="gsplat (for its exporter.py) is not installed")


def _export(scene, fmt, path):
    exporter.export_splats(
        scene.means, scene.scales, scene.quats, scene.opacities, scene.sh0, scene.shN, format=fmt, save_to=str(path)
    )
    return path


def _match(reference, decoded):
    """Index into `reference` of each decoded Gaussian (gsplat reorders .splat / compressed files)."""
    distance = torch.cdist(decoded.means.double(), reference.means.double())
    index = distance.argmin(dim=1)
    assert index.unique().numel() == len(reference), "decoded positions do not map one-to-one"
    return reference.subset(index)


def test_gsplat_ply_reads_bit_exact(tmp_path):
    scene = random_scene(200, sh_degree=3, seed=11)
    back = load(_export(scene, "ply", tmp_path / "g.ply"))  # no normals, INRIA names, channel-major f_rest
    for (name, a), (_, b) in zip(scene.items(), back.items()):
        assert torch.equal(a, b), name


def test_gsplat_splat_reads_within_quantization(tmp_path):
    scene = random_scene(300, sh_degree=0, seed=12)
    back = load(_export(scene, "splat", tmp_path / "g.splat"))
    ref = _match(scene, back)
    assert torch.equal(back.means, ref.means)
    torch.testing.assert_close(back.scales, ref.scales, atol=1e-6, rtol=0)
    # gsplat truncates (not rounds) colour, opacity and rotation bytes: one step of error at most
    assert ((back.sh0 - ref.sh0) * SH_C0).abs().max() <= 1 / 255 + 1e-6
    assert (torch.sigmoid(back.opacities) - torch.sigmoid(ref.opacities)).abs().max() <= 1 / 255 + 1e-6
    dots = (torch.nn.functional.normalize(ref.quats, dim=1) * back.quats).sum(dim=1).abs()
    assert dots.min() >= 1 - 1e-3


def test_gsplat_compressed_ply_reads_within_quantization(tmp_path):
    scene = random_scene(600, sh_degree=2, seed=13)
    path = _export(scene, "ply_compressed", tmp_path / "g.compressed.ply")
    assert detect_format(path) == "compressed_ply"
    back = load(path)
    assert len(back) == 600 and back.sh_degree == 2
    ref = _match(scene, back)
    # 11/10/11-bit positions and log-scales across each chunk's range (< 2 and < 1.7 here), 8-bit colours across
    # the chunk's colour range (< 1), 8-bit opacity, 10-bit smallest-three rotations, 8-bit SH over [-4, 4].
    assert (back.means - ref.means).abs().max() <= 2.0 / 1023 / 2 + 1e-5
    assert (back.scales - ref.scales).abs().max() <= 1.7 / 1023 / 2 + 1e-5
    assert ((back.sh0 - ref.sh0) * SH_C0).abs().max() <= 0.5 / 255 + 1e-5
    assert (torch.sigmoid(back.opacities) - torch.sigmoid(ref.opacities)).abs().max() <= 0.5 / 255 + 1e-5
    dots = (torch.nn.functional.normalize(ref.quats, dim=1) * back.quats).sum(dim=1).abs()
    assert dots.min() >= 1 - 1e-5
    assert (back.shN - ref.shN).abs().max() <= 8 / 256 + 1e-5  # gsplat truncates: up to one step
