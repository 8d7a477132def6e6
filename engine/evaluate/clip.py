"""CLIP scores of edits, as the text-driven 3D editing papers report them.

- CLIP score: cosine similarity of the image embedding of each render of the edited scene with the text
  embedding of the target prompt, averaged over the evaluation views.
- CLIP directional similarity (StyleGAN-NADA / InstructNeRF2NeRF style): per view, the cosine between the change
  in image embedding (edited render − input render) and the change in text embedding (target − source prompt),
  both from L2-normalised embeddings, averaged over views.

The papers use OpenAI CLIP ViT-L/14 at 224 px: `DEFAULT_CLIP` (transformers' copy of those weights). `load_clip`
takes a hub id or a local folder (what `CLIPModel.save_pretrained` + the tokenizer's `save_pretrained` write),
like engine.guidance's loader, and raises `ModelUnavailableError` with download instructions when the weights
cannot be had; tests build a tiny random CLIP and load it through the same function with HF_HUB_OFFLINE=1.
Images are resized (bicubic, antialiased) to the model's input size and normalised with the processor's
mean/std (CLIP's published values when the folder has no preprocessor_config.json).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.guidance.base import ModelUnavailableError

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_direction(image_before: Tensor, image_after: Tensor, text_before: Tensor, text_after: Tensor) -> Tensor:
    """Per-view directional similarity [V]: cos(norm(I_after) − norm(I_before), norm(T_after) − norm(T_before)).

    image_*: [V, D] embeddings of the input and edited renders of the same views; text_*: [D] embeddings of the
    source and target prompts. Embeddings are L2-normalised before the differences are taken.
    """
    d_image = F.normalize(image_after, dim=-1) - F.normalize(image_before, dim=-1)
    d_text = F.normalize(text_after, dim=-1) - F.normalize(text_before, dim=-1)
    return F.cosine_similarity(d_image, d_text.expand_as(d_image), dim=-1)


def clip_similarity(images: Tensor, text: Tensor) -> Tensor:
    """Per-view CLIP score [V]: cosine of image embeddings [V, D] with one text embedding [D]."""
    return F.cosine_similarity(images, text.expand_as(images), dim=-1)


class ClipScorer:
    """A CLIP model with its tokenizer and image normalisation; embeds renders and prompts."""

    def __init__(self, model, tokenizer, *, image_size: int, mean, std, device, name: str) -> None:
        self.model = model.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.device = device
        self.name = name

    @torch.no_grad()
    def image_embeddings(self, images: Tensor) -> Tensor:
        """[V, H, W, 3] in [0, 1] -> [V, D] projected image embeddings (float32)."""
        x = images.permute(0, 3, 1, 2).to(self.device, torch.float32)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", antialias=True,
                              align_corners=False).clamp(0, 1)
        x = (x - self.mean) / self.std
        dtype = next(self.model.parameters()).dtype
        return _features(self.model.get_image_features(pixel_values=x.to(dtype))).float()

    @torch.no_grad()
    def text_embeddings(self, prompts: list[str]) -> Tensor:
        """[P, D] projected text embeddings (float32)."""
        length = min(int(self.tokenizer.model_max_length),
                     int(self.model.config.text_config.max_position_embeddings))
        tokens = self.tokenizer(prompts, padding="max_length", max_length=length, truncation=True,
                                return_tensors="pt")
        return _features(self.model.get_text_features(input_ids=tokens.input_ids.to(self.device))).float()


def _features(out) -> Tensor:
    """transformers 4 returns the projected embedding; 5 returns an output whose pooler_output is it."""
    return out if isinstance(out, Tensor) else out.pooler_output


def clip_metrics(scorer: ClipScorer, before: Tensor, after: Tensor, prompt: str, source_prompt: str = "") -> dict:
    """{"clip": mean CLIP score of `after` to `prompt`, "clip_direction": mean directional similarity (None
    without a source prompt), "clip_input": the input renders' CLIP score to `prompt` (the baseline)}."""
    image_after = scorer.image_embeddings(after)
    image_before = scorer.image_embeddings(before)
    prompts = [prompt] + ([source_prompt] if source_prompt.strip() else [])
    text = scorer.text_embeddings(prompts)
    out = {
        "clip": round(float(clip_similarity(image_after, text[0]).mean()), 5),
        "clip_input": round(float(clip_similarity(image_before, text[0]).mean()), 5),
        "clip_direction": None,
        "clip_model": scorer.name,
    }
    if len(prompts) == 2:
        out["clip_direction"] = round(float(clip_direction(image_before, image_after, text[1], text[0]).mean()), 5)
    return out


def _unavailable(spec: str, reason: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"cannot load the CLIP model {spec}: {reason}\n"
        f"CLIP metrics need its weights. Download them once while online:  hf download {DEFAULT_CLIP} "
        f"--local-dir models/clip-vit-large-patch14  and pass --clip models/clip-vit-large-patch14 (a folder with "
        f"config.json, the weights and the tokenizer files, as CLIPModel/CLIPTokenizer save_pretrained write them)."
    )


def load_clip(spec: str = DEFAULT_CLIP, *, device: torch.device | str | None = None) -> ClipScorer:
    """The CLIP model at a hub id or local folder; `ModelUnavailableError` when it cannot be loaded."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    spec = str(spec).strip()
    if not spec:
        raise _unavailable("''", "no model given")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    path = Path(spec).expanduser()
    source = str(path.resolve()) if path.is_dir() else spec
    if path.exists() and not path.is_dir():
        raise _unavailable(spec, "it is a file; a local CLIP model is a folder")
    from ..guidance.loading import WEIGHTS_LOCK

    try:
        with WEIGHTS_LOCK:  # see WEIGHTS_LOCK: one weight load at a time in a process
            model = CLIPModel.from_pretrained(source)
        tokenizer = CLIPTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise _unavailable(spec, " ".join(str(exc).split()) or type(exc).__name__) from exc
    size = int(model.config.vision_config.image_size)
    mean, std = CLIP_MEAN, CLIP_STD
    try:
        processor = CLIPImageProcessor.from_pretrained(source)
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    except (OSError, ValueError):
        pass  # no preprocessor_config.json: CLIP's published normalisation
    if device.type == "cuda":
        model = model.half()
    return ClipScorer(model.to(device), tokenizer, image_size=size, mean=mean, std=std, device=device, name=spec)


def check_clip(spec: str) -> None:
    """Cheap availability check (config and tokenizer files only), for a driver that will not score itself;
    `ModelUnavailableError` like `load_clip`."""
    from transformers import CLIPConfig, CLIPTokenizer

    path = Path(str(spec)).expanduser()
    source = str(path.resolve()) if path.is_dir() else str(spec)
    try:
        CLIPConfig.from_pretrained(source)
        CLIPTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise _unavailable(str(spec), " ".join(str(exc).split()) or type(exc).__name__) from exc


_CACHE: dict[str, ClipScorer | ModelUnavailableError] = {}


def cached_clip(spec: str) -> ClipScorer:
    """`load_clip(spec)` once per process (a batch worker scores many jobs); a failure is remembered too."""
    if spec not in _CACHE:
        try:
            _CACHE[spec] = load_clip(spec)
        except ModelUnavailableError as exc:
            _CACHE[spec] = exc
    found = _CACHE[spec]
    if isinstance(found, ModelUnavailableError):
        raise found
    return found
