"""Text selection from an SD3-class transformer's joint attention: the recorded probabilities are the real
layer's (its own q and k, read back from its scaled_dot_product_attention call), capturing changes nothing the
model computes, and select_by_text with the tiny SD3-layout pipeline returns a valid mask."""

import pytest
import torch

from engine.guidance import load_guidance
from engine.masks.attention import TextMaskConfig, select_by_text
from engine.masks.attention_joint import capture_joint_attention
from tests.guidance.tiny_models import save_tiny_flow_pipeline

SMALL = dict(num_views=4, size=32, timesteps=(0.3, 0.5), batch_size=2)


@pytest.fixture(scope="module")
def flow_model(tmp_path_factory):
    """The tiny SD3-layout pipeline with an SD3.5-style dual-attention first layer, through the real loader."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        folder = save_tiny_flow_pipeline(tmp_path_factory.mktemp("tiny-flow") / "m", dual_attention=True)
        return load_guidance(str(folder), device="cpu")


def test_recorded_probabilities_are_the_layers_joint_softmax(flow_model, monkeypatch):
    import diffusers.models.attention_processor as processors

    model = flow_model
    cond = model.condition("a robot head")
    x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([400])
    plain = model.velocity(x, t, cond.embeddings, cond.pooled)
    seen = []
    sdpa = processors.F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append((q, k))
        return sdpa(q, k, v, *args, **kwargs)

    tokens = [3, 4, 5, 6]
    before = dict(model.transformer.attn_processors)
    monkeypatch.setattr(processors.F, "scaled_dot_product_attention", spy)
    with capture_joint_attention(model.transformer, tokens) as store:
        store.latent_hw = (4, 4)
        captured = model.velocity(x, t, cond.embeddings, cond.pooled)
    assert torch.equal(plain, captured)
    assert all(model.transformer.attn_processors[n] is p for n, p in before.items())
    joint = [(q, k) for q, k in seen if k.shape[2] > 16]  # the image-only (dual) attention has 16 keys
    assert len(store.records) == len(joint) == 2 and len(seen) == 3
    for record, (q, k) in zip(store.records, joint):
        probs = torch.softmax(q.float() @ k.float().transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        expected = probs[:, :, :16, [16 + i for i in tokens]]  # image queries, the chosen text keys
        torch.testing.assert_close(record.probs.reshape(expected.shape), expected, rtol=1e-4, atol=1e-6)


def test_text_selection_with_an_sd3_layout_model_gives_a_valid_mask(flow_model, toy):
    scene, _, _ = toy
    result = select_by_text(scene, flow_model, "head", prompt="a robot head", config=TextMaskConfig(**SMALL))
    assert result.weights.shape == (len(scene),) and torch.isfinite(result.weights).all()
    assert result.weights.min() >= 0 and result.weights.max() <= 1
    assert result.tokens == [7, 8, 9, 10]  # h, e, a, d after <start>, "a", r, o, b, o, t (one token a letter)
    assert result.views.masks.shape == (4, 32, 32, 1) and set(result.views.masks.unique().tolist()) <= {0.0, 1.0}
    assert all(0 < c <= 1 for c in result.thresholds) and result.views.masks.sum() > 0
    other = select_by_text(scene, flow_model, "base", prompt="a robot base", config=TextMaskConfig(**SMALL),
                           lift=False)
    assert not torch.allclose(other.maps, result.maps)
