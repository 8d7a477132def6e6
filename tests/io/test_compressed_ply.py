"""SuperSplat compressed .ply: hand-built bit patterns, the real sample written by SuperSplat, malformed files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plyfile
import pytest
import torch

from engine.io import FormatError, detect_format, load
from engine.scene import SH_C0
from tests.io.ply_builders import write_ply

SAMPLE = Path(__file__).resolve().parent / "data" / "supersplat-64.compressed.ply"
BOUNDS = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
          "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"]  # fmt: skip
COLOR_BOUNDS = ["min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]


def chunk_rows(values: list[dict], colors: bool = True) -> np.ndarray:
    names = BOUNDS + (COLOR_BOUNDS if colors else [])
    rows = np.zeros(len(values), dtype=[(n, "f4") for n in names])
    for i, v in enumerate(values):
        for n in names:
            rows[n][i] = v[n]
    return rows


def vertex_rows(n: int, position=0, rotation=0, scale=0, color=0) -> np.ndarray:
    rows = np.zeros(n, dtype=[(p, "u4") for p in ("packed_position", "packed_rotation", "packed_scale", "packed_color")])
    rows["packed_position"], rows["packed_rotation"] = position, rotation
    rows["packed_scale"], rows["packed_color"] = scale, color
    return rows


def bounds(lo, hi, slo, shi, clo=(0.0, 0.0, 0.0), chi=(1.0, 1.0, 1.0)) -> dict:
    v = {}
    for i, a in enumerate("xyz"):
        v[f"min_{a}"], v[f"max_{a}"] = lo[i], hi[i]
        v[f"min_scale_{a}"], v[f"max_scale_{a}"] = slo[i], shi[i]
    for i, c in enumerate("rgb"):
        v[f"min_{c}"], v[f"max_{c}"] = clo[i], chi[i]
    return v


def test_decodes_hand_built_bit_patterns(tmp_path):
    chunk0 = bounds((-1, -2, -3), (1, 2, 3), (-5, -4, -3), (-1, 0, 1), (0.2, 0.0, 0.0), (0.6, 0.5, 1.0))
    chunk1 = bounds((10, 10, 10), (11, 12, 13), (-2, -2, -2), (-2, -2, -2))
    vertex = vertex_rows(300)
    vertex[0] = ((2047 << 21) | (0 << 11) | 1023,  # x = max, y = min, z = 1023/2047 of the way
                 (0 << 30) | (512 << 20) | (512 << 10) | 512,  # largest = w, others ~0
                 (0 << 21) | (1023 << 11) | 2047,  # scale x = min, y = max, z = max
                 (255 << 24) | (0 << 16) | (128 << 8) | 64)  # fmt: skip
    vertex[1]["packed_rotation"] = (3 << 30) | (1023 << 20) | (512 << 10) | 512  # w = +0.7071, z = largest
    vertex[256]["packed_position"] = (1024 << 21) | (512 << 11) | 0  # second chunk
    sh = np.zeros(300, dtype=[(f"f_rest_{i}", "u1") for i in range(9)])
    sh["f_rest_0"][0], sh["f_rest_3"][0], sh["f_rest_8"][0] = 0, 255, 127
    path = write_ply(tmp_path / "c.compressed.ply", [("chunk", chunk_rows([chunk0, chunk1])), ("vertex", vertex), ("sh", sh)])
    assert detect_format(path) == "compressed_ply"
    s = load(path)
    assert len(s) == 300 and s.sh_degree == 1

    torch.testing.assert_close(s.means[0], torch.tensor([1.0, -2.0, -3 + 6 * 1023 / 2047]))
    torch.testing.assert_close(s.means[256], torch.tensor([10 + 1024 / 2047, 10 + 2 * 512 / 1023, 10.0]))
    small = (512 / 1023 - 0.5) * math.sqrt(2)
    torch.testing.assert_close(s.quats[0], torch.tensor([math.sqrt(1 - 3 * small**2), small, small, small]))
    half = 0.5 * math.sqrt(2)
    torch.testing.assert_close(s.quats[1], torch.tensor([half, small, small, math.sqrt(1 - half**2 - 2 * small**2)]))
    torch.testing.assert_close(s.scales[0], torch.tensor([-5.0, 0.0, 1.0]))
    torch.testing.assert_close(s.scales[256], torch.tensor([-2.0, -2.0, -2.0]))
    rgb = torch.tensor([0.6, 0.0, 128 / 255])
    torch.testing.assert_close(s.sh0[0, 0], (rgb - 0.5) / SH_C0)
    torch.testing.assert_close(torch.sigmoid(s.opacities[0]), torch.tensor(64 / 255))
    # f_rest is channel-major (3 coefficients per channel): f_rest_0 = R c0, f_rest_3 = G c0, f_rest_8 = B c2
    assert float(s.shN[0, 0, 0]) == -4.0 and float(s.shN[0, 0, 1]) == 4.0
    torch.testing.assert_close(s.shN[0, 2, 2], torch.tensor((127.5 / 256 - 0.5) * 8))
    # alpha byte 0 stays finite
    assert torch.isfinite(s.opacities).all()


def test_without_colour_bounds_or_sh(tmp_path):
    chunk = bounds((0, 0, 0), (1, 1, 1), (0, 0, 0), (0, 0, 0))
    vertex = vertex_rows(5, color=(51 << 24) | (102 << 16) | (204 << 8) | 255)
    path = write_ply(tmp_path / "c.ply", [("chunk", chunk_rows([chunk], colors=False)), ("vertex", vertex)])
    s = load(path)
    assert s.sh_degree == 0
    torch.testing.assert_close(s.sh0[:, 0], ((torch.tensor([0.2, 0.4, 0.8]) - 0.5) / SH_C0).expand(5, 3))


def _independent_decode(path: Path) -> dict[str, np.ndarray]:
    """Decode the sample with plyfile and per-Gaussian Python integer arithmetic (no engine code)."""
    ply = plyfile.PlyData.read(str(path))
    chunks, vertices = ply["chunk"].data, ply["vertex"].data
    out = {"means": [], "quats": [], "scales": []}
    for i, v in enumerate(vertices):
        c = chunks[i // 256]
        p = int(v["packed_position"])
        t = ((p >> 21) / 2047, ((p >> 11) & 1023) / 1023, (p & 2047) / 2047)
        out["means"].append([c[f"min_{a}"] + (c[f"max_{a}"] - c[f"min_{a}"]) * t[j] for j, a in enumerate("xyz")])
        s = int(v["packed_scale"])
        t = ((s >> 21) / 2047, ((s >> 11) & 1023) / 1023, (s & 2047) / 2047)
        out["scales"].append([c[f"min_scale_{a}"] + (c[f"max_scale_{a}"] - c[f"min_scale_{a}"]) * t[j] for j, a in enumerate("xyz")])
        r = int(v["packed_rotation"])
        small = [(((r >> shift) & 1023) / 1023 - 0.5) * math.sqrt(2) for shift in (20, 10, 0)]
        q = small[:]
        q.insert(r >> 30, math.sqrt(max(0.0, 1 - sum(x * x for x in small))))
        out["quats"].append(q)
    return {k: np.array(v) for k, v in out.items()}


def test_real_supersplat_sample():
    s = load(SAMPLE)
    assert len(s) == 64 and s.sh_degree == 3
    for name, value in s.items():
        assert torch.isfinite(value).all(), name
    torch.testing.assert_close(s.quats.norm(dim=1), torch.ones(64))
    assert -25 < float(s.scales.min()) and float(s.scales.max()) < 5
    assert (s.shN.abs() <= 4).all() and s.shN.abs().max() > 0
    assert (s.base_colors() >= 0).all() and (s.base_colors() < 3).all()
    expected = _independent_decode(SAMPLE)
    for name in ("means", "scales", "quats"):
        np.testing.assert_allclose(getattr(s, name).numpy(), expected[name], atol=2e-6, rtol=1e-6, err_msg=name)
    chunk = plyfile.PlyData.read(str(SAMPLE))["chunk"].data[0]
    lo = torch.tensor([chunk["min_x"], chunk["min_y"], chunk["min_z"]])
    hi = torch.tensor([chunk["max_x"], chunk["max_y"], chunk["max_z"]])
    assert ((s.means >= lo - 1e-6) & (s.means <= hi + 1e-6)).all()


# ------------------------------------------------------------------------------------------- malformed


def _chunk(n=1):
    return chunk_rows([bounds((0, 0, 0), (1, 1, 1), (-3, -3, -3), (-1, -1, -1))] * n)


def test_vertex_count_not_matching_chunks(tmp_path):
    path = write_ply(tmp_path / "m.compressed.ply", [("chunk", _chunk(1)), ("vertex", vertex_rows(300))])
    with pytest.raises(FormatError, match=r"m\.compressed\.ply: 300 vertices need 2 chunk\(s\) of 256, but the file has 1"):
        load(path)


def test_missing_packed_property(tmp_path):
    vertex = vertex_rows(4)[["packed_position", "packed_scale", "packed_color"]].copy()
    vertex = np.array(vertex.tolist(), dtype=[(n, "u4") for n in ("packed_position", "packed_scale", "packed_color")])
    path = write_ply(tmp_path / "m.ply", [("chunk", _chunk()), ("vertex", vertex)])
    with pytest.raises(FormatError, match=r"compressed \.ply is missing properties: packed_rotation"):
        load(path)


def test_truncated_compressed_body(tmp_path):
    path = write_ply(tmp_path / "t.ply", [("chunk", _chunk()), ("vertex", vertex_rows(200))], truncate=7)
    with pytest.raises(FormatError, match=r"truncated: the header declares 200 'vertex' rows"):
        load(path)


def test_sh_element_with_wrong_layout(tmp_path):
    sh = np.zeros(4, dtype=[(f"f_rest_{i}", "u1") for i in range(10)])
    path = write_ply(tmp_path / "s.ply", [("chunk", _chunk()), ("vertex", vertex_rows(4)), ("sh", sh)])
    with pytest.raises(FormatError, match=r"unsupported 'sh' element: 10 properties"):
        load(path)
    sh = np.zeros(3, dtype=[(f"f_rest_{i}", "u1") for i in range(9)])
    path = write_ply(tmp_path / "s2.ply", [("chunk", _chunk()), ("vertex", vertex_rows(4)), ("sh", sh)])
    with pytest.raises(FormatError, match=r"'sh' element has 3 rows, 'vertex' has 4"):
        load(path)


def test_nan_chunk_bounds(tmp_path):
    chunk = _chunk()
    chunk["max_y"] = np.nan
    path = write_ply(tmp_path / "n.ply", [("chunk", chunk), ("vertex", vertex_rows(4, position=5 << 11))])
    with pytest.raises(FormatError, match=r"invalid Gaussian values: means has 4 Gaussian\(s\) with NaN/Inf"):
        load(path)


# ---------------------------------------------------------------------------------------------- writing
from engine.io import save  # noqa: E402
from engine.io.morton import morton_order  # noqa: E402
from engine.scene import random_scene  # noqa: E402
from tests.io import oracle  # noqa: E402


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_write_round_trip_within_chunk_quantization(tmp_path, degree):
    scene = random_scene(700, sh_degree=degree, seed=degree)  # 3 chunks, the last partial
    save(scene, tmp_path / "s.compressed.ply")
    assert detect_format(tmp_path / "s.compressed.ply") == "compressed_ply"
    back = load(tmp_path / "s.compressed.ply")
    order = torch.from_numpy(morton_order(scene.means.double().numpy()))
    src = scene.map(lambda t: t[order])
    chunks = plyfile.PlyData.read(str(tmp_path / "s.compressed.ply"))["chunk"].data
    ci = np.arange(700) // 256
    for key, lo, hi, bits in (("means", "min_", "max_", (11, 10, 11)), ("scales", "min_scale_", "max_scale_", (11, 10, 11))):
        for a, axis in enumerate("xyz"):
            span = chunks[f"{hi}{axis}"][ci] - chunks[f"{lo}{axis}"][ci]
            err = (getattr(back, key)[:, a] - getattr(src, key)[:, a]).abs().numpy()
            assert (err <= 0.5 * span / (2 ** bits[a] - 1) + 1e-5).all(), (key, axis)
    q = src.quats / src.quats.norm(dim=1, keepdim=True)
    assert torch.minimum((q - back.quats).abs().amax(1), (q + back.quats).abs().amax(1)).max() < 0.003
    assert (torch.sigmoid(src.opacities) - torch.sigmoid(back.opacities)).abs().max() <= 0.5 / 255 + 1e-6
    rgb_src, rgb_back = src.sh0 * SH_C0 + 0.5, back.sh0 * SH_C0 + 0.5
    assert (rgb_src - rgb_back).abs().max() <= 0.5 / 255 + 1e-5
    if degree:
        assert (src.shN.clamp(-4, 4) - back.shN).abs().max() <= 4 / 256 + 1e-6


def test_splat_transform_reads_our_compressed_ply_as_we_do(tmp_path):
    save(random_scene(600, sh_degree=2, seed=7), tmp_path / "ours.compressed.ply")
    oracle.convert(tmp_path / "ours.compressed.ply", tmp_path / "theirs.ply")
    for (key, a), (_, b) in zip(load(tmp_path / "ours.compressed.ply").items(), load(tmp_path / "theirs.ply").items()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), key


def test_block_encoding_matches_one_block(tmp_path, monkeypatch):
    import engine.io.compressed_ply as module

    scene = random_scene(1300, sh_degree=1, seed=9)
    save(scene, tmp_path / "one.compressed.ply")
    monkeypatch.setattr(module, "WRITE_BLOCK", 512)  # two chunks at a time, the last block partial
    save(scene, tmp_path / "blocks.compressed.ply")
    assert (tmp_path / "one.compressed.ply").read_bytes() == (tmp_path / "blocks.compressed.ply").read_bytes()
