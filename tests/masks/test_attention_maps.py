"""Cross-attention capture: exact probabilities of the chosen tokens, shapes per resolution, processors restored."""

import pytest
import torch

from engine.masks.attention_maps import (
    AttentionRecord,
    TokenError,
    aggregate_maps,
    capture_cross_attention,
    feature_size,
    token_positions,
)
from tests.guidance.tiny_models import tiny_parts, tiny_tokenizer


@pytest.fixture(scope="module")
def parts():
    return tiny_parts(seed=0)


def _unet(**overrides):
    """A random UNet with cross-attention at 1, 1/2 and 1/4 of the latent size (blocks 0, 1 and the mid block)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(1)
    kwargs = dict(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 32, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
    )
    kwargs.update(overrides)
    return UNet2DConditionModel(**kwargs).eval()


def test_token_positions_find_the_part_in_the_prompt():
    tok = tiny_tokenizer()  # spells words letter by letter: "scarf" is 5 tokens
    prompt = "a red scarf"
    ids = tok(prompt).input_ids
    pos = token_positions(tok, prompt, "scarf")
    assert [ids[p] for p in pos] == tok("scarf", add_special_tokens=False).input_ids
    assert pos == list(range(len(ids) - 6, len(ids) - 1))  # just before the end-of-text token
    both = token_positions(tok, "red hat", "red hat")
    assert both == list(range(1, 7))


def test_token_positions_errors_are_one_line():
    tok = tiny_tokenizer()
    with pytest.raises(TokenError, match="does not contain the part 'scarf'"):
        token_positions(tok, "a red hat", "scarf")
    with pytest.raises(TokenError, match="shorten the prompt"):
        token_positions(tok, "a toy robot with a red scarf", "scarf")  # past the tiny encoder's 16 tokens
    with pytest.raises(TokenError, match="empty"):
        token_positions(tok, "a hat", "  ")


def test_feature_size_rounds_up_like_the_unet():
    assert feature_size((8, 8), 16) == (4, 4)
    assert feature_size((9, 12), 5 * 6) == (5, 6)
    assert feature_size((8, 16), 8) == (2, 4)
    with pytest.raises(ValueError):
        feature_size((8, 8), 7)


def test_captured_probabilities_are_softmax_qk_of_the_chosen_tokens(parts):
    """One layer recomputed by hand on the same inputs: softmax(Q K^T / sqrt(d)) per head, token columns."""
    unet = parts["unet"]
    layer = "down_blocks.1.attentions.0.transformer_blocks.0.attn2"
    attn = unet.get_submodule(layer)
    inputs = {}

    def grab(module, args, kwargs):
        inputs["x"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()
        inputs["ctx"] = kwargs["encoder_hidden_states"].detach().clone()

    g = torch.Generator().manual_seed(0)
    z, ctx = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 16, 32, generator=g)
    t = torch.tensor([300, 600])
    tokens = [3, 7, 8]
    with torch.no_grad():
        reference = unet(z, t, encoder_hidden_states=ctx).sample
        handle = attn.register_forward_pre_hook(grab, with_kwargs=True)
        try:
            with capture_cross_attention(unet, tokens) as store:
                store.latent_hw = (8, 8)
                captured = unet(z, t, encoder_hidden_states=ctx).sample
        finally:
            handle.remove()
    assert torch.allclose(captured, reference, atol=1e-5)  # the layers' outputs are unchanged
    cross = [n for n in unet.attn_processors if n.endswith("attn2.processor")]
    assert sorted(r.layer for r in store.records) == sorted(cross)  # one record per cross-attention layer
    record = next(r for r in store.records if r.layer == layer + ".processor")

    heads = attn.heads
    assert attn.to_q.bias is None and attn.to_k.bias is None and attn.group_norm is None
    q = inputs["x"] @ attn.to_q.weight.detach().T
    k = inputs["ctx"] @ attn.to_k.weight.detach().T
    d = q.shape[-1] // heads
    q = q.reshape(2, -1, heads, d).permute(0, 2, 1, 3)
    k = k.reshape(2, -1, heads, d).permute(0, 2, 1, 3)
    manual = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, dim=-1)  # [B, heads, HW, L]
    expected = manual[..., tokens].reshape(2, heads, 4, 4, len(tokens))
    assert record.size == (4, 4) and record.probs.shape == (2, heads, 4, 4, 3)
    assert torch.allclose(record.probs, expected, atol=1e-6)
    assert float((record.probs - expected).abs().max()) < 1e-6


def test_original_processors_are_restored_also_on_errors(parts):
    unet = parts["unet"]
    before = dict(unet.attn_processors)
    with capture_cross_attention(unet, [1]):
        assert all(type(p).__name__ == "CapturingProcessor" for p in unet.attn_processors.values())
    assert all(unet.attn_processors[n] is p for n, p in before.items())
    with pytest.raises(RuntimeError, match="boom"):
        with capture_cross_attention(unet, [1]):
            raise RuntimeError("boom")
    assert all(unet.attn_processors[n] is p for n, p in before.items())
    with pytest.raises(TokenError):
        with capture_cross_attention(unet, []):
            pass
    assert all(unet.attn_processors[n] is p for n, p in before.items())


@pytest.mark.parametrize("latent_hw", [(16, 16), (8, 16), (12, 12)])
def test_records_and_aggregation_at_several_resolutions(latent_hw):
    unet = _unet()
    h, w = latent_hw
    z, ctx = torch.randn(1, 4, h, w), torch.randn(1, 16, 32)
    with torch.no_grad(), capture_cross_attention(unet, [2, 5]) as store:
        store.latent_hw = latent_hw
        unet(z, torch.tensor([500]), encoder_hidden_states=ctx)
    sizes = sorted({r.size for r in store.records})
    half, quarter = ((h + 1) // 2, (w + 1) // 2), ((h + 3) // 4, (w + 3) // 4)
    assert sizes == sorted({(h, w), half, quarter})
    for r in store.records:
        assert r.probs.shape[2:] == (*r.size, 2)
        assert (r.probs >= 0).all() and (r.probs <= 1).all()
    agg = aggregate_maps(store.records, latent_hw, (2, 4))
    assert agg.shape == (1, *half)
    chosen = [r for r in store.records if r.size in (half, quarter)]
    manual = torch.stack([
        torch.nn.functional.interpolate(r.probs.mean(dim=(1, 4))[:, None], size=half, mode="bilinear",
                                        align_corners=False)[:, 0]
        for r in chosen
    ]).mean(0)
    assert torch.allclose(agg, manual, atol=1e-7)
    assert aggregate_maps(store.records, latent_hw, (1,)).shape == (1, h, w)


def test_aggregation_averages_heads_tokens_and_layers():
    a = torch.zeros(1, 2, 4, 4, 2)
    a[0, 0, ..., 0], a[0, 1, ..., 1] = 0.4, 0.8  # heads x tokens mean: (0.4 + 0.8) / 4 = 0.3
    b = torch.full((1, 3, 2, 2, 2), 0.1)
    fine_only = AttentionRecord("x", (8, 8), torch.full((1, 1, 8, 8, 2), 0.9))
    out = aggregate_maps([AttentionRecord("a", (4, 4), a), AttentionRecord("b", (2, 2), b), fine_only], (8, 8))
    assert out.shape == (1, 4, 4) and torch.allclose(out, torch.full((1, 4, 4), 0.2))
    # no layer at the wanted factors: every layer is used
    assert torch.allclose(aggregate_maps([fine_only], (8, 8), (2, 4)), torch.full((1, 8, 8), 0.9))
    with pytest.raises(ValueError, match="no cross-attention"):
        aggregate_maps([], (8, 8))
