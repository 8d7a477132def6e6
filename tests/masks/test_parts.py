import json

import numpy as np
import pytest
import torch

from engine.masks.parts import PartSet, PartsError


def _parts():
    return PartSet.empty(5).with_part("head", torch.tensor([1.0, 1, 0, 0, 0])).with_part(
        "arm", torch.tensor([0.0, 0, 0.5, 1, 0])
    )


def test_round_trip(tmp_path):
    parts = _parts()
    npy, meta = parts.save(tmp_path / "robot_parts")
    assert npy.name == "robot_parts.npy" and meta.name == "robot_parts.json"
    loaded = PartSet.load(npy, num_gaussians=5)
    assert loaded.names == ("head", "arm")
    torch.testing.assert_close(loaded.weights, parts.weights)
    assert json.loads(meta.read_text())["num_gaussians"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["robot_parts.json", "robot_parts.npy"]


def test_edit_operations_return_new_sets():
    parts = _parts()
    replaced = parts.with_part("head", torch.zeros(5))
    assert replaced.names == ("head", "arm") and replaced.get("head").sum() == 0
    assert parts.get("head").sum() == 2
    assert parts.without("head").names == ("arm",)
    assert parts.renamed("arm", "left arm").names == ("head", "left arm")
    with pytest.raises(KeyError, match="no part named 'leg'"):
        parts.get("leg")
    with pytest.raises(PartsError, match="4 weights for a scene of 5"):
        parts.with_part("leg", torch.zeros(4))
    with pytest.raises(PartsError, match=r"\[0, 1\]"):
        parts.with_part("leg", torch.full((5,), 2.0))
    with pytest.raises(PartsError, match="unique"):
        parts.renamed("arm", "head")


def test_plain_mask_file_loads_as_one_part(tmp_path):
    np.save(tmp_path / "chair.npy", np.array([0.0, 0.25, 1.0], np.float32))
    parts = PartSet.load(tmp_path / "chair.npy")
    assert parts.names == ("chair",) and parts.weights.shape == (1, 3)


def test_bad_files(tmp_path):
    with pytest.raises(PartsError, match="does not exist"):
        PartSet.load(tmp_path / "none.npy")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(PartsError, match="cannot be read"):
        PartSet.load(tmp_path / "junk.npy")
    _parts().save(tmp_path / "p.npy")
    with pytest.raises(PartsError, match="scene has 7"):
        PartSet.load(tmp_path / "p.npy", num_gaussians=7)
    (tmp_path / "p.json").write_text('{"names": ["only one"]}')
    with pytest.raises(PartsError, match="names 1 parts but"):
        PartSet.load(tmp_path / "p.npy")
    (tmp_path / "p.json").write_text("{")
    with pytest.raises(PartsError, match="not a valid parts description"):
        PartSet.load(tmp_path / "p.npy")


def test_failed_save_leaves_the_old_files(tmp_path, monkeypatch):
    _parts().save(tmp_path / "p.npy")
    before = (tmp_path / "p.npy").read_bytes(), (tmp_path / "p.json").read_text()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dumps", broken)
    with pytest.raises(OSError, match="disk full"):
        PartSet.empty(5).with_part("x", torch.ones(5)).save(tmp_path / "p.npy")
    assert ((tmp_path / "p.npy").read_bytes(), (tmp_path / "p.json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.npy"]
