"""When an edit's geometry may move: `EditConfig.edit`, and for `auto` a rule the loop measures.

A recolour needs no geometry, and a shape phase it does not need only does harm: densification lays new
Gaussians over the old surface (a flaky texture, a fuzzy silhouette, +60% Gaussians on a real capture), and a
real diffusion model's noisy gradients wander further. A reshape, an addition or a removal cannot be done by
colour alone. So `auto` first edits colour only and watches how hard the prior still pushes the rendered
pixels (the image-gradient norm the loop reports each step; RoMaP's distillation share, without its anchor):

- colour explains the edit -> the push falls as the colours converge;
- the edit needs geometry -> colour cannot remove what the prior wants gone or fill a silhouette it wants
  elsewhere, and the push stays where it started.

At step `shape_probe x steps` the gate compares the mean push of the last third of those steps with that of
the first third: at most `shape_residual` (0.7), the edit stays colour-only to the end (geometry bit-identical,
no Gaussian added or removed); above it, the loop starts the edit again from the input as before this rule
(`after_probe`: colour only for the first `appearance_fraction`, then geometry). Restarting costs a shape edit
the probe's steps but gives it its whole schedule: continuing from the probe left the antenna removal 3 dB and
its reshape 4.6 dB short of their figures (sds, 400 steps), the positions' decayed rate and the late
densification having less time to work. Measured on the bundled
suite, colour-only sds with the oracle prior, 120 steps, ratio after 100 steps: recolour_scarf 0.55,
recolour_body 0.33; reshape_antenna 1.09, add_hat 0.83, remove_antenna 0.85 (after 60 steps the scarf is still
at 0.75: an edit much shorter than 400 steps decides from too little and may unlock a recolour's geometry).

A constant-colour closed-form prior (the app's demo, `closed-form:<colour>`) *is* a recolour (the loop turns it
into "the part, recoloured"): `auto` keeps it colour-only without measuring (`colour_only=True`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import EditConfig


class ShapeGate:
    """Whether geometry moves at each step (`unlocked(step)`); feed it each step's push (`observe`)."""

    def __init__(self, config: EditConfig, colour_only: bool = False) -> None:
        self.kind = "appearance" if colour_only and config.edit == "auto" else config.edit
        self.threshold = float(config.shape_residual)
        self.decide_at = int(round(config.shape_probe * config.steps))
        self.window = max(1, self.decide_at // 3)
        self.pushes: list[float] = []
        shape_now = self.kind == "shape" or (self.kind == "auto" and self.decide_at == 0)
        self.unlocked_at: int | None = 0 if shape_now else None
        self.ratio: float | None = None  # the measured late/early push (auto, once decided)

    @classmethod
    def after_probe(cls, config: EditConfig, probe: "ShapeGate") -> "ShapeGate":
        """The gate of the edit that runs again after a probe unlocked geometry: colour only for the first
        `appearance_fraction` of its steps, then geometry (the schedule `auto` had before it measured)."""
        gate = cls(config)
        gate.kind, gate.ratio = "scheduled", probe.ratio
        gate.unlocked_at = int(round(config.appearance_fraction * config.steps))
        return gate

    @property
    def probing(self) -> bool:
        """An auto edit's colour-only probe (whose unlocking means: run the edit again with geometry)."""
        return self.kind == "auto"

    def unlocked(self, step: int) -> bool:
        if self.kind != "auto" or self.unlocked_at is not None:  # appearance, shape, scheduled
            return self.unlocked_at is not None and step >= self.unlocked_at
        if step == self.decide_at and self.ratio is None:
            self._decide(step)
        return self.unlocked_at is not None and step >= self.unlocked_at

    def observe(self, push: float | None) -> None:
        """The prior's push on the renders at the step just taken (an appearance step of an auto edit)."""
        if self.kind == "auto" and self.ratio is None and push is not None:
            self.pushes.append(float(push))

    def _decide(self, step: int) -> None:
        if len(self.pushes) < 2 * self.window:  # too short an edit to measure: colour only
            self.ratio = 0.0
            return
        early = sum(self.pushes[: self.window]) / self.window
        late = sum(self.pushes[-self.window:]) / self.window
        self.ratio = late / early if early > 0 else 0.0
        if self.ratio > self.threshold:
            self.unlocked_at = step
