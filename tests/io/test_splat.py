"""antimatter15 .splat: hand-built records decode as specified, round trips stay within 8-bit quantization."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch

from engine.io import FormatError, load, save
from engine.io.splat import RECORD
from engine.scene import SH_C0, GaussianScene, random_scene


def test_decodes_a_hand_built_record(tmp_path):
    record = struct.pack("<3f3f4B4B", 1.5, -2.0, 0.25, 0.5, 0.01, 2.0, 255, 0, 128, 191, 128, 128, 255, 128)
    (tmp_path / "one.splat").write_bytes(record)
    scene = load(tmp_path / "one.splat")
    assert len(scene) == 1 and scene.sh_degree == 0
    torch.testing.assert_close(scene.means[0], torch.tensor([1.5, -2.0, 0.25]))
    torch.testing.assert_close(scene.scales[0], torch.log(torch.tensor([0.5, 0.01, 2.0])))
    torch.testing.assert_close(scene.sh0[0, 0], (torch.tensor([1.0, 0.0, 128 / 255]) - 0.5) / SH_C0)
    torch.testing.assert_close(torch.sigmoid(scene.opacities[0]), torch.tensor(191 / 255))
    # rotation bytes (w, x, y, z) = (128, 128, 255, 128): a 90-degree-ish turn about y, normalized
    torch.testing.assert_close(scene.quats[0], torch.tensor([0.0, 0.0, 1.0, 0.0]))


def test_writes_the_specified_bytes(tmp_path):
    scene = GaussianScene.create(
        means=torch.tensor([[1.0, 2.0, 3.0]]),
        quats=torch.tensor([[2.0, 0.0, 0.0, 0.0]]),  # unnormalized identity
        scales=torch.log(torch.tensor([[0.1, 0.2, 0.3]])),
        opacities=torch.logit(torch.tensor([0.5])),
        sh0=((torch.tensor([[1.2, 0.5, -0.1]]) - 0.5) / SH_C0),  # out-of-range colours are clamped
        shN=torch.ones(1, 3, 3),  # dropped
    )
    save(scene, tmp_path / "w.splat")
    raw = (tmp_path / "w.splat").read_bytes()
    assert len(raw) == 32
    values = struct.unpack("<3f3f4B4B", raw)
    assert values[:3] == (1.0, 2.0, 3.0)
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(values[3:6], (0.1, 0.2, 0.3)))
    assert values[6:10] == (255, 128, 0, 128)
    assert values[10:] == (255, 128, 128, 128)


def test_round_trip_within_quantization(tmp_path):
    # Tolerances: positions and scales are float32 (exact / 1 ulp of log); colour and opacity are 8-bit
    # (0.5/255 after clamping to [0, 1]); rotation components are 8-bit steps of 1/128, so the unit
    # quaternion moves by < sqrt(4) * 0.5/128 -> |dot| >= 1 - 1e-4; SH beyond degree 0 is dropped.
    scene = random_scene(4000, sh_degree=2, seed=3)
    save(scene, tmp_path / "s.splat")
    back = load(tmp_path / "s.splat")
    assert back.sh_degree == 0 and len(back) == len(scene)
    assert torch.equal(back.means, scene.means)
    torch.testing.assert_close(back.scales, scene.scales, atol=1e-6, rtol=0)
    rgb = (scene.sh0 * SH_C0 + 0.5).clamp(0, 1)
    assert ((back.sh0 * SH_C0 + 0.5) - rgb).abs().max() <= 0.5 / 255 + 1e-6
    assert (torch.sigmoid(back.opacities) - torch.sigmoid(scene.opacities)).abs().max() <= 0.5 / 255 + 1e-6
    dots = (torch.nn.functional.normalize(scene.quats, dim=1) * back.quats).sum(dim=1).abs()
    assert dots.min() >= 1 - 1e-3
    # Re-encoding the decoded scene reproduces position/scale/colour/opacity bytes exactly (quantization is
    # idempotent); rotation bytes move by at most one step (the decoder renormalizes the 8-bit vector).
    save(back, tmp_path / "again.splat")
    first = np.fromfile(tmp_path / "s.splat", dtype=RECORD)
    again = np.fromfile(tmp_path / "again.splat", dtype=RECORD)
    for field in ("position", "scale", "rgba"):
        assert np.array_equal(first[field], again[field]), field
    assert np.abs(first["rotation"].astype(int) - again["rotation"].astype(int)).max() <= 1


def test_extreme_alpha_bytes_stay_finite(tmp_path):
    records = b"".join(
        struct.pack("<3f3f4B4B", 0, 0, 0, 1, 1, 1, 10, 10, 10, a, 255, 128, 128, 128) for a in (0, 255)
    )
    (tmp_path / "a.splat").write_bytes(records)
    scene = load(tmp_path / "a.splat")
    assert torch.isfinite(scene.opacities).all()
    save(scene, tmp_path / "b.splat")
    assert (tmp_path / "b.splat").read_bytes() == records


def test_size_not_a_multiple_of_32(tmp_path):
    (tmp_path / "cut.splat").write_bytes(b"\0" * 70)
    with pytest.raises(FormatError, match=r"cut\.splat: truncated or not a \.splat file: size 70 bytes is not a multiple of 32"):
        load(tmp_path / "cut.splat")


def test_non_positive_scale(tmp_path):
    good = struct.pack("<3f3f4B4B", 0, 0, 0, 1, 1, 1, 1, 2, 3, 4, 255, 128, 128, 128)
    bad = struct.pack("<3f3f4B4B", 0, 0, 0, 1, 0.0, 1, 1, 2, 3, 4, 255, 128, 128, 128)
    (tmp_path / "z.splat").write_bytes(good + bad)
    with pytest.raises(FormatError, match=r"1 record\(s\) have a non-positive or non-finite scale \(first at index 1"):
        load(tmp_path / "z.splat")


def test_nan_position(tmp_path):
    (tmp_path / "n.splat").write_bytes(struct.pack("<3f3f4B4B", float("nan"), 0, 0, 1, 1, 1, 1, 2, 3, 4, 255, 128, 128, 128))
    with pytest.raises(FormatError, match=r"n\.splat: invalid Gaussian values: means has 1 Gaussian\(s\) with NaN/Inf"):
        load(tmp_path / "n.splat")
