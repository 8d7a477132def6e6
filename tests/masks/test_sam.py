import numpy as np
import pytest
import torch

from engine.masks.sam import (
    CHECKPOINT_URLS, SamConfig, SamError, VIT_B, VIT_H, build_sam, config_for, load_sam,
)


def test_missing_checkpoint_names_the_downloads(tmp_path):
    with pytest.raises(SamError) as info:
        load_sam(tmp_path / "sam_vit_b_01ec64.pth")
    message = str(info.value)
    assert "does not exist" in message
    for url in CHECKPOINT_URLS.values():
        assert url in message


def test_model_type_from_name_or_flag(tmp_path):
    assert config_for(tmp_path / "sam_vit_b_01ec64.pth") == VIT_B
    assert config_for(tmp_path / "weights.pth", "vit_h") == VIT_H
    with pytest.raises(SamError, match="cannot tell the SAM model type"):
        config_for(tmp_path / "weights.pth")
    with pytest.raises(SamError, match="unknown SAM model type"):
        config_for(tmp_path / "weights.pth", "vit_x")


def test_unreadable_and_mismatched_checkpoints(tmp_path, tiny_sam):
    path, config = tiny_sam
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SamError, match="cannot be read"):
        load_sam(junk, config=config)
    other = SamConfig(**{**config.__dict__, "encoder_embed_dim": 48})
    with pytest.raises(SamError, match="does not fit the custom"):
        load_sam(path, config=other)


def test_config_json_round_trip(tmp_path, tiny_sam):
    _, config = tiny_sam
    config.to_json(tmp_path / "tiny.json")
    assert SamConfig.from_json(tmp_path / "tiny.json") == config
    (tmp_path / "bad.json").write_text('{"encoder_depth": 2}')
    with pytest.raises(SamError, match="not a valid SamConfig"):
        SamConfig.from_json(tmp_path / "bad.json")


def test_tiny_sam_segments_through_the_real_path(tiny_sam):
    path, config = tiny_sam
    segmenter = load_sam(path, config=config)
    # The loaded weights are the saved ones.
    saved = torch.load(path, weights_only=True)
    key = next(iter(saved))
    torch.testing.assert_close(segmenter.model.state_dict()[key], saved[key])
    image = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    result = segmenter.segment(image, points=[[10, 20]])
    assert result.mask.shape == (40, 56) and result.mask.dtype == bool
    assert result.all_masks.shape == (3, 40, 56) and np.isfinite(result.score)
    assert result.score == pytest.approx(float(result.all_scores.max()))
    boxed = segmenter.segment(image, box=[5, 5, 30, 30], multimask=False)
    assert boxed.all_masks.shape == (1, 40, 56)


def test_bad_prompts(tiny_sam):
    path, config = tiny_sam
    segmenter = load_sam(path, config=config)
    image = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(SamError, match="outside the 20x20 image"):
        segmenter.segment(image, points=[[25, 3]])
    with pytest.raises(SamError, match="at least one prompt"):
        segmenter.segment(image)
    with pytest.raises(SamError, match="uint8"):
        segmenter.segment(image.astype(np.float32), points=[[2, 3]])
    with pytest.raises(SamError, match="x0 < x1"):
        segmenter.segment(image, box=[10, 10, 5, 15])


def test_builder_matches_segment_anythings_own():
    """Our builder, given the vit_b config, makes the same parameter shapes as segment-anything's."""
    from segment_anything import sam_model_registry

    ours = {k: v.shape for k, v in build_sam(VIT_B).state_dict().items()}
    theirs = {k: v.shape for k, v in sam_model_registry["vit_b"]().state_dict().items()}
    assert ours == theirs
