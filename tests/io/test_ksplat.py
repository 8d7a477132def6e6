"""mkkellogg .ksplat, modes 0-2: files from an independent byte-level builder, checked against the source
scene and against splat-transform's decode of the same file, and malformed files."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from engine.io import FormatError, detect_format, load
from engine.scene import SH_C0, random_scene
from tests.io import oracle
from tests.io.ksplat_builder import build_ksplat

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["mode1_sh1.ksplat", "mode2_sh2.ksplat"])
def test_matches_splat_transforms_decode(name):
    ours, theirs = load(DATA / name), load(DATA / f"{name}.ply")
    assert detect_format(DATA / name) == "ksplat"
    for (key, a), (_, b) in zip(ours.items(), theirs.items()):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("degree", [0, 1, 3])
def test_reads_each_mode_within_its_precision(tmp_path, mode, degree):
    scene = random_scene(37, sh_degree=degree, seed=mode + 10 * degree)
    path = tmp_path / "s.ksplat"
    path.write_bytes(build_ksplat(scene, mode, bucket_capacity=8))  # 4 full buckets, one partial of 5
    back = load(path)
    assert len(back) == 37 and back.sh_degree == degree
    f16 = 2.0**-10  # relative precision of half floats
    position = 0.0 if mode == 0 else 0.6 * 4 / 32767  # half a quantization step of the bucket block (<= ~4)
    assert (back.means - scene.means).abs().max() <= position + 1e-6
    assert (back.scales - scene.scales).abs().max() <= (1e-6 if mode == 0 else f16)
    assert (back.quats - scene.quats).abs().max() <= (1e-6 if mode == 0 else f16 * 2)
    rgb = (scene.sh0 * SH_C0 + 0.5).clamp(0, 1)
    assert ((back.sh0 * SH_C0 + 0.5) - rgb).abs().max() <= 0.5 / 255 + 1e-6
    if degree:
        bound = {0: 1e-6, 1: 2 * f16, 2: 0.5 * 3.0 / 255 + 1e-6}[mode]
        assert (back.shN - scene.shN).abs().max() <= bound


def test_splat_transform_agrees_on_every_mode(tmp_path):
    for mode in (0, 1, 2):
        path = tmp_path / f"m{mode}.ksplat"
        path.write_bytes(build_ksplat(random_scene(50, sh_degree=3, seed=mode), mode))
        oracle.convert(path, tmp_path / f"m{mode}.ply")
        for (key, a), (_, b) in zip(load(path).items(), load(tmp_path / f"m{mode}.ply").items()):
            assert torch.equal(a, b), (mode, key)


def _check(tmp_path, content: bytes, message: str):
    path = tmp_path / "bad.ksplat"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def _good() -> bytearray:
    return bytearray(build_ksplat(random_scene(20, sh_degree=1, seed=1), 1))


def test_malformed_files(tmp_path):
    _check(tmp_path, b"\0" * 100, r"less than its 4096-byte header")
    bad = _good(); bad[0] = 1
    _check(tmp_path, bytes(bad), r"unsupported \.ksplat version 1\.1")
    bad = _good(); struct.pack_into("<H", bad, 20, 7)
    _check(tmp_path, bytes(bad), r"unsupported \.ksplat compression mode 7")
    bad = _good(); struct.pack_into("<I", bad, 4, 10**6)
    _check(tmp_path, bytes(bad), r"1000000 section headers do not fit")
    bad = _good(); struct.pack_into("<I", bad, 16, 21)
    _check(tmp_path, bytes(bad), r"the header says 21 Gaussians, its sections hold 20")
    bad = _good(); struct.pack_into("<I", bad, 4096 + 4, 2**31)
    _check(tmp_path, bytes(bad), r"truncated \.ksplat: its sections need")
    bad = _good(); struct.pack_into("<H", bad, 4096 + 40, 5)
    _check(tmp_path, bytes(bad), r"section 0: unsupported SH degree 5")
    _check(tmp_path, bytes(_good()[:-7]), r"truncated \.ksplat")
    bad = _good(); struct.pack_into("<I", bad, 4096, 30)
    _check(tmp_path, bytes(bad), r"30 Gaussians exceed its capacity of 20")
