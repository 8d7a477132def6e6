"""The score-distillation methods by name: one line each, their papers' defaults, and the loss each name builds.

Every surface that names a method reads this table: the edit and generate configs (their choices and per-method
defaults), the loops (`build_loss`), the editor's dropdowns (labels and one-line descriptions), and
bench/edit_quality.py's `--methods`. The CLI spells its choices out (its --help must not import torch); a test
checks they match.

Diffusion family (and the weight-free priors); the flow family's differences are the paragraph below the table.

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
keep more of its input than a generation); the papers differ.

Per model family (`family_of`: the loader picks the model class from the model's config, never its name). The
table above is the diffusion family's (SD 1.5 / 2.x, epsilon or v-prediction; the weight-free priors use it
too). On the rectified-flow family (SD3 / SD3.5) every method whose range above is the generic 0.02-0.98 takes
RoMaP's released config instead: t uniform in [0.3, 0.98] of the scheduler's shifted table, no annealing
(/work/shared/ROMAP.md: SD3-medium, guidance 100, t in [0.3, 0.98], 512², ~600 steps). Why not SD's range: the
flow table is shifted (shift 3: t = 0.02 is noise level 0.06, t = 0.3 is 0.56), and RoMaP tuned its range on it.
dreamcatalyst and lusd keep their released ranges (their papers ran SD-family models; nothing published says
otherwise). Guidance scales are the same on both families: classifier-free guidance on the velocity equals it on
epsilon (flow_model.py), so a paper's scale means the same push. An explicit value from the user always wins
(`resolve`: None means "the default for this method and family"). Any method takes any timestep schedule
(`schedule`: "random", DreamTime's "dreamtime", or "linear"). VSD (ProlificDreamer) is not here: it trains a LoRA
of the diffusion model alongside the scene, which neither a CPU test nor a 15-minute GPU check can fit
honestly; esd.py says what replaces that LoRA there.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULES = ("random", "dreamtime", "linear")
SCHEDULE_SUMMARIES = {
    "random": "uniform t in [t_min, t_max] each step, t_max annealed (the SDS default)",
    "dreamtime": "DreamTime: one t per step, never rising, most steps in the middle band (Huang et al. 2023)",
    "linear": "t falls linearly from t_max to t_min (DreamCatalyst's schedule)",
}
"""One line per timestep schedule, for the panels (the CLI spells its help out: it must not import the engine)."""
DIFFUSION, FLOW = "diffusion", "flow"  # the model families (loading.model_family's names)
FLOW_T_RANGE = (0.3, 0.98)
"""RoMaP's released t range for SD3-medium's rectified flow (/work/shared/ROMAP.md)."""


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
    uses_guidance: bool = True  # lusd normalizes an unguided difference: no guidance scale
    flow_t_range: bool = True  # on the flow family: RoMaP's FLOW_T_RANGE without annealing (see above)

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
           source="required", needs_originals=True, flow_t_range=False),
    Method("lusd", "LUSD", "localized update SD: filtered, normalized target-vs-source updates (source optional)",
           7.5, t_min=0.05, t_max=0.95, anneal=False, source="optional", needs_originals=True, flow_t_range=False,
           uses_guidance=False),
)}
EDIT_METHODS = tuple(name for name, m in METHODS.items() if "edit" in m.jobs)
GENERATE_METHODS = tuple(name for name, m in METHODS.items() if "generate" in m.jobs)


def method_info(name: str) -> Method:
    """The table's row for `name`; ValueError naming the choices for an unknown one."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


@dataclass(frozen=True)
class Defaults:
    """What a method runs with on one model family, every None of a config filled in (`resolve`)."""

    guidance_scale: float
    t_min: float
    t_max: float
    t_max_end: float  # equal to t_max: no annealing
    schedule: str

    def describe(self, guidance: bool = True) -> str:
        """One line, e.g. "guidance 100, t 0.02-0.98 (t_max -> 0.5), random" (without the scale: `guidance`)."""
        anneal = f" (t_max -> {self.t_max_end:g})" if self.t_max_end != self.t_max else ""
        scale = f"guidance {self.guidance_scale:g}, " if guidance else ""
        return f"{scale}t {self.t_min:g}-{self.t_max:g}{anneal}, {self.schedule}"


def family_of(model) -> str:
    """FLOW for a rectified-flow model, DIFFUSION for everything else (SD family, weight-free priors, None). The
    attribute comes with the model class, which the loader picks from the model's config (loading.model_family)."""
    return FLOW if getattr(model, "family", DIFFUSION) == FLOW else DIFFUSION


def resolve(method: str, family: str = DIFFUSION, *, guidance_scale: float | None = None,
            t_min: float | None = None, t_max: float | None = None, t_max_end: float | None = None,
            schedule: str | None = None) -> Defaults:
    """The settings a job runs with: each value the user gave (not None) as given, every other one the method's
    default on `family` (the module docstring's table and its flow paragraph). A user's t_max moves the default
    annealing end with it (min(0.5, t_max)); the monotone schedules ignore t_max_end."""
    info = method_info(method)
    if family not in (DIFFUSION, FLOW):
        raise ValueError(f"unknown model family {family!r}; expected {DIFFUSION} or {FLOW}")
    flow = family == FLOW and info.flow_t_range
    lo, hi = FLOW_T_RANGE if flow else (info.t_min, info.t_max)
    lo = float(lo if t_min is None else t_min)
    hi = float(hi if t_max is None else t_max)
    if t_max_end is None:
        t_max_end = min(0.5, hi) if (info.anneal and not flow) else hi
    return Defaults(float(info.guidance_scale if guidance_scale is None else guidance_scale), lo, hi,
                    float(t_max_end), schedule or info.schedule)


def dropdown_choices(job: str) -> list[tuple[str, str]]:
    """(label with its one-line description, name) for each method of `job` ("edit" | "generate")."""
    return [(f"{m.label} — {m.summary}", m.name) for m in METHODS.values() if job in m.jobs]


DEFAULT_SCHEDULE = "default"
"""The panels' schedule choice that means "the method's own" (a config's None)."""


def schedule_choices() -> list[tuple[str, str]]:
    """("Method default ...", DEFAULT_SCHEDULE), then (name with its one-line description, name) per schedule."""
    return [("Method default (linear for DreamCatalyst, random for the rest)", DEFAULT_SCHEDULE)] + [
        (f"{name} — {line}", name) for name, line in SCHEDULE_SUMMARIES.items()]


def chosen_schedule(value: str | None) -> str | None:
    """A panel's schedule choice as a config's value: None for the method default (or nothing chosen)."""
    return None if value in (None, "", DEFAULT_SCHEDULE) else value


def method_line(name: str) -> str:
    """The method's one-line description and its defaults on each model family, for the panels (Markdown)."""
    info = method_info(name)
    sd, flow = (resolve(name, family).describe(info.uses_guidance) for family in (DIFFUSION, FLOW))
    return f"**{info.label}** — {info.summary}. Defaults: SD family {sd}; SD3 (rectified flow) {flow}."


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
