"""Select by text: the whole text -> views -> attention -> 2D masks -> 3D-GALP path on a tiny random pipeline,
the same pipeline with an oracle segmenter in place of the attention (reaches the masks issue's IoU targets),
and the errors (closed-form prior, missing part, cancel)."""

import pytest
import torch

from engine.guidance import load_guidance
from engine.masks.attention import (
    NO_ATTENTION,
    NoAttentionError,
    Stopped,
    TextMaskConfig,
    masks_from_maps,
    otsu_threshold,
    select_by_text,
    text_cameras,
)
from engine.masks.attention_maps import TokenError
from engine.masks.compositing import compositing_weights
from engine.masks.evaluation import corrupt_views, ground_truth_masks, iou
from engine.masks.lift_vote import VISIBILITY_EPS
from tests.guidance.tiny_models import save_tiny_pipeline

SMALL = dict(num_views=4, size=32, timesteps=(0.3, 0.5), batch_size=2)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """The tiny random SD-shaped pipeline, loaded through the real `load_guidance` (as `--model DIR` is)."""
    return load_guidance(save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "model"), device="cpu")


def test_otsu_cuts_between_two_modes():
    g = torch.Generator().manual_seed(0)
    values = torch.cat([0.2 + 0.05 * torch.randn(700, generator=g), 0.8 + 0.05 * torch.randn(300, generator=g)])
    cut = otsu_threshold(values.clamp(0, 1))
    assert 0.35 < cut < 0.65
    assert otsu_threshold(torch.empty(0)) == 0.5


def test_masks_from_maps_never_select_the_background():
    maps = torch.zeros(1, 2, 2)
    maps[0, 0, 0] = 1.0  # the peak is top-left
    alpha = torch.ones(1, 8, 8)
    alpha[0, :, 4:] = 0.0  # right half is background
    normed, masks, cuts = masks_from_maps(maps, alpha)
    assert normed.shape == masks.shape == (1, 8, 8)
    assert masks[0, :, 4:].sum() == 0 and masks[0, 0, 0] == 1 and masks[0, 7, 3] == 0
    assert float(normed[alpha > 0.5].max()) == 1.0 and float(normed[alpha > 0.5].min()) == 0.0
    empty = masks_from_maps(maps, torch.zeros(1, 8, 8))[1]
    assert empty.sum() == 0


def test_text_to_3d_mask_with_the_tiny_pipeline(tiny_model, toy):
    scene, _, _ = toy
    unet = tiny_model.unet
    before = dict(unet.attn_processors)
    progress = []
    result = select_by_text(scene, tiny_model, "head", prompt="a robot head", config=TextMaskConfig(**SMALL),
                            on_progress=lambda d, t, what: progress.append((d, t)))
    assert result.weights.shape == (len(scene),) and result.weights.dtype == torch.float32
    assert torch.isfinite(result.weights).all() and result.weights.min() >= 0 and result.weights.max() <= 1
    assert result.prompt == "a robot head" and len(result.tokens) == 4  # h, e, a, d
    assert result.views.masks.shape == (4, 32, 32, 1) and result.maps.shape == (4, 32, 32)
    assert set(result.views.masks.unique().tolist()) <= {0.0, 1.0}
    assert all(0 < c <= 1 for c in result.thresholds)
    assert progress[-1][0] == progress[-1][1] and len(progress) == 2 * 2 + 1  # 2 batches x 2 timesteps + lift
    assert all(unet.attn_processors[n] is p for n, p in before.items())
    # the maps come from the model: another prompt word gives other maps
    other = select_by_text(scene, tiny_model, "base", prompt="a robot base", config=TextMaskConfig(**SMALL))
    assert not torch.allclose(other.maps, result.maps)
    default = select_by_text(scene, tiny_model, "arm", config=TextMaskConfig(**SMALL, seed=1))
    assert default.prompt == "a photo of a arm"


class _Recording:
    """A segmenter that passes each call on and keeps (image, prompts, the mask it returned)."""

    def __init__(self, segmenter):
        self.segmenter, self.calls = segmenter, []

    def segment(self, image, **prompts):
        out = self.segmenter.segment(image, **prompts)
        self.calls.append((image.copy(), prompts, out.mask.copy()))
        return out


def test_refinement_by_sam_replaces_the_attention_masks(tiny_model, toy, tiny_sam):
    """Each view with an attention mask gets exactly what SAM returned for that view's image, prompted inside
    that mask; a view without one stays empty."""
    import numpy as np

    from engine.masks.attention import render_views
    from engine.masks.sam import load_sam

    scene, _, _ = toy
    path, config = tiny_sam
    segmenter = _Recording(load_sam(path, config=config))
    cfg = TextMaskConfig(**SMALL)
    plain = select_by_text(scene, tiny_model, "head", config=cfg)
    refined = select_by_text(scene, tiny_model, "head", config=cfg, segmenter=segmenter)
    assert refined.views.masks.shape == plain.views.masks.shape
    assert torch.equal(refined.maps, plain.maps)
    attention = plain.views.masks[..., 0]  # [C, H, W]
    prompted = [c for c in range(len(attention)) if attention[c].any()]
    assert prompted and len(segmenter.calls) == len(prompted)
    views, _ = render_views(scene, refined.views.cameras, cfg.background)
    for c, (image, prompts, returned) in zip(prompted, segmenter.calls):
        assert np.abs(image.astype(int) - (views[c].numpy() * 255).round().astype(int)).max() <= 1  # view c
        ys, xs = attention[c].nonzero(as_tuple=True)
        x0, y0, x1, y1 = prompts["box"]
        assert x0 <= int(xs.min()) and y0 <= int(ys.min()) and int(xs.max()) < x1 and int(ys.max()) < y1
        assert torch.equal(refined.views.masks[c, ..., 0], torch.from_numpy(returned).float())
    for c in set(range(len(attention))) - set(prompted):
        assert not refined.views.masks[c].any()
    assert refined.weights.min() >= 0 and refined.weights.max() <= 1


def test_errors_are_one_line(tiny_model, toy):
    from engine.guidance import ClosedFormPrior

    scene, _, _ = toy
    with pytest.raises(NoAttentionError) as info:
        select_by_text(scene, ClosedFormPrior((0.8, 0.1, 0.1)), "head")
    assert str(info.value) == NO_ATTENTION and "\n" not in NO_ATTENTION
    with pytest.raises(TokenError, match="does not contain"):
        select_by_text(scene, tiny_model, "head", prompt="a robot", config=TextMaskConfig(**SMALL))
    with pytest.raises(Stopped):
        select_by_text(scene, tiny_model, "head", config=TextMaskConfig(**SMALL), should_stop=lambda: True)
    with pytest.raises(ValueError, match="region to search is empty"):
        select_by_text(scene, tiny_model, "head", config=TextMaskConfig(**SMALL), region=torch.zeros(len(scene)))
    assert all(type(p).__name__ != "CapturingProcessor" for p in tiny_model.unet.attn_processors.values())


def test_a_region_frames_only_its_gaussians(toy):
    scene, ids, names = toy
    cfg = TextMaskConfig(num_views=3, size=32)
    whole = text_cameras(scene, cfg)
    head = text_cameras(scene, cfg, region=(ids == names.index("head")).float())
    assert len(head) == 3 and head.width == 32
    whole_dist = (whole.centers - whole.centers.mean(0)).norm(dim=-1)
    head_dist = (head.centers - head.centers.mean(0)).norm(dim=-1)
    assert head_dist.mean() < whole_dist.mean()  # a smaller thing is framed from closer


@pytest.mark.parametrize("level, floor", [(0.25, 0.85), (0.4, 0.75)])
def test_an_oracle_segmenter_in_the_same_pipeline_reaches_the_iou_targets(toy, level, floor):
    """Ground-truth part masks with `level` of the views corrupted (eroded, dilated, shifted, dropped, wrong part)
    stand in for the attention maps: the rest of the pipeline (views, normalisation, Otsu, GALP) reaches the masks
    issue's targets on every part (IoU over the Gaussians seen; >= 0.85 with 25% bad views, >= 0.75 with 40%).
    Coarse maps are another matter: bench/text_select.py measures what attention's 1/8 resolution costs."""
    scene, ids, names = toy
    cfg = TextMaskConfig(num_views=12, size=48, elevations=(-15.0, 20.0, 50.0))
    for part, name in enumerate(names):

        def oracle(images, cameras):
            truth = ground_truth_masks(compositing_weights(scene, cameras), ids, len(names))[..., part:part + 1]
            bad, chosen = corrupt_views([truth], level, seed=7)
            assert len(chosen) == round(level * 12)
            return bad[0][..., 0]

        result = select_by_text(scene, None, name, config=cfg, map_source=oracle)
        vw = compositing_weights(scene, result.views.cameras)
        seen = vw.totals().sum(0) > VISIBILITY_EPS
        score = iou(result.weights[seen] > 0.5, (ids == part)[seen])
        assert score >= floor, (name, level, score)


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, toy):
    from engine.io import save

    root = tmp_path_factory.mktemp("text_cli")
    save(toy[0], root / "toy.ply")
    import numpy as np

    np.save(root / "half.npy", (np.arange(len(toy[0])) % 2).astype(np.float32))
    return root, save_tiny_pipeline(root / "model")


def _mask_cli(capsys, *argv):
    from engine.__main__ import main

    code = main(["mask", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_text_selection_writes_a_valid_mask(cli_files, tmp_path, capsys):
    import json

    import numpy as np

    root, model = cli_files
    out = tmp_path / "head.npy"
    code, stdout, err = _mask_cli(capsys, root / "toy.ply", "--text", "head", "--prompt", "a robot head",
                                  "--model", model, "--num-views", 3, "--view-size", 32, "--up", "+z",
                                  "--save-views", tmp_path / "views", "--out", out, "--region", root / "half.npy")
    assert code == 0, err
    weights = np.load(out)
    assert weights.dtype == np.float32 and weights.shape == (2000,) and 0 <= weights.min() <= weights.max() <= 1
    summary = json.loads(stdout)
    assert summary["text"] == "head" and summary["prompt"] == "a robot head" and summary["views"] == 3
    assert (tmp_path / "views" / "cameras.json").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--model", "closed-form:#d02020"], "closed-form prior has none"),
    (["--model", "no/such-model-here"], "hf download no/such-model-here"),
    (["--prompt", "a robot"], "does not contain the part 'head'"),
    (["--region", "nowhere.npy"], "is not a readable .npy mask"),
])
def test_cli_text_errors_are_one_line_and_leave_nothing(cli_files, tmp_path, capsys, extra, message):
    root, model = cli_files
    argv = [root / "toy.ply", "--text", "head", "--num-views", 2, "--view-size", 32, "--up", "+z",
            "--out", tmp_path / "m.npy"]
    if "--model" not in extra:
        argv += ["--model", model]
    code, out, err = _mask_cli(capsys, *argv, *extra)
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # (weights load with a bar)
    assert code == 2 and out == "" and len(errors) == 1 and message in errors[0], err
    assert list(tmp_path.iterdir()) == []


def test_cli_prompt_and_model_need_text(cli_files, tmp_path, capsys):
    root, _ = cli_files
    code, _, err = _mask_cli(capsys, root / "toy.ply", "--views", root, "--prompt", "x", "--out", tmp_path / "m.npy")
    assert code == 2 and "--prompt, --model and --region go with --text" in err
