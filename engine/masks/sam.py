"""Segment-anything (SAM) on rendered views: load a checkpoint from a path, prompt with points or a box.

The official checkpoints (download one; vit_b is the smallest, vit_h the most accurate):
    vit_h  https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth   (2.4 GB)
    vit_l  https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth   (1.2 GB)
    vit_b  https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth   (375 MB)
The model type is read from the file name (sam_vit_b_... -> vit_b) or given explicitly. The network is built
here from segment-anything's own modules with a `SamConfig`, so that tests can build a tiny random SAM, save
its weights and load them through exactly the same path (`load_sam(path, config=tiny)`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

CHECKPOINT_URLS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}


class SamError(ValueError):
    """A SAM checkpoint or config is missing, unreadable or does not match; or a prompt is invalid."""


@dataclass(frozen=True)
class SamConfig:
    """Architecture of a SAM network (the defaults of segment-anything's builders, minus the encoder size)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    prompt_embed_dim: int = 256
    window_size: int = 14
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16

    @classmethod
    def from_json(cls, path: str | Path) -> "SamConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["encoder_global_attn_indexes"] = tuple(data["encoder_global_attn_indexes"])
            return cls(**data)
        except FileNotFoundError:
            raise SamError(f"SAM config {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise SamError(f"SAM config {path} is not a valid SamConfig JSON ({exc})") from None

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")


VIT_H = SamConfig(1280, 32, 16, (7, 15, 23, 31))
VIT_L = SamConfig(1024, 24, 16, (5, 11, 17, 23))
VIT_B = SamConfig(768, 12, 12, (2, 5, 8, 11))
MODEL_TYPES = {"vit_h": VIT_H, "vit_l": VIT_L, "vit_b": VIT_B}


def build_sam(config: SamConfig):
    """An untrained `segment_anything.modeling.Sam` of the given architecture (eval mode)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = config.image_size // config.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=config.encoder_depth,
            embed_dim=config.encoder_embed_dim,
            img_size=config.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=config.encoder_num_heads,
            patch_size=config.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=config.encoder_global_attn_indexes,
            window_size=config.window_size,
            out_chans=config.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def missing_checkpoint_message(path: str | Path) -> str:
    urls = "; ".join(f"{name}: {url}" for name, url in CHECKPOINT_URLS.items())
    return f"SAM checkpoint {path} does not exist. Download one of the official checkpoints ({urls}) and pass its path"


def config_for(checkpoint: str | Path, model_type: str | None = None) -> SamConfig:
    """The architecture for `checkpoint`: from `model_type` (vit_h / vit_l / vit_b) or its file name."""
    if model_type is not None:
        if model_type not in MODEL_TYPES:
            raise SamError(f"unknown SAM model type {model_type!r}; choose one of {sorted(MODEL_TYPES)}")
        return MODEL_TYPES[model_type]
    name = Path(checkpoint).name.lower()
    found = [t for t in MODEL_TYPES if t in name]
    if len(found) != 1:
        raise SamError(
            f"cannot tell the SAM model type from the file name {Path(checkpoint).name!r}; "
            f"pass the type ({', '.join(sorted(MODEL_TYPES))})"
        )
    return MODEL_TYPES[found[0]]


def load_sam(
    checkpoint: str | Path,
    *,
    model_type: str | None = None,
    config: SamConfig | None = None,
    device: str | torch.device = "cpu",
) -> "SamSegmenter":
    """Load a SAM checkpoint (a state dict saved with torch.save) into a `SamSegmenter`.

    config: the architecture; default from `model_type` or the file name (see `config_for`)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise SamError(missing_checkpoint_message(path))
    cfg = config if config is not None else config_for(path, model_type)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean "not a readable checkpoint"
        raise SamError(f"SAM checkpoint {path} cannot be read: {exc}") from None
    if not isinstance(state, dict):
        raise SamError(f"SAM checkpoint {path} does not hold a state dict")
    model = build_sam(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise SamError(
            f"SAM checkpoint {path} does not fit the {_describe(cfg)} architecture: {first[0].strip()}"
        ) from None
    return SamSegmenter(model.to(device))


class SamLoader:
    """One application's SAM segmenter, loaded from `checkpoint` on the first `get()` and kept.

    The editor holds one and hands it to its mask tasks (engine/masks/tasks.py), which call `get()` on the
    engine thread: the thread that owns the device loads the network there, once, however many tasks ask.
    `segmenter` supplies an already loaded one (tests pass a stand-in); `config` the architecture, as in
    `load_sam`; the device is CUDA when available."""

    def __init__(self, checkpoint: str | Path | None = None, *, segmenter=None, config: SamConfig | None = None):
        self.checkpoint = checkpoint
        self.config = config
        self._segmenter = segmenter
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """Whether there is something to load (a checkpoint path, not yet checked) or a segmenter already."""
        return self._segmenter is not None or bool(self.checkpoint)

    @property
    def loaded(self) -> bool:
        return self._segmenter is not None

    def get(self) -> "SamSegmenter":
        """The segmenter, loaded on first use; SamError when there is no checkpoint or it cannot be loaded."""
        with self._lock:
            if self._segmenter is None:
                if not self.checkpoint:
                    raise SamError(missing_checkpoint_message("(none given)"))
                device = "cuda" if torch.cuda.is_available() else "cpu"
                self._segmenter = load_sam(self.checkpoint, config=self.config, device=device)
            return self._segmenter


def _describe(cfg: SamConfig) -> str:
    for name, known in MODEL_TYPES.items():
        if known == cfg:
            return name
    return f"custom (embed_dim={cfg.encoder_embed_dim}, depth={cfg.encoder_depth})"


@dataclass
class SamMask:
    mask: np.ndarray  # [H, W] bool
    score: float  # SAM's predicted IoU of the returned mask
    all_masks: np.ndarray = field(repr=False, default=None)  # [K, H, W] every candidate
    all_scores: np.ndarray = field(repr=False, default=None)  # [K]


class SamSegmenter:
    """Point / box prompts on one image at a time (a thin layer over segment-anything's SamPredictor)."""

    def __init__(self, model) -> None:
        from segment_anything import SamPredictor

        self.model = model
        self.predictor = SamPredictor(model)

    @torch.no_grad()
    def segment(
        self,
        image: np.ndarray,  # [H, W, 3] uint8 RGB
        *,
        points=None,  # [M, 2] pixel (x, y)
        labels=None,  # [M] 1 = on the object, 0 = background (default: all 1)
        box=None,  # [4] x0, y0, x1, y1 pixels
        multimask: bool = True,
    ) -> SamMask:
        """The best-scoring mask for the prompts (SAM's own IoU estimate picks among its candidates)."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise SamError(f"SAM needs an [H, W, 3] uint8 RGB image, got {image.dtype} {list(image.shape)}")
        h, w = image.shape[:2]
        coords = labels_arr = box_arr = None
        if points is not None:
            coords = np.asarray(points, dtype=np.float32).reshape(-1, 2)
            labels_arr = np.ones(len(coords), np.int64) if labels is None else np.asarray(labels).reshape(-1)
            if len(labels_arr) != len(coords):
                raise SamError(f"{len(coords)} prompt points but {len(labels_arr)} labels")
            outside = (coords[:, 0] < 0) | (coords[:, 0] >= w) | (coords[:, 1] < 0) | (coords[:, 1] >= h)
            if outside.any():
                raise SamError(f"prompt point {coords[outside][0].tolist()} lies outside the {w}x{h} image")
        if box is not None:
            box_arr = np.asarray(box, dtype=np.float32).reshape(4)
            if not (box_arr[2] > box_arr[0] and box_arr[3] > box_arr[1]):
                raise SamError(f"a box prompt needs x0 < x1 and y0 < y1, got {box_arr.tolist()}")
        if coords is None and box_arr is None:
            raise SamError("SAM needs at least one prompt point or a box")
        self.predictor.set_image(image)
        masks, scores, _ = self.predictor.predict(
            point_coords=coords, point_labels=labels_arr, box=box_arr, multimask_output=multimask
        )
        best = int(np.argmax(scores))
        return SamMask(masks[best].astype(bool), float(scores[best]), masks.astype(bool), scores)
