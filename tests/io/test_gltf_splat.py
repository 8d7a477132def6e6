"""KHR_gaussian_splatting .glb as splat-transform writes it: read back into our frame, exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.io import FormatError, detect_format, load, save
from engine.scene import random_scene
from tests.io import oracle

DATA = Path(__file__).parent / "data"


def _close(a, b):
    q = a.quats / a.quats.norm(dim=1, keepdim=True)
    r = b.quats / b.quats.norm(dim=1, keepdim=True)
    assert torch.minimum((q - r).abs().amax(1), (q + r).abs().amax(1)).max() < 1e-6
    assert torch.equal(a.means, b.means) and torch.equal(a.sh0, b.sh0) and torch.equal(a.shN, b.shN)
    assert (a.scales - b.scales).abs().max() < 1e-5 and (a.opacities - b.opacities).abs().max() < 1e-4


def test_reads_the_committed_splat_transform_glb():
    # made by `splat-transform src.ply -H 0 X.glb` from random_scene(96, sh_degree=3, seed=11)
    path = DATA / "splat_transform_gaussians.glb"
    assert detect_format(path) == "gltf_splat"
    source = random_scene(96, sh_degree=3, seed=11)
    _close(load(path), source.replace(shN=source.shN[:, :0]))


def test_splat_transform_glb_round_trip_with_sh(tmp_path):
    scene = random_scene(80, sh_degree=3, seed=4)
    save(scene, tmp_path / "s.ply")
    oracle.convert(tmp_path / "s.ply", tmp_path / "s.glb")
    _close(load(tmp_path / "s.glb"), scene)


def test_malformed_gaussian_glb(tmp_path):
    data = (DATA / "splat_transform_gaussians.glb").read_bytes()
    (tmp_path / "cut.glb").write_bytes(data[:-200])
    with pytest.raises(FormatError, match=r"cut\.glb: truncated glTF: accessor \d+ runs past the end"):
        load(tmp_path / "cut.glb")
