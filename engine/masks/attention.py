"""Select a part by naming it: cross-attention of the editing model to the part's word, in many views, lifted.

1. `num_views` orbit views frame the scene (or the Gaussians of a rough `region`), alternating elevations.
2. Each view is rendered, resized to the model's native size and encoded; for each of a few moderate timesteps
   (fractions of T) noise is added and the UNet runs once on the prompt ("a photo of a scarf" by default, or
   the user's prompt, which must contain the part's words), with `capture_cross_attention` recording how much
   each location attends to the part's tokens (attention_maps.py: heads averaged, layers at 1/2 and 1/4 of the
   latent size). Maps are averaged over the timesteps. An SD3-class model has no cross-attention: its image
   tokens' joint attention to the part's tokens is read instead, from every joint layer (attention_joint.py).
3. Each view's map is upsampled bilinearly to the render, and normalised to [0, 1] over the pixels the scene
   covers (alpha > 0.5; the background is never selected); the 2D mask is the map above its Otsu threshold
   (the cut that best separates the map's values into two classes; computed over the covered pixels).
4. Optionally SAM (when a segmenter is given) refines each mask, prompted with the map's peak and the mask's
   bounding box.
5. 3D-GALP (galp.py) lifts the view masks to calibrated per-Gaussian weights: it down-weights the views whose
   attention mask disagrees with the others, which attention maps often do.

Only a diffusers model has attention: the closed-form and reference priors raise `NoAttentionError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..camera import Cameras, framing_radius, orbit_cameras
from ..render import render
from ..render.images import to_uint8
from ..scene import GaussianScene
from .attention_maps import aggregate_maps, capture_cross_attention, token_positions
from .galp import GalpConfig, GalpResult, galp
from .views_io import MaskViews

NO_ATTENTION = ("text selection reads the cross-attention of a diffusion model, and the closed-form prior has "
                "none: load a Stable Diffusion model (the one used for editing) to select by text")


class NoAttentionError(ValueError):
    """The loaded model has no cross-attention to read (the closed-form or reference prior)."""


class Stopped(RuntimeError):
    """`should_stop()` returned True: the selection was cancelled."""


@dataclass
class TextMaskConfig:
    """How text selection renders, queries the model and thresholds."""

    num_views: int = 8
    size: int = 256
    """Width and height of the rendered views (the 2D masks' size); resized to the model's native size."""
    elevations: tuple[float, ...] = (15.0, 40.0)
    fov_y_deg: float = 45.0
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    timesteps: tuple[float, ...] = (0.3, 0.5)
    """Noise levels as fractions of the model's T (moderate: the image still shows, the model must explain it)."""
    factors: tuple[int, ...] = (2, 4)
    """Cross-attention layers read: feature maps 2 and 4 times smaller than the latent (32^2, 16^2 for SD 1.5)."""
    batch_size: int = 4
    """Views per UNet call."""
    seed: int = 0
    galp: GalpConfig = field(default_factory=GalpConfig)


@dataclass
class TextMaskResult:
    weights: Tensor | None  # [N] calibrated soft weights in [0, 1] (> 0.5 = selected); None with lift=False
    views: MaskViews  # the 2D masks lifted ([C, H, W, 1])
    maps: Tensor  # [C, H, W] normalised attention maps in [0, 1]
    thresholds: list[float]  # Otsu cut of each view's map
    prompt: str
    tokens: list[int]  # positions of the part's tokens in the prompt
    lifted: GalpResult | None


def default_prompt(part: str) -> str:
    return f"a photo of a {part.strip()}"


def check_attention_model(model) -> None:
    """Raise `NoAttentionError` unless `model` is a diffusers model (a UNet with cross-attention, or an SD3-class
    transformer with joint attention; a tokenizer)."""
    if not (hasattr(model, "unet") or hasattr(model, "transformer")) or not all(
            hasattr(model, a) for a in ("tokenizer", "text_embeddings", "encode_images")):
        raise NoAttentionError(NO_ATTENTION)


def text_cameras(scene: GaussianScene, cfg: TextMaskConfig, region: Tensor | None = None) -> Cameras:
    """`cfg.num_views` orbit cameras framing the scene, or the Gaussians with region weight > 0.5."""
    means = scene.means.detach().float().cpu()
    if region is not None:
        region = torch.as_tensor(region).flatten().cpu()
        if region.numel() != len(scene):
            raise ValueError(f"region must have one weight per Gaussian ({len(scene)}), got {region.numel()}")
        if not (region > 0.5).any():
            raise ValueError("the region to search is empty: select a rough region first, or search the whole scene")
        means = means[region > 0.5]
    if len(means) > 1:
        q = torch.tensor([0.01, 0.99])
        lo, hi = torch.quantile(means, q, dim=0)
    else:
        lo = hi = means[0]
    half = max(float((hi - lo).norm()) / 2, 1e-3)
    rings = len(cfg.elevations)
    az = [360.0 * i / cfg.num_views + 30.0 * (i % rings) for i in range(cfg.num_views)]
    el = [cfg.elevations[i % rings] for i in range(cfg.num_views)]
    return orbit_cameras((lo + hi) / 2, framing_radius(half, cfg.fov_y_deg), az, el, width=cfg.size,
                         height=cfg.size, fov_y_deg=cfg.fov_y_deg, up=cfg.up)


def otsu_threshold(values: Tensor, bins: int = 64) -> float:
    """The cut in [0, 1] maximising the between-class variance of `values` (in [0, 1]) split above / below."""
    hist = torch.histc(values.float().clamp(0, 1), bins=bins, min=0.0, max=1.0).double()
    if hist.sum() == 0:
        return 0.5
    p = hist / hist.sum()
    centres = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
    w0 = p.cumsum(0)
    mu0 = (p * centres).cumsum(0)
    total = mu0[-1]
    w1 = 1.0 - w0
    between = (total * w0 - mu0) ** 2 / (w0 * w1).clamp_min(1e-12)
    between[w1 <= 1e-12] = -1.0
    return float((int(between.argmax()) + 1) / bins)


def masks_from_maps(maps: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor, list[float]]:
    """maps [C, h, w] (any scale), alpha [C, H, W] -> (normalised maps [C, H, W], masks [C, H, W] in {0, 1},
    Otsu cuts): maps upsampled to the views, min-max normalised over the covered pixels, 0 elsewhere."""
    up = F.interpolate(maps[:, None].float(), size=tuple(alpha.shape[1:]), mode="bilinear", align_corners=False)[:, 0]
    covered = alpha > 0.5
    normed, masks, cuts = torch.zeros_like(up), torch.zeros_like(up), []
    for c in range(len(up)):
        values = up[c][covered[c]]
        if values.numel() == 0:
            cuts.append(1.0)
            continue
        lo, hi = values.min(), values.max()
        n = ((up[c] - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1) * covered[c]
        cut = otsu_threshold(n[covered[c]])
        normed[c], masks[c] = n, ((n > cut) & covered[c]).float()
        cuts.append(cut)
    return normed, masks, cuts


def render_views(scene: GaussianScene, cameras: Cameras, background) -> tuple[Tensor, Tensor]:
    """(rgb [C, H, W, 3] in [0, 1], alpha [C, H, W]) one view at a time (bounded memory)."""
    rgbs, alphas = [], []
    with torch.no_grad():
        for c in range(len(cameras)):
            out = render(scene, cameras[c], background=torch.tensor(background))
            rgbs.append(out.rgb[0].clamp(0, 1).float().cpu())
            alphas.append(out.alpha[0, ..., 0].float().cpu())
    return torch.stack(rgbs), torch.stack(alphas)


class UNetAttentionBackend:
    """How `attention_maps` queries an SD-family model: DDPM-noised latents, one UNet pass, the cross-attention
    layers at `cfg.factors`."""

    def __init__(self, model, prompt: str, cfg: TextMaskConfig) -> None:
        self.model, self.factors = model, cfg.factors
        self.emb = model.text_embeddings([prompt])

    def capture(self, tokens: list[int]):
        return capture_cross_attention(self.model.unet, tokens)

    def run(self, latents: Tensor, noise: Tensor, t: Tensor, store) -> None:
        from ..guidance.sds import add_noise

        model = self.model
        store.latent_hw = tuple(latents.shape[-2:])
        z = add_noise(latents, noise, model.alphas_cumprod[t])
        model.unet(z.to(model.dtype), t, encoder_hidden_states=self.emb.expand(len(t), -1, -1).to(model.dtype))


def attention_backend(model, prompt: str, cfg: TextMaskConfig):
    """The model family's way to read attention: joint attention for a rectified-flow transformer
    (attention_joint.py), cross-attention for a UNet."""
    if hasattr(model, "transformer"):
        from .attention_joint import JointAttentionBackend

        return JointAttentionBackend(model, prompt)
    return UNetAttentionBackend(model, prompt, cfg)


@torch.no_grad()
def attention_maps(model, images: Tensor, prompt: str, tokens: list[int], cfg: TextMaskConfig,
                   on_step=None, should_stop=None) -> Tensor:
    """[C, h, w] attention maps of `tokens` for renders `images` [C, H, W, 3]: one denoiser call per batch of
    views and timestep, averaged over the timesteps. `on_step(done, total)` after each call."""
    from ..guidance.native_size import to_model_size

    backend = attention_backend(model, prompt, cfg)
    T = model.num_train_timesteps
    steps = [min(T - 1, max(0, int(round(f * T)))) for f in cfg.timesteps]
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = [range(i, min(i + cfg.batch_size, len(images))) for i in range(0, len(images), cfg.batch_size)]
    total, done, out = len(batches) * len(steps), 0, []
    with backend.capture(tokens) as store:
        for idx in batches:
            resized, _ = to_model_size(model, images[list(idx)])
            latents = model.encode_images(resized.to(model.device))
            acc = None
            for t in steps:
                if should_stop is not None and should_stop():
                    raise Stopped("text selection cancelled")
                noise = torch.randn(latents.shape, generator=generator).to(latents.device)
                tt = torch.full((len(idx),), t, dtype=torch.long, device=latents.device)
                store.clear()
                backend.run(latents, noise, tt, store)
                m = aggregate_maps(store.records, store.latent_hw, backend.factors)
                acc = m if acc is None else acc + m
                done += 1
                if on_step is not None:
                    on_step(done, total)
            out.append(acc / len(steps))
    return torch.cat(out)


def refine_with_sam(segmenter, images: Tensor, maps: Tensor, masks: Tensor) -> Tensor:
    """SAM masks [C, H, W] prompted with each map's peak and the bounding box of its mask (empty masks stay)."""
    refined = masks.clone()
    for c in range(len(masks)):
        ys, xs = masks[c].nonzero(as_tuple=True)
        if len(xs) == 0:
            continue
        peak = int(maps[c].flatten().argmax())
        py, px = divmod(peak, maps.shape[2])
        box = [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]
        image = to_uint8(images[c])
        refined[c] = torch.from_numpy(segmenter.segment(image, points=[[px, py]], box=box).mask).float()
    return refined


def select_by_text(
    scene: GaussianScene,
    model,
    part: str,
    *,
    prompt: str | None = None,
    config: TextMaskConfig | None = None,
    region: Tensor | None = None,  # [N] rough region to frame (weights > 0.5), or None for the whole scene
    segmenter=None,  # a SamSegmenter to refine the attention masks, or None
    on_progress=None,  # on_progress(done, total, what)
    should_stop=None,  # () -> bool; True cancels (raises Stopped)
    map_source=None,  # map_source(images [C, H, W, 3], cameras) -> maps [C, h, w]: replaces the attention
    lift: bool = True,  # False: stop at the 2D masks (a caller that lifts them its own way)
) -> TextMaskResult:
    """A soft per-Gaussian mask [N] of the part named `part`, from the model's cross-attention in many views.
    `map_source` stands in for the model (tests plug an oracle segmenter into the same pipeline)."""
    if map_source is None:
        check_attention_model(model)
    cfg = config or TextMaskConfig()
    if cfg.num_views < 1 or cfg.size < 16 or not cfg.timesteps:
        raise ValueError("text selection needs at least 1 view, views of at least 16 px and a timestep")
    if len(scene) == 0:
        raise ValueError("the scene holds no Gaussians")
    prompt = (prompt or "").strip() or default_prompt(part)
    tokens = token_positions(model.tokenizer, prompt, part) if map_source is None else []
    cameras = text_cameras(scene, cfg, region)
    images, alpha = render_views(scene, cameras, cfg.background)

    def step(done, total):
        if on_progress is not None:
            on_progress(done, total + 1, "reading the model's attention")

    if map_source is None:
        raw = attention_maps(model, images, prompt, tokens, cfg, on_step=step, should_stop=should_stop)
    else:
        raw = map_source(images, cameras)
    maps, masks, cuts = masks_from_maps(raw, alpha)
    if segmenter is not None:
        masks = refine_with_sam(segmenter, images, maps, masks)
    views = MaskViews(cameras, masks)
    if should_stop is not None and should_stop():
        raise Stopped("text selection cancelled")
    if not lift:
        return TextMaskResult(None, views, maps, cuts, prompt, tokens, None)
    lifted = galp(scene, views, config=cfg.galp)
    if on_progress is not None:
        total = math.ceil(cfg.num_views / cfg.batch_size) * len(cfg.timesteps) + 1
        on_progress(total, total, "lifted to 3D")
    return TextMaskResult(lifted.weights[0], views, maps, cuts, prompt, tokens, lifted)
