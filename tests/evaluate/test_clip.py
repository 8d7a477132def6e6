"""CLIP score and CLIP direction: the formulas on hand-made embeddings, and the whole path on a tiny random CLIP
saved to a folder and loaded offline through `load_clip`."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from engine.evaluate.clip import ClipScorer, clip_direction, clip_metrics, clip_similarity, load_clip
from engine.guidance.base import ModelUnavailableError
from tests.evaluate.tiny_clip import IMAGE_SIZE, save_tiny_clip


def test_direction_formula_on_hand_made_embeddings():
    text_src, text_dst = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    before = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]])
    after = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 1.0], [1.0, -1.0, 0.0]])
    d = clip_direction(before, after, text_src, text_dst)
    # view 0 moved exactly along the text direction (norms do not matter: embeddings are normalised first)
    assert d[0] == pytest.approx(1.0)
    # view 1 did not change direction at all: a zero image delta has cosine 0 with anything
    assert d[1] == pytest.approx(0.0, abs=1e-6)
    # view 2: image delta (1/sqrt2 - 1, -1/sqrt2, 0), text delta (-1, 1, 0)
    di = torch.tensor([1 / math.sqrt(2) - 1, -1 / math.sqrt(2), 0.0])
    dt = torch.tensor([-1.0, 1.0, 0.0])
    assert d[2] == pytest.approx(float(di @ dt / (di.norm() * dt.norm())))
    # moving away from the target text is negative
    assert float(clip_direction(after[:1], before[:1], text_src, text_dst)[0]) == pytest.approx(-1.0)


def test_similarity_is_the_mean_cosine():
    images = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    text = torch.tensor([2.0, 0.0])
    assert clip_similarity(images, text).tolist() == pytest.approx([1.0, 1 / math.sqrt(2)])


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def test_tiny_clip_loads_offline_and_scores_renders(tiny_clip_dir):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    scorer = load_clip(str(tiny_clip_dir), device="cpu")
    assert isinstance(scorer, ClipScorer) and scorer.image_size == IMAGE_SIZE
    assert scorer.mean.flatten().tolist() == [0.5, 0.5, 0.5]  # read from preprocessor_config.json
    g = torch.Generator().manual_seed(0)
    before, after = torch.rand(3, 48, 48, 3, generator=g), torch.rand(3, 48, 48, 3, generator=g)
    out = clip_metrics(scorer, before, after, "a red scarf", "a blue scarf")
    # the same numbers by hand, straight from the model
    x = F.interpolate(after.permute(0, 3, 1, 2), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", antialias=True,
                      align_corners=False).clamp(0, 1)
    image = scorer.model.get_image_features(pixel_values=(x - 0.5) / 0.25)
    image = image if isinstance(image, torch.Tensor) else image.pooler_output
    tokens = scorer.tokenizer(["a red scarf"], padding="max_length", max_length=16, return_tensors="pt")
    text = scorer.model.get_text_features(input_ids=tokens.input_ids)
    text = text if isinstance(text, torch.Tensor) else text.pooler_output
    assert out["clip"] == pytest.approx(float(F.cosine_similarity(image, text).mean()), abs=1e-5)
    assert -1 <= out["clip_direction"] <= 1 and out["clip_direction"] != 0
    assert out["clip_model"] == str(tiny_clip_dir)
    assert clip_metrics(scorer, before, after, "a red scarf")["clip_direction"] is None  # no source prompt
    same = clip_metrics(scorer, before, before, "a red scarf", "a blue scarf")
    assert same["clip"] == same["clip_input"] and same["clip_direction"] == pytest.approx(0.0, abs=1e-6)


def test_folder_without_processor_config_uses_clips_normalisation(tmp_path):
    scorer = load_clip(str(save_tiny_clip(tmp_path / "bare", processor=False)), device="cpu")
    assert scorer.mean.flatten().tolist() == pytest.approx([0.48145466, 0.4578275, 0.40821073])


def test_missing_weights_say_what_to_download(tmp_path, empty_hf_cache):
    with pytest.raises(ModelUnavailableError) as info:
        load_clip("openai/clip-vit-large-patch14")  # offline, and not in this test's empty cache
    message = str(info.value)
    assert "cannot load the CLIP model openai/clip-vit-large-patch14" in message
    assert "hf download openai/clip-vit-large-patch14" in message and "--clip" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="cannot load the CLIP model"):
        load_clip(str(tmp_path / "empty"))
