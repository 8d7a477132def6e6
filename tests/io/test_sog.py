"""PlayCanvas SOG v2: files splat-transform wrote (bit for bit against its own decode), round trips within
the stated quantization, the bytes our writer puts in the images, and malformed bundles."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.io import FormatError, detect_format, load, save
from engine.io.morton import morton_order
from engine.io.sog import encode_sog, kmeans_1d, read_sog
from engine.scene import random_scene
from tests.io import oracle

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name, degree", [("splat_transform_sh3.sog", 3), ("splat_transform_sh1.sog", 1)])
def test_reads_splat_transform_files_as_it_decodes_them(name, degree):
    ours = load(DATA / name)
    theirs = load(DATA / f"{name}.ply")  # splat-transform's own decode of the same file
    assert len(ours) == 96 and ours.sh_degree == degree and detect_format(DATA / name) == "sog"
    for (key, a), (_, b) in zip(ours.items(), theirs.items()):
        assert torch.equal(a, b), key


def test_unbundled_sog_reads_like_the_bundle(tmp_path):
    with zipfile.ZipFile(DATA / "splat_transform_sh3.sog") as z:
        z.extractall(tmp_path)
    a, b = load(DATA / "splat_transform_sh3.sog"), load(tmp_path / "meta.json")
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a.items(), b.items()))


def _sorted(scene):
    order = torch.from_numpy(morton_order(scene.means.double().numpy()))
    return scene.map(lambda t: t[order])


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_within_quantization(tmp_path, degree):
    scene = random_scene(500, sh_degree=degree, seed=degree)
    save(scene, tmp_path / "s.sog")
    back, src = load(tmp_path / "s.sog"), _sorted(scene)  # the writer stores Morton order
    assert back.sh_degree == degree and len(back) == 500
    # positions: 1/65535 of the log-range per axis, mapped back through e^|t| - 1
    t = torch.sign(src.means) * torch.log1p(src.means.abs())
    step = (t.max(0).values - t.min(0).values) / 65535
    assert ((back.means - src.means).abs() <= 0.51 * step * torch.exp(t.abs() + step) + 1e-6).all()
    q = src.quats / src.quats.norm(dim=1, keepdim=True)
    err = torch.minimum((q - back.quats).abs().amax(1), (q + back.quats).abs().amax(1))
    assert err.max() < 0.006  # 1/255 * sqrt(2) / 2 per stored component, plus the rebuilt largest
    assert (torch.sigmoid(src.opacities) - torch.sigmoid(back.opacities)).abs().max() <= 0.5 / 255 + 1e-6
    for key in ("scales", "sh0", "shN"):  # codebook values: the nearest of 256 entries, ends pinned
        a = getattr(src, key).double().numpy().reshape(-1)
        if a.size:
            book = kmeans_1d(a)
            bound = np.diff(book).max() / 2 + 1e-6
            assert np.abs(getattr(back, key).double().numpy().reshape(-1) - a).max() <= bound, key


def test_large_scene_uses_a_k_means_palette(tmp_path):
    scene = random_scene(300, sh_degree=1, seed=4)
    files = encode_sog(scene, palette_size=64, iterations=4)
    meta = json.loads(files["meta.json"])
    assert meta["shN"]["count"] == 64 and meta["shN"]["bands"] == 1
    labels = np.asarray(Image.open(io.BytesIO(files["shN_labels.webp"])).convert("RGBA"))
    assert labels.reshape(-1, 4)[:300, 0].max() < 64 and labels.reshape(-1, 4)[:300, 1].max() == 0


def test_writer_bytes_follow_the_spec(tmp_path):
    scene = random_scene(5, sh_degree=0, seed=3).replace(
        quats=torch.tensor([[1.0, 0, 0, 0], [0, -1.0, 0, 0], [0.5, 0.5, 0.5, -0.5], [0, 0, 0.6, 0.8], [0.8, 0, 0.6, 0]]),
        opacities=torch.tensor([50.0, -50.0, 0.0, 0.0, 0.0]),
    )
    files = encode_sog(scene)
    order = morton_order(scene.means.double().numpy())
    quats = np.asarray(Image.open(io.BytesIO(files["quats.webp"]))).reshape(-1, 4)[:5]
    sh0 = np.asarray(Image.open(io.BytesIO(files["sh0.webp"]))).reshape(-1, 4)[:5]
    expected_tags = {0: 252, 1: 253, 2: 252, 3: 255, 4: 252}  # index of the largest |component| (w,x,y,z)
    for pixel, source in enumerate(order):
        assert quats[pixel, 3] == expected_tags[source]
        if source == 1:  # (0, -1, 0, 0) -> made positive in x; stored w, y, z all zero -> 127.5 -> 128
            assert quats[pixel, :3].tolist() == [128, 128, 128]
        if source == 3:  # largest z = 0.8; stored (w, x, y) = (0, 0, 0.6)
            assert quats[pixel, 2] == round((0.6 * math.sqrt(2) * 0.5 + 0.5) * 255)
    alpha = {int(s): int(sh0[p, 3]) for p, s in enumerate(order)}
    assert alpha[0] == 255 and alpha[1] == 0 and alpha[2] == 128


def test_transparent_splats_keep_their_colours(tmp_path):
    # alpha 0 pixels: without exact=True libwebp may rewrite their RGB
    scene = random_scene(64, sh_degree=0, seed=8).replace(opacities=torch.full((64,), -40.0))
    save(scene, tmp_path / "t.sog")
    back, src = load(tmp_path / "t.sog"), _sorted(scene)
    book = kmeans_1d(src.sh0.double().numpy().reshape(-1))
    assert (back.sh0 - src.sh0).abs().max() <= np.diff(book).max() / 2 + 1e-6


def test_unbundled_write(tmp_path):
    scene = random_scene(40, sh_degree=2, seed=9)
    save(scene, tmp_path / "meta.json")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["meta.json", "means_l.webp", "means_u.webp", "quats.webp", "scales.webp", "sh0.webp",
                            "shN_centroids.webp", "shN_labels.webp"])  # fmt: skip
    a, b = load(tmp_path / "meta.json"), read_sog(tmp_path / "meta.json")
    assert len(a) == 40 and torch.equal(a.means, b.means)


def test_splat_transform_reads_our_sog_as_we_do(tmp_path):
    save(random_scene(200, sh_degree=3, seed=12), tmp_path / "ours.sog")
    oracle.convert(tmp_path / "ours.sog", tmp_path / "theirs.ply")
    ours, theirs = load(tmp_path / "ours.sog"), load(tmp_path / "theirs.ply")
    for (key, a), (_, b) in zip(ours.items(), theirs.items()):
        assert torch.equal(a, b), key


# ---------------------------------------------------------------------------------------------- malformed
def _bundle(tmp_path, meta_change=None, drop=None, replace=None, name="bad.sog"):
    with zipfile.ZipFile(DATA / "splat_transform_sh1.sog") as z:
        files = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(files["meta.json"])
    if meta_change:
        meta_change(meta)
    files["meta.json"] = json.dumps(meta).encode()
    if drop:
        del files[drop]
    files.update(replace or {})
    with zipfile.ZipFile(tmp_path / name, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    return tmp_path / name


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(version=3), r"unsupported SOG version 3: this reader handles SOG version 2"),
    (lambda m: m.pop("version"), r"no 'version' \(a SOG version 1 file\)"),
    (lambda m: m.update(count=10**6), r"fewer than the 1000000 Gaussians"),
    (lambda m: m.update(count=-1), r"'count' must be an integer"),
    (lambda m: m["scales"].update(codebook=[0.0] * 5), r"'scales.codebook' must be 256 finite numbers"),
    (lambda m: m["means"].update(mins=[float("nan")] * 3), r"'means.mins' must be 3 finite numbers"),
    (lambda m: m["shN"].update(bands=7), r"'shN.bands' must be 1, 2 or 3"),
    (lambda m: m["shN"].update(bands=2), r"shN_centroids is 192 pixels wide, expected 512"),
    (lambda m: m["shN"].update(count=1), r"labels point past the 1-entry SH palette"),
    (lambda m: m["quats"].update(files=["../../etc/passwd"]), r"SOG names an invalid file '../../etc/passwd'"),
    (lambda m: m.pop("sh0"), r"no 'sh0' object"),
])  # fmt: skip
def test_malformed_meta(tmp_path, change, message):
    path = _bundle(tmp_path, meta_change=change)
    with pytest.raises(FormatError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_missing_and_corrupt_images(tmp_path):
    with pytest.raises(FormatError, match=r"SOG bundle has no member 'quats.webp'"):
        load(_bundle(tmp_path, drop="quats.webp"))
    with pytest.raises(FormatError, match=r"SOG image 'sh0.webp' cannot be decoded"):
        load(_bundle(tmp_path, replace={"sh0.webp": b"RIFF0000WEBPnonsense"}))
    (tmp_path / "plain.sog").write_bytes(b"not a zip at all")
    with pytest.raises(FormatError, match=r"plain\.sog: not a \.sog bundle: not a readable zip archive"):
        load(tmp_path / "plain.sog")
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(FormatError, match=r"meta\.json: SOG meta\.json is not valid JSON"):
        load(tmp_path / "meta.json")
    (tmp_path / "lod-meta.json").write_text(json.dumps({"lodLevels": 2, "filenames": []}))
    with pytest.raises(FormatError, match=r"streamed-LOD SOG index"):
        load(tmp_path / "lod-meta.json")


def test_image_far_larger_than_the_file_is_refused(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGBA", (4096, 4096)).save(buffer, format="WEBP", lossless=True)  # 64 MB decoded, tiny file
    path = _bundle(tmp_path, replace={"quats.webp": buffer.getvalue()})
    with pytest.raises(FormatError, match=r"SOG image 'quats.webp' declares 4096x4096 pixels in \d+ bytes|far larger"):
        load(path)


def test_json_that_is_not_sog(tmp_path):
    (tmp_path / "settings.json").write_text('{"camera": [0, 0, 1]}')
    with pytest.raises(FormatError, match=r"settings\.json: not a SOG meta\.json"):
        load(tmp_path / "settings.json")
