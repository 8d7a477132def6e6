"""Diffusion guidance for editing: model loading, the closed-form prior, and the score-distillation losses.

Read base.py first: it holds the contract (`DiffusionModel`, `Condition`, `GuidanceLoss`, `LossOutput`) and the
spec / error types. Then one module per job:

- loading.py      `parse_model_spec`, `load_guidance` (the only way a model is made), `DiffusersModel`,
                  `model_family` (SD family or SD3-class rectified flow, read from the model's config)
- flow_model.py   `FlowModel`: SD3-class rectified-flow models (velocity, RFDS residual, epsilon view)
- flow_text.py    SD3's text stack (two CLIP encoders, optional T5); flow_loading.py loads the layout
- closed_form.py  `ClosedFormPrior`: exact Gaussian-data denoiser in pixel space, no weights
- native_size.py renders (and masks) resized to the model's native size (512 for SD 1.5) before the VAE
- timesteps.py    `TimestepSchedule`: t in [t_min, t_max] with optional annealing of t_max
- sds.py          `SDSLoss` (masked score distillation) and `sds_surrogate`
- dds.py          `DDSLoss` (delta denoising score)
- slamp.py        `part_edit_images` (scheduled latent mixing) and `SLaMPConfig`
- romap.py        `RoMaPLoss` (masked SDS + L1 anchor toward SLaMP part edits)
- ism.py          `ISMLoss` (interval score matching, LucidDreamer: without the noise term; edits and text-to-3D)
- nfsd.py, csd.py, esd.py, dreamcatalyst.py, lusd.py   the literature's variants, one formula and paper each
- prepare.py      renders -> latents at the native size, shared by the variants
- dreamtime.py    `MonotoneSchedule`: DreamTime's non-increasing timestep schedule (and a linear one)
- methods.py      the table of methods by name (one line, defaults per model family: `resolve`, jobs) and `build_loss`
- reference.py    `ReferencePrior` (the closed-form prior whose target per view is a scene's render, drawn by a
                  render function its user hands over: nothing here imports the renderer), `recolour_part`
"""

from .base import (
    DEFAULT_MODEL,
    MODEL_ENV_VAR,
    Condition,
    DiffusionModel,
    GuidanceLoss,
    LossOutput,
    ModelSpec,
    ModelSpecError,
    ModelUnavailableError,
    classifier_free_guidance,
    default_model_spec,
)
from .closed_form import ClosedFormPrior
from .dds import DDSLoss
from .flow_model import FlowModel
from .loading import DiffusersModel, load_guidance, parse_model_spec
from .romap import RoMaPLoss
from .sds import SDSLoss
from .slamp import SLaMPConfig, part_edit_images
from .timesteps import TimestepSchedule

__all__ = [
    "DEFAULT_MODEL", "MODEL_ENV_VAR", "ClosedFormPrior", "Condition", "DDSLoss", "DiffusersModel", "DiffusionModel",
    "FlowModel",
    "GuidanceLoss", "LossOutput", "ModelSpec", "ModelSpecError", "ModelUnavailableError", "RoMaPLoss", "SDSLoss",
    "SLaMPConfig", "TimestepSchedule", "classifier_free_guidance", "default_model_spec", "load_guidance",
    "parse_model_spec", "part_edit_images",
]
