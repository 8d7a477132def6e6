"""What the Edit and Generate panels collect, and its checked engine config (refused before anything runs).

Shared by every runner (the local worker, a ZeroGPU call): a bad prompt, an empty selection or a model that cannot
load is a ValueError here, before a job is queued or a GPU is asked for. It is also the one place where the
closed-form demo takes its colour from a colour word in the prompt (`model_for_prompt`), and `demo_note` says so
next to Run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

@dataclass
class EditSettings:
    """What the Edit panel collects; `to_config` turns it into engine.edit.EditConfig."""

    prompt: str
    source_prompt: str = ""
    method: str = "sds"
    steps: int = 300
    guidance_scale: float | None = None
    resolution: int = 256
    seed: int = 0
    preview_every: int = 5
    densify: bool = True
    prior_removal: bool = False
    lr_scale: float = 1.0  # multiplies every learning rate (the closed-form demo converges faster with > 1)
    edit: str = "auto"  # what may change: EditConfig.edit (auto: colour first, shape only when colour is not enough)
    schedule: str | None = None  # timestep schedule; None / "default": the method's (engine/guidance/methods.py)

    def to_config(self, model_spec: str):
        from engine.edit import EditConfig
        from engine.guidance.methods import chosen_schedule

        config = EditConfig(
            prompt=self.prompt, source_prompt=self.source_prompt, method=self.method, model=model_spec,
            steps=int(self.steps), resolution=int(self.resolution), guidance_scale=self.guidance_scale,
            seed=int(self.seed), preview_every=int(self.preview_every), preview_resolution=256, edit=self.edit,
            schedule=chosen_schedule(self.schedule),
        )
        config.densify.enabled = bool(self.densify)
        if self.lr_scale <= 0:
            raise ValueError(f"the learning-rate scale must be positive, got {self.lr_scale}")
        for name, value in config.lr.as_dict().items():
            setattr(config.lr, name, value * float(self.lr_scale))
        if self.prior_removal:
            config.prior.enabled = True  # (unticked: the method's default — on for romap, off otherwise)
        return config


INIT_CURRENT = "current scene"  # GenerateSettings.init value: start from the session's current scene


@dataclass
class GenerateSettings:
    """What the Scene panel's "Generate from text" group collects; `to_config` makes engine.generate's config."""

    prompt: str
    model: str = ""  # "" : the session's model
    method: str = "sds"
    steps: int = 300
    init: str = "sphere"  # sphere | ellipsoid | INIT_CURRENT
    seed: int = 0
    resolution: int = 128
    num_gaussians: int = 2000
    preview_every: int = 5
    schedule: str | None = None  # timestep schedule; None / "default": the method's

    def to_config(self, model_spec: str):
        from engine.generate import GenerateConfig
        from engine.guidance.methods import chosen_schedule

        return GenerateConfig(
            prompt=self.prompt, model=model_spec, method=self.method, steps=int(self.steps),
            resolution=int(self.resolution), seed=int(self.seed), num_gaussians=int(self.num_gaussians),
            init="sphere" if self.init == INIT_CURRENT else self.init, preview_every=int(self.preview_every),
            preview_resolution=256, schedule=chosen_schedule(self.schedule),
        )


def checked_edit_config(session, settings: EditSettings, models):
    """The EditConfig for the session's selection with its model (`models`: editor.models.ModelChoice), or
    ValueError saying why the edit cannot run. Call it holding `session.lock`."""
    from engine.edit import check_edit_inputs

    if session.job.active:
        raise ValueError("an edit is already running in this session")
    if session.mask_task.active:
        raise ValueError("a SAM click is still being worked on: wait for its mask (or cancel it) first")
    config = settings.to_config(model_for_prompt(models.spec_for(session), settings.prompt))
    config.up = tuple(session.up)  # the edit's orbit cameras circle the scene's up axis
    check_edit_inputs(session.scene, session.selection, config)
    if not bool((session.selection > config.mask_threshold).any()):
        raise ValueError("nothing is selected: select the part to edit first (Mask tab)")
    models.require(config.model)  # a missing model is refused here, before anything is queued
    return config


def checked_generate_config(session, settings: GenerateSettings, models):
    """The GenerateConfig for these settings (model: the session's, unless the settings name one), or ValueError
    saying what to fix."""
    from engine.generate import check_generate_config
    from engine.guidance import parse_model_spec

    from .models import normalise_colour_spec

    if session.job.active:
        raise ValueError("an edit or generation is already running in this session")
    spec = normalise_colour_spec((settings.model or "").strip()) or models.spec_for(session)
    parse_model_spec(spec)
    spec = model_for_prompt(spec, settings.prompt)
    models.require(spec)
    config = settings.to_config(spec)
    if settings.init == INIT_CURRENT:  # the primitives are built +z up (config.up's default)
        config.up = tuple(session.up)
    check_generate_config(config)
    return config


# ------------------------------------------------------------------ the closed-form demo and the prompt
_WORD = re.compile(r"[A-Za-z]+")
_HEX_LIKE = re.compile(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}")  # "bad", "decade": hex to parse_colour, not colour words


def prompt_colour(prompt: str) -> tuple[str, tuple[float, float, float]] | None:
    """The first CSS colour name in the prompt, as (the words, RGB in [0, 1]): "a blue scarf" -> ("blue", ...);
    two words that make one name count too ("light blue" -> lightblue). None when the prompt names no colour."""
    from engine.colour import parse_colour

    words = _WORD.findall(prompt or "")
    for i, word in enumerate(words):
        for spelled in ([f"{word} {words[i + 1]}"] if i + 1 < len(words) else []) + [word]:
            name = spelled.replace(" ", "")
            if _HEX_LIKE.fullmatch(name):
                continue
            try:
                return spelled.lower(), parse_colour(name)
            except ValueError:
                continue
    return None


def model_for_prompt(spec: str, prompt: str) -> str:
    """The model a job with this prompt runs: `spec`, except that the closed-form demo (which cannot read a
    prompt's meaning) moves toward the colour the prompt names, when it names one."""
    from engine.colour import to_hex
    from engine.guidance import parse_model_spec

    named = prompt_colour(prompt)
    try:
        parsed = parse_model_spec(spec)
    except ValueError:
        return spec  # the caller's check says what is wrong with it
    if named is None or parsed.kind != "closed-form":  # (a reference prior has no colour to replace)
        return spec
    return f"closed-form:{to_hex(named[1])}"


def demo_note(spec: str, prompt: str, *, generate: bool = False) -> str:
    """What the closed-form demo does with this prompt (shown next to Run and Generate); "" for a real model."""
    from engine.colour import to_hex
    from engine.guidance import parse_model_spec

    try:
        parsed = parse_model_spec(spec)
    except ValueError:
        return ""
    if parsed.kind != "closed-form":
        return ""
    named = prompt_colour(prompt)
    target = parsed.colour if named is None else named[1]  # what model_for_prompt makes of the spec
    does = "makes an object of one colour," if generate else "moves the selected part toward"
    if named is None:
        why = "the Model tab's colour; a colour word in the prompt, e.g. \"blue\", picks another"
    else:
        why = f"from \"{named[0]}\" in the prompt, instead of the Model tab's {to_hex(parsed.colour)}"
    return (f"The closed-form demo ignores the prompt's meaning: it {does} {to_hex(target)} ({why}).")
