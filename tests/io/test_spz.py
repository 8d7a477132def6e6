"""Niantic .spz: byte-level checks against the published layout, round trips within quantization,
the RUB <-> RDF frame change, and malformed files."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from engine.io import FormatError, load, save
from engine.io.spz import read_spz, write_spz
from engine.scene import random_scene

C = math.sqrt(0.5) / 511  # one step of a smallest-three magnitude


def legacy_file(version, n, degree, arrays, fractional_bits=12, flags=0, magic=0x5053474E):
    header = struct.pack("<IIIBBBB", magic, version, n, degree, fractional_bits, flags, 0)
    return gzip.compress(header + b"".join(bytes(a) for a in arrays))


def test_decodes_hand_built_version_2(tmp_path):
    positions = bytes([0x00, 0x10, 0x00, 0x00, 0xE8, 0xFF, 0x01, 0x00, 0x00,  # 1, -1.5, 1/4096
                       0x00, 0xF0, 0x7F, 0x00, 0x00, 0x80, 0x00, 0x08, 0x00])  # 2047, -2048, 0.5  # fmt: skip
    alphas = bytes([255, 128])
    colors = bytes([128, 0, 255, 64, 64, 64])
    scales = bytes([160, 0, 255, 16, 32, 48])
    rotations = bytes([128, 128, 128, 255, 128, 128])  # ~identity; x = 1
    sh = bytes([128] * 9 + [0, 255, 192, 128, 128, 128, 64, 128, 128])
    path = tmp_path / "v2.spz"
    path.write_bytes(legacy_file(2, 2, 1, [positions, alphas, colors, scales, rotations, sh]))
    s = read_spz(path, convert_frame=False)
    assert len(s) == 2 and s.sh_degree == 1
    torch.testing.assert_close(s.means, torch.tensor([[1.0, -1.5, 1 / 4096], [2047.0, -2048.0, 0.5]]))
    torch.testing.assert_close(torch.sigmoid(s.opacities), torch.tensor([254.75 / 255, 128 / 255]))
    expected_sh0 = (torch.tensor([[128.0, 0, 255], [64, 64, 64]]) / 255 - 0.5) / 0.15
    torch.testing.assert_close(s.sh0[:, 0], expected_sh0)
    torch.testing.assert_close(s.scales, torch.tensor([[0.0, -10.0, 5.9375], [-9.0, -8.0, -7.0]]))
    q0 = torch.tensor([128 / 127.5 - 1] * 3)
    w0 = math.sqrt(1 - 3 * float(q0[0]) ** 2)
    torch.testing.assert_close(s.quats[0], torch.tensor([w0, *q0.tolist()]))
    torch.testing.assert_close(s.quats[1], torch.tensor([0.0, 1.0, 1 / 255, 1 / 255]), atol=1e-6, rtol=0)
    torch.testing.assert_close(s.shN[0], torch.zeros(3, 3))
    torch.testing.assert_close(s.shN[1], (torch.tensor([[0.0, 255, 192], [128, 128, 128], [64, 128, 128]]) - 128) / 128)
    # Reading a RUB file (convert_frame) turns it into our frame: (x, -y, -z), quats (w, x, -y, -z), SH signs.
    r = read_spz(path, convert_frame=True)
    torch.testing.assert_close(r.means, s.means * torch.tensor([1.0, -1.0, -1.0]))
    torch.testing.assert_close(r.quats, s.quats * torch.tensor([1.0, 1.0, -1.0, -1.0]))
    torch.testing.assert_close(r.shN, s.shN * torch.tensor([-1.0, -1.0, 1.0])[:, None])
    torch.testing.assert_close(r.scales, s.scales)


def test_decodes_hand_built_version_3_smallest_three(tmp_path):
    # Gaussian 0: largest |component| is x (index 0) and negative, the others stored with flipped sign bits.
    comp0 = (0 << 30) | ((512 | 361) << 20) | ((512 | 361) << 10) | (512 | 361)
    # Gaussian 1: largest is w (index 3); x, y, z sit in bits 20-29, 10-19, 0-9; y negative.
    comp1 = (3 << 30) | (100 << 20) | ((512 | 50) << 10) | 0
    rotations = struct.pack("<II", comp0, comp1)
    zeros3 = bytes(6)
    path = tmp_path / "v3.spz"
    path.write_bytes(legacy_file(3, 2, 0, [bytes(18), bytes([200, 200]), zeros3, zeros3, rotations]))
    s = read_spz(path, convert_frame=False)
    m = 361 * C
    big = math.sqrt(1 - 3 * m * m)
    torch.testing.assert_close(s.quats[0], torch.tensor([-m, big, -m, -m]))  # (w, x, y, z)
    x, y = 100 * C, -50 * C
    torch.testing.assert_close(s.quats[1], torch.tensor([math.sqrt(1 - x * x - y * y), x, y, 0.0]))


def test_decodes_version_1_float16_positions(tmp_path):
    positions = np.array([[0.5, -3.25, 1000.0]], dtype="<f2").tobytes()
    path = tmp_path / "v1.spz"
    path.write_bytes(legacy_file(1, 1, 0, [positions, bytes([100]), bytes(3), bytes(3), bytes([128, 128, 128])]))
    s = read_spz(path, convert_frame=False)
    torch.testing.assert_close(s.means[0], torch.tensor([0.5, -3.25, 1000.0]))


def test_writer_follows_the_published_layout(tmp_path):
    scene = random_scene(3, sh_degree=1, seed=5)
    write_spz(scene, tmp_path / "w.spz", version=3, convert_frame=False)
    raw = gzip.decompress((tmp_path / "w.spz").read_bytes())
    magic, version, n, degree, bits, flags, reserved = struct.unpack_from("<IIIBBBB", raw)
    assert (magic, version, n, degree, bits, flags, reserved) == (0x5053474E, 3, 3, 1, 12, 0, 0)
    assert raw[:4] == b"NGSP"
    assert len(raw) == 16 + 3 * (9 + 1 + 3 + 3 + 4 + 9)
    pos = np.frombuffer(raw, np.uint8, 9 * 3, 16).reshape(3, 3, 3).astype(np.int64)
    fixed = pos[..., 0] + (pos[..., 1] << 8) + (pos[..., 2] << 16)
    fixed = np.where(fixed >= 1 << 23, fixed - (1 << 24), fixed)
    np.testing.assert_allclose(fixed / 4096, scene.means.numpy(), atol=0.5 / 4096 + 1e-7)
    alphas = np.frombuffer(raw, np.uint8, 3, 16 + 27)
    np.testing.assert_allclose(alphas, torch.sigmoid(scene.opacities).numpy() * 255, atol=0.5 + 1e-4)
    colors = np.frombuffer(raw, np.uint8, 9, 16 + 30).reshape(3, 3)
    np.testing.assert_allclose(colors, scene.sh0[:, 0].numpy() * 0.15 * 255 + 127.5, atol=0.5 + 1e-4)
    scales = np.frombuffer(raw, np.uint8, 9, 16 + 39).reshape(3, 3)
    np.testing.assert_allclose(scales, (scene.scales.numpy() + 10) * 16, atol=0.5 + 1e-4)


@pytest.mark.parametrize("version", [2, 3, 4])
@pytest.mark.parametrize("degree", [0, 1, 3])
def test_round_trip_within_quantization(tmp_path, version, degree):
    # Tolerances from the format: positions 0.5/4096 (12 fractional bits); log-scales 1/32 (steps of 1/16);
    # alpha 0.5/255; sh0 0.5/(0.15*255); rotations: v3/v4 9-bit magnitudes -> |dot| > 1 - 1e-5, v2 8-bit xyz
    # with w derived -> |dot| > 1 - 1e-2; SH: (bucket/2 + 0.5)/128 = 0.0352 for degree 1 (5 bits) and
    # 0.0664 for degrees 2-3 (4 bits). random_scene keeps every value inside the encodable ranges.
    scene = random_scene(2000, sh_degree=degree, seed=version * 10 + degree)
    save(scene, tmp_path / "s.spz", spz_version=version)
    back = load(tmp_path / "s.spz")
    assert back.sh_degree == degree and len(back) == len(scene)
    eps = 1e-6
    assert (back.means - scene.means).abs().max() <= 0.5 / 4096 + eps
    assert (back.scales - scene.scales).abs().max() <= 1 / 32 + eps
    assert (torch.sigmoid(back.opacities) - torch.sigmoid(scene.opacities)).abs().max() <= 0.5 / 255 + eps
    assert (back.sh0 - scene.sh0).abs().max() <= 0.5 / (0.15 * 255) + eps
    dots = (torch.nn.functional.normalize(scene.quats, dim=1) * back.quats).sum(dim=1).abs()
    assert dots.min() >= 1 - (1e-2 if version == 2 else 1e-5)
    if degree:
        assert (back.shN[:, :3] - scene.shN[:, :3]).abs().max() <= 4.5 / 128 + eps
    if degree > 1:
        assert (back.shN[:, 3:] - scene.shN[:, 3:]).abs().max() <= 8.5 / 128 + eps


def test_version_4_container(tmp_path):
    scene = random_scene(100, sh_degree=2, seed=1)
    write_spz(scene, tmp_path / "v4.spz", version=4)
    raw = (tmp_path / "v4.spz").read_bytes()
    magic, version, n, degree, bits, flags, streams, toc = struct.unpack_from("<IIIBBBBI", raw)
    assert (magic, version, n, degree, bits, streams, toc) == (0x5053474E, 4, 100, 2, 12, 6, 32)
    sizes = [struct.unpack_from("<QQ", raw, 32 + 16 * i)[1] for i in range(6)]
    assert sizes == [900, 100, 300, 300, 400, 100 * 8 * 3]
    degree0 = random_scene(10, sh_degree=0)
    write_spz(degree0, tmp_path / "d0.spz", version=4)
    assert struct.unpack_from("<B", (tmp_path / "d0.spz").read_bytes(), 15)[0] == 5  # empty SH stream skipped
    assert len(read_spz(tmp_path / "d0.spz")) == 10


def test_frame_change_is_a_rotation_about_x(tmp_path):
    """Our frame -> SPZ's RUB is R = diag(1, -1, -1): each Gaussian's rotation matrix becomes R M R."""
    scene = random_scene(50, sh_degree=0, seed=3)
    write_spz(scene, tmp_path / "f.spz", version=3, convert_frame=True)
    stored = read_spz(tmp_path / "f.spz")

    def matrix(q):
        w, x, y, z = torch.nn.functional.normalize(q, dim=-1).unbind(-1)
        return torch.stack([
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ], -2)  # fmt: skip

    R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    torch.testing.assert_close(matrix(stored.quats), R @ matrix(scene.quats) @ R, atol=5e-3, rtol=0)
    torch.testing.assert_close(stored.means, scene.means @ R, atol=0.5 / 4096 + 1e-6, rtol=0)


def test_sh_degree_4_is_truncated_with_a_warning(tmp_path):
    path = tmp_path / "d4.spz"
    path.write_bytes(legacy_file(3, 1, 4, [bytes(9), bytes([128]), bytes(3), bytes(3), bytes(4), bytes([140] * 72)]))
    with pytest.warns(UserWarning, match="SH degree 4 truncated to 3"):
        s = read_spz(path)
    assert s.sh_degree == 3


def test_large_positions_use_fewer_fractional_bits(tmp_path):
    scene = random_scene(10, seed=1, extent=5000.0)
    write_spz(scene, tmp_path / "big.spz")
    raw = gzip.decompress((tmp_path / "big.spz").read_bytes())
    assert raw[13] == 10  # 5000 * 2^10 < 2^23 <= 5000 * 2^11
    assert (load(tmp_path / "big.spz").means - scene.means).abs().max() <= 0.5 / 1024 + 1e-3


# ------------------------------------------------------------------------------------------- malformed


def _check(tmp_path, content: bytes, message: str, name="bad.spz"):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(FormatError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_gzip_garbage(tmp_path):
    _check(tmp_path, b"\x1f\x8b\x08\x00" + bytes(range(200)), r"corrupt gzip data in \.spz")


def test_wrong_version(tmp_path):
    _check(tmp_path, legacy_file(7, 1, 0, [bytes(19)]), r"unsupported SPZ version 7 \(this reader handles versions 1-4\)")


def test_wrong_magic_inside_gzip(tmp_path):
    _check(tmp_path, legacy_file(2, 1, 0, [bytes(19)], magic=0x12345678), r"bad magic 0x12345678 inside the gzip stream")


def test_not_an_spz_at_all(tmp_path):
    _check(tmp_path, b"this is a text file, not a splat\n", r"not an \.spz file: neither a gzip stream")


def test_truncated_body(tmp_path):
    _check(tmp_path, legacy_file(2, 10, 0, [bytes(100)]), r"truncated \.spz: 10 Gaussians need 190 bytes after the header, the stream holds 100")


def test_absurd_point_count(tmp_path):
    _check(tmp_path, legacy_file(3, 2**32 - 1, 3, [bytes(64)]), r"absurd point count: the header declares 4294967295 Gaussians")


def test_unsupported_sh_degree(tmp_path):
    _check(tmp_path, legacy_file(2, 1, 9, [bytes(19)]), r"unsupported SH degree 9")


def test_version_4_malformed(tmp_path):
    scene = random_scene(20, sh_degree=1, seed=2)
    write_spz(scene, tmp_path / "ok.spz", version=4)
    good = bytearray((tmp_path / "ok.spz").read_bytes())
    cut = bytes(good[:-10])
    _check(tmp_path, cut, r"truncated \.spz: stream 'sh' runs past the end of the file", "cut.spz")
    corrupt = bytearray(good)
    corrupt[32 + 16 * 6 + 5] ^= 0xFF  # inside the first zstd frame
    _check(tmp_path, bytes(corrupt), r"corrupt zstd data in SPZ stream 'positions'|decompressed to", "corrupt.spz")
    wrong_count = bytearray(good)
    wrong_count[15] = 3
    _check(tmp_path, bytes(wrong_count), r"SPZ header lists 3 streams, expected 6", "streams.spz")
    _check(tmp_path, bytes(good[:20]), r"less than the 32-byte version-4 header", "short.spz")


def test_block_processing_matches_one_block(tmp_path, monkeypatch):
    import engine.io.spz as spz_module

    scene = random_scene(1000, sh_degree=2, seed=6)
    write_spz(scene, tmp_path / "one.spz")
    whole = read_spz(tmp_path / "one.spz")
    monkeypatch.setattr(spz_module, "BLOCK", 64)  # 15 full blocks and a partial one
    write_spz(scene, tmp_path / "blocks.spz")
    assert (tmp_path / "blocks.spz").read_bytes() == (tmp_path / "one.spz").read_bytes()
    blocked = read_spz(tmp_path / "blocks.spz")
    for (name, a), (_, b) in zip(whole.items(), blocked.items()):
        assert torch.equal(a, b), name


# ---------------------------------------------------------------------------------------------- gzip framing
@pytest.mark.parametrize("cut", range(1, 9))
def test_file_cut_inside_the_gzip_trailer_is_refused(tmp_path, cut):
    write_spz(random_scene(30, sh_degree=1, seed=1), tmp_path / "ok.spz")
    data = (tmp_path / "ok.spz").read_bytes()
    _check(tmp_path, data[:-cut], r"truncated \.spz: the gzip stream ends before its CRC/length trailer", f"cut{cut}.spz")


def test_two_concatenated_gzip_members_read_as_one_stream(tmp_path):
    scene = random_scene(40, sh_degree=2, seed=3)
    write_spz(scene, tmp_path / "one.spz")
    raw = gzip.decompress((tmp_path / "one.spz").read_bytes())
    split = 16 + 7 * 9  # inside the positions array
    (tmp_path / "two.spz").write_bytes(gzip.compress(raw[:split]) + gzip.compress(raw[split:]))
    a, b = read_spz(tmp_path / "one.spz"), read_spz(tmp_path / "two.spz")
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a.items(), b.items()))


def test_corrupt_crc_is_refused(tmp_path):
    write_spz(random_scene(10, seed=1), tmp_path / "ok.spz")
    data = bytearray((tmp_path / "ok.spz").read_bytes())
    data[-6] ^= 0xFF  # inside the CRC-32
    _check(tmp_path, bytes(data), r"corrupt gzip data in \.spz: .*(incorrect data check|crc)", "crc.spz")


# ---------------------------------------------------------------------------------------------- frames
DATA = __import__("pathlib").Path(__file__).parent / "data"


def test_splat_transform_spz_opens_upright_by_default():
    # splat-transform wrote this from alpha_bytes.splat without a frame change; our default reads it the same
    from engine.io.splat import read_splat

    source = read_splat(DATA / "alpha_bytes.splat")
    default = load(DATA / "splat_transform_from_alpha_bytes.spz")
    spec = load(DATA / "splat_transform_from_alpha_bytes.spz", spz_frame="spec")
    assert (default.means - source.means).abs().max() < 1e-3
    flipped = source.means * torch.tensor([1.0, -1.0, -1.0])
    assert (spec.means - flipped).abs().max() < 1e-3  # "spec" turns it 180 degrees about x


def test_spec_frame_round_trip_and_stored_values(tmp_path):
    scene = random_scene(50, sh_degree=1, seed=2)
    save(scene, tmp_path / "default.spz")
    save(scene, tmp_path / "spec.spz", spz_frame="spec")
    assert (load(tmp_path / "default.spz").means - scene.means).abs().max() < 1e-3
    assert (load(tmp_path / "spec.spz", spz_frame="spec").means - scene.means).abs().max() < 1e-3
    stored = load(tmp_path / "spec.spz")  # the stored values of a spec file: RUB, turned about x
    assert (stored.means - scene.means * torch.tensor([1.0, -1.0, -1.0])).abs().max() < 1e-3
    with pytest.raises(ValueError, match="spz_frame must be one of spec, raw"):
        load(tmp_path / "default.spz", spz_frame="rub")


def _lopsided_scene():
    """A scene whose bounds are not symmetric about any axis, so a frame flip changes them."""
    scene = random_scene(64, sh_degree=1, seed=5)
    return scene.replace(means=scene.means * torch.tensor([0.5, 1.0, 0.25]) + torch.tensor([0.3, -0.8, 1.5]))


def test_default_spz_export_keeps_bounds_through_splat_transform(tmp_path):
    """What SuperSplat sees: splat-transform (SuperSplat's loader) reads our default .spz with the original's
    bounds, and the .spz it writes opens here with them too."""
    from tests.io import oracle

    scene = _lopsided_scene()
    save(scene, tmp_path / "ours.spz")
    oracle.convert(tmp_path / "ours.spz", tmp_path / "theirs.ply")
    lo, hi = scene.bounding_box()
    back_lo, back_hi = load(tmp_path / "theirs.ply").bounding_box()
    assert torch.allclose(back_lo, lo, atol=1e-3) and torch.allclose(back_hi, hi, atol=1e-3)
    save(scene, tmp_path / "source.ply")
    oracle.convert(tmp_path / "source.ply", tmp_path / "theirs.spz")
    their_lo, their_hi = load(tmp_path / "theirs.spz").bounding_box()
    assert torch.allclose(their_lo, lo, atol=1e-3) and torch.allclose(their_hi, hi, atol=1e-3)
