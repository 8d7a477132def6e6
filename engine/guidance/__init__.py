"""Diffusion guidance for editing: model loading, the closed-form prior, and the SDS / DDS / RoMaP losses.

Read base.py first: it holds the contract (`DiffusionModel`, `Condition`, `GuidanceLoss`, `LossOutput`) and the
spec / error types. Then one module per job:

- loading.py      `parse_model_spec`, `load_guidance` (the only way a model is made), `DiffusersModel`
- closed_form.py  `ClosedFormPrior`: exact Gaussian-data denoiser in pixel space, no weights
- timesteps.py    `TimestepSchedule`: t in [t_min, t_max] with optional annealing of t_max
- sds.py          `SDSLoss` (masked score distillation) and `sds_surrogate`
- dds.py          `DDSLoss` (delta denoising score)
- slamp.py        `part_edit_images` (scheduled latent mixing) and `SLaMPConfig`
- romap.py        `RoMaPLoss` (masked SDS + L1 anchor toward SLaMP part edits)
"""
