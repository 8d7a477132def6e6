"""The score-distillation methods by name: one line each, their papers' defaults, and the loss each name builds.

Every surface that names a method reads this table: the edit and generate configs (their choices and per-method
defaults), the loops (`build_loss`), the editor's dropdowns (labels and one-line descriptions), and
bench/edit_quality.py's `--methods`. The CLI spells its choices out (its --help must not import torch); a test
checks they match.

| method        | jobs            | guidance | t range (fraction of T)        | source of the defaults                 |
|---------------|-----------------|----------|--------------------------------|----------------------------------------|
| sds           | edit, generate  | 100      | 0.02-0.98, t_max -> 0.5        | DreamFusion; annealing: this project    |
| dds           | edit            | 7.5      | 0.02-0.98                      | DDS (Hertz et al. 2023)                |
| romap         | edit            | 100      | 0.02-0.98, t_max -> 0.5        | RoMaP's config                         |
| ism           | edit, generate  | 7.5      | 0.02-0.98, t_max -> 0.5        | LucidDreamer                           |
| nfsd          | edit, generate  | 7.5      | 0.02-0.98, t_max -> 0.5        | NFSD ("nominal" 7.5)                   |
| csd           | edit, generate  | 2 (w=1)  | 0.02-0.98, t_max -> 0.5        | CSD's released configs (weight 1)      |
| esd           | edit, generate  | 100      | 0.02-0.98, t_max -> 0.5        | SDS's (LoRA replaced: esd.py)          |
| dreamcatalyst | edit            | 7.5      | 0.9 -> 0.2, linear, no random  | DreamCatalyst's released code          |
| lusd          | edit            | unused   | 0.05-0.95                      | LUSD's released code                   |

The t_max annealing of sds/romap/ism/nfsd/csd/esd is this project's choice for every method alike (an edit must
keep more of its input than a generation); the papers differ. Any method takes any timestep schedule
(`schedule`: "random", DreamTime's "dreamtime", or "linear"). VSD (ProlificDreamer) is not here: it trains a LoRA
of the diffusion model alongside the scene, which neither a CPU test nor a 15-minute GPU check can fit
honestly; esd.py says what replaces that LoRA there.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULES = ("random", "dreamtime", "linear")


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # what a dropdown shows
    summary: str  # one line: what it is and why you would pick it
    guidance_scale: float
    t_min: float = 0.02
    t_max: float = 0.98
    anneal: bool = True  # t_max falls to 0.5 by the last step (the "random" schedule only)
    schedule: str = "random"
    source: str = "unused"  # "required" | "optional" | "unused": the --source-prompt
    needs_originals: bool = False  # the loss compares the render with the view before the edit
    jobs: tuple[str, ...] = ("edit",)
    classifier_only: bool = False  # distils only eps(y) - eps(""): zero on the weight-free priors

    @property
    def t_max_end(self) -> float | None:
        return min(0.5, self.t_max) if self.anneal else None


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sds", "SDS", "score distillation sampling (DreamFusion): the baseline, CFG 100", 100.0,
           jobs=("edit", "generate")),
    Method("dds", "DDS", "delta denoising score: target minus source prediction, keeps the rest (needs source)",
           7.5, anneal=False, source="required", needs_originals=True),
    Method("romap", "RoMaP (regularized SDS)", "masked SDS + L1 anchor to 2D part edits + prior removal", 100.0),
    Method("ism", "ISM", "interval score matching (LucidDreamer): DDIM-inverted, no random-noise term, CFG 7.5",
           7.5, jobs=("edit", "generate")),
    Method("nfsd", "NFSD", "noise-free SDS: drops the noise term via a negative prompt, CFG 7.5", 7.5,
           jobs=("edit", "generate")),
    Method("csd", "CSD", "classifier score distillation: the guidance term alone, no noise term", 2.0,
           jobs=("edit", "generate"), classifier_only=True),
    Method("esd", "ESD", "entropic SDS: SDS plus a term that keeps views diverse (fights Janus faces)", 100.0,
           jobs=("edit", "generate")),
    Method("dreamcatalyst", "DreamCatalyst", "DDS with identity pull and falling t: fast edits that keep "
           "identity (needs source)", 7.5, t_min=0.2, t_max=0.9, anneal=False, schedule="linear",
           source="required", needs_originals=True),
    Method("lusd", "LUSD", "localized update SD: filtered, normalized target-vs-source updates (source optional)",
           7.5, t_min=0.05, t_max=0.95, anneal=False, source="optional", needs_originals=True),
)}
EDIT_METHODS = tuple(name for name, m in METHODS.items() if "edit" in m.jobs)
GENERATE_METHODS = tuple(name for name, m in METHODS.items() if "generate" in m.jobs)


def method_info(name: str) -> Method:
    """The table's row for `name`; ValueError naming the choices for an unknown one."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def dropdown_choices(job: str) -> list[tuple[str, str]]:
    """(label with its one-line description, name) for each method of `job` ("edit" | "generate")."""
    return [(f"{m.label} — {m.summary}", m.name) for m in METHODS.values() if job in m.jobs]


def make_schedule(kind: str, t_min: float, t_max: float, t_max_end: float | None):
    """The timestep schedule: "random" (uniform, t_max annealed to t_max_end), "dreamtime" or "linear"."""
    from .dreamtime import MonotoneSchedule
    from .timesteps import TimestepSchedule

    if kind == "random":
        return TimestepSchedule(t_min=t_min, t_max=t_max, t_max_end=t_max_end)
    if kind in ("dreamtime", "linear"):
        return MonotoneSchedule(t_min=t_min, t_max=t_max, weighting=kind)
    raise ValueError(f"unknown timestep schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


def build_loss(method: str, model, *, prompt: str, source_prompt: str = "", guidance_scale: float, timesteps,
               anchor_weight: float = 1.0, ism_interval: float = 0.05, ism_inversion_step: float = 0.2):
    """The loss object (a `GuidanceLoss`) that `method` names, with these settings."""
    from . import csd, dds, dreamcatalyst, esd, ism, lusd, nfsd, romap, sds

    method_info(method)
    common = {"guidance_scale": guidance_scale, "timesteps": timesteps}
    if method == "dds":
        return dds.DDSLoss(model, prompt, source_prompt, **common)
    if method == "romap":
        return romap.RoMaPLoss(model, prompt, anchor_weight=anchor_weight, **common)
    if method == "ism":
        return ism.ISMLoss(model, prompt, interval=ism_interval, inversion_step=ism_inversion_step, **common)
    if method == "dreamcatalyst":
        return dreamcatalyst.DreamCatalystLoss(model, prompt, source_prompt, **common)
    if method == "lusd":
        return lusd.LUSDLoss(model, prompt, source_prompt, timesteps=timesteps)
    simple = {"sds": sds.SDSLoss, "nfsd": nfsd.NFSDLoss, "csd": csd.CSDLoss, "esd": esd.ESDLoss}
    return simple[method](model, prompt, **common)
